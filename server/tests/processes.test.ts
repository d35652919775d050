import { randomBytes } from "node:crypto";
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { openDatabase, type DatabaseHandle } from "../db/database.js";
import { spawnChatwire, killAll, insertDevices, type ChatwireProcess, type Device, type LogLine } from "./helpers/chatwire-process.js";
import { insertConversation } from "./helpers/fixtures.js";
import { Subscription } from "./helpers/realtime.js";
import { createTestDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from "./helpers/test-database.js";
import { deleteQueueStream, TEST_JWT_SECRET } from "./helpers/test-server.js";

// CHATWIRE_PROCESSES=2: `node dist/server/main.js` supervises two server
// processes sharing the port (server/cluster.ts). Always on the machine's
// PostgreSQL and NATS: the embedded profile refuses more than one process.

const NATS_URL = process.env.NATS_URL || "nats://127.0.0.1:4222";

const prefix = `t${randomBytes(6).toString("hex")}`;
let testDb: TestDatabase;
let database: DatabaseHandle | undefined;
const procs: ChatwireProcess[] = [];
const managers: Http2SessionManager[] = [];
const open: Subscription[] = [];

beforeAll(async () => {
  testDb = await createTestDatabase(pino({ level: "silent" }), { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
});

afterAll(async () => {
  await Promise.all(open.map((s) => s.close()));
  for (const m of managers) m.abort();
  await killAll(procs);
  await database?.close();
  await deleteQueueStream({ natsUrl: NATS_URL, natsSubjectPrefix: prefix });
  await testDb?.drop();
});

function spawn(vars: Record<string, string | undefined>): ChatwireProcess {
  const p = spawnChatwire({
    PORT: "0",
    HOST: "127.0.0.1",
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: "info",
    RATE_LIMITS: "off",
    SHUTDOWN_TIMEOUT_MS: "2000",
    ...vars,
  });
  procs.push(p);
  return p;
}

const listeningLines = (p: ChatwireProcess) => p.logs.filter((l) => l.msg.startsWith("chatwire listening on "));

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One HTTP/2 connection, and which server process took it (the `process` label of its /metrics). */
async function connection(url: string): Promise<{ manager: Http2SessionManager; proc: string }> {
  const manager = new Http2SessionManager(url);
  managers.push(manager);
  const stream = await manager.request("GET", "/metrics", {}, {});
  stream.end();
  const body = await new Promise<string>((resolve, reject) => {
    let text = "";
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => (text += c));
    stream.on("end", () => resolve(text));
    stream.on("error", reject);
  });
  const proc = /process="(\d+)"/.exec(body)?.[1];
  if (proc === undefined) throw new Error(`no process label in /metrics: ${body.slice(0, 200)}`);
  return { manager, proc };
}

function transport(url: string, manager: Http2SessionManager, token: string): Transport {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createGrpcTransport({ baseUrl: url, sessionManager: manager, interceptors: [bearer] });
}

describe("CHATWIRE_PROCESSES=2", () => {
  test("two processes serve one port; messages cross between them; a killed one is replaced; SIGTERM stops all with exit 0", async () => {
    const p = spawn({ DATABASE_URL: testDb.databaseUrl, NATS_URL, NATS_SUBJECT_PREFIX: prefix, CHATWIRE_DATA_DIR: testDb.dataDir, CHATWIRE_PROCESSES: "2" });
    const first = await until("two processes listening", () => (listeningLines(p).length >= 2 ? listeningLines(p) : undefined));
    expect(new Set(first.map((l) => l.pid)).size).toBe(2);
    expect(first.map((l) => l.proc).sort()).toEqual([0, 1]);
    expect(new Set(first.map((l) => l.port)).size).toBe(1);
    const url = `http://127.0.0.1:${first[0]!.port as number}`;
    // The supervisor says who it is; every server line says which process wrote it.
    expect(p.logs.find((l) => l.msg === "starting server processes sharing the port")).toMatchObject({ supervisor: true, processes: 2 });
    expect(
      p.logs
        .filter((l) => l.msg === "chatwire initialised")
        .map((l) => l.proc)
        .sort(),
    ).toEqual([0, 1]);

    // Connections until each process holds at least four (the primary hands them out in turn).
    const byProc = new Map<string, Http2SessionManager[]>([
      ["0", []],
      ["1", []],
    ]);
    for (let i = 0; i < 40 && [...byProc.values()].some((l) => l.length < 4); i++) {
      const c = await connection(url);
      byProc.get(c.proc)!.push(c.manager);
    }
    const [on0, on1] = [byProc.get("0")!, byProc.get("1")!];
    expect(on0.length).toBeGreaterThanOrEqual(4);
    expect(on1.length).toBeGreaterThanOrEqual(4);

    database = await openDatabase({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir, logger: pino({ level: "silent" }) });
    const devices = await insertDevices(database.db, 4, 14_160_000_000 + Math.floor(Math.random() * 1000) * 1000);
    const pairs: Array<[Device, Device]> = [
      [devices[0]!, devices[1]!],
      [devices[2]!, devices[3]!],
    ];
    const conversations = await Promise.all(pairs.map(([x, y]) => insertConversation(database!.db, [x.userId, y.userId], { isGroup: false })));
    // Recipient's stream on one process, sender's call on the other, both ways.
    const plan = pairs.map(([x, y], i) => ({
      to: y,
      from: x,
      streamOn: i === 0 ? on1[0]! : on0[0]!,
      sendOn: i === 0 ? on0[1]! : on1[1]!,
      conversationId: conversations[i]!,
    }));
    const streams = plan.map((q) => {
      const s = new Subscription(transport(url, q.streamOn, q.to.token));
      open.push(s);
      return s;
    });
    await Promise.all(streams.map((s) => s.untilKind("caughtUp", 1, 30_000)));
    for (const [i, q] of plan.entries()) {
      await createClient(ChatService, transport(url, q.sendOn, q.from.token)).sendMessage({
        conversationId: q.conversationId,
        content: `across ${i}`,
        clientMessageId: `across-${i}`,
      });
    }
    for (const [i, s] of streams.entries()) {
      await s.until((x) => x.of("messageCreated").some((m) => m.message!.content === `across ${i}`), 30_000, `across ${i}`);
    }
    await Promise.all(open.splice(0).map((s) => s.close()));

    // kill -9 of process 0: the supervisor starts another in its place, on the same port.
    const victim = first.find((l) => l.proc === 0)!.pid as number;
    process.kill(victim, "SIGKILL");
    const died = await p.waitLog((l) => l.msg === "a server process died; starting another", 30_000, "the supervisor noticing");
    expect(died).toMatchObject({ proc: 0, childPid: victim, signal: "SIGKILL" });
    const replacement = await p.waitLog(
      (l) => l.msg.startsWith("chatwire listening on ") && l.proc === 0 && l.pid !== victim,
      60_000,
      "a replacement process 0",
    );
    expect(replacement.port).toBe(first[0]!.port);
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) seen.add((await connection(url)).proc);
    expect([...seen].sort()).toEqual(["0", "1"]);

    p.child.kill("SIGTERM");
    const { code } = await p.exited;
    expect(code).toBe(0);
    const stopped = p.logs.filter((l) => l.msg === "chatwire stopped").map((l) => l.pid);
    expect(stopped.sort()).toEqual([replacement.pid, first.find((l) => l.proc === 1)!.pid].sort());
    expect(p.logs.find((l) => l.msg === "all server processes stopped")).toMatchObject({ exitCode: 0 });
  }, 180_000);

  test("processes that keep exiting before they listen: the supervisor gives up with exit 1", async () => {
    const missing = new URL(POSTGRES_ADMIN_URL);
    missing.pathname = `/chatwire_missing_${randomBytes(4).toString("hex")}`;
    const p = spawn({
      DATABASE_URL: missing.toString(),
      NATS_URL,
      NATS_SUBJECT_PREFIX: prefix,
      CHATWIRE_DATA_DIR: testDb.dataDir,
      CHATWIRE_PROCESSES: "2",
      STARTUP_WAIT_SECONDS: "0",
    });
    const { code } = await p.exited;
    expect(code).toBe(1);
    const gaveUp = p.logs.find((l: LogLine) => l.msg.startsWith("a server process keeps exiting before it listens"));
    expect(gaveUp).toMatchObject({ attempts: 3 });
    expect(p.stderr()).toContain("does not exist");
  }, 120_000);

  test("the embedded profile refuses more than one process, naming the setting", async () => {
    const p = spawn({ CHATWIRE_PROCESSES: "2", CHATWIRE_DATA_DIR: testDb.dataDir });
    const { code } = await p.exited;
    expect(code).toBe(2);
    expect(p.stderr()).toContain("CHATWIRE_PROCESSES");
    expect(p.stderr()).toContain("need DATABASE_URL and NATS_URL");
    expect(listeningLines(p)).toEqual([]);
  });
});
