import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { ConfigError, loadConfig } from "../config.js";
import type { Database } from "../db/schema.js";
import { migratedDatabase } from "../tests/helpers/test-database.js";
import { InProcessBus } from "./bus.js";
import { InlineQueue } from "./inline-queue.js";
import { StoreCoalescer } from "./store-coalescer.js";
import { messageSubject, partitionOf, queueNames } from "./jetstream-queue.js";
import { decodeNotice, MessageRejectedError, messageIdFor, userSubject, type InboxNoticeWire } from "./message-queue.js";
import type { StoredMessage } from "./types.js";
import { insertConversation, insertUsers, outgoing } from "../tests/helpers/fixtures.js";

const logger = pino({ level: "silent" });
const PREFIX = "unit";

describe("messageIdFor", () => {
  test("is a deterministic version-8, RFC 4122-variant UUID of (sender, client message id)", () => {
    const a = messageIdFor("0b6f5a52-6f65-4b53-9d3c-0e7b5d8f1a11", "c-1");
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(messageIdFor("0b6f5a52-6f65-4b53-9d3c-0e7b5d8f1a11", "c-1")).toBe(a);
    expect(messageIdFor("0b6f5a52-6f65-4b53-9d3c-0e7b5d8f1a11", "c-2")).not.toBe(a);
    expect(messageIdFor("1b6f5a52-6f65-4b53-9d3c-0e7b5d8f1a11", "c-1")).not.toBe(a);
  });
});

describe("NATS_SUBJECT_PREFIX", () => {
  test("defaults to chatwire and names the stream, subjects and consumer", () => {
    const c = loadConfig({});
    expect(c.natsSubjectPrefix).toBe("chatwire");
    expect(c.worker).toEqual({ batchSize: 100, ackWaitSeconds: 30, partitions: 16 });
    expect(loadConfig({ MESSAGE_PARTITIONS: "4" }).worker.partitions).toBe(4);
    expect(() => loadConfig({ MESSAGE_PARTITIONS: "0" })).toThrow(ConfigError);
    expect(() => loadConfig({ MESSAGE_PARTITIONS: "2000" })).toThrow(ConfigError);
    expect(queueNames("chatwire", 2)).toEqual({
      stream: "CHATWIRE_MESSAGES",
      subjects: "chatwire.msg.>",
      consumers: ["chatwire-message-worker-0", "chatwire-message-worker-1"],
      filters: ["chatwire.msg.0.*", "chatwire.msg.1.*"],
      legacyConsumer: "chatwire-message-worker",
      legacySubjects: "chatwire.msg.*",
    });
    expect(queueNames("t-1_a", 16).stream).toBe("T_1_A_MESSAGES");
  });

  test("a conversation's partition is stable, in range, and spreads conversations evenly", () => {
    const conv = "0190f1e2-7a4b-7c3d-8e5f-0123456789ab";
    expect(partitionOf(conv, 16)).toBe(partitionOf(conv, 16));
    expect(messageSubject("chatwire", 16, conv)).toBe(`chatwire.msg.${partitionOf(conv, 16)}.${conv}`);
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[partitionOf(randomUUID(), 16)]!++;
    // Each partition gets its 1,000 give or take a few percent (binomial sd about 31).
    for (const n of counts) {
      expect(n).toBeGreaterThan(850);
      expect(n).toBeLessThan(1150);
    }
    expect(partitionOf(conv, 1)).toBe(0);
    expect(loadConfig({ NATS_SUBJECT_PREFIX: "team-a_2" }).natsSubjectPrefix).toBe("team-a_2");
  });

  test("refuses what NATS subjects or stream names cannot carry", () => {
    for (const bad of ["Chatwire", "chat.wire", "chat*", "chat>", "chat wire", "x".repeat(33)]) {
      expect(() => loadConfig({ NATS_SUBJECT_PREFIX: bad })).toThrow(ConfigError);
    }
  });
});

// ---- against a real database (PostgreSQL when DATABASE_URL is set, else PGlite) ----

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

