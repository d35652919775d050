import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Kysely, KyselyPlugin } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { ReceiptState } from "../../../gen/chat/chat_pb.js";
import { EventSchema, MessageCreatedSchema, MessageEditedSchema, type Event } from "../../../gen/realtime/realtime_pb.js";
import { formerParticipants } from "../../domain/conversation-view.js";
import { toMessage } from "../../domain/message-view.js";
import { insertSystemMessage, storeMessages } from "../../messaging/store.js";
import { MESSAGE_EVENTS, eventFromPayload, storedEvent } from "../../realtime/events.js";
import { readReplay, type ReplayPage } from "../../realtime/replay.js";
import { insertConversation, insertUsers, outgoing } from "../../tests/helpers/fixtures.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import * as convs from "../conversation-store.js";
import * as history from "../history-store.js";
import { appendInboxEvents } from "../message-store.js";
import { readStateSharedIn, updatePrivacy } from "../privacy-store.js";
import type { Database } from "../schema.js";

// chatwire_replay_inbox.sql through its caller, readReplay (realtime/replay.ts,
// Subscribe's replay), held to what the replay built before the function: the
// inbox page, then the messages and the five reads around them, assembled as
// below (`replayAsBefore`, the code it replaced). Every event must be the same
// bytes. PostgreSQL when DATABASE_URL is set, else PGlite.
const logger = pino({ level: "silent" });
const clock = { now: () => new Date() };

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

/** Subscribe's replay as it was before chatwire_replay_inbox (seven statements per page). */
async function replayAsBefore(userId: string, page: { after: bigint; limit: number; upTo?: bigint }): Promise<ReplayPage> {
  let q = db
    .selectFrom("inbox")
    .select(["position", "event_type", "conversation_id", "message_id", "payload", "created_at"])
    .where("user_id", "=", userId)
    .where("position", ">", page.after.toString());
  if (page.upTo !== undefined) q = q.where("position", "<=", page.upTo.toString());
  const rows = await q.orderBy("position").limit(page.limit).execute();
  const isMessageEvent = (type: string) => MESSAGE_EVENTS.has(type);
  const messageIds = [...new Set(rows.filter((r) => r.message_id && isMessageEvent(r.event_type)).map((r) => r.message_id!))];
  const messages = new Map<string, history.MessageRow>();
  if (messageIds.length > 0) {
    for (const m of await history.getMessages(db, messageIds)) messages.set(m.id, m);
  }
  const conversationIds = [...new Set([...messages.values()].map((m) => m.conversation_id))];
  const [people, former, reactions, quotes, readShared] = await Promise.all([
    convs.currentParticipants(db, conversationIds),
    convs.formerParticipations(db, userId, conversationIds),
    history.reactionsOf(db, [...messages.keys()]),
    history.statusQuotesOf(db, [...messages.keys()]),
    readStateSharedIn(db, conversationIds),
  ]);
  const out: Event[] = [];
  for (const r of rows) {
    const position = BigInt(r.position);
    const at = timestampFromDate(r.created_at);
    if (isMessageEvent(r.event_type)) {
      const m = r.message_id ? messages.get(r.message_id) : undefined;
      if (!m || (m.expires_at && m.expires_at <= clock.now())) continue;
      const mine = former.get(m.conversation_id);
      const seenBy = mine ? formerParticipants(mine) : (people.get(m.conversation_id) ?? []);
      const message = toMessage(m, seenBy, reactions, quotes, readShared.get(m.conversation_id));
      out.push(
        create(EventSchema, {
          position,
          at,
          kind:
            r.event_type === "message_edited"
              ? { case: "messageEdited", value: create(MessageEditedSchema, { message }) }
              : { case: "messageCreated", value: create(MessageCreatedSchema, { message }) },
        }),
      );
      continue;
    }
    const event = eventFromPayload(r.payload);
    if (!event) continue;
    event.position = position;
    out.push(event);
  }
  return { events: out, rows: rows.length, lastPosition: rows.length > 0 ? BigInt(rows.at(-1)!.position) : undefined };
}

const wire = (p: ReplayPage) => ({
  rows: p.rows,
  lastPosition: p.lastPosition,
  events: p.events.map((e) => Buffer.from(toBinary(EventSchema, e)).toString("hex")),
});

/** Both replays of the same page, compared byte for byte; returns the new one. */
async function sameAsBefore(userId: string, page: { after: bigint; limit: number; upTo?: bigint }): Promise<ReplayPage> {
  const now = await readReplay(db, userId, page, clock, logger);
  expect(wire(now)).toEqual(wire(await replayAsBefore(userId, page)));
  return now;
}

const store = (msgs: Parameters<typeof outgoing>[], now = new Date()) =>
  db.transaction().execute((trx) =>
    storeMessages(
      trx,
      msgs.map((m) => outgoing(...m)),
      now,
    ),
  );

