import { spawn, type ChildProcessByStdio } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import { systemClock } from "../../clock.js";
import { TokenService } from "../../auth/tokens.js";
import { TEST_JWT_SECRET } from "./test-server.js";

// `node dist/server/main.js` as its own process (several of them on one
// database and NATS prefix), and devices made straight in its database.

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const MAIN = path.join(ROOT, "dist/server/main.js");

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface ChatwireProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Parsed stdout lines so far (every process of a cluster writes here). */
  logs: LogLine[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line that `match` accepts; rejects if the process exits first or after `timeoutMs`. */
  waitLog(match: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
}

/** Spawns the server with only `vars` for configuration (no variable of the test's own environment that config.ts reads). */
export function spawnChatwire(vars: Record<string, string | undefined>): ChatwireProcess {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} does not exist: run \`npm run build\` before these tests (\`npm test\` builds first)`);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [MAIN], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  let closed = false;
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  createInterface({ input: child.stdout }).on("line", (text) => {
    try {
      logs.push(JSON.parse(text) as LogLine);
    } catch {
      logs.push({ level: 0, msg: `(not JSON) ${text}` });
    }
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, signal) => {
      closed = true;
      for (const w of waiters) w();
      resolve({ code, signal });
    }),
  );
  const waitLog = (match: (l: LogLine) => boolean, timeoutMs = 30_000, what = "a log line"): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${stderr}`)), timeoutMs);
      const check = () => {
        const hit = logs.find(match);
        if (hit) finish(hit);
        else if (closed) finish(new Error(`the process exited before ${what}; stderr: ${stderr}`));
      };
      function finish(r: LogLine | Error) {
        clearTimeout(timer);
        waiters.delete(check);
        if (r instanceof Error) reject(r);
        else resolve(r);
      }
      waiters.add(check);
      check();
    });
  return { child, logs, stderr: () => stderr, exited, waitLog };
}

/** The port from the "chatwire listening on" line (PORT=0 picks one); rejects if the process exits first. */
export async function listeningPort(proc: ChatwireProcess, timeoutMs = 60_000): Promise<number> {
  const line = await proc.waitLog(
    (l) => typeof l.msg === "string" && l.msg.startsWith("chatwire listening on ") && typeof l.port === "number",
    timeoutMs,
    "listening",
  );
  return line.port as number;
}

/** SIGKILLs what is still running (each process started by a test, by its own pid). */
export async function killAll(procs: Iterable<ChatwireProcess>): Promise<void> {
  await Promise.all(
    [...procs].map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill("SIGKILL");
      await p.exited;
    }),
  );
}

export interface Device {
  userId: string;
  token: string;
}

/** `n` users with one signed-in session each (written straight to the database, tokens signed with TEST_JWT_SECRET). */
export async function insertDevices(db: Kysely<Database>, n: number, phoneBase: number): Promise<Device[]> {
  const users = await db
    .insertInto("users")
    .values(Array.from({ length: n }, (_, i) => ({ phone_number: `+${phoneBase + i}` })))
    .returning("id")
    .execute();
  const sessions = await db
    .insertInto("user_devices")
    .values(
      users.map((u, i) => ({
        user_id: u.id,
        device_id: `device-${i}`,
        device_name: "test",
        device_type: "test",
        refresh_token_hash: `unused-${u.id}`,
        refresh_expires_at: new Date(Date.now() + 86_400_000),
      })),
    )
    .returning(["id", "user_id"])
    .execute();
  const tokens = new TokenService(TEST_JWT_SECRET, { accessTtlSeconds: 3600, refreshTtlSeconds: 86_400 }, systemClock);
  return Promise.all(sessions.map(async (s) => ({ userId: s.user_id, token: await tokens.sign("access", tokens.claimsFor("access", s.user_id, s.id)) })));
}
