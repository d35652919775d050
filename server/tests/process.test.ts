import { randomBytes } from "node:crypto";
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { deleteQueueStream } from "./helpers/test-server.js";
import { createTestDatabase, type TestDatabase } from "./helpers/test-database.js";

/**
 * The server as a real process, started the way `npm start` starts it:
 * `node dist/server/main.js`, configured only through the environment.
 */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = path.join(ROOT, "dist/server/main.js");

/** Every variable config.ts reads: the child gets only what a test gives it. */
const CONFIG_VARS = [
  "NODE_ENV",
  "PORT",
  "HOST",
  "DATABASE_URL",
  "NATS_URL",
  "CHATWIRE_DATA_DIR",
  "JWT_SECRET",
  "LOG_LEVEL",
  "AUTH_DEV_MODE",
  "TWILIO_ACCOUNT_SID",
  "TWILIO_AUTH_TOKEN",
  "TWILIO_VERIFY_SERVICE_SID",
  "CORS_ORIGINS",
  "CHATWIRE_ROLES",
  "TLS_CERT_FILE",
  "TLS_KEY_FILE",
  "MAX_MESSAGE_BYTES",
  "REQUEST_TIMEOUT_MS",
  "MAX_REQUEST_TIMEOUT_MS",
  "SHUTDOWN_TIMEOUT_MS",
  "NATS_SUBJECT_PREFIX",
];

function childEnv(vars: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CONFIG_VARS) delete env[name];
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  return env;
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface ChatwireProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Parsed stdout lines so far. */
  logs: LogLine[];
  stderr(): string;
  /** Resolves with the port from the "chatwire listening on" line; rejects if the process exits first. */
  listening: Promise<{ port: number; line: LogLine }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChatwireProcess>();
const databases: TestDatabase[] = [];
// Each process gets its own stream names, so parallel runs never share a JetStream stream.
const prefixes: string[] = [];

function spawnChatwire(vars: Record<string, string | undefined>): ChatwireProcess {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} does not exist: run \`npm run build\` before these tests (\`npm test\` builds first)`);
  }
  const child = spawn(process.execPath, [MAIN], { cwd: ROOT, env: childEnv(vars), stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogLine[] = [];
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    // "close", not "exit": only then has everything the process wrote to stdout/stderr arrived.
    child.once("close", (code, signal) => resolve({ code, signal })),
  );
  const listening = new Promise<{ port: number; line: LogLine }>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        reject(new Error(`stdout line is not JSON: ${text}`));
        return;
      }
      logs.push(line);
      if (typeof line.msg === "string" && line.msg.startsWith("chatwire listening on ") && typeof line.port === "number") {
        resolve({ port: line.port, line });
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`chatwire exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`)));
  });
  listening.catch(() => undefined); // observed by the tests that need it
  const proc: ChatwireProcess = { child, logs, stderr: () => stderr, listening, exited };
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

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
  const { port } = await proc.listening;
  return Object.assign(proc, { port, url: `http://127.0.0.1:${port}` });
}

beforeAll(() => {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} does not exist: run \`npm run build\` before these tests (\`npm test\` builds first)`);
  }
});

afterEach(async () => {
  for (const proc of running) {
    proc.child.kill("SIGKILL");
    await proc.exited;
  }
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
    const listening = (await p.listening).line;
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

  describe("a configuration error exits 2 and names the variable on stderr", () => {
    const ok = { PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info" };
    const pgUrl = "postgres://chatwire@127.0.0.1:1/never_connected";
    test.each<[variable: string, vars: Record<string, string>]>([
      ["PORT", { ...ok, PORT: "abc" }],
      ["PORT", { ...ok, PORT: "70000" }],
      ["LOG_LEVEL", { ...ok, LOG_LEVEL: "loud" }],
      ["DATABASE_URL", { ...ok, DATABASE_URL: "mysql://x@127.0.0.1/db" }],
      ["DATABASE_URL", { ...ok, NODE_ENV: "production" }],
      ["JWT_SECRET", { ...ok, NODE_ENV: "production", DATABASE_URL: pgUrl }],
      ["TLS_KEY_FILE", { ...ok, TLS_CERT_FILE: "/etc/hostname" }],
    ])("%s (%o)", async (variable, vars) => {
      const p = spawnChatwire(vars);
      const { code, signal } = await p.exited;
      // stderr first: if the exit code is wrong, the failure shows what the process said.
      expect(p.stderr()).toMatch(new RegExp(`(^|\\n)chatwire: configuration error: ${variable}: \\S`));
      expect({ code, signal }).toEqual({ code: 2, signal: null });
      // Nothing was started: no log lines, no listening.
      expect(p.logs).toEqual([]);
    });

    test("every problem in one start: NODE_ENV=production with a bad PORT lists all four", async () => {
      const p = spawnChatwire({ ...ok, NODE_ENV: "production", PORT: "abc" });
      const { code } = await p.exited;
      const lines = p.stderr().trim().split("\n");
      expect(lines[0]).toBe("chatwire: 4 configuration errors:");
      expect(lines.slice(1).map((l) => /^chatwire: configuration error: (\w+):/.exec(l)?.[1])).toEqual([
        "PORT",
        "DATABASE_URL",
        "JWT_SECRET",
        "TWILIO_ACCOUNT_SID",
      ]);
      expect(code).toBe(2);
    });
  });

  test("a port already in use says which setting to change, without a stack trace", async () => {
    const first = spawnChatwire({ PORT: "0", HOST: "127.0.0.1" });
    const { port } = await first.listening;
    const second = spawnChatwire({ PORT: String(port), HOST: "127.0.0.1" });
    const { code } = await second.exited;
    expect(second.stderr()).toBe(
      `chatwire: could not start: 127.0.0.1:${port} is already in use (another Chatwire or another program holds it); set PORT to a free port (PORT=0 picks one) or HOST to another interface\n`,
    );
    expect(code).toBe(1);
    first.child.kill("SIGTERM");
    await first.exited;
  });
});
