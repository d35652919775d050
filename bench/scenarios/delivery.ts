import { perServerCore, type PartyCores } from "../lib/cpu.js";
import { apiPairs, DbFixtures, type Pair } from "../lib/fixtures.js";
import { mainThreadCpuSeconds, rssBytes } from "../lib/proc.js";
import type { ServerProcess } from "../lib/server-proc.js";
import { fmt, sleep, summarize, type Summary } from "../lib/stats.js";
import { ACK_P50_MS, ACK_RATE, DELIVERY_P99_MS, DELIVERY_TARGETS, EMBEDDED_TARGET, PER_SERVER_CORE_SECOND, thousands } from "../lib/targets.js";
import { mib, type BenchContext, type ScenarioResult, type Target } from "../lib/context.js";

export interface Step {
  devices: number;
  rate: number;
  achieved: number;
  sent: number;
  ok: number;
  failed: number;
  received: number;
  lost: number;
  latency: Summary;
  ack: Summary;
  /** Cores busy during the sending, by party. */
  cores: PartyCores;
  /** msg/s ÷ (Chatwire + PostgreSQL + NATS cores). */
  perServerCore: number;
  /** MarkDelivered calls the subscribers made per second during the step (and how many failed). */
  marksPerSecond: number;
  marksFailed: number;
  rssMiB: number;
  pass: boolean;
  /** The sending, in CLOCK_MONOTONIC µs (the clock of V8's CPU profiles), and the server's main-thread CPU seconds meanwhile. */
  fromUs: number;
  toUs: number;
  mainThreadCpuSeconds: number;
}

export interface LadderOptions {
  /** First rate; the ladder doubles it while steps pass. */
  start: number;
  /** No step above this rate. */
  max: number;
  stepSeconds: number;
  /** Only these rates, in order (no doubling, no refinement). */
  fixed?: number[];
  /** With `fixed`: run every rate even after one fails (CPU per message at set rates on a busy machine). */
  all?: boolean;
}

/**
 * The rates to try: double while steps pass; after the first failing step,
 * climb again from the last passing rate in steps of at most 25 % until one
 * fails or the next would reach the failed rate. So the result is within
 * 25 % of a rate that failed, not a power of two below it.
 */
function* ladderRates(o: LadderOptions, passed: (rate: number) => boolean): Generator<number, void, void> {
  if (o.fixed) {
    for (const rate of o.fixed) {
      yield rate;
      if (!passed(rate) && !o.all) return;
    }
    return;
  }
  const nice = (r: number) => (r < 100 ? Math.round(r) : Math.round(r / 10) * 10);
  let last = 0;
  let failedAt = 0;
  for (let rate = o.start; rate <= o.max; rate = nice(rate * 2)) {
    yield rate;
    if (!passed(rate)) {
      failedAt = rate;
      break;
    }
    last = rate;
  }
  if (!failedAt || !last) return;
  for (let rate = nice(last * 1.25); rate < failedAt && rate <= o.max; rate = nice(last * 1.25)) {
    yield rate;
    if (!passed(rate)) return;
    last = rate;
  }
}

interface Marks {
  sent: number;
  failed: number;
  errors: Record<string, number>;
}

/**
 * N devices in N/2 direct conversations, all subscribed and acknowledging
 * what they receive with MarkDelivered (as the SDK does); the first of each
 * pair sends at the ladder's rates; the second's receive time gives the
 * latency. A step fails when its p99 passes 50 ms, it loses messages, or it
 * cannot be sent at the asked rate.
 */
