import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { insertConversation, insertUsers, outgoing } from "../../tests/helpers/fixtures.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import { storeMessages } from "../../messaging/store.js";
import type { OutgoingMessage } from "../../messaging/types.js";
import type { Database } from "../schema.js";

// chatwire_store_messages.sql through its callers, storeMessages (messaging/store.ts) over storeMessageRows (db/message-store.ts),
// and the inbox_cascade trigger functions (chatwire_inbox_cascade_*.sql) on
// what it stored. PostgreSQL when DATABASE_URL is set, else PGlite.
const logger = pino({ level: "silent" });

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

const store = (msgs: OutgoingMessage[], now = new Date()) => db.transaction().execute((trx) => storeMessages(trx, msgs, now));

describe("chatwire_store_messages, through storeMessages", () => {
  test("assigns gapless seqs in order and one inbox event per current participant", async () => {
    const [a, b, c, gone] = await insertUsers(db, 4);
    const conv = await insertConversation(db, [a!, b!, c!, gone!]);
    await db.updateTable("conversation_participants").set({ left_at: new Date() }).where("user_id", "=", gone!).execute();
    const msgs = [outgoing(conv, a!), outgoing(conv, b!), outgoing(conv, a!, undefined, { mentionUserIds: [b!, c!] })];
    const now = new Date(Date.now() + 60_000);
    const results = await store(msgs, now);

    expect(results.map((r) => r.ok && r.message.seq)).toEqual(["1", "2", "3"]);
    expect(results.every((r) => r.ok && !r.message.duplicate)).toBe(true);
    const rows = await db.selectFrom("messages").selectAll().where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows.map((r) => [r.id, r.seq, r.kind, r.sender_id])).toEqual(msgs.map((m, i) => [m.id, String(i + 1), "user", m.senderId]));
    expect(rows[2]!.mention_user_ids).toEqual([b, c]);
    expect(rows[0]!.created_at.toISOString()).toBe(msgs[0]!.sentAt);
    const c1 = await db.selectFrom("conversations").select(["last_seq", "last_activity_at"]).where("id", "=", conv).executeTakeFirstOrThrow();
    expect(c1).toEqual({ last_seq: "3", last_activity_at: now });

    const all = await db.selectFrom("inbox").selectAll().where("conversation_id", "=", conv).orderBy("user_id").orderBy("position").execute();
    // The third message mentions b and c: each gets a mention_added right after its message_created.
    const mentions = all.filter((e) => e.event_type === "mention_added");
    expect(mentions.map((e) => [e.user_id, e.position, e.message_id]).sort()).toEqual(
      [
        [b, "4", msgs[2]!.id],
        [c, "4", msgs[2]!.id],
      ].sort(),
    );
    expect((mentions[0]!.payload as { event: { mentionAdded: unknown } }).event.mentionAdded).toEqual({
      conversationId: conv,
      messageId: msgs[2]!.id,
      seq: "3",
      senderId: a,
    });
    const inbox = all.filter((e) => e.event_type !== "mention_added");
    expect(inbox).toHaveLength(9); // 3 messages x 3 current participants; not the one who left
    for (const u of [a, b, c]) {
      const mine = inbox.filter((e) => e.user_id === u);
      expect(mine.map((e) => e.position)).toEqual(["1", "2", "3"]);
      expect(mine.map((e) => e.message_id)).toEqual(msgs.map((m) => m.id));
      expect(mine.map((e) => e.payload)).toEqual(msgs.map((m, i) => ({ seq: String(i + 1), sender_id: m.senderId })));
      expect(mine.every((e) => e.event_type === "message_created")).toBe(true);
    }
    expect(inbox.some((e) => e.user_id === gone)).toBe(false);
    // The notices are the inbox rows, in message order.
    const notices = results.flatMap((r) => (r.ok ? r.notices : []));
    expect(notices).toHaveLength(11);
    expect(notices.filter((n) => n.userId === b).map((n) => [n.position, n.eventType, n.messageId])).toEqual([
      ...msgs.map((m, i) => [String(i + 1), "message_created", m.id]),
      ["4", "mention_added", msgs[2]!.id],
    ]);
  });

  test("is idempotent on (sender, client message id): in a batch, across batches, no extra rows", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const first = outgoing(conv, a!, "same-id");
    const [r1] = await store([first]);
    const results = await store([
      outgoing(conv, a!, "same-id", { content: "changed" }),
      outgoing(conv, b!),
      outgoing(conv, b!, "b-dup"),
      outgoing(conv, b!, "b-dup"),
    ]);
    expect(r1).toMatchObject({ ok: true, message: { id: first.id, seq: "1", duplicate: false } });
    expect(results.map((r) => r.ok && [r.message.seq, r.message.duplicate])).toEqual([
      ["1", true],
      ["2", false],
      ["3", false],
      ["3", true],
    ]);
    expect(results[0]!.ok && results[0]!.notices).toEqual([]);
    expect(results[3]!.ok && results[3]!.notices).toEqual([]);
    const rows = await db.selectFrom("messages").select(["seq", "content"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual([
      { seq: "1", content: first.content },
      { seq: "2", content: expect.any(String) },
      { seq: "3", content: expect.any(String) },
    ]);
    const inbox = await db
      .selectFrom("inbox")
      .select(({ fn }) => fn.countAll<string>().as("n"))
      .where("conversation_id", "=", conv)
      .executeTakeFirstOrThrow();
    expect(Number(inbox.n)).toBe(6);
  });

  test("rejects messages for a missing conversation or from a non-participant, storing the rest", async () => {
    const [a, b, stranger] = await insertUsers(db, 3);
    const conv = await insertConversation(db, [a!, b!]);
    const results = await store([outgoing(randomUUID(), a!), outgoing(conv, stranger!), outgoing(conv, a!)]);
    expect(results[0]).toMatchObject({ ok: false, reason: "conversation_not_found" });
    expect(results[1]).toMatchObject({ ok: false, reason: "sender_not_participant" });
    expect(results[2]).toMatchObject({ ok: true, message: { seq: "1" } });
  });

  test("a repeat of a rejected message's client id is judged on its own; a repeat of a stored one is a duplicate", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const results = await store([outgoing(randomUUID(), a!, "k1"), outgoing(conv, a!, "k1"), outgoing(conv, a!, "k1"), outgoing(randomUUID(), a!, "k1")]);
    expect(results.map((r) => (r.ok ? [r.message.seq, r.message.duplicate, r.notices.length] : r.reason))).toEqual([
      "conversation_not_found",
      ["1", false, 2],
      ["1", true, 0],
      ["1", true, 0],
    ]);
    const stored = results[1]!.ok ? results[1]!.notices : [];
    expect(stored.map((n) => n.userId)).toEqual([a!, b!].sort());
    expect(stored.every((n) => n.position === "1" && n.seq === "1")).toBe(true);
  });

  test("stores a lone UTF-16 surrogate in the content as U+FFFD", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const [r] = await store([outgoing(conv, a!, undefined, { content: "a\ud800b" })]);
    expect(r).toMatchObject({ ok: true, message: { seq: "1" } });
    const row = await db.selectFrom("messages").select("content").where("conversation_id", "=", conv).executeTakeFirstOrThrow();
    expect(row.content).toBe("a\ufffdb");
  });

  test("concurrent transactions on one conversation still get gapless seqs and positions", async () => {
    const members = await insertUsers(db, 5);
    const conv = await insertConversation(db, members);
    const msgs = Array.from({ length: 40 }, (_, i) => outgoing(conv, members[i % members.length]!));
    await Promise.all(msgs.map((m) => store([m])));
    const seqs = (await db.selectFrom("messages").select("seq").where("conversation_id", "=", conv).execute()).map((r) => Number(r.seq)).sort((x, y) => x - y);
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    for (const u of members) {
      const pos = (await db.selectFrom("inbox").select("position").where("user_id", "=", u).orderBy("position").execute()).map((r) => Number(r.position));
      expect(pos).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    }
  });

  test("r_push: set only when a recipient but the sender, not muting the conversation, has a push token", async () => {
    const [a, b, c] = await insertUsers(db, 3);
    const direct = await insertConversation(db, [a!, b!]);
    const group = await insertConversation(db, [a!, b!, c!]);
    const token = async (userId: string) => {
      const { id } = await db
        .insertInto("user_devices")
        .values({ user_id: userId, refresh_token_hash: `h-${randomUUID()}`, refresh_expires_at: new Date(Date.now() + 86_400_000) })
        .returning("id")
        .executeTakeFirstOrThrow();
      await db
        .insertInto("push_tokens")
        .values({ session_id: id, user_id: userId, platform: "fcm", token: `t-${randomUUID()}`, updated_at: new Date() })
        .execute();
    };
    const pushOf = async (conv: string, sender: string, clientId?: string) => {
      const [r] = await store([outgoing(conv, sender, clientId)]);
      if (!r?.ok) throw new Error("not stored");
      return r.message.push;
    };
    // Nobody has a token.
    expect(await pushOf(direct, a!)).toBe(false);
    // Only the sender has one: nobody to push.
    await token(a!);
    expect(await pushOf(direct, a!)).toBe(false);
    // The recipient has one.
    expect(await pushOf(direct, b!)).toBe(true);
    // A group: one recipient with a token is enough; muting it (until later) takes it out, an elapsed mute does not.
    await token(c!);
    expect(await pushOf(group, b!)).toBe(true);
    const mute = (userId: string, until: Date) =>
      db.updateTable("conversation_participants").set({ muted_until: until }).where("conversation_id", "=", group).where("user_id", "=", userId).execute();
    await mute(a!, new Date(Date.now() + 3_600_000));
    await mute(c!, new Date(Date.now() + 3_600_000));
    expect(await pushOf(group, b!)).toBe(false);
    await mute(c!, new Date(Date.now() - 1000));
    expect(await pushOf(group, b!)).toBe(true);
    // A duplicate owes nothing.
    expect(await pushOf(group, b!, "again")).toBe(true);
    expect(await pushOf(group, b!, "again")).toBe(false);
  });

  test("expires_at: created_at plus the timer the message was sent under; without one, the conversation's timer now", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const sentAt = new Date("2026-03-04T05:06:07.000Z");
    const expiryOf = async (extra: Partial<OutgoingMessage>) => {
      const [r] = await store([outgoing(conv, a!, randomUUID(), { sentAt: sentAt.toISOString(), ...extra })]);
      if (!r?.ok) throw new Error("not stored");
      const row = await db.selectFrom("messages").select("expires_at").where("id", "=", r.message.id).executeTakeFirstOrThrow();
      expect(row.expires_at).toEqual(r.message.expiresAt);
      return r.message.expiresAt?.toISOString() ?? null;
    };
    // The timer is off in the conversation.
    expect(await expiryOf({})).toBeNull();
    expect(await expiryOf({ disappearingSeconds: 0 })).toBeNull();
    // Sent under a day's timer that was turned off before the store: it still disappears.
    expect(await expiryOf({ disappearingSeconds: 86400 })).toBe("2026-03-05T05:06:07.000Z");
    await db.updateTable("conversations").set({ disappearing_seconds: 604800 }).where("id", "=", conv).execute();
    // Sent before the timer was turned on, stored after: it stays.
    expect(await expiryOf({ disappearingSeconds: 0 })).toBeNull();
    // A message carrying no timer (queued by an earlier release) gets the conversation's.
    expect(await expiryOf({})).toBe("2026-03-11T05:06:07.000Z");
  });

  test("throughput: a batch of 100 messages in one transaction", async () => {
    const members = await insertUsers(db, 3);
    const convs = await Promise.all(Array.from({ length: 10 }, () => insertConversation(db, members)));
    await store([outgoing(convs[0]!, members[0]!)]); // warm up
    const runs: number[] = [];
    for (let run = 0; run < 5; run++) {
      const batch = Array.from({ length: 100 }, (_, i) => outgoing(convs[i % convs.length]!, members[i % members.length]!));
      const t0 = performance.now();
      const results = await store(batch);
      runs.push(performance.now() - t0);
      expect(results.every((r) => r.ok && !r.message.duplicate)).toBe(true);
    }
    const best = Math.min(...runs);
    console.info(
      `storeMessages on ${migrated.kind}: 100 messages (10 conversations x 3 participants) in ${best.toFixed(1)} ms best of 5 = ${Math.round(100_000 / best)} msgs/s`,
    );
  });
});

