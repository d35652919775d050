import { writeFileSync, copyFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import pg from "pg";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { streamName } from "../server/messaging/jetstream-queue.js";
import { BenchContext, type Mode, type ScenarioResult } from "./lib/context.js";
import { scenarioBudget } from "./scenarios/budget.js";
import { scenarioConnections } from "./scenarios/connections.js";
import { scenarioAck, scenarioDelivery, scenarioEmbedded } from "./scenarios/delivery.js";
import { scenarioFanout } from "./scenarios/fanout.js";
import { scenarioStore } from "./scenarios/store.js";
import { scenarioStorm } from "./scenarios/storm.js";
import { scenarioUnary } from "./scenarios/unary.js";

// npm run bench [-- --quick] [-- --only=1,4] [-- --cpu-prof] [-- --no-mark-delivered] [-- --budget-rate=N]
// Production profile on the machine's PostgreSQL and NATS: a fresh database
// and a fresh NATS prefix per run, both removed at the end.

const SCENARIOS: Record<number, (ctx: BenchContext) => Promise<ScenarioResult>> = {
  1: scenarioDelivery,
  2: scenarioAck,
  3: scenarioConnections,
  4: scenarioUnary,
  5: scenarioFanout,
  6: scenarioStorm,
  7: scenarioEmbedded,
  8: scenarioStore,
  9: scenarioBudget,
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const mode: Mode = args.includes("--quick") || process.env.BENCH_MODE === "quick" ? "quick" : "full";
  const only = args.find((a) => a.startsWith("--only="))?.slice(7) ?? process.env.BENCH_ONLY;
  const ids = only ? only.split(",").map(Number) : Object.keys(SCENARIOS).map(Number);
  const adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const natsUrl = process.env.BENCH_NATS_URL ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const serverEnv: Record<string, string> = {};
  // BENCH_SERVER_ENV='{"WORKER_BATCH_SIZE":"500"}': extra server settings for every run.
  if (process.env.BENCH_SERVER_ENV) Object.assign(serverEnv, JSON.parse(process.env.BENCH_SERVER_ENV) as Record<string, string>);

  const dbName = `chatwire_bench_${randomBytes(6).toString("hex")}`;
  await admin(adminUrl, `CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const ctx = new BenchContext(mode, url.toString(), natsUrl, serverEnv, args.includes("--cpu-prof") || Boolean(process.env.BENCH_CPU_PROF));
  ctx.markDelivered = !args.includes("--no-mark-delivered");
  const budgetRate = Number(args.find((a) => a.startsWith("--budget-rate="))?.slice(14));
  if (budgetRate > 0) ctx.budgetRate = budgetRate;
  console.log(`chatwire bench (${mode}): database ${dbName}, NATS prefix ${ctx.prefix}, results in ${ctx.resultsDir}`);
  const started = Date.now();
  const sections: string[] = [];
  const failures: string[] = [];
  // A load process that dies fails its pending calls; the scenario reports it, the run goes on.
  process.on("unhandledRejection", (err) => console.error("unhandled rejection:", err));
  const onSignal = () => void ctx.cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    // The first server start runs the migrations; the scenarios insert into the migrated schema.
    await ctx.stopServer(await ctx.startServer());
    for (const id of ids) {
      const fn = SCENARIOS[id];
      if (!fn) throw new Error(`no scenario ${id}`);
      try {
        sections.push(ctx.report(await fn(ctx)));
      } catch (err) {
        failures.push(`scenario ${id}: ${(err as Error).stack ?? String(err)}`);
        console.error(`scenario ${id} failed:`, err);
        await ctx.cleanup();
      }
    }
  } finally {
    await ctx.cleanup();
    await admin(adminUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((err: unknown) => console.error("dropping the bench database failed:", err));
    await deleteStream(natsUrl, ctx.prefix).catch((err: unknown) => console.error("deleting the bench stream failed:", err));
    rmSync(ctx.dataDir, { recursive: true, force: true });
  }
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  const summary = [
    `## Chatwire benchmarks (${mode}, ${new Date().toISOString().slice(0, 16)}Z, ${minutes} min)`,
    "",
    `Node ${process.version}, ${(await import("node:os")).cpus().length} cores (server and load generators share them).`,
    "",
    ...sections,
    ...(failures.length ? ["### Failed scenarios", "", ...failures.map((f) => `\`\`\`\n${f}\n\`\`\``)] : []),
  ].join("\n");
  const file = path.join(ctx.resultsDir, "summary.md");
  writeFileSync(file, summary);
  copyFileSync(file, path.join(ctx.resultsDir, "..", `latest-${mode}.md`));
  console.log(`\nsummary: ${file} (${minutes} min)`);
  if (failures.length) process.exitCode = 1;
}

async function admin(adminUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

async function deleteStream(natsUrl: string, prefix: string): Promise<void> {
  const nc = await connect({ servers: natsUrl.split(","), reconnect: false });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(streamName(prefix)).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