/** Resolves once the bus has delivered everything published before the call: a marker published after it arrives after it. */
function busFlushed(bus: InProcessBus): Promise<void> {
  const subject = `marker.${randomUUID()}`;
  return new Promise((resolve) => {
    const off = bus.subscribe(subject, () => {
      off();
      resolve();
    });
    bus.publish(subject, new Uint8Array());
  });
}

describe("InlineQueue", () => {
  test("stores before it returns, then announces each inbox event on the bus", async () => {
    const bus = new InProcessBus();
    const queue = new InlineQueue({ db, bus, subjectPrefix: PREFIX, clock: { now: () => new Date() }, logger });
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const seen: Record<string, InboxNoticeWire[]> = { [a!]: [], [b!]: [] };
    for (const u of [a!, b!]) bus.subscribe(userSubject(PREFIX, u), (p) => seen[u]!.push(decodeNotice(p)));

    const msg = outgoing(conv, a!);
    const { stored } = await queue.publish(msg);
    expect(stored).toMatchObject({ id: msg.id, conversationId: conv, seq: "1", duplicate: false });
    expect(queue.kind).toBe("inline");
    expect(queue.ready()).toBe(true);
    await busFlushed(bus);
    for (const u of [a!, b!]) {
      expect(seen[u]).toEqual([{ position: "1", event_type: "message_created", conversation_id: conv, message_id: msg.id, seq: "1" }]);
    }

    // A retry: same message back, nothing new, no notices.
    const again = await queue.publish(msg);
    expect(again.stored).toMatchObject({ id: msg.id, seq: "1", duplicate: true });
    await busFlushed(bus);
    expect(seen[b!]).toHaveLength(1);
  });

  test("throws MessageRejectedError when the sender is no longer a participant", async () => {
    const queue = new InlineQueue({ db, bus: new InProcessBus(), subjectPrefix: PREFIX, clock: { now: () => new Date() }, logger });
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    await db.updateTable("conversation_participants").set({ left_at: new Date() }).where("user_id", "=", a!).execute();
    const err = await queue.publish(outgoing(conv, a!)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MessageRejectedError);
    expect((err as MessageRejectedError).reason).toBe("sender_not_participant");
    const err2 = await queue.publish(outgoing(randomUUID(), b!)).catch((e: unknown) => e);
    expect((err2 as MessageRejectedError).reason).toBe("conversation_not_found");
    expect(await db.selectFrom("messages").select("id").where("conversation_id", "=", conv).execute()).toEqual([]);
  });
});

/** The same database, counting the chatwire_store_messages calls made through it (a Kysely plugin sees every query). */
function countingStores(db: Kysely<Database>): { db: Kysely<Database>; calls: () => number } {
  let calls = 0;
  const counted = db.withPlugin({
    transformQuery({ node }) {
      if (JSON.stringify(node).includes("chatwire_store_messages")) calls++;
      return node;
    },
    transformResult: async ({ result }) => result,
  });
  return { db: counted, calls: () => calls };
}

