import { randomBytes } from "node:crypto";
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@connectrpc/connect";
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import type { Kysely } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import type { Database } from "../db/schema.js";
import { natsMsgId, partitionOf, queueNames, streamName } from "../messaging/jetstream-queue.js";
import { outgoing } from "./helpers/fixtures.js";
import { bearerTransport, login } from "./helpers/login.js";
import { queueDrained } from "./helpers/queue-state.js";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "./helpers/test-database.js";
import { deleteQueueStream, startTestServer, type TestServer } from "./helpers/test-server.js";

// Issue 15 item 3: conversations hash into MESSAGE_PARTITIONS partitions, each
// worked by one worker at a time; the workers of every instance share them and
// take over a dead one's. Always on a real PostgreSQL (advisory locks) and NATS,
// whatever the profile: CI runs it once, in the production suite (vitest.config.ts).

const NATS = process.env.NATS_URL || "nats://127.0.0.1:4222";
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = path.join(ROOT, "dist/server/main.js");
const P = 16;

let nc: NatsConnection;
const databases: TestDatabase[] = [];
const servers: TestServer[] = [];
const children: Array<ChildProcessByStdio<null, Readable, Readable>> = [];
const prefixes: string[] = [];

beforeAll(async () => {
  nc = await connect({ servers: NATS.split(",") });
});

afterEach(async () => {
  // Instances sharing a deployment: the later ones first, the one that owns the database last.
  for (const s of servers.splice(0).reverse()) await s.stop().catch(() => undefined);
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("close", r));
    }
  }
  for (const db of databases.splice(0)) await db.drop();
  for (const prefix of prefixes.splice(0)) await deleteQueueStream({ natsUrl: NATS, natsSubjectPrefix: prefix });
});

afterAll(async () => {
  await nc?.close();
});

