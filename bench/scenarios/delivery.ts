import { apiPairs, DbFixtures, type Pair } from "../lib/fixtures.js";
import { CpuMeter, rssBytes } from "../lib/proc.js";
import type { ServerProcess } from "../lib/server-proc.js";
import { sleep, summarize, type Summary } from "../lib/stats.js";
import { mib, type BenchContext, type ScenarioResult } from "../lib/context.js";

const P99_LIMIT_MS = 50;

interface Step {
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
  cpuCores: number;
  rssMiB: number;
  pass: boolean;
}

/**
 * N devices in N/2 direct conversations, all subscribed; the first of each
 * pair sends at rising rates; the second's receive time gives the latency.
 * Stops at the first step whose p99 passes 50 ms, loses messages or cannot
 * be sent at the asked rate.
 */
async function deliveryLadder(ctx: BenchContext, server: ServerProcess, pairs: Pair[], rates: number[], stepSeconds: number): Promise<Step[]> {
  const devices = pairs.flatMap((p) => [p.a, p.b]);
  const subs = ctx.subscribers(devices, devices.length > 2000 ? 2 : 1);
  const sender = ctx.load("sender");
  const steps: Step[] = [];
  try {
    const opened = await Promise.all(subs.map((s) => s.proc.call<{ opened: number; errors: string[] }>("open", { url: server.url, devices: s.devices, concurrency: 100 })));
    const open = opened.reduce((a, o) => a + o.opened, 0);
    if (open < devices.length) throw new Error(`only ${open} of ${devices.length} streams opened: ${opened.flatMap((o) => o.errors).join("; ")}`);
    await sender.call("setup", { url: server.url, senders: pairs.map((p) => ({ token: p.a.token, conversationId: p.conversationId })), connections: 4 });
    // Warm-up: JIT, pools, the worker's consumer.
    await sender.call("run", { rate: Math.min(200, rates[0]!), seconds: ctx.quick ? 1 : 3, tag: "warm" });
    await sleep(500);
    await Promise.all(subs.map((s) => s.proc.call("take", {})));
    const meter = new CpuMeter(server.pid);
    for (const rate of rates) {
      const tag = `r${rate}`;
      meter.start();
      const r = await sender.call<{ sent: number; ok: number; failed: number; achievedRate: number; ack: Summary; errors: Record<string, number> }>("run", {
        rate,
        seconds: stepSeconds,
        tag,
      });
      const cpuCores = meter.read();
      const rss = rssBytes(server.pid);
      // Drain: wait (bounded) until every stored message reached its receiver.
      const drainUntil = Date.now() + 10_000;
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
      const pass = latency.p99 <= P99_LIMIT_MS && lost === 0 && r.failed === 0 && r.achievedRate >= rate * 0.9;
      steps.push({ devices: devices.length, rate, achieved: r.achievedRate, sent: r.sent, ok: r.ok, failed: r.failed, received: lat.length, lost, latency, ack: r.ack, cpuCores, rssMiB: mib(rss), pass });
      if (r.failed > 0) console.log(`  step ${rate}/s: ${r.failed} failed sends: ${JSON.stringify(r.errors)}`);
      console.log(`  ${devices.length} devices, ${rate}/s: achieved ${r.achievedRate.toFixed(0)}/s, p50 ${latency.p50.toFixed(1)} p99 ${latency.p99.toFixed(1)} ms, lost ${lost}, cpu ${cpuCores.toFixed(2)}`);
      if (!pass) break;
      await sleep(500);
    }
  } finally {
    await Promise.all(subs.map((s) => s.proc.call("close").catch(() => undefined)));
    await ctx.stopLoad(sender, ...subs.map((s) => s.proc));
  }
  return steps;
}

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
    s.cpuCores.toFixed(2),
    s.rssMiB,
    s.pass ? "ok" : "stop",
  ]);
}

const HEADERS = ["devices", "target/s", "msg/s", "p50 ms", "p95 ms", "p99 ms", "ack p50", "lost", "failed", "cpu cores", "RSS MiB", ""];

function sustained(steps: Step[], devices: number): number {
  return Math.max(0, ...steps.filter((s) => s.pass && s.devices === devices).map((s) => s.achieved));
}

