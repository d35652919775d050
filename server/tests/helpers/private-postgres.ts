import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chown, mkdtemp, readdir, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";

/**
 * A PostgreSQL server of a test's own: its own cluster (initdb into a temp
 * dir), its own port, started and killed by the test through the postmaster's
 * own PID. Never the machine's PostgreSQL. Runs as the `postgres` OS user
 * (postgres refuses root), trust auth, fsync off (a killed process, not a
 * crashed machine, is what tests simulate: the page cache survives).
 */
export class PrivatePostgres {
  private child: ChildProcess | undefined;
  private log = "";

  private constructor(
    readonly port: number,
    readonly dataDir: string,
    private readonly bin: string,
    private readonly uid: number,
    private readonly gid: number,
  ) {}

  /** initdb into a fresh temp dir (about a second); start() to run it. */
  static async create(): Promise<PrivatePostgres> {
    const bin = await postgresBinDir();
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "chatwire-pg-"));
    await chown(dataDir, uid, gid);
    execFileSync(path.join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"], {
      uid,
      gid,
      stdio: "pipe",
      env: { ...process.env, LC_ALL: "C" },
    });
    return new PrivatePostgres(await freePort(), dataDir, bin, uid, gid);
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** The postmaster's PID while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Starts the postmaster and waits (bounded) until it answers queries. After a
   * kill -9 the old backends may hold the shared memory for a moment; the start
   * is then retried.
   */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.child) throw new Error("postgres already running");
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const outcome = await this.startOnce(deadline);
      if (outcome === "up") return;
      if (Date.now() > deadline) throw new Error(`private postgres did not start on ${this.port} within ${timeoutMs} ms:\n${this.log}`);
      await sleep(100);
    }
  }

  private async startOnce(deadline: number): Promise<"up" | "exited"> {
    const child = spawn(
      path.join(this.bin, "postgres"),
      [
        "-D",
        this.dataDir,
        "-p",
        String(this.port),
        "-k",
        this.dataDir,
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "max_connections=40",
        "-c",
        "shared_buffers=16MB",
      ],
      { uid: this.uid, gid: this.gid, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } },
    );
    this.child = child;
    const keep = (b: Buffer) => (this.log = (this.log + b.toString()).slice(-8000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    let exited = false;
    child.once("exit", () => (exited = true));
    for (;;) {
      if (exited) {
        if (this.child === child) this.child = undefined;
        return "exited";
      }
      if (await this.answers()) return "up";
      if (Date.now() > deadline) {
        await this.kill();
        return "exited";
      }
      await sleep(50);
    }
  }

  /** True when a fresh connection runs `select 1`. */
  async answers(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("select 1");
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** kill -9 of the postmaster (its own PID only) and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    process.kill(child.pid!, "SIGKILL");
    await exited;
  }

  /** Fast shutdown (SIGINT), bounded; then the data dir is removed. */
  async dispose(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** The last lines the server wrote (for failure messages). */
  get output(): string {
    return this.log;
  }
}

async function postgresBinDir(): Promise<string> {
  const root = "/usr/lib/postgresql";
  const versions = (await readdir(root)).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no PostgreSQL binaries under ${root}`);
  return path.join(root, versions[0]!, "bin");
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
