import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { insertConversation, insertUsers, outgoing } from "../../tests/helpers/fixtures.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import { sendPreflight } from "../conversation-store.js";
import { storeMessages } from "../../messaging/store.js";
import { block } from "../privacy-store.js";
import type { Database } from "../schema.js";

// chatwire_send_preflight.sql through its caller, sendPreflight (conversation-store.ts).
// PostgreSQL when DATABASE_URL is set, else PGlite.
const logger = pino({ level: "silent" });

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

const directConversation = (a: string, b: string) => insertConversation(db, [a, b], { isGroup: false });

const nothing = { leftAt: null, iBlocked: false, blockedMe: false, existingConversationId: null, adminsOnly: false, disappearingSeconds: 0 };

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

  test("the conversation's disappearing timer, whoever asks; 0 for a conversation that does not exist", async () => {
    const [a, b, stranger] = await insertUsers(db, 3);
    const conv = await directConversation(a!, b!);
    await db.updateTable("conversations").set({ disappearing_seconds: 604800 }).where("id", "=", conv).execute();
    expect(await sendPreflight(db, conv, a!, "k")).toEqual({ ...nothing, otherId: b, disappearingSeconds: 604800 });
    expect(await sendPreflight(db, conv, stranger!, "k")).toEqual({ ...nothing, leftAt: undefined, otherId: null });
    expect(await sendPreflight(db, randomUUID(), a!, "k")).toEqual({ ...nothing, leftAt: undefined, otherId: null });
  });
});