export async function scenarioDelivery(ctx: BenchContext): Promise<ScenarioResult> {
  const sizes = ctx.quick ? [100, 1000] : [100, 1000, 5000];
  const rates = ctx.quick ? [100, 250, 500, 1000, 2000] : [100, 250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 11000];
  const all: Step[] = [];
  for (const n of sizes) {
    const server = await ctx.startServer();
    const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
    try {
      const pairs = await fx.pairs(await fx.devices(n));
      all.push(...(await deliveryLadder(ctx, server, pairs, rates, ctx.quick ? 3 : 8)));
    } finally {
      await fx.close();
      await ctx.stopServer(server);
    }
  }
  const at = (n: number) => sustained(all, n);
  return {
    id: 1,
    name: "delivery",
    title: "1:1 delivery, production profile (PostgreSQL + JetStream)",
    headers: HEADERS,
    rows: stepRows(all),
    targets: [
      { what: "msg/s at p99 ≤ 50 ms, 100 devices (now)", target: "≥ 5,000", value: at(100).toFixed(0), met: at(100) >= 5000 },
      { what: "msg/s at p99 ≤ 50 ms, 100 devices (ejabberd/core)", target: "≥ 11,000", value: at(100).toFixed(0), met: at(100) >= 11000 },
      { what: "msg/s at p99 ≤ 50 ms, 1,000 devices (ejabberd/core)", target: "≥ 7,000", value: at(1000).toFixed(0), met: at(1000) >= 7000 },
      ...(sizes.includes(5000) ? [{ what: "msg/s at p99 ≤ 50 ms, 5,000 devices", target: "≥ 5,000", value: at(5000).toFixed(0), met: at(5000) >= 5000 }] : []),
    ],
    notes: [
      "latency: SendMessage call start (sender process) → message_created read off the receiver's Subscribe stream (subscriber process); one HTTP/2 connection per device",
      "a step passes with p99 ≤ 50 ms, nothing lost or failed, and ≥ 90 % of the asked rate sent; the ladder stops at the first step that does not",
      "cpu cores / RSS: the server process tree from /proc (load generators excluded; they share the same 2 cores)",
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
    steps = await deliveryLadder(ctx, server, pairs, [1000], ctx.quick ? 4 : 10);
  } finally {
    await fx.close();
    await ctx.stopServer(server);
  }
  const s = steps[0]!;
  return {
    id: 2,
    name: "ack",
    title: "SendMessage → durable ack (JetStream publish acked), 1,000 msg/s, 100 devices subscribed",
    headers: ["target/s", "msg/s", "ack p50 ms", "ack p95 ms", "ack p99 ms", "ack max ms", "delivery p99 ms", "failed"],
    rows: [[s.rate, s.achieved, s.ack.p50, s.ack.p95, s.ack.p99, s.ack.max, s.latency.p99, s.failed]],
    targets: [{ what: "send → ack p50", target: "≤ 2 ms", value: `${s.ack.p50.toFixed(2)} ms`, met: s.ack.p50 <= 2 }],
    notes: ["ack: the gRPC SendMessage response, sent once JetStream has the message on disk (seq assigned later by the worker)"],
    data: s,
  };
}

export async function scenarioEmbedded(ctx: BenchContext): Promise<ScenarioResult> {
  const server = await ctx.startServer({}, "embedded");
  let steps: Step[];
  try {
    const pairs = await apiPairs(server.url, 100);
    steps = await deliveryLadder(ctx, server, pairs, ctx.quick ? [25, 50, 100, 250, 500] : [25, 50, 100, 250, 500, 1000, 1500, 2000, 3000], ctx.quick ? 3 : 8);
  } finally {
    await ctx.stopServer(server);
  }
  const best = sustained(steps, 100);
  return {
    id: 7,
    name: "embedded",
    title: "1:1 delivery, embedded profile (PGlite + inline queue), 100 devices",
    headers: HEADERS,
    rows: stepRows(steps),
    targets: [{ what: "msg/s at p99 ≤ 50 ms (for the README)", target: "–", value: best.toFixed(0), met: undefined }],
    notes: ["SendMessage stores the message before it answers (inline queue), so ack = stored"],
    data: steps,
  };
}
