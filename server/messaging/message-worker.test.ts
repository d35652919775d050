import { createHash, randomBytes, randomUUID } from "node:crypto";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { sql, type Kysely, type KyselyPlugin } from "kysely";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openDatabase, type DatabaseHandle } from "../db/database.js";
import { migrateToLatest } from "../db/migrate.js";
import type { Database } from "../db/schema.js";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "../tests/helpers/test-database.js";
import { PgLeaderLock, type LeaderLock } from "../db/leader-lock.js";
import { NatsBus } from "./bus.js";
import { JetStreamQueue, natsMsgId } from "./jetstream-queue.js";
import { decodeNotice, QueueUnavailableError, userSubject, type InboxNoticeWire } from "./message-queue.js";
import { MessageWorker, type WorkerHooks } from "./message-worker.js";
import { insertConversation, insertUsers, outgoing } from "../tests/helpers/fixtures.js";

// JetStream is always tested against a real server: NATS_URL, else the one
// every dev machine and CI runs on 127.0.0.1. The worker only runs where NATS
// does, on PostgreSQL (the embedded profile stores inline): DATABASE_URL's, else
// the machine's.
const NATS = process.env.NATS_URL || "nats://127.0.0.1:4222";
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

let testDb: TestDatabase;
let handle: DatabaseHandle;
let db: Kysely<Database>;
let nc: NatsConnection;
let jsm: JetStreamManager;
const streams: string[] = [];
const workers: MessageWorker[] = [];

