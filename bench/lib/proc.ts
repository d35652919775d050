import type { ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

// Server CPU and memory from /proc (Linux): the process and its descendants
// (cluster workers), so a multi-process server is measured whole.

const TICKS_PER_SECOND = 100;

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...children(all[i]!));
  return all;
}

/** CPU seconds (user + system) used so far by the tree. */
function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // gone
    }
  }
  return ticks / TICKS_PER_SECOND;
}

/** CPU seconds (user + system) used so far by the main threads of the tree (the thread a V8 CPU profile samples). */
export function mainThreadCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/task/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return ticks / TICKS_PER_SECOND;
}

/** Resident set size of the tree, bytes. */
export function rssBytes(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) kb += Number(m[1]);
    } catch {
      // gone
    }
  }
  return kb * 1024;
}

/** CPU use between start() and stop(), as cores busy (1.0 = one core). */
export class CpuMeter {
  private t0 = 0;
  private c0 = 0;
  constructor(private readonly pid: number) {}
  start(): void {
    this.t0 = performance.now();
    this.c0 = cpuSeconds(this.pid);
  }
  read(): number {
    const dt = (performance.now() - this.t0) / 1000;
    return dt > 0 ? (cpuSeconds(this.pid) - this.c0) / dt : 0;
  }
}

/** SIGTERM, then SIGKILL if the process is still there after `graceMs`; resolves once it has exited. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await gone;
  clearTimeout(t);
}
