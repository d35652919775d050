import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BUF, ROOT, bufEnv, jsonDocuments } from "./helpers/buf.js";
import { login, type LoggedIn } from "./helpers/login.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The README's realtime walk-through, the way a developer runs it: `buf curl`
// (gRPC over HTTP/2, schema by reflection) subscribed as one user, plain JSON
// over HTTP (what curl sends) as the other.

interface Doc {
  position?: string;
  [kind: string]: unknown;
}

/** A running `buf curl` Subscribe and the JSON documents it has printed so far. */
class BufSubscriber {
  private out = "";
  readonly child: ChildProcess;
  constructor(url: string, token: string, body: string) {
    this.child = spawn(
      BUF,
      [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-H",
        `authorization: Bearer ${token}`,
        "-d",
        body,
        `${url}/realtime.RealtimeService/Subscribe`,
      ],
      { cwd: ROOT, env: bufEnv(), stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child.stdout!.on("data", (c: Buffer) => (this.out += c.toString()));
  }
  get docs(): Doc[] {
    // The last document may still be arriving: parse only complete ones.
    try {
      return jsonDocuments(this.out) as Doc[];
    } catch {
      return jsonDocuments(this.out.slice(0, this.out.lastIndexOf("\n}") + 2)) as Doc[];
    }
  }
  of(kind: string): Doc[] {
    return this.docs.filter((d) => kind in d);
  }
  async until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; buf curl printed: ${this.out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  kill(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once("exit", () => resolve());
      this.child.kill("SIGKILL");
    });
  }
}

let s: TestServer;
let alice: LoggedIn;
let bob: LoggedIn;
const running: BufSubscriber[] = [];

/** One Connect unary call with a JSON body, as `curl -H 'Content-Type: application/json' -d ...` makes it. */
async function call(who: LoggedIn, path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${s.url}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${who.accessToken}` },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

beforeAll(async () => {
  s = await startTestServer();
  [alice, bob] = (await Promise.all(["+14155550501", "+14155550502"].map((p) => login(s.url, p)))) as [LoggedIn, LoggedIn];
}, 60_000);

afterAll(async () => {
  await Promise.all(running.map((r) => r.kill()));
  await s?.stop();
});

describe("realtime from the command line", () => {
  test("buf curl sees messages, receipts and typing live; restarted from its last position it loses and repeats nothing", async () => {
    const conv = (await call(alice, "chat.ChatService/CreateConversation", { participant_ids: [bob.id] })).conversation as { id: string };
    const sub = new BufSubscriber(s.url, bob.accessToken, "{}");
    running.push(sub);
    await sub.until(() => sub.of("caughtUp").length === 1, "caughtUp");
    expect(Object.keys(sub.docs[0]!)).toContain("ready");

    for (const text of ["one", "two", "three"]) await call(alice, "chat.ChatService/SendMessage", { conversation_id: conv.id, content: text });
    const mine = (await call(bob, "chat.ChatService/SendMessage", { conversation_id: conv.id, content: "from bob" })).message as { id: string };
    await sub.until(() => sub.of("messageCreated").length === 4, "four messages");
    const bobsSeq = sub
      .of("messageCreated")
      .map((d) => (d.messageCreated as { message: { id: string; seq: string } }).message)
      .find((m) => m.id === mine.id)!.seq;
    await call(alice, "chat.ChatService/MarkRead", { conversation_id: conv.id, up_to_seq: bobsSeq });
    await call(alice, "realtime.RealtimeService/SendTyping", { conversation_id: conv.id, active: true });
    await sub.until(() => sub.of("receiptUpdated").length === 1 && sub.of("typing").length >= 1, "receipt and typing");
    expect(sub.of("messageCreated").map((d) => (d.messageCreated as { message: { content: string } }).message.content)).toEqual([
      "one",
      "two",
      "three",
      "from bob",
    ]);
    expect(sub.of("receiptUpdated")[0]!.receiptUpdated).toMatchObject({ userId: alice.id, readByAllSeq: bobsSeq });
    expect(sub.of("typing")[0]!.typing).toMatchObject({ userId: alice.id, active: true });

    // Kill the subscriber; five more arrive while it is away.
    const stored = sub.docs.filter((d) => d.position !== undefined && d.position !== "0");
    const last = BigInt(stored.at(-1)!.position!);
    await sub.kill();
    for (let i = 0; i < 5; i++) await call(alice, "chat.ChatService/SendMessage", { conversation_id: conv.id, content: `away ${i}` });

    const again = new BufSubscriber(s.url, bob.accessToken, JSON.stringify({ since_position: last.toString() }));
    running.push(again);
    await again.until(() => again.of("caughtUp").length === 1, "caughtUp after restart");
    const replayed = again.docs.filter((d) => d.position !== undefined && d.position !== "0");
    expect(replayed.map((d) => BigInt(d.position!))).toEqual([1n, 2n, 3n, 4n, 5n].map((n) => last + n));
    expect(replayed.map((d) => (d.messageCreated as { message: { content: string } }).message.content)).toEqual([
      "away 0",
      "away 1",
      "away 2",
      "away 3",
      "away 4",
    ]);
    expect((again.of("caughtUp")[0]!.caughtUp as { replayed: number }).replayed).toBe(5);
    await again.kill();
  });
});
