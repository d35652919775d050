import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CpuSampler, PostgresPids, natsPids, trees } from "./cpu.js";
import type { Device } from "./fixtures.js";
import { LoadProcess } from "./ipc.js";
import { ServerProcess, freePort } from "./server-proc.js";
import { table } from "./stats.js";

export type Mode = "quick" | "full";

export interface Target {
  what: string;
  target: string;
  value: string;
  met: boolean | undefined;
}

export interface ScenarioResult {
  id: number;
  name: string;
  title: string;
  headers: string[];
  rows: Array<Array<string | number>>;
  targets: Target[];
  notes: string[];
  data: unknown;
}

/** Everything a scenario needs: the mode, the run's database and NATS names, how to start servers and load processes. */
export class BenchContext {
  readonly runId = new Date().toISOString().replace(/[:.]/g, "-");
  readonly prefix = `bench${randomBytes(4).toString("hex")}`;
  readonly jwtSecret = randomBytes(32).toString("hex");
  readonly resultsDir: string;
  readonly dataDir = path.join(os.tmpdir(), `chatwire-bench-${randomBytes(4).toString("hex")}`);
  private readonly servers = new Set<ServerProcess>();
  private readonly loads = new Set<LoadProcess>();
  private readonly pgPids: PostgresPids;
  /** Subscribers acknowledge with MarkDelivered as the SDK does (--no-mark-delivered: off). */
  markDelivered = true;
  /** Scenario 9's rate (--budget-rate=N; default 500, quick 200). */
  budgetRate: number | undefined;
  private nats: number[] | undefined;

  constructor(
    readonly mode: Mode,
    readonly databaseUrl: string,
    readonly natsUrl: string,
    /** Extra server environment for every run (BENCH_SERVER_ENV). */
    readonly serverEnv: Record<string, string>,
    readonly cpuProf: boolean,
  ) {
    this.pgPids = new PostgresPids(databaseUrl, decodeURIComponent(new URL(databaseUrl).pathname.slice(1)));
    this.resultsDir = fileURLToPath(new URL(`../../../bench/results/${this.runId}/`, import.meta.url));
    mkdirSync(this.resultsDir, { recursive: true });
  }

  get quick(): boolean {
    return this.mode === "quick";
  }

  /** A production-profile server process on a free port (embedded: no DATABASE_URL / NATS_URL). */
  async startServer(
    env: Record<string, string> = {},
    profile: "production" | "embedded" = "production",
    /** Writes its V8 CPU profiles here (default: results/prof with --cpu-prof, else none). */
    cpuProfDir?: string,
  ): Promise<ServerProcess> {
    const port = await freePort();
    const server = await ServerProcess.start({
      port,
      env: {
        NODE_ENV: "development",
        AUTH_DEV_MODE: "true",
        JWT_SECRET: this.jwtSecret,
        LOG_LEVEL: "warn",
        OTP_SENDS_PER_IP_PER_HOUR: "1000000",
        // A few users send thousands of messages a second: capacity, not per-user limits, is measured.
        RATE_LIMITS: "off",
        NATS_SUBJECT_PREFIX: this.prefix,
        CHATWIRE_DATA_DIR: this.dataDir,
        ...(profile === "production" ? { DATABASE_URL: this.databaseUrl, NATS_URL: this.natsUrl } : {}),
        ...this.serverEnv,
        ...env,
      },
      cpuProfDir: cpuProfDir ?? (this.cpuProf ? path.join(this.resultsDir, "prof") : undefined),
    });
    this.servers.add(server);
    return server;
  }

  async stopServer(s: ServerProcess, graceMs?: number): Promise<void> {
    await s.stop(graceMs);
    this.servers.delete(s);
  }

  load(script: string, name?: string, defaults?: Record<string, unknown>): LoadProcess {
    const p = LoadProcess.start(script, name, [], defaults);
    this.loads.add(p);
    return p;
  }

  async stopLoad(...ps: LoadProcess[]): Promise<void> {
    await Promise.all(ps.map((p) => p.stop()));
    for (const p of ps) this.loads.delete(p);
  }

  /** Spreads devices over `n` subscriber processes. */
  subscribers(devices: Device[], n: number): Array<{ proc: LoadProcess; devices: Device[] }> {
    return Array.from({ length: n }, (_, i) => ({
      proc: this.load("subscriber", `subscriber-${i}`, { autoDeliver: this.markDelivered }),
      devices: devices.filter((_, j) => j % n === i),
    }));
  }

  /**
   * CPU by party while it runs: Chatwire = every running server's process
   * tree; PostgreSQL = the bench database's backends plus the cluster's
   * shared background processes (PostgresPids); NATS = the nats-server on the
   * bench's NATS port; load = the load generators and this orchestrator.
   */
  cpuSampler(): CpuSampler {
    return new CpuSampler({
      chatwire: trees(() => [...this.servers].map((s) => s.pid)),
      postgres: this.pgPids.source,
      nats: () => (this.nats ??= natsPids(this.natsUrl)),
      load: () => [process.pid, ...trees(() => [...this.loads].map((p) => p.pid))()],
    });
  }

  async cleanup(): Promise<void> {
    await Promise.all([...this.loads].map((p) => p.stop().catch(() => undefined)));
    await Promise.all([...this.servers].map((s) => s.stop().catch(() => undefined)));
    await this.pgPids.close();
  }

  /** Prints the scenario's table and writes <id>-<name>.json and .md. */
  report(r: ScenarioResult): string {
    const t = table(r.headers, r.rows);
    const targets = table(
      ["target", "wanted", "got", "met"],
      r.targets.map((x) => [x.what, x.target, x.value, x.met === undefined ? "n/a" : x.met ? "yes" : "NO"]),
    );
    console.log(
      `\n== ${r.id}. ${r.title} (${this.mode}) ==\n${t.text}\n${r.targets.length ? `\n${targets.text}\n` : ""}${r.notes.map((n) => `  · ${n}`).join("\n")}`,
    );
    const md = `### ${r.id}. ${r.title}\n\n${t.markdown}\n${r.targets.length ? `\n${targets.markdown}\n` : ""}${r.notes.length ? `\n${r.notes.map((n) => `- ${n}`).join("\n")}\n` : ""}`;
    writeFileSync(path.join(this.resultsDir, `${r.id}-${r.name}.json`), JSON.stringify({ mode: this.mode, runId: this.runId, ...r }, null, 2));
    writeFileSync(path.join(this.resultsDir, `${r.id}-${r.name}.md`), md);
    return md;
  }
}

export const mib = (bytes: number) => bytes / 1024 / 1024;
export const kib = (bytes: number) => bytes / 1024;