// ---- helpers ---------------------------------------------------------------------

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A deployment's first instance, on its own PostgreSQL database and stream prefix. */
async function firstInstance(env: Record<string, string> = {}): Promise<TestServer> {
  const db = await createTestDatabase(undefined, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
  databases.push(db);
  const prefix = `pt${randomBytes(5).toString("hex")}`;
  prefixes.push(prefix);
  const s = await startTestServer({ DATABASE_URL: db.databaseUrl!, NATS_URL: NATS, NATS_SUBJECT_PREFIX: prefix, ...env });
  servers.push(s);
  return s;
}

/** Another instance of the same deployment (same database and prefix), in this process. */
async function anotherInstance(first: TestServer, env: Record<string, string> = {}): Promise<TestServer> {
  const s = await startTestServer({ NATS_URL: NATS, ...env }, { shareWith: first });
  servers.push(s);
  return s;
}

/** The partitions an instance's worker holds, from /readyz ("8 of 16: 0,1,…"). */
async function ownedBy(url: string): Promise<number[]> {
  const body = (await (await fetch(`${url}/readyz`)).json()) as { checks: Record<string, string> };
  const m = /^(\d+) of (\d+): ([\d,]*)/.exec(body.checks.partitions ?? "");
  if (!m) throw new Error(`no partitions in /readyz: ${JSON.stringify(body.checks)}`);
  const owned = m[3] ? m[3].split(",").map(Number) : [];
  expect(owned.length).toBe(Number(m[1]));
  return owned;
}

async function gauge(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^chatwire_worker_partitions_owned (\d+)$/m.exec(text);
  if (!m) throw new Error("no chatwire_worker_partitions_owned in /metrics");
  return Number(m[1]);
}

/** Both own P/2, together all P, and their gauges say so. */
async function evenlySplit(a: string, b: string): Promise<[number[], number[]]> {
  return until("the partitions split evenly", async () => {
    const [x, y] = [await ownedBy(a), await ownedBy(b)];
    if (x.length !== P / 2 || y.length !== P / 2) return undefined;
    if (new Set([...x, ...y]).size !== P) return undefined;
    if ((await gauge(a)) !== P / 2 || (await gauge(b)) !== P / 2) return undefined;
    return [x, y] as [number[], number[]];
  });
}

interface User {
  id: string;
  chat: Client<typeof ChatService>;
}

let phone = 0;
async function newUser(url: string): Promise<User> {
  const me = await login(url, `+1415558${String(phone++).padStart(4, "0")}`);
  return { id: me.id, chat: createClient(ChatService, bearerTransport(url, me.accessToken, "grpc")) };
}

/**
 * `n` groups of `a` and one other user: their ids fall on partitions at
 * random, 12 of them on both halves of 16 but with odds of 1 in 2,000.
 */
async function conversations(url: string, a: User, n = 12): Promise<string[]> {
  const b = await newUser(url);
  const convs: string[] = [];
  for (let i = 0; i < n; i++) {
    const { conversation } = await a.chat.createConversation({ participantIds: [b.id], isGroup: true, groupName: `g${i}` });
    convs.push(conversation!.id);
  }
  return convs;
}

/** Every message row of the conversations: seq and client id, in seq order per conversation. */
async function rowsOf(db: Kysely<Database>, convs: string[]): Promise<Map<string, Array<{ seq: number; clientMessageId: string | null }>>> {
  const rows = await db
    .selectFrom("messages")
    .select(["conversation_id", "seq", "client_message_id"])
    .where("conversation_id", "in", convs)
    .orderBy("conversation_id")
    .orderBy("seq")
    .execute();
  const out = new Map(convs.map((c) => [c, [] as Array<{ seq: number; clientMessageId: string | null }>]));
  for (const r of rows) out.get(r.conversation_id)!.push({ seq: Number(r.seq), clientMessageId: r.client_message_id });
  return out;
}

/** The user messages (a group's timeline starts with its system message), by client id in seq order. */
function userIds(rows: Array<{ clientMessageId: string | null }>): string[] {
  return rows.flatMap((r) => (r.clientMessageId === null ? [] : [r.clientMessageId]));
}

function userMessageCount(rows: Map<string, Array<{ clientMessageId: string | null }>>): number {
  return [...rows.values()].reduce((n, r) => n + userIds(r).length, 0);
}

/** Seq 1..n without a gap in each conversation. */
function expectGapless(rows: Map<string, Array<{ seq: number }>>): void {
  for (const got of rows.values()) expect(got.map((r) => r.seq)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
}

/** Each conversation holds exactly the sent client ids, once each, in the order sent, with seq gapless. */
function expectStoredOnceInOrder(rows: Map<string, Array<{ seq: number; clientMessageId: string | null }>>, sent: Map<string, string[]>): void {
  expectGapless(rows);
  for (const [conv, ids] of sent) expect(userIds(rows.get(conv)!)).toEqual(ids);
}

// ---- tests -----------------------------------------------------------------------

describe("partitioned message path", () => {
  test("two instances' workers each hold half of the partitions (/readyz, gauge); a stopped one's are taken by the other", async () => {
    const s1 = await firstInstance();
    const s2 = await anotherInstance(s1);
    const [x, y] = await evenlySplit(s1.url, s2.url);
    expect(x.filter((p) => y.includes(p))).toEqual([]);

    // Messages to every partition are stored by whichever worker holds it.
    const a = await newUser(s1.url);
    const convs = await conversations(s1.url, a);
    const sent = new Map(convs.map((c) => [c, [] as string[]]));
    for (let i = 0; i < 3; i++) {
      for (const c of convs) {
        const id = `m-${i}-${c}`;
        await a.chat.sendMessage({ conversationId: c, content: id, clientMessageId: id });
        sent.get(c)!.push(id);
      }
    }
    await queueDrained(s1.server);
    expectStoredOnceInOrder(await rowsOf(s1.server.ctx.database.db, convs), sent);

    const stopped = Date.now();
    await s2.stop();
    servers.splice(servers.indexOf(s2), 1);
    await until("the first instance to hold all partitions", async () => (await ownedBy(s1.url)).length === P && (await gauge(s1.url)) === P);
    console.info(`[partitions] a stopped instance's ${P / 2} partitions taken by the other ${Date.now() - stopped} ms after stop() began`);
  }, 120_000);

  test("a worker process killed with SIGKILL while messages flow: the other takes its partitions; every message stored once, seq gapless, in the order sent", async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} does not exist: run \`npm run build\` first`);
    // ack_wait 3 s: what the killed worker held unacked comes back quickly.
    const s1 = await firstInstance({ WORKER_ACK_WAIT_SECONDS: "3" });
    const child = spawn(process.execPath, [MAIN], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        PORT: "0",
        HOST: "127.0.0.1",
        DATABASE_URL: s1.config.databaseUrl,
        NATS_URL: NATS,
        NATS_SUBJECT_PREFIX: s1.config.natsSubjectPrefix,
        JWT_SECRET: "test-secret-test-secret-test-secret-0123456789",
        CHATWIRE_ROLES: "worker",
        WORKER_ACK_WAIT_SECONDS: "3",
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout }).on("line", (text) => {
        try {
          const line = JSON.parse(text) as { msg?: string; port?: number };
          if (line.msg?.startsWith("chatwire listening on ") && typeof line.port === "number") resolve(line.port);
        } catch {
          // not a log line
        }
      });
      child.once("close", (code) => reject(new Error(`worker process exited (${code}) before listening:\n${stderr}`)));
    });
    const childUrl = `http://127.0.0.1:${port}`;
    const [, theirs] = await evenlySplit(s1.url, childUrl);

    const a = await newUser(s1.url);
    const convs = await conversations(s1.url, a);
    // One sender per conversation, each message retried with the same client id until accepted.
    const PER_CONVERSATION = 25;
    const sent = new Map(convs.map((c) => [c, [] as string[]]));
    let accepted = 0;
    let retries = 0;
    const senders = convs.map(async (c) => {
      for (let i = 0; i < PER_CONVERSATION; i++) {
        const id = `k-${i}-${c}`;
        for (;;) {
          try {
            await a.chat.sendMessage({ conversationId: c, content: id, clientMessageId: id });
            break;
          } catch {
            retries++;
          }
        }
        sent.get(c)!.push(id);
        accepted++;
      }
    });
    const total = convs.length * PER_CONVERSATION;
    await until("a third of the messages accepted", async () => accepted >= total / 3);
    const db = s1.server.ctx.database.db;
    const storedAtKill = userMessageCount(await rowsOf(db, convs));
    const killed = Date.now();
    child.kill("SIGKILL");
    await until("the survivor to hold every partition", async () => (await ownedBy(s1.url)).length === P);
    const tookOverMs = Date.now() - killed;
    await Promise.all(senders);
    await until("every message stored", async () => userMessageCount(await rowsOf(db, convs)) === total, 60_000);
    await queueDrained(s1.server, 30_000);
    const rows = await rowsOf(db, convs);
    // Exactly once, gapless, and in the order sent in every conversation, the killed worker's too: the survivor
    // stores what the killed one held unacked (read from the stream by sequence) before anything newer.
    const onKilled = convs.filter((c) => theirs.includes(partitionOf(c, P))).length;
    expect(onKilled).toBeGreaterThan(0);
    expectStoredOnceInOrder(rows, sent);
    console.info(
      `[partitions] worker process (pid ${child.pid}, ${theirs.length} partitions) killed with SIGKILL after ${storedAtKill} of ${total} messages stored; ` +
        `the survivor held all ${P} partitions ${tookOverMs} ms later; all ${total} stored once, seq gapless; ` +
        `all ${convs.length} conversations in sent order (${onKilled} on the killed worker's partitions); ${retries} send retries`,
    );
  }, 180_000);

  test("upgrade: messages waiting in the single consumer of the release before partitions are all stored, in order, and it is removed", async () => {
    // The deployment as the old release left it: the stream, and one unfiltered durable consumer.
    const prefix = `pu${randomBytes(5).toString("hex")}`;
    prefixes.push(prefix);
    const names = queueNames(prefix, P);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: streamName(prefix),
      subjects: [`${prefix}.msg.>`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: nanos(120_000),
      num_replicas: 1,
    });
    await jsm.consumers.add(streamName(prefix), {
      durable_name: names.legacyConsumer,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(30_000),
      deliver_policy: DeliverPolicy.All,
      max_deliver: -1,
      max_ack_pending: 10_000,
    });

    // An API-only instance of the new release: it cannot create the partition consumers yet.
    const db = await createTestDatabase(undefined, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
    databases.push(db);
    const api = await startTestServer({ DATABASE_URL: db.databaseUrl!, NATS_URL: NATS, NATS_SUBJECT_PREFIX: prefix, CHATWIRE_ROLES: "api" });
    servers.push(api);
    expect((await jsm.consumers.list(streamName(prefix)).next()).map((c) => c.name)).toEqual([names.legacyConsumer]);

    const a = await newUser(api.url);
    const convs = await conversations(api.url, a);
    const sent = new Map(convs.map((c) => [c, [] as string[]]));
    // What old instances published (the old subject), then what the new API published (partition subjects).
    const js = jetstream(nc);
    for (const c of convs) {
      for (let i = 0; i < 3; i++) {
        const m = outgoing(c, a.id, `old-${i}-${c}`);
        await js.publish(`${prefix}.msg.${c}`, JSON.stringify(m), { msgID: natsMsgId(m.senderId, m.clientMessageId) });
        sent.get(c)!.push(m.clientMessageId);
      }
      const id = `new-0-${c}`;
      await a.chat.sendMessage({ conversationId: c, content: id, clientMessageId: id });
      sent.get(c)!.push(id);
    }
    const waiting = await jsm.consumers.info(streamName(prefix), names.legacyConsumer);
    expect(waiting.num_pending).toBe(convs.length * 4);
    expect(waiting.num_ack_pending).toBe(0);

    const worker = await anotherInstance(api, { CHATWIRE_ROLES: "worker" });
    await until("the old consumer drained and removed", async () => {
      const list = (await jsm.consumers.list(streamName(prefix)).next()).map((c) => c.name);
      return !list.includes(names.legacyConsumer) && list.length === P;
    });
    await until("the worker to hold every partition", async () => (await ownedBy(worker.url)).length === P);
    await queueDrained(worker.server);
    // After the upgrade the partitions carry the messages.
    for (const c of convs) {
      const id = `new-1-${c}`;
      await a.chat.sendMessage({ conversationId: c, content: id, clientMessageId: id });
      sent.get(c)!.push(id);
    }
    await until("every message stored", async () => userMessageCount(await rowsOf(api.server.ctx.database.db, convs)) === convs.length * 5);
    expectStoredOnceInOrder(await rowsOf(api.server.ctx.database.db, convs), sent);
    const letters = await api.server.ctx.database.db.selectFrom("dead_letters").select("id").execute();
    expect(letters).toEqual([]);
  }, 120_000);
});