describe("chatwire_inbox_cascade_users, _conversations, _messages", () => {
  test("inbox events go with their message, conversation or user when those are deleted", async () => {
    const [a, b, c] = await insertUsers(db, 3);
    const conv = await insertConversation(db, [a!, b!, c!]);
    const other = await insertConversation(db, [a!, b!]);
    await store([outgoing(conv, a!), outgoing(conv, b!), outgoing(other, a!)]);
    const count = async (col: "user_id" | "conversation_id", id: string) =>
      Number(
        (
          await db
            .selectFrom("inbox")
            .select(({ fn }) => fn.countAll<string>().as("n"))
            .where(col, "=", id)
            .executeTakeFirstOrThrow()
        ).n,
      );
    expect([await count("conversation_id", conv), await count("conversation_id", other), await count("user_id", c!)]).toEqual([6, 2, 2]);
    const [first] = await db.selectFrom("messages").select("id").where("conversation_id", "=", conv).orderBy("seq").execute();
    await db.deleteFrom("messages").where("id", "=", first!.id).execute();
    expect(await count("conversation_id", conv)).toBe(3);
    await db.deleteFrom("users").where("id", "=", c!).execute();
    expect([await count("conversation_id", conv), await count("user_id", c!)]).toEqual([2, 0]);
    await db.deleteFrom("conversations").where("id", "=", conv).execute();
    expect([await count("conversation_id", conv), await count("conversation_id", other)]).toEqual([0, 2]);
  });
});
