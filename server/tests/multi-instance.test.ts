import { randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { sql } from "kysely";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { openDatabase, type DatabaseHandle } from "../db/database.js";
import { spawnChatwire, killAll, insertDevices, type ChatwireProcess, type Device } from "./helpers/chatwire-process.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "./helpers/test-database.js";
import { deleteQueueStream, TEST_JWT_SECRET } from "./helpers/test-server.js";

// Issue 15, item 4: two Chatwire processes on one PostgreSQL database and
// NATS prefix (as two machines behind a load balancer would be), devices
// subscribed through either, senders through either.
//
// The fault behind "two processes delivered none of 800 messages at 5,000
// devices": a stopping process waited for its streams' presence clean-ups
// with `while (pending) await race(allSettled(pending), deadline)`. Once the
// 3 s deadline had passed with a clean-up still running (5,000 streams ending
// at once on a busy database), each race resolved at once: the loop spun in
// microtasks forever, so no timer (the 10 s exit), signal or I/O ever ran
// again, and the process lived on at 100 % CPU still holding the message
// worker's leader lock (released later in the stop). Every other process's
// worker stood by for good: messages were accepted (JetStream acked them)
// and never stored or delivered. Under node:cluster the bench SIGKILLed the
// supervisor, whose stuck children could not even hear it was gone. Here the
// clean-ups are held up for certain by a lock on the users' rows.
//
// Always on the machine's PostgreSQL and NATS: the embedded profile is one process.

const NATS_URL = process.env.NATS_URL || "nats://127.0.0.1:4222";
const PAIRS = 100;
/** A small partition count, so the two processes settle quickly at half each. */
const PARTITIONS = 4;

const prefix = `t${randomBytes(6).toString("hex")}`;
let testDb: TestDatabase;
let database: DatabaseHandle;
const procs: ChatwireProcess[] = [];
const open: Subscription[] = [];

function start(): ChatwireProcess {
  const p = spawnChatwire({
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: testDb.databaseUrl,
    NATS_URL,
    NATS_SUBJECT_PREFIX: prefix,
    CHATWIRE_DATA_DIR: testDb.dataDir,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: "info",
    AUTH_DEV_MODE: "true",
    RATE_LIMITS: "off",
    SHUTDOWN_TIMEOUT_MS: "2000",
    MESSAGE_PARTITIONS: String(PARTITIONS),
  });
  procs.push(p);
  return p;
}

async function listening(p: ChatwireProcess): Promise<string> {
  const line = await p.waitLog((l) => l.msg.startsWith("chatwire listening on "), 60_000, "listening");
  return `http://127.0.0.1:${line.port as number}`;
}

async function readiness(url: string): Promise<{ ready: boolean; checks: Record<string, string> }> {
  const res = await fetch(`${url}/readyz`);
  return (await res.json()) as { ready: boolean; checks: Record<string, string> };
}

/** Waits until `url`'s /readyz says it holds `share` of the partitions ("8 of 16"), or fails saying what it holds. */
async function untilPartitions(url: string, share: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < until) {
    last = (await readiness(url)).checks.partitions ?? "none";
    if (last.startsWith(`${share}:`) || last === share) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the workers at ${url} never held ${share} partitions in ${timeoutMs} ms (still "${last}"): another process holds their locks`);
}

async function directConversations(pairs: Array<[Device, Device]>): Promise<string[]> {
  const db = database.db;
  const convs = await db
    .insertInto("conversations")
    .values(pairs.map(([a, b]) => ({ is_group: false, direct_key: [a.userId, b.userId].sort().join(":"), created_by: a.userId })))
    .returning("id")
    .execute();
  await db
    .insertInto("conversation_participants")
    .values(pairs.flatMap(([a, b], i) => [a, b].map((d) => ({ conversation_id: convs[i]!.id, user_id: d.userId }))))
    .execute();
  return convs.map((c) => c.id);
}

function subscribe(url: string, d: Device): Subscription {
  const s = new Subscription(protocolTransport(url, d.token, "grpc"));
  open.push(s);
  return s;
}

const texts = (s: Subscription) => s.of("messageCreated").map((m) => m.message!.content);

/** Sends one message per (sender, conversation, text) through `url`, a few at a time. */
async function sendAll(url: string, sends: Array<{ from: Device; conversationId: string; text: string }>): Promise<void> {
  for (let i = 0; i < sends.length; i += 20) {
    await Promise.all(
      sends.slice(i, i + 20).map(({ from, conversationId, text }) =>
        createClient(
          ChatService,
          createGrpcTransport({
            baseUrl: url,
            interceptors: [
              (next) => (req) => {
                req.header.set("authorization", `Bearer ${from.token}`);
                return next(req);
              },
            ],
          }),
        ).sendMessage({
          conversationId,
          content: text,
          clientMessageId: text,
        }),
      ),
    );
  }
}

beforeAll(async () => {
  testDb = await createTestDatabase(pino({ level: "silent" }), { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
});

afterAll(async () => {
  await Promise.all(open.map((s) => s.close()));
  await killAll(procs);
  await database?.close();
  await deleteQueueStream({ natsUrl: NATS_URL, natsSubjectPrefix: prefix });
  await testDb?.drop();
});

describe("two processes on one database and NATS prefix", () => {
  let urlA: string;
  let urlB: string;
  let a: ChatwireProcess;
  let b: ChatwireProcess;
  let pairs: Array<[Device, Device]>;
  let conversations: string[];

  test(`${PAIRS * 2} devices, each pair split over the two: every message crosses and arrives once`, async () => {
    a = start();
    urlA = await listening(a);
    // A's workers hold every partition; once B starts, the two share them (PostgreSQL advisory locks).
    await untilPartitions(urlA, `${PARTITIONS} of ${PARTITIONS}`, 20_000);
    b = start();
    urlB = await listening(b);
    await untilPartitions(urlB, `${PARTITIONS / 2} of ${PARTITIONS}`, 20_000);
    await untilPartitions(urlA, `${PARTITIONS / 2} of ${PARTITIONS}`, 20_000);

    database = await openDatabase({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir, logger: pino({ level: "silent" }) });
    const devices = await insertDevices(database.db, PAIRS * 2, 14_150_000_000 + Math.floor(Math.random() * 1000) * 1000);
    pairs = Array.from({ length: PAIRS }, (_, i) => [devices[2 * i]!, devices[2 * i + 1]!] as [Device, Device]);
    conversations = await directConversations(pairs);

    // First of each pair on A, second on B; the first sends through B, the second through A.
    const onA = pairs.map(([x]) => subscribe(urlA, x));
    const onB = pairs.map(([, y]) => subscribe(urlB, y));
    await Promise.all([...onA, ...onB].map((s) => s.untilKind("caughtUp", 1, 30_000)));
    await Promise.all([
      sendAll(
        urlB,
        pairs.map(([x], i) => ({ from: x, conversationId: conversations[i]!, text: `to-b-${i}` })),
      ),
      sendAll(
        urlA,
        pairs.map(([, y], i) => ({ from: y, conversationId: conversations[i]!, text: `to-a-${i}` })),
      ),
    ]);
    // Each device gets both messages of its conversation (its own too: the inbox is per account), once each.
    const both = (i: number) => (x: Subscription) => texts(x).includes(`to-a-${i}`) && texts(x).includes(`to-b-${i}`);
    await Promise.all([...onA.entries(), ...onB.entries()].map(([i, s]) => s.until(both(i), 30_000, `to-a-${i} and to-b-${i}`)));
    for (const [i, s] of [...onA.entries(), ...onB.entries()]) expect(texts(s).sort()).toEqual([`to-a-${i}`, `to-b-${i}`]);
  }, 120_000);

  test("the active process stops while its streams' clean-ups are held up: it still exits, and the other takes the worker over and delivers", async () => {
    // Hold the rows every clean-up of A's streams locks first (chatwire_presence_close_stream), as a busy database would.
    const blocker = new pg.Client({ connectionString: testDb.databaseUrl });
    await blocker.connect();
    try {
      await blocker.query("begin");
      await blocker.query("select 1 from users where id = any($1::uuid[]) for update", [pairs.map(([x]) => x.userId)]);
      a.child.kill("SIGTERM");
      // A's stop waits at most 3 s for its streams' clean-ups (it used to spin forever here, holding its workers' locks).
      await a.waitLog((l) => l.msg === "stream clean-ups still running after 3 s; stopping without them", 20_000, "the clean-up warning");
    } finally {
      await blocker.query("rollback").catch(() => undefined);
      await blocker.end();
    }
    const { code } = await a.exited;
    expect(code).toBe(0);
    // B takes over what A held: every partition.
    await untilPartitions(urlB, `${PARTITIONS} of ${PARTITIONS}`, 20_000);

    // A's devices come back through B (the load balancer's only instance now) and receive what is sent through B.
    await Promise.all(open.splice(0).map((s) => s.close()));
    const again = pairs.map(([x]) => subscribe(urlB, x));
    await Promise.all(again.map((s) => s.untilKind("caughtUp", 1, 30_000)));
    await sendAll(
      urlB,
      pairs.map(([, y], i) => ({ from: y, conversationId: conversations[i]!, text: `after-${i}` })),
    );
    await Promise.all(again.map((s, i) => s.until((x) => texts(x).includes(`after-${i}`), 30_000, `after-${i}`)));
    const stored = await sql<{ n: string }>`select count(*) as n from messages`.execute(database.db);
    expect(Number(stored.rows[0]!.n)).toBe(PAIRS * 3);
  }, 120_000);
});
