import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { budget, budgetRows, readProfiles } from "../profile-budget.js";
import { DbFixtures } from "../lib/fixtures.js";
import type { BenchContext, ScenarioResult } from "../lib/context.js";
import { fmt } from "../lib/stats.js";
import { deliveryLadder } from "./delivery.js";

/**
 * The CPU budget of one 1:1 message by stage (issue 15 item 4): a server
 * with --cpu-prof carries 100 devices' messages at a steady rate below its
 * limit, with MarkDelivered on; its profile, written when it stops, is split
 * by stage (bench/profile-budget.ts) and divided by the messages it stored.
 */
export async function scenarioBudget(ctx: BenchContext): Promise<ScenarioResult> {
  const rate = ctx.budgetRate ?? (ctx.quick ? 200 : 500);
  const seconds = ctx.quick ? 8 : 20;
  const profDir = path.join(ctx.resultsDir, "budget-prof");
  rmSync(profDir, { recursive: true, force: true });
  const server = await ctx.startServer({}, "production", profDir);
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  let messages = 0;
  let step;
  try {
    const pairs = await fx.pairs(await fx.devices(100));
    [step] = await deliveryLadder(ctx, server, pairs, { start: rate, max: rate, fixed: [rate], stepSeconds: seconds });
    // Everything the server handled, the warm-up included (the profile window holds it too).
    messages = await storedIn(
      ctx.databaseUrl,
      pairs.map((p) => p.conversationId),
    );
  } finally {
    await fx.close();
    // The profile is written when the process exits on its own: give a busy machine time.
    await ctx.stopServer(server, 60_000);
  }
  if (!step) throw new Error("the budget run made no step");
  const profiles = existsSync(profDir) ? readProfiles([profDir]) : [];
  if (profiles.length === 0) throw new Error(`no CPU profile in ${profDir}: the server did not exit by itself within 60 s of SIGTERM`);
  // The sending step only: steady state, messages = what it sent.
  const b = budget(profiles, step.ok, { top: 15, fromUs: step.fromUs, toUs: step.toUs, mainThreadCpuSeconds: step.mainThreadCpuSeconds });
  const procUs = (cores: number) => ((cores * 1e6) / Math.max(1, step.achieved)).toFixed(0);
  console.log(`  budget: ${step.ok} messages in the step (${messages} stored in all), profile window ${(b.windowUs / 1e6).toFixed(1)} s, ${b.samples} samples`);
  return {
    id: 9,
    name: "budget",
    title: `CPU budget of one 1:1 message by stage (server --cpu-prof, 100 devices, ${rate} msg/s for ${seconds} s, MarkDelivered ${ctx.markDelivered ? "on" : "off"})`,
    headers: ["stage", "µs/msg", "share"],
    rows: budgetRows(b),
    targets: [],
    notes: [
      `window: the ${seconds} s of sending (${step.ok} messages sent and acked; ${messages} stored with the warm-up), ${b.samples} samples; the V8 profile sees the main thread only, and its wall-clock samples are scaled to the main thread's CPU time over the same seconds from /proc (× ${b.scale.toFixed(2)}; near 1 on a quiet machine, far below when the server waited for a core)`,
      `from /proc during the step (all threads): chatwire ${procUs(step.cores.chatwire)} µs/msg, postgres ${procUs(step.cores.postgres)}, nats ${procUs(step.cores.nats)}; ${fmt(step.perServerCore, 0)} msg per server-side core-second at ${fmt(step.achieved, 0)} msg/s (p99 ${fmt(step.latency.p99)} ms); MarkDelivered ${fmt(step.marksPerSecond, 0)}/s`,
      "stages by stack frame, mapping in bench/profile-budget.ts; 'unattributed' rows are library code resumed after an await, with no Chatwire frame on its stack. Rerun on a saved profile: node dist/bench/profile-budget.js --messages=N <dir> --top=20 [--cpu-seconds=S]",
      `heaviest functions: ${b.top
        .slice(0, 8)
        .map((t) => `${t.fn} (${t.file}, ${t.row}) ${(t.us / Math.max(1, step.ok)).toFixed(1)}`)
        .join("; ")}`,
    ],
    data: { rate, seconds, messages, step, budget: { ...b, perMessage: Object.fromEntries(b.perMessage) } },
  };
}

async function storedIn(databaseUrl: string, conversationIds: string[]): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>("select count(*)::text as n from messages where conversation_id = any($1::uuid[])", [conversationIds]);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}
