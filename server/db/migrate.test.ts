import { sql, type Kysely, type Transaction } from "kysely";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "../tests/helpers/test-database.js";
import { IN_MEMORY_DATA_DIR, openDatabase, type DatabaseHandle } from "./database.js";
import { MigrationError, migrateToLatest, pendingMigrations } from "./migrate.js";
import type { Database, UserDevicesTable, UsersTable } from "./schema.js";
import { migrations } from "../../migrations/index.js";

const logger = pino({ level: "silent" });
// Both backends are always tested, whatever the environment says.
// PGlite start-up takes seconds on slow machines.
const SLOW = 60_000;

// `satisfies` keeps these in lockstep with schema.ts at compile time.
const USERS_COLUMNS = Object.keys({
  id: 1,
  phone_number: 1,
  display_name: 1,
  profile_picture_url: 1,
  about_text: 1,
  last_seen_at: 1,
  created_at: 1,
  updated_at: 1,
  deleted_at: 1,
} satisfies Record<keyof UsersTable, 1>);
const USER_DEVICES_COLUMNS = Object.keys({
  id: 1,
  user_id: 1,
  device_id: 1,
  device_name: 1,
  device_type: 1,
  push_notification_token: 1,
  refresh_token_hash: 1,
  refresh_expires_at: 1,
  created_at: 1,
  last_login_at: 1,
  last_active_at: 1,
  revoked_at: 1,
  refresh_token_jti: 1,
  refresh_issued_at: 1,
  previous_refresh_token_hash: 1,
  refresh_rotated_at: 1,
  revoked_reason: 1,
} satisfies Record<keyof UserDevicesTable, 1>);
const ALL_MIGRATIONS = Object.keys(migrations).sort();

async function schemaSnapshot(db: Kysely<Database>) {
  const columns = await sql<{ table_name: string; column_name: string; data_type: string; is_nullable: string; column_default: string | null }>`
    select table_name, column_name, data_type, is_nullable, column_default
    from information_schema.columns
    where table_schema = 'public'
    order by table_name, ordinal_position`.execute(db);
  const indexes = await sql<{ indexname: string; indexdef: string }>`
    select indexname, indexdef from pg_indexes where schemaname = 'public' order by indexname`.execute(db);
  return { columns: columns.rows, indexes: indexes.rows };
}

function columnsOf(snapshot: Awaited<ReturnType<typeof schemaSnapshot>>, table: string): string[] {
  return snapshot.columns.filter((c) => c.table_name === table).map((c) => c.column_name);
}

async function userPhones(db: Kysely<Database>, phones: string[]): Promise<string[]> {
  const rows = await db.selectFrom("users").select("phone_number").where("phone_number", "in", phones).orderBy("phone_number").execute();
  return rows.map((r) => r.phone_number);
}