beforeAll(async () => {
  testDb = await createTestDatabase(undefined, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
  handle = await openDatabase({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir, logger });
  db = handle.db;
  await migrateToLatest(db, logger);
  nc = await connect({ servers: NATS.split(",") });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  for (const s of streams) await jsm?.streams.delete(s).catch(() => undefined);
  await nc?.close();
  await handle?.close();
  await testDb?.drop();
});

// ---- helpers ---------------------------------------------------------------------

/** A queue with its own stream and consumer (deleted in afterAll). */
async function newQueue(ackWaitMs = 30_000): Promise<JetStreamQueue> {
  const queue = new JetStreamQueue({ nc, subjectPrefix: `wt${randomBytes(5).toString("hex")}`, logger, ackWaitMs, partitions: 1 });
  streams.push(queue.names.stream);
  await queue.provision();
  return queue;
}

function startWorker(
  queue: JetStreamQueue,
  opts: { hooks?: WorkerHooks; db?: Kysely<Database>; ackWaitMs?: number; registry?: Registry; leader?: LeaderLock } = {},
): MessageWorker {
  const worker = new MessageWorker({
    queue,
    db: opts.db ?? db,
    bus: new NatsBus(nc, logger),
    logger,
    fetchExpiresMs: 1000,
    ackWaitMs: opts.ackWaitMs,
    hooks: opts.hooks,
    registry: opts.registry,
    leader: opts.leader,
    standbyPollMs: 100,
  });
  workers.push(worker);
  worker.start();
  return worker;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function messageCount(conversationId: string): Promise<number> {
  const r = await db
    .selectFrom("messages")
    .select(({ fn }) => fn.countAll<string>().as("n"))
    .where("conversation_id", "=", conversationId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

async function inboxCount(conversationId: string): Promise<number> {
  const r = await db
    .selectFrom("inbox")
    .select(({ fn }) => fn.countAll<string>().as("n"))
    .where("conversation_id", "=", conversationId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Everything delivered was acked (or termed) and nothing waits. */
async function drained(queue: JetStreamQueue): Promise<boolean> {
  const ci = await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!);
  return ci.num_pending === 0 && ci.num_ack_pending === 0;
}

/**
 * Resolves once JetStream's own clock has run `ackWaitMs` past this call: a
 * marker on a stream of its own, with that ack_wait, is fetched and left
 * unacked, and comes back only when its ack_wait has passed. Whatever was
 * delivered before the call and not acked would have been redelivered by then.
 */
async function ackWaitPassed(ackWaitMs: number): Promise<void> {
  const clock = await newQueue(ackWaitMs);
  await clock.js.publish(clock.subjectOf(randomUUID()), "marker");
  const consumer = await clock.consumer();
  const first = await consumer.next({ expires: 5_000 });
  if (!first) throw new Error("the ack_wait marker was not delivered");
  const deadline = Date.now() + ackWaitMs + 20_000;
  while (Date.now() < deadline) {
    const again = await consumer.next({ expires: ackWaitMs + 1_000 });
    if (again?.redelivered) return;
  }
  throw new Error("the ack_wait marker was not redelivered");
}

async function workerCounts(registry: Registry): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric("chatwire_worker_messages_total");
  const out: Record<string, number> = {};
  for (const v of (await metric!.get()).values) out[String(v.labels.result)] = v.value;
  return out;
}

// ---- tests -----------------------------------------------------------------------

describe("JetStream queue and message worker", () => {
  test("provisioning is idempotent and uses the prefixed names", async () => {
    const queue = await newQueue();
    await queue.provision();
    expect((await jsm.streams.info(queue.names.stream)).config.duplicate_window).toBe(120 * 1e9);
    // Another instance with other settings brings the existing pair up to date.
    await new JetStreamQueue({ nc, subjectPrefix: queue.subjectPrefix, logger, ackWaitMs: 5000, duplicateWindowMs: 60_000, partitions: 1 }).provision();
    const si = await jsm.streams.info(queue.names.stream);
    expect(si.config).toMatchObject({ subjects: [`${queue.subjectPrefix}.msg.>`], storage: "file", retention: "workqueue", duplicate_window: 60 * 1e9 });
    expect(queue.names.stream).toBe(`${queue.subjectPrefix.toUpperCase()}_MESSAGES`);
    const ci = await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!);
    expect(ci.config).toMatchObject({
      durable_name: `${queue.subjectPrefix}-message-worker-0`,
      filter_subject: `${queue.subjectPrefix}.msg.0.*`,
      ack_policy: "explicit",
      ack_wait: 5000 * 1e6,
      max_deliver: -1,
    });
    expect(queue.ready()).toBe(true);
  });

  test("200 messages from 4 concurrent senders: seq 1..200 gapless, each sender's order kept, inbox and notices per participant", async () => {
    const queue = await newQueue();
    const members = await insertUsers(db, 5); // 4 senders and one who only reads
    const conv = await insertConversation(db, members);
    const bus = new NatsBus(nc, logger);
    const notices = new Map<string, InboxNoticeWire[]>(members.map((u) => [u, []]));
    let firstNoticeFound: Promise<boolean> | undefined;
    for (const u of members) {
      bus.subscribe(userSubject(queue.subjectPrefix, u), (p) => {
        const n = decodeNotice(p);
        notices.get(u)!.push(n);
        // A notice goes out after its commit: the message is already there.
        firstNoticeFound ??= db.selectFrom("messages").select("id").where("id", "=", n.message_id!).executeTakeFirst().then(Boolean);
      });
    }
    await nc.flush();
    startWorker(queue);

    const senders = members.slice(0, 4);
    const sent = new Map<string, string[]>(senders.map((s) => [s, []]));
    const t0 = performance.now();
    await Promise.all(
      senders.map(async (s) => {
        for (let i = 0; i < 50; i++) {
          const m = outgoing(conv, s);
          await queue.publish(m);
          sent.get(s)!.push(m.id);
        }
      }),
    );
    await waitFor("200 stored", async () => (await messageCount(conv)) === 200);
    const elapsed = performance.now() - t0;

    const rows = await db.selectFrom("messages").select(["id", "seq", "sender_id"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    for (const s of senders) {
      expect(rows.filter((r) => r.sender_id === s).map((r) => r.id)).toEqual(sent.get(s));
    }
    const conversationRow = await db.selectFrom("conversations").select("last_seq").where("id", "=", conv).executeTakeFirstOrThrow();
    expect(conversationRow.last_seq).toBe("200");

    for (const u of members) {
      const inbox = await db.selectFrom("inbox").select(["position", "message_id"]).where("user_id", "=", u).orderBy("position").execute();
      expect(inbox.map((e) => Number(e.position))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(inbox.map((e) => e.message_id)).toEqual(rows.map((r) => r.id));
    }
    await waitFor("all notices", async () => [...notices.values()].every((l) => l.length === 200));
    for (const u of members) {
      const mine = notices.get(u)!;
      expect(mine.map((n) => Number(n.position))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(mine.map((n) => n.seq)).toEqual(rows.map((r) => r.seq));
      expect(mine.every((n) => n.event_type === "message_created" && n.conversation_id === conv)).toBe(true);
    }
    expect(await firstNoticeFound).toBe(true);
    await waitFor("consumer drained", () => drained(queue));
    console.info(`JetStream pipeline on ${handle.kind}: 200 messages (4 senders, 5 participants) published and stored in ${elapsed.toFixed(0)} ms`);
  });

  test("two instances' workers: one is active, the other stands by and takes over when it stops; each sender's order is kept", async () => {
    const queue = await newQueue();
    const members = await insertUsers(db, 4);
    const convs = [await insertConversation(db, members), await insertConversation(db, members)];
    // The advisory lock the server uses.
    const leaderFor = () => new PgLeaderLock(testDb.databaseUrl!, `test-worker:${queue.names.stream}`, logger);
    // The first worker is slow, so messages are still waiting when it stops.
    let storedByFirst = 0;
    let unblockFirst!: () => void;
    const firstUnblocked = new Promise<void>((resolve) => (unblockFirst = resolve));
    const first = startWorker(queue, {
      leader: leaderFor(),
      hooks: {
        afterCommit: async (stored) => {
          storedByFirst += stored.length;
          // Held once it has stored some, until it is told to stop.
          if (storedByFirst >= 20) await firstUnblocked;
        },
      },
    });
    await waitFor("the first worker to lead", async () => first.running && !first.standby);
    const second = startWorker(queue, { leader: leaderFor() });
    await waitFor("the second worker to stand by", async () => second.standby);
    const sent = new Map<string, string[]>();
    await Promise.all(
      members.flatMap((s) =>
        convs.map(async (conv) => {
          const list: string[] = [];
          sent.set(`${conv}:${s}`, list);
          for (let i = 0; i < 40; i++) {
            const m = outgoing(conv, s);
            await queue.publish(m);
            list.push(m.id);
          }
        }),
      ),
    );
    expect(second.standby).toBe(true);
    await waitFor("the first worker to store some", async () => storedByFirst >= 20);
    const firstStopped = first.stop();
    unblockFirst();
    await firstStopped;
    for (const conv of convs) await waitFor("stored", async () => (await messageCount(conv)) === 160);
    expect(second.standby).toBe(false);
    expect(storedByFirst).toBeLessThan(320);
    for (const conv of convs) {
      const rows = await db.selectFrom("messages").select(["id", "seq", "sender_id"]).where("conversation_id", "=", conv).orderBy("seq").execute();
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 160 }, (_, i) => i + 1));
      for (const s of members) expect(rows.filter((r) => r.sender_id === s).map((r) => r.id)).toEqual(sent.get(`${conv}:${s}`));
    }
  });

  test("a publish repeated within the duplicate window, and one after it, are stored once", async () => {
    const queue = await newQueue();
    const registry = new Registry();
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const m = outgoing(conv, a!);
    await queue.publish(m);
    await queue.publish(m); // a client retry within the window
    const raw = await queue.js.publish(queue.subjectOf(conv), JSON.stringify(m), { msgID: natsMsgId(m.senderId, m.clientMessageId) });
    expect(raw.duplicate).toBe(true);
    // After the window JetStream no longer knows the id: a new stream message, same (sender, client id).
    const late = await queue.js.publish(queue.subjectOf(conv), JSON.stringify({ ...m, sentAt: new Date().toISOString() }), {
      msgID: `${natsMsgId(m.senderId, m.clientMessageId)}:after-window`,
    });
    expect(late.duplicate).toBe(false);

    startWorker(queue, { registry });
    await waitFor("consumer drained", () => drained(queue));
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).execute();
    expect(rows).toEqual([{ id: m.id, seq: "1" }]);
    expect(await inboxCount(conv)).toBe(2);
    expect(await workerCounts(registry)).toEqual({ stored: 1, duplicate: 1 });
  });

  test("a crash between commit and ack: redelivered after ack_wait, a restarted worker stores no second copy", async () => {
    const queue = await newQueue(2000);
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const msgs = [outgoing(conv, a!), outgoing(conv, b!), outgoing(conv, a!)];
    for (const m of msgs) await queue.publish(m);

    let committed = 0;
    const crashing = startWorker(queue, {
      ackWaitMs: 2000,
      hooks: {
        afterCommit: (stored) => {
          committed += stored.length;
          throw new Error("simulated crash after commit");
        },
      },
    });
    await waitFor("the crashing worker committed", async () => committed >= 3); // under load a redelivery may reach the crashing worker too
    expect(await messageCount(conv)).toBe(3);
    await crashing.stop(); // holds nothing: the "crashed" batch was neither acked nor naked
    const info = await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!);
    expect(info.num_ack_pending).toBe(3);

    const registry = new Registry();
    const redelivered: number[] = [];
    const t0 = Date.now();
    startWorker(queue, { ackWaitMs: 2000, registry, hooks: { afterCommit: () => void redelivered.push(Date.now() - t0) } });
    await waitFor("consumer drained", () => drained(queue));
    expect(redelivered.length).toBeGreaterThan(0);
    expect(await workerCounts(registry)).toEqual({ duplicate: 3 });
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual(msgs.map((m, i) => ({ id: m.id, seq: String(i + 1) })));
    expect(await inboxCount(conv)).toBe(6);
  });

  test("a worker that died holding deliveries unacked: the next one stores those first, in order, before newer ones (not after ack_wait)", async () => {
    const queue = await newQueue(60_000);
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const msgs = Array.from({ length: 10 }, (_, i) => outgoing(conv, a!, `held-${i}`));
    for (const m of msgs.slice(0, 5)) await queue.publish(m);
    // The "dead" worker: pulled the first five and will never ack them (redelivery only after 60 s).
    const dead = await (await queue.consumer()).fetch({ max_messages: 5, expires: 5_000 });
    let held = 0;
    for await (const _ of dead) held++;
    expect(held).toBe(5);
    for (const m of msgs.slice(5)) await queue.publish(m);

    const registry = new Registry();
    startWorker(queue, { ackWaitMs: 60_000, registry });
    await waitFor("all ten stored", async () => (await messageCount(conv)) === 10);
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual(msgs.map((m, i) => ({ id: m.id, seq: String(i + 1) })));
    expect(await inboxCount(conv)).toBe(20);
    // Only the five newer ones came through a delivery; the five held are still pending on JetStream (they come back as duplicates).
    await waitFor("the newer five acked", async () => (await workerCounts(registry)).stored === 5);
    expect((await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!)).num_ack_pending).toBe(5);
  });

  test("messages sent while no worker runs are all stored, once and in order, when one starts", async () => {
    const queue = await newQueue();
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const msgs = Array.from({ length: 50 }, (_, i) => outgoing(conv, i % 2 ? a! : b!));
    for (const m of msgs) await queue.publish(m);
    const info = await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!);
    expect(info.num_pending).toBe(50);
    expect(await messageCount(conv)).toBe(0);

    startWorker(queue);
    await waitFor("consumer drained", () => drained(queue));
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual(msgs.map((m, i) => ({ id: m.id, seq: String(i + 1) })));
    expect(await inboxCount(conv)).toBe(100);
  });

  test("a queued message keeps the disappearing timer it was sent under, whatever the timer is when the worker stores it", async () => {
    const queue = await newQueue();
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const sentAt = "2026-03-04T05:06:07.000Z";
    const timer = (seconds: number) => db.updateTable("conversations").set({ disappearing_seconds: seconds }).where("id", "=", conv).execute();
    // Sent with the timer off; the timer is turned on before the worker runs.
    const before = outgoing(conv, a!, "before", { sentAt, disappearingSeconds: 0 });
    await queue.publish(before);
    await timer(86400);
    // Sent under the timer; it is turned off again before the worker runs.
    const under = outgoing(conv, a!, "under", { sentAt, disappearingSeconds: 86400 });
    await queue.publish(under);
    await timer(0);
    // Malformed: dead-lettered, not stored under a guess.
    await queue.js.publish(queue.subjectOf(conv), JSON.stringify({ ...outgoing(conv, a!, "bad"), disappearingSeconds: -5 }));

    startWorker(queue);
    await waitFor("consumer drained", () => drained(queue));
    const rows = await db.selectFrom("messages").select(["client_message_id", "expires_at"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual([
      { client_message_id: "before", expires_at: null },
      { client_message_id: "under", expires_at: new Date("2026-03-05T05:06:07.000Z") },
    ]);
    const letters = await db.selectFrom("dead_letters").select("error").where("subject", "=", queue.subjectOf(conv)).execute();
    expect(letters.map((l) => l.error)).toEqual([expect.stringContaining("disappearingSeconds")]);
  });

  test("messages that can never be stored are dead-lettered and terminated, not redelivered; the rest of the batch is stored", async () => {
    const queue = await newQueue(1500);
    const registry = new Registry();
    const [a, b, stranger] = await insertUsers(db, 3);
    const conv = await insertConversation(db, [a!, b!]);
    const doomed = await insertConversation(db, [a!, b!]);
    await queue.publish(outgoing(doomed, a!));
    await db.deleteFrom("conversations").where("id", "=", doomed).execute();
    await queue.publish(outgoing(conv, stranger!));
    await queue.js.publish(queue.subjectOf(conv), "{not json");
    const good = outgoing(conv, b!);
    await queue.publish(good);

    startWorker(queue, { ackWaitMs: 1500, registry });
    await waitFor("consumer drained", () => drained(queue));
    const letters = await db.selectFrom("dead_letters").selectAll().where("subject", "like", `${queue.subjectPrefix}.%`).orderBy("error").execute();
    expect(letters.map((l) => l.error.split(":")[0])).toEqual(["conversation_not_found", "sender_not_participant", "undecodable"]);
    expect(letters.map((l) => l.subject)).toContain(queue.subjectOf(doomed));
    expect(letters.find((l) => l.error.startsWith("undecodable"))!.payload).toBe("{not json");
    expect(await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).execute()).toEqual([{ id: good.id, seq: "1" }]);

    // Past ack_wait: nothing came back (a 2.9 server ignores a +TERM with a reason; a plain one works).
    await ackWaitPassed(1500);
    const info = await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!);
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(await db.selectFrom("dead_letters").select("id").where("subject", "like", `${queue.subjectPrefix}.%`).execute()).toHaveLength(3);
    expect(await workerCounts(registry)).toEqual({ stored: 1, dead_letter: 3 });
  });

  test("a message the database refuses (a data error) is isolated from its batch and dead-lettered; its neighbours are stored", async () => {
    const queue = await newQueue();
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const before = outgoing(conv, a!);
    const bad = { ...outgoing(conv, b!), replyToMessageId: randomUUID() }; // no such message: foreign key violation
    const after = outgoing(conv, a!);
    for (const m of [before, bad, after]) await queue.publish(m);
    startWorker(queue);
    await waitFor("consumer drained", () => drained(queue));
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual([
      { id: before.id, seq: "1" },
      { id: after.id, seq: "2" },
    ]);
    const letters = await db.selectFrom("dead_letters").select(["error", "payload"]).where("subject", "=", queue.subjectOf(conv)).execute();
    expect(letters).toHaveLength(1);
    expect(letters[0]!.error).toMatch(/foreign key/);
    expect(JSON.parse(letters[0]!.payload)).toMatchObject({ id: bad.id });
  });

  test("a database outage: the worker holds the batch, retries, and stores everything in order once it is back", async () => {
    const queue = await newQueue(2000);
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const outage = { on: true, failures: 0 };
    const failing: KyselyPlugin = {
      transformQuery(args) {
        if (outage.on) {
          outage.failures++;
          throw Object.assign(new Error("simulated: connection refused"), { code: "ECONNREFUSED" });
        }
        return args.node;
      },
      transformResult: async (args) => args.result,
    };
    const msgs = Array.from({ length: 5 }, (_, i) => outgoing(conv, i % 2 ? a! : b!));
    for (const m of msgs) await queue.publish(m);
    startWorker(queue, { db: db.withPlugin(failing), ackWaitMs: 2000 });
    // Longer than ack_wait: working() must keep JetStream from redelivering meanwhile.
    await waitFor("the worker to hold the batch", async () => (await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!)).num_ack_pending === 5);
    // A pull of the test's own waits meanwhile: were the batch not kept alive, JetStream would redeliver it there.
    const probe = await (await queue.consumer()).fetch({ max_messages: 5, expires: 5_000 });
    const probing = (async () => {
      for await (const _ of probe);
    })();
    await ackWaitPassed(2000);
    await probe.close();
    await probing;
    expect(outage.failures).toBeGreaterThan(1);
    expect(await messageCount(conv)).toBe(0);
    const held = await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!);
    expect(held.num_ack_pending).toBe(5);
    expect(held.num_redelivered).toBe(0);
    outage.on = false;
    await waitFor("consumer drained", () => drained(queue));
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual(msgs.map((m, i) => ({ id: m.id, seq: String(i + 1) })));
    expect(await db.selectFrom("dead_letters").select("id").where("subject", "like", `${queue.subjectPrefix}.%`).execute()).toEqual([]);
  });

  test("a worker whose lock connection dies stops at once and hands its batch back in order; the standby takes the lock and stores it", async () => {
    // ack_wait far beyond the test's wait: only an immediate hand-back can pass it.
    const queue = await newQueue(60_000);
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const name = `test-worker:${queue.names.stream}`;
    // The server's advisory lock, whose connection the test terminates.
    const leaderFor = (): LeaderLock => new PgLeaderLock(testDb.databaseUrl!, name, logger);
    const killLockConnection = async (): Promise<void> => {
      // The session holding the advisory lock (key split into classid/objid as pg_locks shows it).
      const key = BigInt.asUintN(64, createHash("sha256").update(name).digest().readBigInt64BE(0));
      const { rows } = await sql<{ ok: boolean }>`
        select pg_terminate_backend(pid) as ok from pg_locks
        where locktype = 'advisory' and granted and classid = ${String(key >> 32n)}::oid and objid = ${String(key & 0xffffffffn)}::oid`.execute(db);
      expect(rows).toEqual([{ ok: true }]);
    };

    // The first worker leads but cannot reach its database: it holds the batch and retries.
    let failures = 0;
    const unreachable: KyselyPlugin = {
      transformQuery() {
        failures++;
        throw Object.assign(new Error("simulated: connection refused"), { code: "ECONNREFUSED" });
      },
      transformResult: async (args) => args.result,
    };
    const first = startWorker(queue, { db: db.withPlugin(unreachable), leader: leaderFor(), ackWaitMs: 60_000 });
    await waitFor("the first worker to lead", async () => first.running && !first.standby);
    const msgs = Array.from({ length: 5 }, (_, i) => outgoing(conv, i % 2 ? a! : b!));
    for (const m of msgs) await queue.publish(m);
    await waitFor(
      "the first worker to hold the batch",
      async () => failures > 0 && (await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!)).num_ack_pending === 5,
    );
    const second = startWorker(queue, { leader: leaderFor(), ackWaitMs: 60_000 });
    await waitFor("the second worker to stand by", async () => second.standby);

    const killed = Date.now();
    await killLockConnection();
    await waitFor("stored by the new holder", async () => (await messageCount(conv)) === 5, 10_000);
    const tookOverMs = Date.now() - killed;
    expect(first.standby).toBe(true);
    expect(second.standby).toBe(false);
    await waitFor("consumer drained", () => drained(queue));
    const rows = await db.selectFrom("messages").select(["id", "seq"]).where("conversation_id", "=", conv).orderBy("seq").execute();
    expect(rows).toEqual(msgs.map((m, i) => ({ id: m.id, seq: String(i + 1) })));
    console.info(`lock connection killed: the standby stored the held batch ${tookOverMs} ms later (ack_wait 60 s)`);
  });

  test("stop() finishes the open pull and returns promptly", async () => {
    const queue = await newQueue();
    const worker = startWorker(queue);
    await waitFor("the worker's pull to be open", async () => (await jsm.consumers.info(queue.names.stream, queue.names.consumers[0]!)).num_waiting > 0);
    const t0 = Date.now();
    await worker.stop();
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(worker.running).toBe(false);
  });

  test("publish fails fast with QueueUnavailableError when NATS cannot take the message", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await insertConversation(db, [a!, b!]);
    const closed = await connect({ servers: NATS.split(",") });
    const queue = new JetStreamQueue({ nc: closed, subjectPrefix: `wt${randomBytes(5).toString("hex")}`, logger });
    streams.push(queue.names.stream);
    await queue.provision();
    await closed.close();
    let t0 = Date.now();
    await expect(queue.publish(outgoing(conv, a!))).rejects.toBeInstanceOf(QueueUnavailableError);
    expect(Date.now() - t0).toBeLessThan(200);
    expect(queue.ready()).toBe(false);

    // Connected, but no stream takes the subject (never provisioned, or deleted): no responders.
    const orphan = new JetStreamQueue({ nc, subjectPrefix: `wt${randomBytes(5).toString("hex")}`, logger });
    t0 = Date.now();
    await expect(orphan.publish(outgoing(conv, a!))).rejects.toBeInstanceOf(QueueUnavailableError);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(orphan.ready()).toBe(false);
  });
});
