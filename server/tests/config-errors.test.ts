import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { type ChatwireProcess, killAll, spawnChatwire } from "./helpers/chatwire-process.js";

// `node dist/server/main.js` as `npm start` runs it, stopped before it reaches
// a database: a configuration error, a port in use. The child gets only the
// variables a test gives it (no DATABASE_URL or NATS_URL), so this is the same
// on either profile and CI runs it once (PROFILE_FREE in vitest.config.ts).
// The server's life once started (signals, graceful stop) is in process.test.ts.

const running: ChatwireProcess[] = [];
function track(p: ChatwireProcess): ChatwireProcess {
  running.push(p);
  return p;
}

afterEach(async () => {
  await killAll(running.splice(0));
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
    const p = track(spawnChatwire(vars));
    const { code, signal } = await p.exited;
    // stderr first: if the exit code is wrong, the failure shows what the process said.
    expect(p.stderr()).toMatch(new RegExp(`(^|\\n)chatwire: configuration error: ${variable}: \\S`));
    expect({ code, signal }).toEqual({ code: 2, signal: null });
    // Nothing was started: no log lines, no listening.
    expect(p.logs).toEqual([]);
  });

  test("every problem in one start: NODE_ENV=production with a bad PORT lists all four", async () => {
    const p = track(spawnChatwire({ ...ok, NODE_ENV: "production", PORT: "abc" }));
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
  // Another program holds the port (the test itself), on the host Chatwire is told to use.
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  try {
    const port = (holder.address() as net.AddressInfo).port;
    const p = track(spawnChatwire({ PORT: String(port), HOST: "127.0.0.1" }));
    const { code } = await p.exited;
    expect(p.stderr()).toBe(
      `chatwire: could not start: 127.0.0.1:${port} is already in use (another Chatwire or another program holds it); set PORT to a free port (PORT=0 picks one) or HOST to another interface\n`,
    );
    expect(code).toBe(1);
  } finally {
    await new Promise((resolve) => holder.close(resolve));
  }
});
