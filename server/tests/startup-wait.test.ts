import { spawn, type ChildProcessByStdio } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { freePort, PrivatePostgres } from "./helpers/private-postgres.js";
import { createTestDatabase, POSTGRES_ADMIN_URL } from "./helpers/test-database.js";
import { deleteQueueStream } from "./helpers/test-server.js";

// Issue 13, finding 1: at start, an unreachable database or NATS is retried
// with backoff and one clear log line per attempt for STARTUP_WAIT_SECONDS,
// then the process exits with a clear message (not a stack trace). The server
// runs as a real process (`node dist/server/main.js`, as `npm start` runs it)
// against a private PostgreSQL that the test starts late, or against ports
// where nothing listens.

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = path.join(ROOT, "dist/server/main.js");

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface Proc {
  child: ChildProcessByStdio<null, Readable, Readable>;
  logs: LogLine[];
  stderr(): string;
  exited: Promise<{ code: number | null; ms: number }>;
}

const running = new Set<Proc>();
const cleanups: Array<() => Promise<unknown>> = [];

function spawnChatwire(vars: Record<string, string | undefined>): Proc {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The child gets only the configuration the test gives it.
  for (const name of Object.keys(env)) if (/^(DATABASE_URL|NATS_URL|STARTUP_WAIT_SECONDS|PORT|HOST|LOG_LEVEL|NODE_ENV)$/.test(name)) delete env[name];
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  const started = Date.now();
  const child = spawn(process.execPath, [MAIN], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogLine[] = [];
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  createInterface({ input: child.stdout }).on("line", (text) => {
    try {
      logs.push(JSON.parse(text) as LogLine);
    } catch {
      logs.push({ level: 0, msg: `(not JSON) ${text}` });
    }
  });
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) => child.once("close", (code) => resolve({ code, ms: Date.now() - started })));
  const proc: Proc = { child, logs, stderr: () => stderr, exited };
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

async function until<T>(what: string, check: () => T | undefined | false, timeoutMs: number, proc?: Proc): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not within ${timeoutMs} ms${proc ? `\nlogs:\n${proc.logs.map((l) => JSON.stringify(l)).join("\n")}\nstderr:\n${proc.stderr()}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function baseVars(dataDir: string, prefix: string): Record<string, string> {
  return {
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "info",
    CHATWIRE_DATA_DIR: dataDir,
    JWT_SECRET: "startup-wait-secret-startup-wait-secret-0123",
    NATS_SUBJECT_PREFIX: prefix,
  };
}

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} does not exist: run \`npm run build\` before these tests (\`npm test\` builds first)`);
});