/** Behaviour both backends must share; registered inside a describe that provides the handle. */
function sharedSchemaTests(getHandle: () => DatabaseHandle): void {
  it("lists every migration as pending on an empty database", async () => {
    const { db } = getHandle();
    expect(await pendingMigrations(db)).toEqual(ALL_MIGRATIONS);
    expect((await schemaSnapshot(db)).columns).toEqual([]);
  });

  it("applies every migration and creates users and user_devices as schema.ts describes", async () => {
    const { db } = getHandle();
    expect(await migrateToLatest(db, logger)).toEqual({ applied: ALL_MIGRATIONS });
    expect(await pendingMigrations(db)).toEqual([]);

    const snapshot = await schemaSnapshot(db);
    expect(columnsOf(snapshot, "users")).toEqual(USERS_COLUMNS);
    expect(columnsOf(snapshot, "user_devices")).toEqual(USER_DEVICES_COLUMNS);
    const indexes = Object.fromEntries(snapshot.indexes.map((i) => [i.indexname, i.indexdef]));
    expect(Object.keys(indexes)).toEqual(
      expect.arrayContaining(["users_pkey", "users_phone_number_key", "user_devices_pkey", "user_devices_user_id_idx", "user_devices_refresh_token_hash_key"]),
    );
    expect(indexes.user_devices_refresh_token_hash_key).toMatch(/UNIQUE INDEX .* WHERE \(refresh_token_hash IS NOT NULL\)/);
  });

  it("treats a second run as a no-op", async () => {
    const { db } = getHandle();
    const before = await schemaSnapshot(db);
    expect(await migrateToLatest(db, logger)).toEqual({ applied: [] });
    expect(await schemaSnapshot(db)).toEqual(before);
    const executed = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
    expect(executed.rows.map((r) => r.name)).toEqual(ALL_MIGRATIONS);
  });

  it("fills defaults and returns timestamptz as Date and int8 as string", async () => {
    const { db } = getHandle();
    const lastSeen = new Date("2024-05-06T07:08:09.123Z");
    const user = await db.insertInto("users").values({ phone_number: "+14155550100", last_seen_at: lastSeen }).returningAll().executeTakeFirstOrThrow();
    expect(user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(user).toMatchObject({ display_name: "", profile_picture_url: "", about_text: "" });
    expect(user.created_at).toBeInstanceOf(Date);
    expect(user.last_seen_at).toEqual(lastSeen);

    const { count, big } = await db
      .selectFrom("users")
      .select((eb) => [eb.fn.countAll().as("count"), sql<string>`9007199254740993::int8`.as("big")])
      .executeTakeFirstOrThrow();
    expect(count).toBe("1");
    expect(big).toBe("9007199254740993");
  });

  it("rejects a duplicate phone number", async () => {
    const { db } = getHandle();
    await db.insertInto("users").values({ phone_number: "+14155550101" }).execute();
    await expect(db.insertInto("users").values({ phone_number: "+14155550101" }).execute()).rejects.toMatchObject({
      code: "23505",
      constraint: "users_phone_number_key",
    });
  });

  it("keeps refresh token hashes unique (NULLs allowed) and cascades user deletion", async () => {
    const { db } = getHandle();
    const { id: userId } = await db.insertInto("users").values({ phone_number: "+14155550102" }).returning("id").executeTakeFirstOrThrow();
    await db
      .insertInto("user_devices")
      .values([{ user_id: userId }, { user_id: userId }])
      .execute();
    await db
      .insertInto("user_devices")
      .values({ user_id: userId, refresh_token_hash: "a".repeat(64) })
      .execute();
    await expect(
      db
        .insertInto("user_devices")
        .values({ user_id: userId, refresh_token_hash: "a".repeat(64) })
        .execute(),
    ).rejects.toMatchObject({ code: "23505", constraint: "user_devices_refresh_token_hash_key" });

    const updated = await db.updateTable("user_devices").set({ revoked_at: new Date() }).where("user_id", "=", userId).executeTakeFirstOrThrow();
    expect(updated.numUpdatedRows).toBe(3n);

    const deleted = await db.deleteFrom("users").where("id", "=", userId).executeTakeFirstOrThrow();
    expect(deleted.numDeletedRows).toBe(1n);
    const left = await db.selectFrom("user_devices").select("id").where("user_id", "=", userId).execute();
    expect(left).toEqual([]);
  });

  it("rolls back a failing transaction and keeps the database usable", async () => {
    const { db } = getHandle();
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto("users").values({ phone_number: "+14155550103" }).execute();
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    // A database error leaves the session in an aborted transaction unless it is rolled back.
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto("users").values({ phone_number: "+14155550104" }).execute();
        await trx.insertInto("users").values({ phone_number: "+14155550101" }).execute();
      }),
    ).rejects.toMatchObject({ code: "23505" });
    expect(await userPhones(db, ["+14155550103", "+14155550104"])).toEqual([]);

    await getHandle().ping();
    await db.transaction().execute((trx) => trx.insertInto("users").values({ phone_number: "+14155550105" }).execute());
    expect(await userPhones(db, ["+14155550105"])).toEqual(["+14155550105"]);
  });
}

describe("postgres", () => {
  let testDb: TestDatabase;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    testDb = await createTestDatabase(logger, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
    handle = await openDatabase({ databaseUrl: testDb.databaseUrl!, dataDir: testDb.dataDir, logger, poolMax: 4 });
    expect(handle.kind).toBe("postgres");
  }, SLOW);

  afterAll(async () => {
    await handle?.close();
    await testDb?.drop();
  }, SLOW);

  sharedSchemaTests(() => handle);
});

