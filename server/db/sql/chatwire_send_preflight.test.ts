import { randomUUID } from "node:crypto";
import { sql, type Kysely } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { insertConversation, insertUsers, outgoing } from "../../tests/helpers/fixtures.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import { sendPreflight } from "../conversation-store.js";
import { storeMessages } from "../../messaging/store.js";
import { block } from "../privacy-store.js";
import type { Database } from "../schema.js";

// chatwire_send_preflight.sql through its caller, sendPreflight (conversation-store.ts),
// and chatwire_send_preflights.sql (several at once, for calls that arrive together).
// PostgreSQL when DATABASE_URL is set, else PGlite.
const logger = pino({ level: "silent" });

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

const directConversation = (a: string, b: string) => insertConversation(db, [a, b], { isGroup: false });

const nothing = { leftAt: null, iBlocked: false, blockedMe: false, existingConversationId: null, adminsOnly: false };

describe("chatwire_send_preflight, through sendPreflight", () => {
  test("a participant of a direct conversation: the other participant, no blocks, no earlier send", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await directConversation(a!, b!);
    expect(await sendPreflight(db, conv, a!, "k1")).toEqual({ ...nothing, otherId: b });
    expect(await sendPreflight(db, conv, b!, "k1")).toEqual({ ...nothing, otherId: a });
  });

  test("blocks either way in a direct conversation, each side seen from the sender", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await directConversation(a!, b!);
    await block(db, a!, b!, new Date());
    expect(await sendPreflight(db, conv, a!, "k")).toEqual({ ...nothing, otherId: b, iBlocked: true });
    expect(await sendPreflight(db, conv, b!, "k")).toEqual({ ...nothing, otherId: a, blockedMe: true });
    await block(db, b!, a!, new Date());
    expect(await sendPreflight(db, conv, a!, "k")).toEqual({ ...nothing, otherId: b, iBlocked: true, blockedMe: true });
  });

  test("a group has no other participant, so blocks between members do not show", async () => {
    const [a, b, c] = await insertUsers(db, 3);
    const conv = await insertConversation(db, [a!, b!, c!]);
    await block(db, b!, a!, new Date());
    expect(await sendPreflight(db, conv, a!, "k")).toEqual({ ...nothing, otherId: null });
  });

  test("a sender who left, one who never was a participant, a conversation that does not exist", async () => {
    const [a, b, stranger] = await insertUsers(db, 3);
    const conv = await insertConversation(db, [a!, b!]);
    const leftAt = new Date("2026-01-02T03:04:05.000Z");
    await db.updateTable("conversation_participants").set({ left_at: leftAt }).where("conversation_id", "=", conv).where("user_id", "=", b!).execute();
    expect(await sendPreflight(db, conv, b!, "k")).toEqual({ ...nothing, leftAt, otherId: null });
    expect(await sendPreflight(db, conv, stranger!, "k")).toEqual({ ...nothing, leftAt: undefined, otherId: null });
    expect(await sendPreflight(db, randomUUID(), a!, "k")).toEqual({ ...nothing, leftAt: undefined, otherId: null });
  });

  test("an earlier send of the client message id, in this conversation or another", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await directConversation(a!, b!);
    const other = await insertConversation(db, [a!, b!]);
    await db.transaction().execute((trx) => storeMessages(trx, [outgoing(other, a!, "sent-before")], new Date()));
    expect(await sendPreflight(db, conv, a!, "sent-before")).toEqual({ ...nothing, otherId: b, existingConversationId: other });
    // Another sender's client ids are theirs.
    expect(await sendPreflight(db, conv, b!, "sent-before")).toEqual({ ...nothing, otherId: a });
  });

  test("an announcement group (send_policy 'admins') refuses plain members, not admins or the owner", async () => {
    const [owner, admin, member] = await insertUsers(db, 3);
    const conv = await insertConversation(db, [owner!, admin!, member!]);
    const setRole = (u: string, role: string) =>
      db.updateTable("conversation_participants").set({ role }).where("conversation_id", "=", conv).where("user_id", "=", u).execute();
    await setRole(owner!, "owner");
    await setRole(admin!, "admin");
    expect(await sendPreflight(db, conv, member!, "k")).toEqual({ ...nothing, otherId: null });
    await db.updateTable("conversations").set({ send_policy: "admins" }).where("id", "=", conv).execute();
    expect(await sendPreflight(db, conv, member!, "k")).toEqual({ ...nothing, otherId: null, adminsOnly: true });
    expect(await sendPreflight(db, conv, admin!, "k")).toEqual({ ...nothing, otherId: null });
    expect(await sendPreflight(db, conv, owner!, "k")).toEqual({ ...nothing, otherId: null });
  });

  test("calls that arrive together share chatwire_send_preflights and get what each gets alone", async () => {
    const [a, b, c, stranger] = await insertUsers(db, 4);
    const direct = await directConversation(a!, b!);
    const group = await insertConversation(db, [a!, b!, c!]);
    await db.updateTable("conversations").set({ send_policy: "admins" }).where("id", "=", group).execute();
    await block(db, b!, a!, new Date());
    await db.transaction().execute((trx) => storeMessages(trx, [outgoing(group, c!, "sent-before")], new Date()));
    const calls: Array<[string, string, string]> = [
      [direct, a!, "k"],
      [direct, b!, "k"],
      [group, c!, "sent-before"],
      [group, a!, "k"],
      [group, stranger!, "k"],
      [randomUUID(), a!, "k"],
      // A lone surrogate: PostgreSQL gets U+FFFD either way.
      [direct, a!, "lone \ud800"],
    ];
    const alone = [];
    for (const [conv, sender, k] of calls) alone.push(await sendPreflight(db, conv, sender, k));
    expect(alone[1]).toEqual({ ...nothing, otherId: a, iBlocked: true });
    expect(alone[2]).toEqual({ ...nothing, otherId: null, existingConversationId: group, adminsOnly: true });
    expect(await Promise.all(calls.map(([conv, sender, k]) => sendPreflight(db, conv, sender, k)))).toEqual(alone);
    // The batch function itself, in input order.
    const items = calls.slice(0, 6).map(([c, s, k], o) => ({ o: 5 - o, c, s, k }));
    const { rows } = await sql<{ o: number; participant: boolean; other_id: string | null; i_blocked: boolean; admins_only: boolean }>`
      select * from chatwire_send_preflights(${JSON.stringify(items)}::jsonb)`.execute(db);
    expect(rows.map((r) => r.o)).toEqual([0, 1, 2, 3, 4, 5]);
    const byIndex = rows.map((r) => ({ participant: r.participant, otherId: r.other_id, iBlocked: r.i_blocked, adminsOnly: r.admins_only }));
    expect(byIndex).toEqual(
      [...alone.slice(0, 6)]
        .reverse()
        .map((x) => ({ participant: x.leftAt !== undefined, otherId: x.otherId, iBlocked: x.iBlocked, adminsOnly: x.adminsOnly })),
    );
  });
});
