import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import pg from "pg";
import { processTree } from "./proc.js";

// CPU by party, from /proc (Linux): Chatwire (the server's process tree),
// PostgreSQL, nats-server and the load generators. A sampler reads every
// process's utime+stime at the start, every `everyMs` and at the end, so a
// process that appears during a step (a new pool connection) is counted from
// its birth, and one that exits is counted up to its last sample.

const TICKS_PER_SECOND = 100;

export type Party = "chatwire" | "postgres" | "nats" | "load";
export type PartyCores = Record<Party, number>;

/** utime + stime (ticks) and start time (ticks since boot) of a process, or undefined if it is gone. */
function stat(pid: number): { ticks: number; started: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { ticks: Number(f[11]) + Number(f[12]), started: Number(f[19]) };
  } catch {
    return undefined;
  }
}

function uptimeTicks(): number {
  return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * TICKS_PER_SECOND;
}

/** Where a party's processes are found; asked at every sample. */
export type PidSource = () => number[] | Promise<number[]>;

export class CpuSampler {
  private readonly first = new Map<string, number>();
  private readonly last = new Map<string, number>();
  private t0 = 0;
  private boot0 = 0;
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> = Promise.resolve();
  /** Seconds between start() and stop(). */
  elapsed = 0;

  constructor(
    private readonly sources: Record<Party, PidSource>,
    private readonly everyMs = 500,
  ) {}

  async start(): Promise<void> {
    this.first.clear();
    this.last.clear();
    this.t0 = performance.now();
    this.boot0 = uptimeTicks();
    await this.sample(true);
    this.timer = setInterval(() => {
      this.sampling = this.sampling.then(() => this.sample(false)).catch(() => undefined);
    }, this.everyMs);
  }

  /** Cores busy per party since start() (1.0 = one core), and stops sampling. */
  async stop(): Promise<PartyCores> {
    clearInterval(this.timer);
    await this.sampling;
    await this.sample(false);
    const dt = (this.elapsed = (performance.now() - this.t0) / 1000);
    const out: PartyCores = { chatwire: 0, postgres: 0, nats: 0, load: 0 };
    for (const [key, ticks] of this.last) {
      const party = key.slice(0, key.indexOf(":")) as Party;
      out[party] += (ticks - (this.first.get(key) ?? 0)) / TICKS_PER_SECOND / dt;
    }
    return out;
  }

  private async sample(initial: boolean): Promise<void> {
    for (const party of Object.keys(this.sources) as Party[]) {
      let pids: number[];
      try {
        pids = await this.sources[party]();
      } catch {
        continue;
      }
      for (const pid of new Set(pids)) {
        const s = stat(pid);
        if (!s) continue;
        // pid plus start time: a reused pid is another process.
        const key = `${party}:${pid}:${s.started}`;
        if (!this.first.has(key)) this.first.set(key, initial || s.started < this.boot0 ? s.ticks : 0);
        this.last.set(key, s.ticks);
      }
    }
  }
}

/** The process trees of these pids (a server or load generator with its children). */
export function trees(pids: () => number[]): () => number[] {
  return () => pids().flatMap((p) => processTree(p));
}

/**
 * PostgreSQL's processes that work for the bench database: the client
 * backends (and autovacuum / parallel workers) connected to it, plus the
 * cluster's shared background processes (checkpointer, background writer,
 * WAL writer, autovacuum launcher, ...) and the postmaster. The shared ones
 * also work for every other database of the cluster; backends of other
 * databases are left out.
 */
export class PostgresPids {
  private client: pg.Client | undefined;
  private postmaster: number | undefined;

  constructor(
    private readonly adminUrl: string,
    private readonly dbName: string,
  ) {}

  readonly source: PidSource = async () => {
    if (!this.client) {
      const c = new pg.Client({ connectionString: this.adminUrl });
      c.on("error", () => undefined);
      await c.connect();
      this.client = c;
    }
    const { rows } = await this.client.query<{ pid: number }>(
      `select pid from pg_stat_activity
        where pid <> pg_backend_pid() and (datname = $1 or (datname is null and backend_type <> 'client backend'))`,
      [this.dbName],
    );
    const pids = rows.map((r) => r.pid);
    if (this.postmaster === undefined && pids.length > 0) {
      const s = readFileSync(`/proc/${pids[0]}/stat`, "utf8");
      this.postmaster = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
    }
    return this.postmaster ? [this.postmaster, ...pids] : pids;
  };

  async close(): Promise<void> {
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}

/**
 * The nats-server process listening on the NATS URL's port (found by its
 * listening socket's inode); if that cannot be read, the only nats-server
 * running. Other nats-servers (tests' private ones) are left out.
 */
export function natsPids(natsUrl: string): number[] {
  const port = Number(new URL(natsUrl.split(",")[0]!.replace(/^nats:/, "http:")).port || 4222);
  const candidates = readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "nats-server";
      } catch {
        return false;
      }
    });
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    try {
      for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length > 9 && f[3] === "0A" && parseInt(f[1]!.split(":")[1]!, 16) === port) inodes.add(f[9]!);
      }
    } catch {
      // no such table
    }
  }
  const listening = candidates.filter((pid) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          return m !== null && inodes.has(m[1]!);
        } catch {
          return false;
        }
      });
    } catch {
      return false;
    }
  });
  if (listening.length > 0) return listening;
  return candidates.length === 1 ? candidates : [];
}

/**
 * Messages per server-side core-second: the messages handled over the CPU
 * seconds Chatwire, PostgreSQL and NATS used together in `seconds` (= msg/s
 * over their cores, with both measured over the same interval).
 */
export function perServerCore(messages: number, c: PartyCores, seconds: number): number {
  const cpuSeconds = (c.chatwire + c.postgres + c.nats) * seconds;
  return cpuSeconds > 0 ? messages / cpuSeconds : 0;
}
