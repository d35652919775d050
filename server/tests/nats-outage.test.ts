import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ChatService, type Message } from "../../gen/chat/chat_pb.js";
import { streamName } from "../messaging/jetstream-queue.js";
import { PrivateNats } from "./helpers/private-nats.js";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "./helpers/test-database.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The "Done when": with NATS stopped, SendMessage fails cleanly
// (Unavailable, retry with the same client_message_id) and nothing is lost
// once NATS is back. The test runs its own nats-server (JetStream, own port,
// own store dir) so it can stop and restart it without touching the shared
// NATS on 4222, and a real PostgreSQL database (the production profile)
// whatever the profile: CI runs it once, in the production suite (vitest.config.ts).

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- Chatwire

let nats: PrivateNats;
let db: TestDatabase;
let s: TestServer;

/** Tests only: while set, the worker waits here after each commit, before its acks. */
let holdAfterCommit: Promise<void> | undefined;

beforeAll(async () => {
  nats = await PrivateNats.create();
  await nats.start();
  db = await createTestDatabase(undefined, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
  // startTestServer makes a database of its own too; DATABASE_URL here wins over
  // it (env overrides every variable), and stop() drops the unused one.
  s = await startTestServer(
    // One message per pull, so a held worker leaves the rest in the stream; quick redelivery.
    { DATABASE_URL: db.databaseUrl, NATS_URL: nats.url, WORKER_BATCH_SIZE: "1", WORKER_ACK_WAIT_SECONDS: "2" },
    { workerHooks: { afterCommit: () => holdAfterCommit } },
  );
});

afterAll(async () => {
  // Chatwire first (it drains its NATS connection and deletes its stream), then NATS, then the database.
  await s?.stop().catch(() => undefined);
  await nats?.dispose();
  await db?.drop();
});

let nextNumber = 100;
interface U {
  id: string;
  chat: Client<typeof ChatService>;
}

async function newUser(): Promise<U> {
  const phone = `+1415557${String(nextNumber++).padStart(4, "0")}`;
  const auth = createClient(AuthService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
  await auth.sendOTP({ phoneNumber: phone });
  const res = await auth.verifyOTP({ phoneNumber: phone, otpCode: "123456" });
  const headers = { authorization: `Bearer ${res.accessToken}` };
  const chat = createClient(ChatService, createGrpcTransport({ baseUrl: s.url }));
  const withAuth = new Proxy(chat, {
    get(target, prop) {
      const fn = (target as unknown as Record<string | symbol, unknown>)[prop];
      if (typeof fn !== "function") return fn;
      return (req: unknown, opts: { headers?: Record<string, string>; timeoutMs?: number } = {}) =>
        (fn as (r: unknown, o: unknown) => unknown).call(target, req, { timeoutMs: 20_000, ...opts, headers: { ...headers, ...opts.headers } });
    },
  }) as Client<typeof ChatService>;
  return { id: res.user!.id, chat: withAuth };
}

/** Every message of the conversation, oldest first. */
async function allMessages(u: U, conversationId: string): Promise<Message[]> {
  const { messages } = await u.chat.listMessages({ conversationId, limit: 100 });
  return [...messages].reverse();
}

/**
 * Waits (bounded) until the conversation holds `count` messages; unless the
 * test holds an ack back, then until the stream is empty too, so any extras
 * would be stored by then.
 */
async function stored(u: U, conversationId: string, count: number, timeoutMs = 10_000, opts: { ackHeld?: boolean } = {}): Promise<Message[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const messages = await allMessages(u, conversationId);
    if (messages.length >= count) {
      if (opts.ackHeld) return messages;
      await allAcked(Math.max(1_000, deadline - Date.now()));
      return allMessages(u, conversationId);
    }
    if (Date.now() > deadline) throw new Error(`conversation ${conversationId}: ${messages.length} of ${count} messages stored after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function get(p: string): Promise<{ status: number; body: { checks?: Record<string, string> } }> {
  const res = await fetch(`${s.url}${p}`);
  return { status: res.status, body: (await res.json()) as { checks?: Record<string, string> } };
}

/** Polls /readyz (bounded) until it answers `status`; returns how long that took. */
async function readyzBecomes(status: number, timeoutMs: number): Promise<{ ms: number; checks: Record<string, string> }> {
  const started = Date.now();
  for (;;) {
    const r = await get("/readyz");
    if (r.status === status) return { ms: Date.now() - started, checks: r.body.checks ?? {} };
    if (Date.now() - started > timeoutMs) {
      throw new Error(`/readyz still ${r.status} (${JSON.stringify(r.body.checks)}) after ${timeoutMs} ms, expected ${status}`);
    }
    await sleep(100);
  }
}

/** How many messages the deployment's stream holds, asked on a connection of our own. */
async function streamMessages(): Promise<number> {
  const nc = await connect({ servers: nats.url, reconnect: false });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(streamName(s.config.natsSubjectPrefix))).state.messages;
  } finally {
    await nc.close();
  }
}

/**
 * Waits (bounded) until the deployment's stream is empty: a work queue drops
 * a message once it is acked, and the worker acks after its commit, so
 * everything sent is stored and nothing can come again.
 */
async function allAcked(timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let left = await streamMessages(); left > 0; left = await streamMessages()) {
    if (Date.now() > deadline) throw new Error(`the stream still holds ${left} messages after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Same sender, same conversation: seq runs 1..N without gaps, and each client_message_id is there once. */
function expectExactlyOnce(messages: Message[], clientMessageIds: string[]): void {
  expect(messages.map((m) => Number(m.seq))).toEqual(Array.from({ length: clientMessageIds.length }, (_, i) => i + 1));
  expect(messages.map((m) => m.clientMessageId).sort()).toEqual([...clientMessageIds].sort());
  expect(new Set(messages.map((m) => m.id)).size).toBe(messages.length);
}

describe("NATS outage", () => {
  test("with NATS stopped SendMessage answers Unavailable, and nothing is lost or doubled once it is back", async () => {
    expect(s.server.ctx.messages.kind).toBe("jetstream");
    expect(s.config.databaseUrl).toBe(db.databaseUrl);
    const [a, b] = [await newUser(), await newUser()];
    const conv = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;

    // 1. Normal operation.
    const before = Array.from({ length: 5 }, (_, i) => `before-${i + 1}`);
    for (const id of before) await a.chat.sendMessage({ conversationId: conv, content: id, clientMessageId: id });
    expectExactlyOnce(await stored(b, conv, 5), before);
    expect((await get("/readyz")).status).toBe(200);

    // 2. NATS goes away.
    await nats.stop();
    const down = await readyzBecomes(503, 5_000);
    expect(down.checks.nats).not.toBe("ok");
    expect((await get("/healthz")).status).toBe(200);

    const failed = ["during-1", "during-2"];
    const sendStarted = Date.now();
    const outcomes = await Promise.all(
      failed.map((id) =>
        a.chat.sendMessage({ conversationId: conv, content: id, clientMessageId: id }).then(
          () => undefined,
          (err: unknown) => ConnectError.from(err),
        ),
      ),
    );
    const unavailableAfterMs = Date.now() - sendStarted;
    for (const err of outcomes) {
      expect(err, "SendMessage must fail while NATS is down").toBeInstanceOf(ConnectError);
      expect(err!.code, `${Code[err!.code]}: ${err!.rawMessage}`).toBe(Code.Unavailable);
      expect(err!.rawMessage).toMatch(/retry with the same client_message_id/);
    }
    expect(unavailableAfterMs).toBeLessThan(8_000);
    // The database is fine: history still reads.
    expect((await allMessages(b, conv)).map((m) => m.clientMessageId)).toEqual(before);
    expect((await get("/readyz")).status).toBe(503);

    // 3. NATS comes back on the same port with the same store.
    const restarted = Date.now();
    await nats.start();
    const up = await readyzBecomes(200, 15_000);
    const recoveryMs = Date.now() - restarted;
    expect(up.checks.nats).toBe("ok");

    const after = Array.from({ length: 5 }, (_, i) => `after-${i + 1}`);
    for (const id of [...failed, ...after]) {
      const res = await a.chat.sendMessage({ conversationId: conv, content: id, clientMessageId: id });
      expect(res.message!.clientMessageId).toBe(id);
    }
    const all = await stored(b, conv, before.length + failed.length + after.length, 15_000);
    expectExactlyOnce(all, [...before, ...failed, ...after]);
    // Order for one sender: the retried ones before the new ones.
    expect(all.slice(0, 5).map((m) => m.clientMessageId)).toEqual(before);
    expect(all.slice(-5).map((m) => m.clientMessageId)).toEqual(after);

    console.info(
      `[nats-outage] /readyz 503 after ${down.ms} ms (checks ${JSON.stringify(down.checks)}); ` +
        `SendMessage: ${Code[outcomes[0]!.code]} "${outcomes[0]!.rawMessage}" after ${unavailableAfterMs} ms; ` +
        `/readyz 200 again ${recoveryMs} ms after the restart began (${up.ms} ms after nats-server accepted connections)`,
    );
  });

  test("messages JetStream acked while the worker was held are stored exactly once after a NATS restart", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const conv = (await a.chat.createConversation({ participantIds: [b.id] })).conversation!.id;
    if (!nats.running) await nats.start(); // the previous test failed with NATS down
    await readyzBecomes(200, 15_000);

    // The worker stores the first message, then waits before acking it and
    // pulling again: what is sent meanwhile is in the stream only.
    let release!: () => void;
    holdAfterCommit = new Promise<void>((r) => (release = r));
    const ids = Array.from({ length: 8 }, (_, i) => `held-${i + 1}`);
    try {
      await a.chat.sendMessage({ conversationId: conv, content: ids[0]!, clientMessageId: ids[0]! });
      await stored(b, conv, 1, undefined, { ackHeld: true });
      for (const id of ids.slice(1)) {
        const res = await a.chat.sendMessage({ conversationId: conv, content: id, clientMessageId: id });
        expect(res.message!.seq).toBe(0n); // durable in JetStream, not stored yet
      }
      expect((await allMessages(b, conv)).length).toBe(1);
      expect(await streamMessages()).toBe(ids.length); // work queue: the unacked first one is still there too

      // Restart NATS while the worker holds the unacked first message and the rest sits in the stream.
      await nats.stop();
      await readyzBecomes(503, 5_000);
      await nats.start();
      expect(await streamMessages()).toBe(ids.length); // kept on disk across the restart
    } finally {
      holdAfterCommit = undefined;
      release();
    }
    const up = await readyzBecomes(200, 15_000);
    expect(up.checks.worker).toBe("running");

    // Everything arrives; were the first message's ack lost, it comes again after ack_wait (2 s) and is found stored.
    const all = await stored(b, conv, ids.length, 15_000);
    expect(all.map((m) => m.clientMessageId)).toEqual(ids);
    await allAcked();
    expectExactlyOnce(await allMessages(b, conv), ids);
    expect(await streamMessages()).toBe(0); // all acked
  });
});
