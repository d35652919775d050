import { randomBytes } from "node:crypto";
import http from "node:http";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, test } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { type ChatwireProcess, killAll, listeningPort, spawnChatwire } from "./helpers/chatwire-process.js";
import { deleteQueueStream } from "./helpers/test-server.js";
import { createTestDatabase, type TestDatabase } from "./helpers/test-database.js";

// The server as a real process, started the way `npm start` starts it:
// `node dist/server/main.js`, configured only through the environment. What it
// does before it reaches a database (configuration errors, a port in use) is in
// config-errors.test.ts, run once.

const running: ChatwireProcess[] = [];
const databases: TestDatabase[] = [];
// Each process gets its own stream names, so parallel runs never share a JetStream stream.
const prefixes: string[] = [];

/** A process on a fresh database (PostgreSQL + NATS when the test environment has them, else PGlite). */
async function startChatwire(extra: Record<string, string> = {}): Promise<ChatwireProcess & { port: number; url: string }> {
  const db = await createTestDatabase();
  databases.push(db);
  const proc = spawnChatwire({
    PORT: "0",
    HOST: "127.0.0.1",
    CHATWIRE_DATA_DIR: db.dataDir,
    LOG_LEVEL: "info",
    DATABASE_URL: db.databaseUrl,
    NATS_URL: process.env.NATS_URL,
    NATS_SUBJECT_PREFIX: newPrefix(),
    ...extra,
  });
  running.push(proc);
  const port = await listeningPort(proc);
  return Object.assign(proc, { port, url: `http://127.0.0.1:${port}` });
}

afterEach(async () => {
  await killAll(running.splice(0));
  for (const db of databases.splice(0)) await db.drop();
  for (const prefix of prefixes.splice(0)) await deleteQueueStream({ natsUrl: process.env.NATS_URL || undefined, natsSubjectPrefix: prefix });
});

function newPrefix(): string {
  const prefix = `p${randomBytes(5).toString("hex")}`;
  prefixes.push(prefix);
  return prefix;
}

describe("node dist/server/main.js", () => {
  test("logs where it listens, serves /healthz, and on SIGTERM ends open streams with Unavailable and exits 0 within 10 s", async () => {
    const p = await startChatwire();
    const listening = p.logs.find((l) => l.msg.startsWith("chatwire listening on "))!;
    expect(listening.msg).toBe(`chatwire listening on http://127.0.0.1:${p.port}`);
    expect(listening.port).toBeGreaterThan(0);
    expect(p.logs.find((l) => l.msg === "chatwire initialised")).toMatchObject({
      profile: process.env.DATABASE_URL ? "production" : "embedded",
      nats: Boolean(process.env.NATS_URL),
    });

    const healthz = await fetch(`${p.url}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toEqual({ status: "ok" });

    // An open health Watch stream over gRPC (HTTP/2).
    const health = createClient(Health, createGrpcTransport({ baseUrl: p.url }));
    const stream = health.watch({ service: "" })[Symbol.asyncIterator]();
    const first = await stream.next();
    expect(first.done).toBe(false);
    expect(first.value?.status).toBe(Status.SERVING);

    const signalled = Date.now();
    expect(p.child.kill("SIGTERM")).toBe(true);
    const rest: Status[] = [];
    const ended = (async () => {
      try {
        for (let r = await stream.next(); !r.done; r = await stream.next()) rest.push(r.value.status);
        return undefined;
      } catch (err) {
        return ConnectError.from(err);
      }
    })();

    const { code, signal } = await p.exited;
    const exitMs = Date.now() - signalled;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(exitMs).toBeLessThan(10_000);

    const err = await ended;
    expect(err?.code).toBe(Code.Unavailable);
    expect(rest.every((s) => s === Status.NOT_SERVING)).toBe(true);

    expect(p.logs.find((l) => l.msg === "stopping")).toMatchObject({ signal: "SIGTERM" });
    expect(p.logs.some((l) => l.msg === "chatwire stopped")).toBe(true);
    expect(p.stderr()).toBe("");
    expect(p.logs.filter((l) => l.msg.startsWith("(not JSON)"))).toEqual([]);
    await expect(fetch(`${p.url}/healthz`)).rejects.toThrow();
  });

  test("SIGINT (Ctrl-C) also stops it with exit code 0", async () => {
    const p = await startChatwire();
    expect((await fetch(`${p.url}/healthz`)).status).toBe(200);
    const signalled = Date.now();
    p.child.kill("SIGINT");
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(10_000);
    expect(p.logs.find((l) => l.msg === "stopping")).toMatchObject({ signal: "SIGINT" });
    expect(p.logs.some((l) => l.msg === "chatwire stopped")).toBe(true);
  });

  test("an idle keep-alive HTTP/1.1 client does not hold up the stop", async () => {
    // The longest grace allowed: had the idle connection to time out, the stop would take all of it.
    const p = await startChatwire({ SHUTDOWN_TIMEOUT_MS: "9000" });
    const agent = new http.Agent({ keepAlive: true });
    try {
      const status = await new Promise<number | undefined>((resolve, reject) => {
        http
          .get(`${p.url}/healthz`, { agent }, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode));
          })
          .on("error", reject);
      });
      expect(status).toBe(200);
      expect(Object.keys(agent.freeSockets)).toHaveLength(1); // the connection stays open, idle
      p.child.kill("SIGTERM");
      expect(await p.exited).toEqual({ code: 0, signal: null });
      expect(p.logs.some((l) => l.msg === "graceful stop took too long; exiting")).toBe(false);
      const stopped = p.logs.find((l) => l.msg === "chatwire stopped") as { ms?: number } | undefined;
      expect(stopped?.ms).toBeLessThan(4_500);
    } finally {
      agent.destroy();
    }
  });
});