describe("pglite (directory)", () => {
  let testDb: TestDatabase;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    testDb = await createTestDatabase(logger, { kind: "pglite", fromTemplate: false });
    handle = await openDatabase({ dataDir: testDb.dataDir, logger });
    expect(handle.kind).toBe("pglite");
  }, SLOW);

  afterAll(async () => {
    await handle?.close();
    await testDb?.drop();
  }, SLOW);

  sharedSchemaTests(() => handle);

  it("persists data across close and reopen of the same directory", { timeout: SLOW }, async () => {
    const phonesBefore = await handle.db.selectFrom("users").select("phone_number").orderBy("phone_number").execute();
    expect(phonesBefore.length).toBeGreaterThan(0);

    const closed = handle;
    await closed.close();
    await closed.close(); // idempotent
    await expect(closed.db.selectFrom("users").selectAll().execute()).rejects.toThrow(/destroyed/);

    handle = await openDatabase({ dataDir: testDb.dataDir, logger });
    expect(await pendingMigrations(handle.db)).toEqual([]);
    expect(await handle.db.selectFrom("users").select("phone_number").orderBy("phone_number").execute()).toEqual(phonesBefore);
  });

  it("does not interleave other queries with an open transaction", async () => {
    const { db } = handle;
    let signalInserted!: () => void;
    const inserted = new Promise<void>((resolve) => (signalInserted = resolve));
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));

    let inTx!: Transaction<Database>;
    const tx = db.transaction().execute(async (trx) => {
      inTx = trx;
      await trx.insertInto("users").values({ phone_number: "+14155550200" }).execute();
      signalInserted();
      await gate;
      throw new Error("abort");
    });
    await Promise.race([inserted, tx]); // surfaces an early failure instead of hanging

    let readFinished = false;
    const outsideRead = userPhones(db, ["+14155550200"]).finally(() => (readFinished = true));
    const outsideWrite = db.insertInto("users").values({ phone_number: "+14155550201" }).execute();
    // A later marker: once both calls have run as far as they can (one turn of the event loop), a
    // query inside the transaction goes to PGlite after them; had they reached it, they finished first.
    await new Promise((resolve) => setImmediate(resolve));
    await sql`select 1`.execute(inTx);
    expect(readFinished).toBe(false);

    openGate();
    await expect(tx).rejects.toThrow("abort");
    // Had they run on the shared connection mid-transaction, the read would see
    // the uncommitted row and the write would have been rolled back with it.
    expect(await outsideRead).toEqual([]);
    await outsideWrite;
    expect(await userPhones(db, ["+14155550200", "+14155550201"])).toEqual(["+14155550201"]);
  });

  it("supports savepoints in controlled transactions", async () => {
    const trx = await handle.db.startTransaction().execute();
    await trx.insertInto("users").values({ phone_number: "+14155550300" }).execute();
    const sp = await trx.savepoint("before second insert").execute();
    await sp.insertInto("users").values({ phone_number: "+14155550301" }).execute();
    await sp.rollbackToSavepoint("before second insert").execute();
    await trx.commit().execute();
    expect(await userPhones(handle.db, ["+14155550300", "+14155550301"])).toEqual(["+14155550300"]);
  });

  it("streams query results in chunks", async () => {
    const query = handle.db.selectFrom("users").select("phone_number").orderBy("phone_number");
    const streamed: string[] = [];
    for await (const row of query.stream(2)) streamed.push(row.phone_number);
    expect(streamed.length).toBeGreaterThan(2);
    expect(streamed).toEqual((await query.execute()).map((r) => r.phone_number));
  });
});

describe("pglite (memory://)", () => {
  it("opens an independent in-memory database", { timeout: SLOW }, async () => {
    const handle = await openDatabase({ dataDir: IN_MEMORY_DATA_DIR, logger });
    try {
      expect(await migrateToLatest(handle.db, logger)).toEqual({ applied: ALL_MIGRATIONS });
      expect(await handle.db.selectFrom("users").selectAll().execute()).toEqual([]);
    } finally {
      await handle.close();
    }
  });
});

describe("MigrationError", () => {
  it("carries the failing migration name and cause", () => {
    const cause = new Error("relation already exists");
    const err = new MigrationError("0001_initial", cause);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("MigrationError");
    expect(err.migrationName).toBe("0001_initial");
    expect(err.cause).toBe(cause);
    expect(err.message).toContain("0001_initial");
  });
});
