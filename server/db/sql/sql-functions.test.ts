import { sql, Migrator, type Kysely } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { migrations } from "../../../migrations/index.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import { migrateToLatest } from "../migrate.js";
import { definitionHash, readSqlFunction, SQL_FUNCTIONS } from "../sql-functions.js";

// What the database holds is what server/db/sql/ says (PostgreSQL when
// DATABASE_URL is set, else PGlite; CI runs both).
const logger = pino({ level: "silent" });
const SCRATCH = "chatwire_sql_drift";

const migrated = migratedDatabase(logger);
let db: Kysely<any>;
beforeAll(() => {
  db = migrated.db;
});

/** Functions of the public schema that no extension owns, by name. */
async function functionsIn(schema: string): Promise<Map<string, string>> {
  const { rows } = await sql<{ name: string; def: string }>`
    select p.proname as name, pg_get_functiondef(p.oid) as def
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = ${schema}
      and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
    order by p.proname`.execute(db);
  return new Map(rows.map((r) => [r.name, r.def.replaceAll(`${schema}.`, "")]));
}

/** Each file's function as PostgreSQL itself renders it, created in a scratch schema that is rolled back. */
async function definitionsOfFiles(): Promise<Map<string, string>> {
  let defs = new Map<string, string>();
  const rollback = new Error("rollback");
  await db
    .transaction()
    .execute(async (trx) => {
      await sql.raw(`create schema ${SCRATCH}`).execute(trx);
      await sql.raw(`set local search_path = ${SCRATCH}, public`).execute(trx);
      for (const f of SQL_FUNCTIONS) await sql.raw(await readSqlFunction(f.name)).execute(trx);
      const { rows } = await sql<{ name: string; def: string }>`
        select p.proname as name, pg_get_functiondef(p.oid) as def
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = ${SCRATCH}`.execute(trx);
      defs = new Map(rows.map((r) => [r.name, r.def.replaceAll(`${SCRATCH}.`, "")]));
      throw rollback;
    })
    .catch((err: unknown) => {
      if (err !== rollback) throw err;
    });
  return defs;
}

describe("SQL functions are the files in server/db/sql/", () => {
  test("every function the migrations leave is a file, under the chatwire_ prefix, defined exactly as the file says", async () => {
    const held = await functionsIn("public");
    expect([...held.keys()].sort()).toEqual(SQL_FUNCTIONS.map((f) => f.name).sort());
    for (const name of held.keys()) expect(name).toMatch(/^chatwire_/);
    const files = await definitionsOfFiles();
    expect(files.size).toBe(SQL_FUNCTIONS.length);
    for (const [name, def] of files) expect(held.get(name), name).toBe(def);
  });

  test("each file is the definition its migration shipped (a changed file needs a migration: server/db/sql/README.md)", async () => {
    for (const f of SQL_FUNCTIONS) {
      const hash = definitionHash(await readSqlFunction(f.name));
      expect(hash, `server/db/sql/${f.name}.sql changed: ship it with a new migration, then record it in SQL_FUNCTIONS`).toBe(f.sha256);
      expect(Object.keys(migrations), `${f.name} shippedBy`).toContain(f.shippedBy);
    }
  });

  test("a database migrated before 0013 (presence functions without the prefix) ends with the same functions", async () => {
    const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
    const names = Object.keys(migrations).sort();
    const down = await migrator.migrateTo(names[names.indexOf("0013_sql_functions") - 1]!);
    expect(down.error).toBeUndefined();
    expect(down.results?.map((r) => r.migrationName)).toContain("0013_sql_functions");
    const before = await functionsIn("public");
    expect([...before.keys()].filter((n) => n.startsWith("presence_")).sort()).toEqual(["presence_audience", "presence_close_stream", "presence_open_stream"]);
    expect(before.has("chatwire_presence_audience")).toBe(false);
    // The old definitions call each other by their old names.
    expect(before.get("presence_open_stream")).toMatch(/from presence_audience\(p_user_id\)/);

    await migrateToLatest(db, logger);
    const held = await functionsIn("public");
    const files = await definitionsOfFiles();
    expect([...held.keys()].sort()).toEqual([...files.keys()].sort());
    for (const [name, def] of files) expect(held.get(name), name).toBe(def);
  });
});
