import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { sleep } from "./stats.js";
import { stopChild } from "./proc.js";

export interface ServerProcessOptions {
  env: Record<string, string | undefined>;
  port: number;
  /** Writes a V8 CPU profile per process into this directory (node --cpu-prof). */
  cpuProfDir?: string;
}

/** `node dist/server/main.js` as its own process, as in production. */
export class ServerProcess {
  private readonly stderr: string[] = [];
  private exitInfo: string | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => {
      this.stderr.push(s);
      if (this.stderr.length > 200) this.stderr.shift();
      if (process.env.BENCH_SERVER_LOG) process.stderr.write(s);
    });
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => {
      if (process.env.BENCH_SERVER_LOG) process.stdout.write(s);
    });
    child.on("exit", (code, signal) => (this.exitInfo = `exit ${code ?? signal}`));
  }

  static async start(opts: ServerProcessOptions): Promise<ServerProcess> {
    const main = fileURLToPath(new URL("../../server/main.js", import.meta.url));
    const execArgv: string[] = [];
    if (opts.cpuProfDir) {
      mkdirSync(opts.cpuProfDir, { recursive: true });
      execArgv.push("--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`);
    }
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    for (const [k, v] of Object.entries(opts.env)) if (v !== undefined) env[k] = v;
    env.PORT = String(opts.port);
    env.HOST ??= "127.0.0.1";
    const child = spawn(process.execPath, [...execArgv, main], { env, stdio: ["ignore", "pipe", "pipe"] });
    const server = new ServerProcess(child, `http://127.0.0.1:${opts.port}`);
    // An embedded server on a fresh directory runs initdb first: minutes on a machine other work keeps busy.
    await server.waitReady(180_000);
    return server;
  }

  get pid(): number {
    return this.child.pid!;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exitInfo) throw new Error(`server ${this.exitInfo} before it was ready:\n${this.stderr.join("")}`);
      try {
        const res = await fetch(`${this.url}/readyz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`server not ready after ${timeoutMs} ms:\n${this.stderr.join("")}`);
  }

  /** Recent stderr (warnings and errors at LOG_LEVEL=warn). */
  get log(): string {
    return this.stderr.join("");
  }

  /** SIGTERM (graceful stop; a --cpu-prof profile is written on exit), SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exitInfo) return;
    await stopChild(this.child, graceMs);
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as import("node:net").AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