/** One event for `userId`, stored as the services store it (storedEvent), or with `payload` as given. */
async function append(userId: string, event: { type: string; conversationId: string | null; messageId?: string | null; payload?: Record<string, unknown> }) {
  const at = new Date();
  const stored = event.payload
    ? {
        userId,
        eventType: event.type,
        conversationId: event.conversationId,
        messageId: event.messageId ?? null,
        payload: event.payload,
        body: new Uint8Array(),
      }
    : storedEvent(
        userId,
        {
          case: "receiptUpdated",
          value: {
            $typeName: "realtime.ReceiptUpdated",
            conversationId: event.conversationId!,
            userId,
            lastDeliveredSeq: 1n,
            lastReadSeq: 0n,
            deliveredToAllSeq: 1n,
            readByAllSeq: 0n,
          },
        },
        at,
        { conversationId: event.conversationId },
      );
  await db.transaction().execute((trx) => appendInboxEvents(trx, [stored], at));
}

describe("chatwire_replay_inbox, through readReplay", () => {
  test("every kind of event and message is the same bytes as the seven-statement replay built", async () => {
    const [a, b, c, d] = await insertUsers(db, 4);
    const group = await insertConversation(db, [a!, b!, c!]);
    const direct = await insertConversation(db, [a!, b!], { isGroup: false });
    const left = await insertConversation(db, [a!, b!, d!]);
    // Users with no privacy row read receipts as the default (on); a turns them off: the direct one shows no read state.
    await updatePrivacy(db, a!, { readReceipts: false }, new Date());

    const stored = await store([
      [group, b!],
      [group, c!, undefined, { mentionUserIds: [a!], mediaUrl: "https://media.example/x.jpg", mediaType: "image/jpeg" }],
      [direct, b!],
      [direct, a!],
      [left, b!],
      [group, a!, undefined, { replyToMessageId: null }],
      [group, b!],
    ]);
    const ids = stored.map((r) => {
      if (!r.ok) throw new Error(`not stored: ${JSON.stringify(r)}`);
      return r.message.id;
    });
    const [g1, g2, d1, d2, l1, g3, g4] = ids;
    // Reactions (in the order they were set), an edit with its event, a tombstone, a status quote, a pin, a forward.
    await history.setReaction(db, g1!, a!, "👍", new Date(Date.now() - 2000));
    await history.setReaction(db, g1!, c!, "👍", new Date(Date.now() - 1000));
    await history.setReaction(db, g1!, b!, "😂", new Date(Date.now() - 1500));
    await history.setReaction(db, d1!, a!, "❤️", new Date());
    await history.editMessage(db, g2!, "edited", new Date());
    await append(a!, { type: "message_edited", conversationId: group, messageId: g2!, payload: {} });
    await history.tombstoneMessage(db, g4!, new Date());
    await db
      .insertInto("status_replies")
      .values({
        message_id: d1!,
        status_id: randomUUID(),
        status_author_id: a!,
        replier_id: b!,
        conversation_id: direct,
        status_content_type: "text",
        status_content: "my status",
        created_at: new Date(),
      })
      .execute();
    await db.updateTable("messages").set({ pinned_at: new Date(), pinned_by: c!, forward_count: 6 }).where("id", "=", g1!).execute();
    // Delete for me (hidden) changes nothing in the replay, as before.
    await history.hideMessage(db, a!, g3!, new Date());
    // Disappearing: one expired (not replayed), one still to expire.
    await db
      .updateTable("messages")
      .set({ expires_at: new Date(Date.now() - 60_000) })
      .where("id", "=", d2!)
      .execute();
    await db
      .updateTable("messages")
      .set({ expires_at: new Date(Date.now() + 3_600_000) })
      .where("id", "=", g3!)
      .execute();
    // Receipt watermarks: b read the group up to seq 2, c has it delivered up to 3.
    await db
      .updateTable("conversation_participants")
      .set({ last_delivered_seq: "2", last_read_seq: "2" })
      .where("conversation_id", "=", group)
      .where("user_id", "=", b!)
      .execute();
    await db.updateTable("conversation_participants").set({ last_delivered_seq: "3" }).where("conversation_id", "=", group).where("user_id", "=", c!).execute();
    // a was removed from `left` after its first message: they see the receipts of then.
    const view = {
      group_name: "",
      group_description: "",
      group_avatar_url: "",
      participants: [
        { user_id: b!, role: "member", joined_at: new Date(0).toISOString(), joined_seq: "0", last_delivered_seq: "1", last_read_seq: "1" },
        { user_id: d!, role: "member", joined_at: new Date(0).toISOString(), joined_seq: "0", last_delivered_seq: "1", last_read_seq: "0" },
      ],
    };
    await db
      .updateTable("conversation_participants")
      .set({ left_at: new Date(), left_seq: "1", left_view: JSON.stringify(view) })
      .where("conversation_id", "=", left)
      .where("user_id", "=", a!)
      .execute();
    const [after] = await store([[left, d!]]);
    const l2 = after?.ok ? after.message.id : undefined;
    // a read the direct one: it shows delivered, since a's read receipts are off.
    await db
      .updateTable("conversation_participants")
      .set({ last_delivered_seq: "1", last_read_seq: "1" })
      .where("conversation_id", "=", direct)
      .where("user_id", "=", a!)
      .execute();
    // A system message, a stored non-message event, one without a payload (skipped), one whose message is gone.
    await db
      .transaction()
      .execute((trx) =>
        insertSystemMessage(trx, { conversationId: group, actorId: b!, event: "group_updated", userIds: [b!], recipients: [a!, b!, c!] }, new Date()),
      );
    await append(a!, { type: "receipt_updated", conversationId: direct });
    await append(a!, { type: "conversation_updated", conversationId: group, payload: {} });
    await append(a!, { type: "message_created", conversationId: group, messageId: randomUUID(), payload: {} });

    const all = await sameAsBefore(a!, { after: 0n, limit: 500 });
    // 7 messages, the mention of a, the edit, the system message and 3 other events.
    expect(all.rows).toBe(13);
    // Not replayed: the expired message, the payload-less event, the gone message.
    expect(all.events.map((e) => e.kind.case)).toEqual([
      "messageCreated",
      "messageCreated",
      "mentionAdded",
      "messageCreated",
      "messageCreated",
      "messageCreated",
      "messageCreated",
      "messageEdited",
      "messageCreated",
      "receiptUpdated",
    ]);
    const byId = new Map(
      all.events.flatMap((e) =>
        e.kind.case === "messageCreated" || e.kind.case === "messageEdited" ? [[e.kind.value.message!.id, e.kind.value.message!] as const] : [],
      ),
    );
    expect(byId.has(d2!)).toBe(false);
    expect(byId.get(g1!)!.reactions.map((r) => [r.emoji, r.userIds])).toEqual([
      ["👍", [a, c]],
      ["😂", [b]],
    ]);
    expect(byId.get(d1!)!.replyToStatus?.content).toBe("my status");
    expect(byId.get(g4!)!.deletedAt).toBeDefined();
    expect(l2).toBeDefined();
    expect(byId.has(l2!)).toBe(false); // a had left: l2 never reached their inbox
    // As of when a left (d had it delivered), not as now (d has nothing).
    expect(byId.get(l1!)!.receiptState).toBe(ReceiptState.DELIVERED);
    expect(byId.get(d1!)!.receiptState).toBe(ReceiptState.DELIVERED);
    expect(byId.get(g2!)!.content).toBe("edited");

    // Every page shape Subscribe asks for: short pages, and a gap read up to a position.
    for (const limit of [1, 2, 5]) {
      let after = 0n;
      for (;;) {
        const page = await sameAsBefore(a!, { after, limit });
        if (page.lastPosition !== undefined) after = page.lastPosition;
        if (page.rows < limit) break;
      }
    }
    await sameAsBefore(a!, { after: 2n, limit: 500, upTo: 7n });
    await sameAsBefore(a!, { after: 13n, limit: 500 });
    for (const user of [b!, c!, d!]) await sameAsBefore(user, { after: 0n, limit: 500 });
  });

  test("one statement per page", async () => {
    const [a, b] = await insertUsers(db, 2);
    const direct = await insertConversation(db, [a!, b!], { isGroup: false });
    const group = await insertConversation(db, [a!, b!]);
    await store([
      [direct, b!],
      [group, b!],
      [direct, b!],
    ]);
    let statements = 0;
    const counting: KyselyPlugin = {
      transformQuery: (args) => {
        statements++;
        return args.node;
      },
      transformResult: async (args) => args.result,
    };
    const page = await readReplay(db.withPlugin(counting), a!, { after: 0n, limit: 500 }, clock, logger);
    expect(page.events).toHaveLength(3);
    expect(statements).toBe(1);
  });

  test("no rows past the end, and a page bounded by upTo", async () => {
    const [a] = await insertUsers(db, 1);
    expect(await readReplay(db, a!, { after: 0n, limit: 500 }, clock, logger)).toEqual({ events: [], rows: 0, lastPosition: undefined });
    expect(await readReplay(db, a!, { after: 9_007_199_254_740_993n, limit: 500, upTo: 9_007_199_254_740_999n }, clock, logger)).toEqual({
      events: [],
      rows: 0,
      lastPosition: undefined,
    });
  });
});
