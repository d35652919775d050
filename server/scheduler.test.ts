import { afterEach, describe, expect, test, vi } from "vitest";
import pino from "pino";
import { Scheduler } from "./scheduler.js";

/** A job whose runs end when the test says so. */
function gatedJob() {
  const gates: Array<() => void> = [];
  let runs = 0;
  return {
    runs: () => runs,
    finish: () => gates.shift()?.(),
    job: () => {
      runs++;
      return new Promise<void>((resolve) => gates.push(resolve));
    },
  };
}

function quietLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

describe("Scheduler", () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  test("runs each job at its own interval", async () => {
    vi.useFakeTimers();
    const s = new Scheduler(quietLogger().logger);
    let fast = 0;
    let slow = 0;
    s.every("fast", 100, async () => void fast++);
    s.every("slow", 250, async () => void slow++);
    await vi.advanceTimersByTimeAsync(1000);
    expect(fast).toBe(10);
    expect(slow).toBe(4);
    await s.stop();
  });

  test("a job never overlaps itself: ticks while it runs are skipped", async () => {
    vi.useFakeTimers();
    const s = new Scheduler(quietLogger().logger);
    const g = gatedJob();
    s.every("slow job", 100, g.job);
    await vi.advanceTimersByTimeAsync(550);
    expect(g.runs()).toBe(1);
    expect(s.active).toEqual(["slow job"]);
    g.finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.active).toEqual([]);
    await vi.advanceTimersByTimeAsync(100);
    expect(g.runs()).toBe(2);
    g.finish();
    await s.stop();
  });

  test("a failure is logged with the job's name and error, and the next tick runs again", async () => {
    vi.useFakeTimers();
    const { logger, lines } = quietLogger();
    const s = new Scheduler(logger);
    let calls = 0;
    s.every("flaky job", 100, async () => {
      calls++;
      if (calls === 1) throw new Error("database went away");
    });
    await vi.advanceTimersByTimeAsync(100);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ job: "flaky job", err: { message: "database went away" } });
    expect(String(lines[0]!.msg)).toContain("flaky job");
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(2);
    expect(lines).toHaveLength(1);
    await s.stop();
  });

  test("stop() clears the timers and waits for the runs in progress", async () => {
    vi.useFakeTimers();
    const s = new Scheduler(quietLogger().logger);
    const g = gatedJob();
    let other = 0;
    s.every("long job", 100, g.job);
    s.every("other job", 100, async () => void other++);
    await vi.advanceTimersByTimeAsync(100);
    let stopped = false;
    const stopping = s.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(1000);
    expect(stopped).toBe(false);
    expect(g.runs()).toBe(1);
    expect(other).toBe(1);
    g.finish();
    await stopping;
    expect(stopped).toBe(true);
    expect(() => s.every("late job", 100, async () => undefined)).toThrow(/stopped/);
  });

  test("stop() waits at most its limit for a stuck job, and logs which one", async () => {
    vi.useFakeTimers();
    const q = quietLogger();
    const s = new Scheduler(q.logger);
    const g = gatedJob();
    s.every("stuck job", 100, g.job);
    await vi.advanceTimersByTimeAsync(100);
    let stopped = false;
    const stopping = s.stop(500).then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(499);
    expect(stopped).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await stopping;
    expect(stopped).toBe(true);
    expect(JSON.stringify(q.lines)).toContain("stuck job");
    g.finish();
  });

  test("timers do not keep the process alive; names are unique; intervals positive", async () => {
    const made: NodeJS.Timeout[] = [];
    const real = globalThis.setInterval;
    vi.spyOn(globalThis, "setInterval").mockImplementation(((fn: () => void, ms: number) => {
      const t = real(fn, ms);
      made.push(t);
      return t;
    }) as typeof setInterval);
    const s = new Scheduler(quietLogger().logger);
    s.every("job", 60_000, async () => undefined);
    expect(made).toHaveLength(1);
    expect(made[0]!.hasRef()).toBe(false);
    expect(() => s.every("job", 1000, async () => undefined)).toThrow(/already scheduled/);
    expect(() => s.every("zero", 0, async () => undefined)).toThrow(/positive/);
    await s.stop();
  });
});
