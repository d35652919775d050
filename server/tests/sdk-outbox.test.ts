import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  createChatwireClient,
  LocalStorageOutboxStore,
  MemoryTokenStore,
  type ChatwireClient,
  type KeyValueStorage,
  type OutboxOptions,
  type OutboxState,
} from "../../client-sdk/src/node.js";
import { DEV_CODE } from "./helpers/login.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The SDK's outbox against a real server reached through a TCP relay the test
// can cut (the network edge): messages queued while the server is unreachable
// are kept and sent in order, once each, when it is back; refusals and the
// give-up time fail an entry without holding up the rest; a stored outbox is
// picked up by the next client.

const SLOW = { timeout: 20_000, interval: 50 };
const FAST: OutboxOptions = { initialBackoffMs: 50, maxBackoffMs: 200 };

/** A TCP relay to the server that can go down (refuses and drops connections) and come back on the same port. */
class Relay {
  #server: net.Server | undefined;
  readonly #sockets = new Set<net.Socket>();
  port = 0;
  constructor(private readonly target: number) {}
  async up(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }
  async down(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    for (const sock of this.#sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
}

let s: TestServer;
let relay: Relay;
const clients: ChatwireClient[] = [];
beforeAll(async () => {
  s = await startTestServer();
  relay = new Relay(s.port);
  await relay.up();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await relay?.down();
  await s?.stop();
});

let n = 0;
const freshPhone = () => `+14155583${String(n++).padStart(3, "0")}`;

function client(baseUrl: string, opts: { outbox?: OutboxOptions; tokenStore?: MemoryTokenStore } = {}): ChatwireClient {
  const c = createChatwireClient({ baseUrl, ...opts });
  clients.push(c);
  return c;
}

/** A sender reaching the server through the relay, a recipient reaching it directly, and their conversation. */
async function pair(outbox: OutboxOptions = FAST) {
  // Set-up talks to the server directly; only the sender's outbox goes through the relay (same session).
  const tokens = new MemoryTokenStore();
  const direct = client(s.url, { tokenStore: tokens });
  const b = client(s.url);
  const aPhone = freshPhone();
  const bPhone = freshPhone();
  await direct.auth.sendCode(aPhone);
  await direct.auth.verify(aPhone, DEV_CODE);
  await b.auth.sendCode(bPhone);
  await b.auth.verify(bPhone, DEV_CODE);
  const { conversation } = await b.chat.createConversation({ participantPhoneNumbers: [aPhone] });
  const a = client(relay.url, { outbox, tokenStore: tokens });
  return { a, b, tokens, conversationId: conversation!.id };
}

/** The conversation's messages in seq order, as the recipient lists them (stored by the worker after the send's ack). */
async function contentsSeenBy(c: ChatwireClient, conversationId: string): Promise<string[]> {
  const { messages } = await c.chat.listMessages({ conversationId, limit: 50 });
  return [...messages].sort((x, y) => Number(x.seq - y.seq)).map((m) => m.content);
}

describe("outbox", () => {
  test("messages queued while the server is unreachable stay pending, then are sent in order, each once", async () => {
    const { a, b, conversationId } = await pair();
    const seen: Array<[string, OutboxState]> = [];
    a.outbox.on("change", (e) => seen.push([e.content, e.state]));
    await relay.down();
    try {
      const queued: Array<Awaited<ReturnType<ChatwireClient["outbox"]["enqueue"]>>> = [];
      for (const text of ["one", "two", "three"]) queued.push(await a.outbox.enqueue(conversationId, text));
      // Attempts fail and the entries stay queued: observable, not lost.
      await expect.poll(() => queued[0]!.attempts, SLOW).toBeGreaterThanOrEqual(2);
      expect(a.outbox.pending).toBe(3);
      expect(queued.map((e) => e.state)).toEqual(["pending", "pending", "pending"]);
      expect(queued[0]!.lastError).toMatch(/^(Unavailable|Internal|Unknown): /);
      // Nothing behind the first is tried while it waits: order is kept.
      expect(queued[1]!.attempts).toBe(0);
    } finally {
      await relay.up();
    }
    const entries = a.outbox.list().filter((e) => e.conversationId === conversationId);
    const stored = await Promise.all(entries.map((e) => a.outbox.sent(e.clientMessageId)));
    expect(stored.map((m) => m.content)).toEqual(["one", "two", "three"]);
    expect(stored.map((m) => m.clientMessageId)).toEqual(entries.map((e) => e.clientMessageId));
    expect(entries.map((e) => e.state)).toEqual(["sent", "sent", "sent"]);
    expect(a.outbox.pending).toBe(0);
    await expect.poll(() => contentsSeenBy(b, conversationId), SLOW).toEqual(["one", "two", "three"]);
    // Every state was announced, in order, for each entry.
    expect(seen.filter(([c]) => c === "two").map(([, st]) => st)).toEqual(expect.arrayContaining(["pending", "sending", "sent"]));
    expect(seen.filter(([c]) => c === "two").at(-1)).toEqual(["two", "sent"]);
  });

  test("a refused message fails at once with the server's reason; the next one is still sent", async () => {
    const { a, b, conversationId } = await pair();
    const stranger = "00000000-0000-4000-8000-000000000001";
    const bad = await a.outbox.enqueue(stranger, "to nowhere");
    const good = await a.outbox.enqueue(conversationId, "after the refusal");
    await expect(a.outbox.sent(bad.clientMessageId)).rejects.toThrow(/NotFound/);
    expect(bad.state).toBe("failed");
    expect(bad.attempts).toBe(1);
    expect((await a.outbox.sent(good.clientMessageId)).content).toBe("after the refusal");
    await expect.poll(() => contentsSeenBy(b, conversationId), SLOW).toEqual(["after the refusal"]);
    // A failed entry waits for the app: discard removes it.
    await a.outbox.discard(bad.clientMessageId);
    expect(a.outbox.list().some((e) => e.clientMessageId === bad.clientMessageId)).toBe(false);
  });

  test("past the give-up time an unsendable message fails; retry() sends it under the same id", async () => {
    const { a, b, conversationId } = await pair({ ...FAST, giveUpAfterMs: 400 });
    await relay.down();
    let entry;
    try {
      entry = await a.outbox.enqueue(conversationId, "late");
      await expect(a.outbox.sent(entry.clientMessageId)).rejects.toThrow(/given up: not sent within/);
      expect(entry.state).toBe("failed");
      expect(entry.lastError).toMatch(/last error: (Unavailable|Internal|Unknown): /);
    } finally {
      await relay.up();
    }
    await a.outbox.retry(entry.clientMessageId);
    const m = await a.outbox.sent(entry.clientMessageId);
    expect([m.content, m.clientMessageId]).toEqual(["late", entry.clientMessageId]);
    await expect.poll(() => contentsSeenBy(b, conversationId), SLOW).toEqual(["late"]);
  });

  test("a stored outbox is sent by the next client (an app restarted while offline), once", async () => {
    const { a, b, tokens, conversationId } = await pair();
    const storage = memoryStorage();
    const store = new LocalStorageOutboxStore("chatwire.outbox", storage);
    const first = client(relay.url, { outbox: { ...FAST, store }, tokenStore: tokens });
    await relay.down();
    let id: string;
    try {
      const e = await first.outbox.enqueue(conversationId, "written offline");
      id = e.clientMessageId;
      await expect.poll(() => e.attempts, SLOW).toBeGreaterThanOrEqual(1);
      first.close();
      expect(JSON.parse(storage.getItem("chatwire.outbox")!)).toMatchObject([{ clientMessageId: id, content: "written offline", state: "pending" }]);
    } finally {
      await relay.up();
    }
    const second = client(relay.url, { outbox: { ...FAST, store }, tokenStore: tokens });
    await second.outbox.ready();
    expect((await second.outbox.sent(id)).content).toBe("written offline");
    // Sent entries leave the store.
    expect(storage.getItem("chatwire.outbox")).toBeNull();
    await expect.poll(() => contentsSeenBy(b, conversationId), SLOW).toEqual(["written offline"]);
    void a;
  });
});

function memoryStorage(): KeyValueStorage {
  const m = new Map<string, string>();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v), removeItem: (k) => void m.delete(k) };
}