export async function deliveryLadder(ctx: BenchContext, server: ServerProcess, pairs: Pair[], ladder: LadderOptions): Promise<Step[]> {
  const devices = pairs.flatMap((p) => [p.a, p.b]);
  const subs = ctx.subscribers(devices, devices.length > 2000 ? 2 : 1);
  const sender = ctx.load("sender");
  const steps: Step[] = [];
  const marks = async () => {
    const all = await Promise.all(subs.map((s) => s.proc.call<Marks>("marks")));
    return {
      sent: all.reduce((a, m) => a + m.sent, 0),
      failed: all.reduce((a, m) => a + m.failed, 0),
      errors: Object.assign({}, ...all.map((m) => m.errors)) as Record<string, number>,
    };
  };
  try {
    const opened = await Promise.all(
      subs.map((s) => s.proc.call<{ opened: number; errors: string[] }>("open", { url: server.url, devices: s.devices, concurrency: 100 })),
    );
    const open = opened.reduce((a, o) => a + o.opened, 0);
    if (open < devices.length) throw new Error(`only ${open} of ${devices.length} streams opened: ${opened.flatMap((o) => o.errors).join("; ")}`);
    await sender.call("setup", { url: server.url, senders: pairs.map((p) => ({ token: p.a.token, conversationId: p.conversationId })), connections: 4 });
    // Warm-up: JIT, pools, the worker's consumer.
    await sender.call("run", { rate: Math.min(200, ladder.fixed?.[0] ?? ladder.start), seconds: ctx.quick ? 1 : 3, tag: "warm" });
    await sleep(500);
    await Promise.all(subs.map((s) => s.proc.call("take", {})));
    const outcome = new Map<number, boolean>();
    for (const rate of ladderRates(ladder, (r) => outcome.get(r) ?? false)) {
      const tag = `r${rate}`;
      const sampler = ctx.cpuSampler();
      const marks0 = await marks();
      await sampler.start();
      const main0 = mainThreadCpuSeconds(server.pid);
      const fromUs = monotonicUs();
      const r = await sender.call<{
        sent: number;
        ok: number;
        failed: number;
        achievedRate: number;
        sendSeconds: number;
        ack: Summary;
        errors: Record<string, number>;
      }>("run", {
        rate,
        seconds: ladder.stepSeconds,
        tag,
      });
      const toUs = monotonicUs();
      const mainCpu = mainThreadCpuSeconds(server.pid) - main0;
      const cores = await sampler.stop();
      const marks1 = await marks();
      const rss = rssBytes(server.pid);
      // Drain: wait (bounded) until every stored message reached its receiver,
      // so an overloaded step's backlog does not spill into the next.
      const drainUntil = Date.now() + (ctx.quick ? 15_000 : 30_000);
      let received = 0;
      while (Date.now() < drainUntil) {
        const got = await Promise.all(subs.map((s) => s.proc.call<Record<string, number>>("received")));
        received = got.reduce((a, g) => a + (g[tag] ?? 0), 0);
        if (received >= r.ok) break;
        await sleep(100);
      }
      const taken = await Promise.all(subs.map((s) => s.proc.call<{ latencies: Record<string, number[]> }>("take", { tags: [tag] })));
      const lat = taken.flatMap((t) => t.latencies[tag] ?? []);
      const latency = summarize(lat);
      const lost = Math.max(0, r.ok - lat.length);
      const pass = latency.p99 <= DELIVERY_P99_MS && lost === 0 && r.failed === 0 && r.achievedRate >= rate * 0.9;
      outcome.set(rate, pass);
      const seconds = Math.max(r.sendSeconds, ladder.stepSeconds);
      const step: Step = {
        devices: devices.length,
        rate,
        achieved: r.achievedRate,
        sent: r.sent,
        ok: r.ok,
        failed: r.failed,
        received: lat.length,
        lost,
        latency,
        ack: r.ack,
        cores,
        perServerCore: perServerCore(r.ok, cores, sampler.elapsed),
        marksPerSecond: (marks1.sent - marks0.sent) / seconds,
        marksFailed: marks1.failed - marks0.failed,
        rssMiB: mib(rss),
        pass,
        fromUs,
        toUs,
        mainThreadCpuSeconds: mainCpu,
      };
      steps.push(step);
      if (r.failed > 0) console.log(`  step ${rate}/s: ${r.failed} failed sends: ${JSON.stringify(r.errors)}`);
      if (step.marksFailed > 0) console.log(`  step ${rate}/s: ${step.marksFailed} failed MarkDelivered: ${JSON.stringify(marks1.errors)}`);
      console.log(
        `  ${devices.length} devices, ${rate}/s: achieved ${r.achievedRate.toFixed(0)}/s, p50 ${latency.p50.toFixed(1)} p99 ${latency.p99.toFixed(1)} ms, lost ${lost}, ` +
          `cores chatwire ${cores.chatwire.toFixed(2)} pg ${cores.postgres.toFixed(2)} nats ${cores.nats.toFixed(2)} load ${cores.load.toFixed(2)}, ` +
          `${step.perServerCore.toFixed(0)} msg/server-core-s${pass ? "" : " (fails)"}`,
      );
      await sleep(pass ? 500 : 1500);
    }
  } finally {
    await Promise.all(subs.map((s) => s.proc.call("close").catch(() => undefined)));
    await ctx.stopLoad(sender, ...subs.map((s) => s.proc));
  }
  return steps;
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

function stepRows(steps: Step[]): Array<Array<string | number>> {
  return steps.map((s) => [
    s.devices,
    s.rate,
    s.achieved,
    s.latency.p50,
    s.latency.p95,
    s.latency.p99,
    s.ack.p50,
    s.lost,
    s.failed,
    s.cores.chatwire.toFixed(2),
    s.cores.postgres.toFixed(2),
    s.cores.nats.toFixed(2),
    s.cores.load.toFixed(2),
    s.perServerCore,
    s.marksPerSecond,
    s.rssMiB,
    s.pass ? "ok" : "fail",
  ]);
}

const HEADERS = [
  "devices",
  "target/s",
  "msg/s",
  "p50 ms",
  "p95 ms",
  "p99 ms",
  "ack p50",
  "lost",
  "failed",
  "chatwire",
  "postgres",
  "nats",
  "load",
  "msg/core-s",
  "MarkDel/s",
  "RSS MiB",
  "",
];

const CPU_NOTES = [
  "cores (1.0 = one core busy) while the step sends, from /proc: chatwire = the server's process tree; postgres = the bench database's backends plus the cluster's shared background processes (checkpointer, WAL writer, ...) and the postmaster, found through pg_stat_activity; nats = the nats-server on the bench's NATS port; load = the sender and subscriber processes and the bench orchestrator. All share the machine's cores",
  "msg/core-s = msg/s ÷ (chatwire + postgres + nats cores): messages per server-side core-second, the figure that compares with ejabberd's",
  "every subscribed device acknowledges what it receives with MarkDelivered, batched per conversation every 100 ms, as the SDK does (MarkDel/s; --no-mark-delivered turns it off)",
];

function best(steps: Step[], devices: number): Step | undefined {
  return steps.filter((s) => s.pass && s.devices === devices).sort((a, b) => b.achieved - a.achieved)[0];
}

export async function scenarioDelivery(ctx: BenchContext): Promise<ScenarioResult> {
  // BENCH_DELIVERY_SIZES=100 and BENCH_DELIVERY_RATES=100,200,400: these only, each rate run even after one fails
  // (before/after comparisons of CPU per message at set rates).
  const sizes = process.env.BENCH_DELIVERY_SIZES?.split(",").map(Number) ?? (ctx.quick ? [100, 1000] : [100, 1000, 5000]);
  const fixed = process.env.BENCH_DELIVERY_RATES?.split(",").map(Number);
  const ladder: LadderOptions = { start: 100, max: 12_800, stepSeconds: ctx.quick ? 3 : 8, ...(fixed ? { fixed, all: true } : {}) };
  const all: Step[] = [];
  for (const n of sizes) {
    const server = await ctx.startServer();
    const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
    try {
      const pairs = await fx.pairs(await fx.devices(n));
      all.push(...(await deliveryLadder(ctx, server, pairs, ladder)));
    } finally {
      await fx.close();
      await ctx.stopServer(server);
    }
  }
  const targets: Target[] = [];
  for (const n of sizes) {
    const b = best(all, n);
    const want = DELIVERY_TARGETS[n]!;
    targets.push({
      what: `msg/s at p99 ≤ ${DELIVERY_P99_MS} ms, ${thousands(n)} devices`,
      target: `≥ ${thousands(want)}`,
      value: fmt(b?.achieved ?? 0, 0),
      met: (b?.achieved ?? 0) >= want,
    });
  }
  for (const n of sizes) {
    const b = best(all, n);
    targets.push({
      what: `msg per server-side core-second, ${thousands(n)} devices (best passing step)`,
      target: `≥ ${thousands(PER_SERVER_CORE_SECOND)}`,
      value: b ? `${fmt(b.perServerCore, 0)} (at ${fmt(b.achieved, 0)} msg/s)` : "–",
      met: (b?.perServerCore ?? 0) >= PER_SERVER_CORE_SECOND,
    });
  }
  return {
    id: 1,
    name: "delivery",
    title: "1:1 delivery, production profile (PostgreSQL + JetStream)",
    headers: HEADERS,
    rows: stepRows(all),
    targets,
    notes: [
      "latency: SendMessage call start (sender process) → message_created read off the receiver's Subscribe stream (subscriber process); one HTTP/2 connection per device",
      `a step passes with p99 ≤ ${DELIVERY_P99_MS} ms, nothing lost or failed, and ≥ 90 % of the asked rate sent; rates double from ${ladder.start}/s until a step fails, then climb again from the last passing rate in steps of at most 25 %`,
      ...CPU_NOTES,
    ],
    data: all,
  };
}

export async function scenarioAck(ctx: BenchContext): Promise<ScenarioResult> {
  const server = await ctx.startServer();
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  let steps: Step[];
  try {
    const pairs = await fx.pairs(await fx.devices(100));
    steps = await deliveryLadder(ctx, server, pairs, { start: ACK_RATE, max: ACK_RATE, fixed: [ACK_RATE], stepSeconds: ctx.quick ? 4 : 10 });
  } finally {
    await fx.close();
    await ctx.stopServer(server);
  }
  const s = steps[0]!;
  return {
    id: 2,
    name: "ack",
    title: `SendMessage → durable ack (JetStream publish acked), ${thousands(ACK_RATE)} msg/s, 100 devices subscribed`,
    headers: [
      "target/s",
      "msg/s",
      "ack p50 ms",
      "ack p95 ms",
      "ack p99 ms",
      "ack max ms",
      "delivery p99 ms",
      "failed",
      "chatwire",
      "postgres",
      "nats",
      "msg/core-s",
    ],
    rows: [
      [
        s.rate,
        s.achieved,
        s.ack.p50,
        s.ack.p95,
        s.ack.p99,
        s.ack.max,
        s.latency.p99,
        s.failed,
        s.cores.chatwire.toFixed(2),
        s.cores.postgres.toFixed(2),
        s.cores.nats.toFixed(2),
        s.perServerCore,
      ],
    ],
    targets: [
      {
        what: `send → ack p50 at ${thousands(ACK_RATE)} msg/s`,
        target: `≤ ${ACK_P50_MS} ms`,
        value: `${s.ack.p50.toFixed(2)} ms`,
        met: s.ack.p50 <= ACK_P50_MS && s.achieved >= ACK_RATE * 0.9,
      },
    ],
    notes: ["ack: the gRPC SendMessage response, sent once JetStream has the message on disk (seq assigned later by the worker)", ...CPU_NOTES],
    data: s,
  };
}

export async function scenarioEmbedded(ctx: BenchContext): Promise<ScenarioResult> {
  const server = await ctx.startServer({}, "embedded");
  // BENCH_EMBEDDED_RATES=100,200,400: these rates only, each run even after one fails (for before/after CPU per message).
  const fixed = process.env.BENCH_EMBEDDED_RATES?.split(",").map(Number);
  let steps: Step[];
  try {
    const pairs = await apiPairs(server.url, 100);
    steps = await deliveryLadder(ctx, server, pairs, { start: 25, max: 3200, stepSeconds: ctx.quick ? 3 : 8, ...(fixed ? { fixed, all: true } : {}) });
  } finally {
    await ctx.stopServer(server);
  }
  const b = best(steps, 100);
  const rows = stepRows(steps);
  // Server CPU per message: the server's process tree (PGlite included) ÷ messages sent.
  steps.forEach((s, i) => rows[i]!.splice(-1, 0, s.achieved > 0 ? Math.round((s.cores.chatwire / s.achieved) * 1e6) : "–"));
  return {
    id: 7,
    name: "embedded",
    title: "1:1 delivery, embedded profile (PGlite + inline queue), 100 devices",
    headers: [...HEADERS.slice(0, -1), "µs CPU/msg", ""],
    rows,
    targets: [
      {
        what: `msg/s at p99 ≤ ${DELIVERY_P99_MS} ms`,
        target: `≥ ${EMBEDDED_TARGET}`,
        value: fmt(b?.achieved ?? 0, 0),
        met: (b?.achieved ?? 0) >= EMBEDDED_TARGET,
      },
      { what: "server RSS at the last step", target: "–", value: `${fmt(steps.at(-1)?.rssMiB ?? 0, 0)} MiB`, met: undefined },
    ],
    notes: [
      "SendMessage stores the message before it answers (inline queue), so ack = stored; PGlite runs inside the server process (postgres and nats are idle here)",
      "µs CPU/msg: the server process's CPU (every thread, PGlite included) ÷ msg/s, MarkDelivered and the stream writes included",
      ...CPU_NOTES,
    ],
    data: steps,
  };
}
