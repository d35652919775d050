import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "../tests/helpers/test-database.js";
import { toConnectError } from "./errors.js";

// Two connections deadlock on a real PostgreSQL (the machine's, or DATABASE_URL's; PGlite has one connection,
// so CI runs this file once, in its production suite).

describe("a transaction PostgreSQL rolls back for another's sake", () => {
  let tdb: TestDatabase;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    tdb = await createTestDatabase(undefined, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ connectionString: tdb.databaseUrl });
      await c.connect();
      clients.push(c);
    }
    await clients[0]!.query("create table t (id int primary key, v int); insert into t values (1, 0), (2, 0)");
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end()));
    await tdb?.drop();
  });

  test("a deadlock answers Aborted (retry now), with a message that says so, not Internal", async () => {
    const [a, b] = clients as [pg.Client, pg.Client];
    await a.query("begin");
    await b.query("begin");
    await a.query("update t set v = 1 where id = 1");
    await b.query("update t set v = 1 where id = 2");
    // Each now waits for the row the other holds: PostgreSQL picks one to roll back (deadlock_timeout, 1 s).
    const outcomes = await Promise.allSettled([a.query("update t set v = 2 where id = 2"), b.query("update t set v = 2 where id = 1")]);
    await Promise.all([a.query("rollback"), b.query("rollback")]);
    const failed = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as unknown] : []));
    expect(failed).toHaveLength(1);
    expect((failed[0] as { code?: string }).code).toBe("40P01");
    const answer = toConnectError(failed[0]);
    expect(answer.code).toBe(Code.Aborted);
    expect(answer.rawMessage).toMatch(/conflicted with this call.*retry it/);
  });

  test("so does a serialization failure", () => {
    const err = Object.assign(new pg.DatabaseError("could not serialize access due to concurrent update", 0, "error"), { code: "40001" });
    expect(toConnectError(err).code).toBe(Code.Aborted);
  });
});