describe("InlineQueue batching", () => {
  test("concurrent sends are stored with one call, in publish order per conversation, repeats and rejections answered each", async () => {
    const bus = new InProcessBus();
    const { db: counted, calls } = countingStores(db);
    const queue = new InlineQueue({ db: counted, bus, subjectPrefix: PREFIX, clock: { now: () => new Date() }, logger });
    const [a, b, c] = await insertUsers(db, 3);
    const one = await insertConversation(db, [a!, b!]);
    const two = await insertConversation(db, [a!, c!]);
    const msgs = Array.from({ length: 20 }, (_, i) => outgoing(i % 2 === 0 ? one : two, a!));
    const repeat = { ...msgs[4]! };
    const stranger = outgoing(one, c!);
    const sends = [...msgs.slice(0, 10), repeat, stranger, ...msgs.slice(10)].map((m) =>
      queue.publish(m).then(
        (r) => r.stored,
        (err: unknown) => err,
      ),
    );
    const results = await Promise.all(sends);
    expect(calls()).toBe(1);

    const stored = [...results.slice(0, 10), ...results.slice(12)] as StoredMessage[];
    for (const conv of [one, two]) {
      const seqs = stored.filter((s) => s.conversationId === conv).map((s) => s.seq);
      expect(seqs).toEqual(Array.from({ length: 10 }, (_, i) => String(i + 1)));
    }
    expect(stored.every((s) => !s.duplicate)).toBe(true);
    expect(results[10]).toMatchObject({ id: msgs[4]!.id, seq: (results[4] as StoredMessage).seq, duplicate: true });
    expect(results[11]).toBeInstanceOf(MessageRejectedError);
    expect((results[11] as MessageRejectedError).reason).toBe("sender_not_participant");
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "in", [one, two]).orderBy("seq").execute();
    expect(rows).toHaveLength(20);

    // A retry of the whole burst: every message back as a duplicate, nothing new stored.
    const again = await Promise.all(msgs.map((m) => queue.publish(m)));
    expect(again.map((r) => r.stored.duplicate)).toEqual(msgs.map(() => true));
    expect(again.map((r) => r.stored.seq)).toEqual(stored.map((s) => s.seq));
    expect(calls()).toBe(2);
  });

  test("at most maxBatch per store call; later publishes join the next call, still in order", async () => {
    const { db: counted, calls } = countingStores(db);
    const queue = new InlineQueue({ db: counted, bus: new InProcessBus(), subjectPrefix: PREFIX, clock: { now: () => new Date() }, logger, maxBatch: 2 });
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const first = await Promise.all(Array.from({ length: 5 }, () => queue.publish(outgoing(conv, a!))));
    expect(first.map((r) => r.stored.seq)).toEqual(["1", "2", "3", "4", "5"]);
    expect(calls()).toBe(3);
  });
});

describe("StoreCoalescer (one process's partition workers)", () => {
  test("batches handed in while a store runs go in one call, each part answered with its own results in order", async () => {
    const { db: counted, calls } = countingStores(db);
    const coalescer = new StoreCoalescer(counted, { concurrency: 1 });
    const [a, b, c, d] = await insertUsers(db, 4);
    const convs = [await insertConversation(db, [a!, b!]), await insertConversation(db, [a!, c!]), await insertConversation(db, [a!, d!])];
    const parts = convs.map((conv) => [outgoing(conv, a!), outgoing(conv, a!)]);
    const now = new Date();
    // The first starts at once; the other two arrive while it runs and share the second call.
    const results = await Promise.all(parts.map((p) => coalescer.store(p, now)));
    expect(calls()).toBe(2);
    results.forEach((r, i) => {
      expect(r.map((x) => (x.ok ? [x.message.id, x.message.conversationId, x.message.seq] : x.reason))).toEqual(
        parts[i]!.map((m, j) => [m.id, convs[i], String(j + 1)]),
      );
    });
  });

  test("a combined call the database refuses is retried part by part: the bad part fails alone", async () => {
    const { db: counted, calls } = countingStores(db);
    const coalescer = new StoreCoalescer(counted, { concurrency: 1 });
    const [a, b, c] = await insertUsers(db, 3);
    const one = await insertConversation(db, [a!, b!]);
    const two = await insertConversation(db, [a!, c!]);
    const now = new Date();
    const first = coalescer.store([outgoing(one, a!)], now);
    // NUL is not text in PostgreSQL: the call that carries it fails with a data error.
    const bad = coalescer.store([{ ...outgoing(one, a!), content: "a\u0000b" }], now).catch((e: unknown) => e);
    const good = coalescer.store([outgoing(two, a!)], now);
    await first;
    expect((await good)[0]).toMatchObject({ ok: true, message: { conversationId: two, seq: "1" } });
    const err = (await bad) as { code?: string };
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toMatch(/^22/);
    // first; the combined call that failed; then the two parts alone.
    expect(calls()).toBe(4);
    const stored = await db.selectFrom("messages").select("conversation_id").where("conversation_id", "in", [one, two]).execute();
    expect(stored.map((r) => r.conversation_id).sort()).toEqual([one, two].sort());
  });
});
