import { DbFixtures } from "../lib/fixtures.js";
import { fmt, sleep, summarize } from "../lib/stats.js";
import { STORM_SECONDS } from "../lib/targets.js";
import type { BenchContext, ScenarioResult } from "../lib/context.js";

interface Check {
  caughtUp: number;
  duplicates: number;
  gaps: number;
  positions: Array<readonly [string, string]>;
  endedSample: string[];
}

/**
 * A backend flushes its statistics at most every second, and an idle one
 * within 10 s (PGSTAT_IDLE_INTERVAL): xact_commit is read this long after the
 * last transaction counted.
 */
const STATS_SETTLE_MS = 11_000;

/**
 * N devices subscribed while messages flow; every connection drops at once
 * and resumes from its last position. Lost: positions skipped on a stream, or
 * a final position short of the database's; doubled: a position seen twice.
 *
 * BENCH_STORM_QUIET=1: the messages are all sent while the devices are away,
 * and the resume runs with nothing else flowing, so the transactions committed
 * meanwhile (pg_stat_database.xact_commit) and the CPU are the resumes' own:
 * round trips and CPU per resumed device.
 */
export async function scenarioStorm(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.quick ? 1000 : 5000;
  const quiet = process.env.BENCH_STORM_QUIET === "1";
  const rate = ctx.quick ? 200 : 500;
  const server = await ctx.startServer();
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  const pairs = await fx.pairs(await fx.devices(n));
  await fx.close();
  const devices = pairs.flatMap((p) => [p.a, p.b]);
  const subs = ctx.subscribers(devices, n > 2000 ? 2 : 1);
  const sender = ctx.load("sender");
  const stats = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  try {
    const opened = await Promise.all(subs.map((s) => s.proc.call<{ opened: number }>("open", { url: server.url, devices: s.devices, concurrency: 100 })));
    const open = opened.reduce((a, o) => a + o.opened, 0);
    await sender.call("setup", { url: server.url, senders: pairs.map((p) => ({ token: p.a.token, conversationId: p.conversationId })), connections: 2 });
    let sending: Promise<{ ok: number; failed: number }>;
    if (quiet) {
      // Every message is sent while the devices are away; the resume runs alone.
      await Promise.all(subs.map((s) => s.proc.call("drop")));
      const sent = await sender.call<{ ok: number; failed: number }>("run", { rate, seconds: ctx.quick ? 8 : 15, tag: "storm" });
      sending = Promise.resolve(sent);
      await sleep(STATS_SETTLE_MS);
    } else {
      // Messages keep flowing through the drop and the resume.
      sending = sender.call<{ ok: number; failed: number }>("run", { rate, seconds: ctx.quick ? 8 : 15, tag: "storm" });
      await sleep(2000);
      await Promise.all(subs.map((s) => s.proc.call("drop")));
      await sleep(1000);
    }
    const xact0 = await stats.transactionsCommitted();
    const sampler = ctx.cpuSampler();
    await sampler.start();
    const t0 = performance.now();
    const resumed = await Promise.all(
      subs.map((s) =>
        s.proc.call<{ resumed: number; ms: number; toReady: number[]; toCaughtUp: number[]; retried: number }>(
          "resume",
          { concurrency: 250, timeoutMs: 60_000 },
          600_000,
        ),
      ),
    );
    const caughtUpMs = performance.now() - t0;
    const cores = await sampler.stop();
    const toReady = summarize(resumed.flatMap((r) => r.toReady));
    const toCaughtUp = summarize(resumed.flatMap((r) => r.toCaughtUp));
    const retried = resumed.reduce((a, r) => a + r.retried, 0);
    console.log(
      `  per device: open → ready p50 ${fmt(toReady.p50)} p99 ${fmt(toReady.p99)} ms; open → caught up p50 ${fmt(toCaughtUp.p50)} p99 ${fmt(toCaughtUp.p99)} max ${fmt(toCaughtUp.max)} ms; ${retried} reopened after Unavailable`,
    );
    const sent = await sending;
    // Let the last messages arrive (and the statistics settle), then compare every device with the database.
    await sleep(quiet ? STATS_SETTLE_MS : 3000);
    const transactions = Number((await stats.transactionsCommitted()) - xact0);
    const checks = await Promise.all(subs.map((s) => s.proc.call<Check>("check")));
    const fx2 = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
    const db = await fx2.lastPositions(devices.map((d) => d.userId));
    await fx2.close();
    let tailLost = 0;
    for (const c of checks) for (const [userId, last] of c.positions) tailLost += Math.max(0, Number(BigInt(db.get(userId) ?? "0") - BigInt(last)));
    const duplicates = checks.reduce((a, c) => a + c.duplicates, 0);
    const lost = checks.reduce((a, c) => a + c.gaps, 0) + tailLost;
    const resumedN = resumed.reduce((a, r) => a + r.resumed, 0);
    // CPU-milliseconds per resumed device, by party, over the resume.
    const perDevice = (c: number) => ((c * sampler.elapsed * 1000) / Math.max(1, resumedN)).toFixed(2);
    return {
      id: 6,
      name: "storm",
      title: quiet
        ? `Reconnect storm, quiet: ${n} devices drop at once, miss ${rate} msg/s for ${ctx.quick ? 8 : 15} s, and resume with their positions alone`
        : `Reconnect storm: ${n} devices drop at once and resume with their positions while ${rate} msg/s flow`,
      headers: [
        "devices",
        "subscribed",
        "resumed",
        "all caught up s",
        "messages sent",
        "lost",
        "doubled",
        "chatwire",
        "postgres",
        "nats",
        "load",
        "db tx/device",
        "chatwire ms/device",
        "postgres ms/device",
      ],
      rows: [
        [
          n,
          open,
          resumedN,
          (caughtUpMs / 1000).toFixed(2),
          sent.ok,
          lost,
          duplicates,
          cores.chatwire.toFixed(2),
          cores.postgres.toFixed(2),
          cores.nats.toFixed(2),
          cores.load.toFixed(2),
          (transactions / Math.max(1, resumedN)).toFixed(2),
          perDevice(cores.chatwire),
          perDevice(cores.postgres),
        ],
      ],
      targets: [
        {
          what: "all caught up",
          target: `≤ ${STORM_SECONDS} s`,
          value: `${(caughtUpMs / 1000).toFixed(2)} s`,
          met: caughtUpMs <= STORM_SECONDS * 1000 && resumedN === n,
        },
        { what: "lost events", target: "0", value: String(lost), met: lost === 0 },
        { what: "doubled events", target: "0", value: String(duplicates), met: duplicates === 0 },
      ],
      notes: [
        "each device reconnects on a new HTTP/2 connection (250 at a time per subscriber process) with since_position = the last stored position it saw",
        `a stream the server ends with Unavailable is opened again after a backoff, as the SDK does (${retried} reopened); its time counts from the first open`,
        "lost counts gaps in the stored positions a device received plus, at the end, how far its last position is short of inbox_positions in the database",
        "cores busy from the first reconnect until every device caught up, by party (as in scenario 1); ms/device: those cores × that time ÷ devices resumed",
        `db tx/device: transactions committed in the bench database (pg_stat_database.xact_commit) from just before the resume until ${quiet ? STATS_SETTLE_MS / 1000 : 3} s after, ÷ devices resumed${quiet ? " (nothing else running: the resumes' round trips, their MarkDelivered included)" : " (the message flow's included)"}`,
        ...checks
          .flatMap((c) => c.endedSample)
          .slice(0, 3)
          .map((e) => `ended stream: ${e}`),
      ],
      data: { n, quiet, open, resumedN, caughtUpMs, toReady, toCaughtUp, retried, sent, lost, tailLost, duplicates, cores, transactions },
    };
  } finally {
    await stats.close().catch(() => undefined);
    await Promise.all(subs.map((s) => s.proc.call("close").catch(() => undefined)));
    await ctx.stopLoad(sender, ...subs.map((s) => s.proc));
    await ctx.stopServer(server);
  }
}