afterEach(async () => {
  for (const proc of running) {
    proc.child.kill("SIGKILL");
    await proc.exited;
  }
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const retryLines = (proc: Proc, dependency: string) => proc.logs.filter((l) => l.msg === `${dependency} unreachable; retrying`);

describe("start-up wait", () => {
  test("a database that is not up yet is waited for, one log line per attempt, and the server comes up once it is", async () => {
    const pgp = await PrivatePostgres.create();
    cleanups.push(() => pgp.dispose());
    const db = await createTestDatabase(undefined, { kind: "pglite" }); // only for its data dir
    cleanups.push(() => db.drop());
    const prefix = `w${randomBytes(5).toString("hex")}`;
    cleanups.push(() => deleteQueueStream({ natsUrl: process.env.NATS_URL || undefined, natsSubjectPrefix: prefix }));
    const proc = spawnChatwire({
      ...baseVars(db.dataDir, prefix),
      DATABASE_URL: pgp.url,
      NATS_URL: process.env.NATS_URL || undefined,
      STARTUP_WAIT_SECONDS: "60",
    });

    // Two attempts failed (backoff between them), then PostgreSQL starts.
    await until("two retry lines", () => retryLines(proc, "database").length >= 2, 15_000, proc);
    const beforeStart = retryLines(proc, "database").length;
    await pgp.start();
    const listening = await until("listening", () => proc.logs.find((l) => l.msg.startsWith("chatwire listening on ")), 20_000, proc);

    const lines = retryLines(proc, "database");
    lines.forEach((l, i) => {
      expect(l).toMatchObject({ dependency: "database", target: `127.0.0.1:${pgp.port}`, attempt: i + 1 });
      // Refused while nothing listens; "starting up" (57P03, retried too) while PostgreSQL starts.
      expect(l.error).toMatch(i < beforeStart ? /ECONNREFUSED/ : /ECONNREFUSED|the database system is starting up/);
      expect(l.retryInMs as number).toBeGreaterThan(0);
      expect(JSON.stringify(l)).not.toMatch(/\n\s+at /); // no stack trace
    });
    // Backoff: each wait at least as long as the one before.
    const waits = lines.map((l) => l.retryInMs as number);
    expect(waits).toEqual([...waits].sort((a, b) => a - b));
    expect(proc.logs.find((l) => l.msg === "database reachable")).toMatchObject({ attempts: lines.length + 1 });

    const res = await fetch(`http://127.0.0.1:${listening.port as number}/readyz`);
    expect(res.status).toBe(200);
    console.info(`[startup-wait] ${lines.length} retry line(s) (waits ${waits.join(", ")} ms), then listening once PostgreSQL was up`);
  }, 60_000);

  test("a database that never comes up: the process gives up after STARTUP_WAIT_SECONDS with a clear message, no stack trace", async () => {
    const port = await freePort(); // nothing listens there
    const db = await createTestDatabase(undefined, { kind: "pglite" });
    cleanups.push(() => db.drop());
    const proc = spawnChatwire({
      ...baseVars(db.dataDir, `w${randomBytes(5).toString("hex")}`),
      DATABASE_URL: `postgres://postgres:secret-password@127.0.0.1:${port}/chatwire`,
      STARTUP_WAIT_SECONDS: "2",
    });
    const { code, ms } = await proc.exited;
    expect(code).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(2_000);
    expect(ms).toBeLessThan(15_000);
    const stderr = proc.stderr().trim();
    expect(stderr).toMatch(
      new RegExp(
        `^chatwire: could not start: database at 127\\.0\\.0\\.1:${port} unreachable: gave up after \\d+ attempt\\(s\\) \\(STARTUP_WAIT_SECONDS=2\\); last error: .*ECONNREFUSED`,
      ),
    );
    expect(stderr.split("\n")).toHaveLength(1);
    expect(stderr + JSON.stringify(proc.logs)).not.toContain("secret-password");
    expect(retryLines(proc, "database").length).toBeGreaterThanOrEqual(2);
    expect(proc.logs.some((l) => l.msg.startsWith("chatwire listening on"))).toBe(false);
    console.info(`[startup-wait] never up: exit 1 after ${ms} ms: ${stderr}`);
  }, 30_000);

  test("NATS that never comes up: the same, naming NATS", async () => {
    const port = await freePort();
    const db = await createTestDatabase(undefined, { kind: "postgres", adminUrl: POSTGRES_ADMIN_URL });
    cleanups.push(() => db.drop());
    const proc = spawnChatwire({
      ...baseVars(db.dataDir, `w${randomBytes(5).toString("hex")}`),
      DATABASE_URL: db.databaseUrl,
      NATS_URL: `nats://127.0.0.1:${port}`,
      STARTUP_WAIT_SECONDS: "2",
    });
    const { code } = await proc.exited;
    expect(code).toBe(1);
    expect(proc.stderr().trim()).toMatch(
      new RegExp(
        `^chatwire: could not start: NATS at 127\\.0\\.0\\.1:${port} unreachable: gave up after \\d+ attempt\\(s\\) \\(STARTUP_WAIT_SECONDS=2\\); last error: `,
      ),
    );
    expect(retryLines(proc, "NATS").length).toBeGreaterThanOrEqual(2);
  }, 30_000);
});
