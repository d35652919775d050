import { DbFixtures } from "../lib/fixtures.js";
import { sleep } from "../lib/stats.js";
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
 * N devices subscribed while messages flow; every connection drops at once
 * and resumes from its last position. Lost: positions skipped on a stream, or
 * a final position short of the database's; doubled: a position seen twice.
 */
export async function scenarioStorm(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.quick ? 1000 : 5000;
  const rate = ctx.quick ? 200 : 500;
  const server = await ctx.startServer();
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  const pairs = await fx.pairs(await fx.devices(n));
  await fx.close();
  const devices = pairs.flatMap((p) => [p.a, p.b]);
  const subs = ctx.subscribers(devices, n > 2000 ? 2 : 1);
  const sender = ctx.load("sender");
  try {
    const opened = await Promise.all(subs.map((s) => s.proc.call<{ opened: number }>("open", { url: server.url, devices: s.devices, concurrency: 100 })));
    const open = opened.reduce((a, o) => a + o.opened, 0);
    await sender.call("setup", { url: server.url, senders: pairs.map((p) => ({ token: p.a.token, conversationId: p.conversationId })), connections: 2 });
    // Messages keep flowing through the drop and the resume.
    const sending = sender.call<{ ok: number; failed: number }>("run", { rate, seconds: ctx.quick ? 8 : 15, tag: "storm" });
    await sleep(2000);
    await Promise.all(subs.map((s) => s.proc.call("drop")));
    await sleep(1000);
    const sampler = ctx.cpuSampler();
    await sampler.start();
    const t0 = performance.now();
    const resumed = await Promise.all(
      subs.map((s) => s.proc.call<{ resumed: number; ms: number }>("resume", { concurrency: 250, timeoutMs: 60_000 }, 600_000)),
    );
    const caughtUpMs = performance.now() - t0;
    const cores = await sampler.stop();
    const sent = await sending;
    // Let the last messages arrive, then compare every device with the database.
    await sleep(3000);
    const checks = await Promise.all(subs.map((s) => s.proc.call<Check>("check")));
    const fx2 = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
    const db = await fx2.lastPositions(devices.map((d) => d.userId));
    await fx2.close();
    let tailLost = 0;
    for (const c of checks) for (const [userId, last] of c.positions) tailLost += Math.max(0, Number(BigInt(db.get(userId) ?? "0") - BigInt(last)));
    const duplicates = checks.reduce((a, c) => a + c.duplicates, 0);
    const lost = checks.reduce((a, c) => a + c.gaps, 0) + tailLost;
    const resumedN = resumed.reduce((a, r) => a + r.resumed, 0);
    return {
      id: 6,
      name: "storm",
      title: `Reconnect storm: ${n} devices drop at once and resume with their positions while ${rate} msg/s flow`,
      headers: ["devices", "subscribed", "resumed", "all caught up s", "messages sent", "lost", "doubled", "chatwire", "postgres", "nats", "load"],
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
        "lost counts gaps in the stored positions a device received plus, at the end, how far its last position is short of inbox_positions in the database",
        "cores busy from the first reconnect until every device caught up, by party (as in scenario 1)",
        ...checks
          .flatMap((c) => c.endedSample)
          .slice(0, 3)
          .map((e) => `ended stream: ${e}`),
      ],
      data: { n, open, resumedN, caughtUpMs, sent, lost, tailLost, duplicates, cores },
    };
  } finally {
    await Promise.all(subs.map((s) => s.proc.call("close").catch(() => undefined)));
    await ctx.stopLoad(sender, ...subs.map((s) => s.proc));
    await ctx.stopServer(server);
  }
}
