import { sql } from "kysely";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IN_MEMORY_DATA_DIR, openDatabase, type DatabaseHandle } from "./database.js";

// The PGlite dialect whatever the environment says (the embedded profile's driver).
const logger = pino({ level: "silent" });
let handle: DatabaseHandle;
beforeAll(async () => {
  handle = await openDatabase({ dataDir: IN_MEMORY_DATA_DIR, logger });
}, 60_000);
afterAll(async () => {
  await handle.close();
});

describe("PGlite dialect", () => {
  test("parameters go as node-postgres sends them: arrays, JSON, dates, bytes, booleans, big integers, null", async () => {
    const when = new Date("2026-12-05T15:00:00.123Z");
    const bytes = new Uint8Array([0, 1, 254, 255]);
    const { rows } = await sql<{ a: string[]; j: unknown; t: Date; b: Uint8Array; f: boolean; n: string; z: string | null; u: string[] }>`
      select ${['a"b', "c\\d", null, "x,y", "", "{}"]}::text[] as a, ${{ k: [1, "2"], q: 'say "hi"' }}::jsonb as j,
             ${when}::timestamptz as t, ${bytes}::bytea as b, ${true}::bool as f, ${9007199254740993n}::int8 as n,
             ${null}::text as z, ${[randomish]}::uuid[] as u`.execute(handle.db);
    expect(rows).toEqual([
      {
        a: ['a"b', "c\\d", null, "x,y", "", "{}"],
        j: { k: [1, "2"], q: 'say "hi"' },
        t: when,
        b: bytes,
        f: true,
        n: "9007199254740993",
        z: null,
        u: [randomish],
      },
    ]);
  });

  test("a repeated query is parsed once, as a named statement", async () => {
    const run = (n: number) => sql<{ n: number }>`select ${n}::int + 1 as n /* dialect-prepared */`.execute(handle.db);
    expect((await run(1)).rows).toEqual([{ n: 2 }]);
    expect((await run(41)).rows).toEqual([{ n: 42 }]);
    const { rows } = await sql<{
      name: string;
    }>`select name from pg_prepared_statements where statement like '%dialect-prepared%' and statement not like '%pg_prepared_statements%'`.execute(handle.db);
    expect(rows).toHaveLength(1);
  });

  test("a table changed under a prepared select * is parsed afresh, not failed", async () => {
    await sql`create table dialect_t (a int)`.execute(handle.db);
    await sql`insert into dialect_t values (1)`.execute(handle.db);
    const all = () => sql<Record<string, number>>`select * from dialect_t`.execute(handle.db);
    expect((await all()).rows).toEqual([{ a: 1 }]);
    await sql`alter table dialect_t add column b int default 2`.execute(handle.db);
    expect((await all()).rows).toEqual([{ a: 1, b: 2 }]);
    expect((await all()).rows).toEqual([{ a: 1, b: 2 }]);
  });

  test("errors keep their SQLSTATE and leave the connection usable; writes report their row counts", async () => {
    await sql`create table dialect_u (k text primary key)`.execute(handle.db);
    const insert = (k: string) => sql`insert into dialect_u values (${k})`.execute(handle.db);
    expect((await insert("x")).numAffectedRows).toBe(1n);
    await expect(insert("x")).rejects.toMatchObject({ code: "23505" });
    await expect(sql`selec 1`.execute(handle.db)).rejects.toMatchObject({ code: "42601" });
    // In a transaction: the error aborts it, rollback works, the next query runs.
    await expect(
      handle.db.transaction().execute(async (trx) => {
        await sql`insert into dialect_u values (${"y"})`.execute(trx);
        await sql`insert into dialect_u values (${"x"})`.execute(trx);
      }),
    ).rejects.toMatchObject({ code: "23505" });
    const { rows } = await sql<{ k: string }>`select k from dialect_u order by k`.execute(handle.db);
    expect(rows).toEqual([{ k: "x" }]);
    expect((await sql`update dialect_u set k = k || '!'`.execute(handle.db)).numAffectedRows).toBe(1n);
  });
});

const randomish = "0190f1e2-7a4b-7c3d-8e5f-0123456789ab";
