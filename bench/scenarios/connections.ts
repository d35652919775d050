import { DbFixtures } from "../lib/fixtures.js";
import { rssBytes } from "../lib/proc.js";
import { sleep } from "../lib/stats.js";
import { IDLE_STREAM_KIB } from "../lib/targets.js";
import { kib, mib, type BenchContext, type ScenarioResult } from "../lib/context.js";
import type { PartyCores } from "../lib/cpu.js";

/** Idle CPU is measured over this long with 0, 100 and all the streams open (nothing sent). */
const IDLE_WINDOW_MS = 20_000;
const IDLE_STEPS = [0, 100];

/** Idle subscribed devices, each on its own HTTP/2 connection: memory per stream, time to open, heartbeats on time. */
export async function scenarioConnections(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.quick ? 1000 : 15_000;
  const heartbeatSeconds = ctx.quick ? 2 : 5;
  const server = await ctx.startServer({ REALTIME_HEARTBEAT_SECONDS: String(heartbeatSeconds) });
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  const devices = await fx.devices(n);
  await fx.close();
  const subs = ctx.subscribers(devices, n > 5000 ? 2 : 1);
  try {
    await sleep(1000);
    const rssBefore = rssBytes(server.pid);
    // Idle CPU (nothing sent, presence on): with 0 and 100 streams open, then with all of them.
    const idle: Array<{ streams: number; cores: PartyCores }> = [];
    const measureIdle = async (streams: number) => {
      await sleep(2000);
      const sampler = ctx.cpuSampler();
      await sampler.start();
      await sleep(IDLE_WINDOW_MS);
      idle.push({ streams, cores: await sampler.stop() });
    };
    let openMs = 0;
    let open = 0;
    let openedUpTo = 0;
    const openUpTo = async (count: number) => {
      const t0 = performance.now();
      const opened = await Promise.all(
        subs.map((s) => {
          const mine = s.devices.slice(Math.floor((openedUpTo * s.devices.length) / n), Math.floor((count * s.devices.length) / n));
          return s.proc.call<{ opened: number; errors: string[] }>(
            "open",
            { url: server.url, devices: mine, concurrency: 200, heartbeatSeconds, timeoutMs: 120_000 },
            600_000,
          );
        }),
      );
      openMs += performance.now() - t0;
      open += opened.reduce((a, o) => a + o.opened, 0);
      openedUpTo = count;
    };
    for (const step of IDLE_STEPS) {
      if (step > 0) await openUpTo(step);
      await measureIdle(step);
    }
    await openUpTo(n);
    // Settle, then count heartbeats over a few intervals.
    await sleep(2000);
    await Promise.all(subs.map((s) => s.proc.call("resetHeartbeats")));
    const rssOpen = rssBytes(server.pid);
    const windowS = heartbeatSeconds * 3 + 1;
    await sleep(windowS * 1000);
    const checks = await Promise.all(
      subs.map((s) =>
        s.proc.call<{ caughtUp: number; ended: number; heartbeats: number; lateHeartbeats: number; maxHeartbeatGapMs: number; endedSample: string[] }>("check"),
      ),
    );
    const rssAfter = rssBytes(server.pid);
    await measureIdle(open);
    const hb = checks.reduce((a, c) => a + c.heartbeats, 0);
    const late = checks.reduce((a, c) => a + c.lateHeartbeats, 0);
    const live = checks.reduce((a, c) => a + c.caughtUp, 0);
    const maxGap = Math.max(...checks.map((c) => c.maxHeartbeatGapMs));
    const expected = open * Math.floor(windowS / heartbeatSeconds);
    const perStream = (Math.max(rssOpen, rssAfter) - rssBefore) / Math.max(1, open);
    const onTime = hb > 0 ? (hb - late) / hb : 0;
    return {
      id: 3,
      name: "connections",
      title: `Idle subscribed devices, one HTTP/2 connection each (heartbeat every ${heartbeatSeconds} s)`,
      headers: [
        "streams",
        "open s",
        "opened/s",
        "RSS before MiB",
        "RSS held MiB",
        "RSS/stream KiB",
        "heartbeats",
        "expected ≥",
        "on time",
        "max gap s",
        "still open",
        ...idle.map((i) => `idle CPU ms/s @${i.streams}`),
      ],
      rows: [
        [
          open,
          (openMs / 1000).toFixed(1),
          open / (openMs / 1000),
          mib(rssBefore),
          mib(Math.max(rssOpen, rssAfter)),
          kib(perStream),
          hb,
          expected,
          `${(onTime * 100).toFixed(1)} %`,
          (maxGap / 1000).toFixed(2),
          live,
          ...idle.map((i) => (i.cores.chatwire * 1000).toFixed(1)),
        ],
      ],
      targets: [
        { what: "idle streams held", target: `${n.toLocaleString("en-US")}`, value: `${live}`, met: live >= n },
        {
          what: "RSS per idle stream",
          target: `≤ ${IDLE_STREAM_KIB} KiB`,
          value: `${kib(perStream).toFixed(1)} KiB`,
          met: perStream <= IDLE_STREAM_KIB * 1024,
        },
        { what: "heartbeats on time", target: "100 %", value: `${(onTime * 100).toFixed(1)} %`, met: late === 0 && hb >= expected * 0.95 },
      ],
      notes: [
        `idle CPU: the server's process tree (all threads, /proc), the bench database's PostgreSQL backends and nats-server over ${IDLE_WINDOW_MS / 1000} s with nothing sent, presence on, heartbeat every ${heartbeatSeconds} s`,
        `idle CPU with PostgreSQL and NATS (ms/s): ${idle.map((i) => `${i.streams} streams: chatwire ${(i.cores.chatwire * 1000).toFixed(1)}, postgres ${(i.cores.postgres * 1000).toFixed(1)}, nats ${(i.cores.nats * 1000).toFixed(1)}`).join("; ")}`,
        "RSS per stream = (server RSS with the streams open − RSS before) / streams; includes the HTTP/2 session, socket and presence row work",
        "on time: the heartbeat came within max(1 s, 20 %) of the interval after the stream's previous event",
        ...checks
          .flatMap((c) => c.endedSample)
          .slice(0, 3)
          .map((e) => `ended stream: ${e}`),
      ],
      data: { n, open, openMs, idle, rssBefore, rssOpen, rssAfter, perStream, heartbeats: hb, late, expected, maxGap },
    };
  } finally {
    await Promise.all(subs.map((s) => s.proc.call("close").catch(() => undefined)));
    await ctx.stopLoad(...subs.map((s) => s.proc));
    await ctx.stopServer(server);
  }
}
