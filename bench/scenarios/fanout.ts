import { DbFixtures } from "../lib/fixtures.js";
import { sleep, summarize } from "../lib/stats.js";
import type { BenchContext, ScenarioResult } from "../lib/context.js";

/** One message to a 1,024-member group with every member subscribed: time until the last member has it. */
export async function scenarioFanout(ctx: BenchContext): Promise<ScenarioResult> {
  const members = 1024;
  const messages = ctx.quick ? 5 : 20;
  const server = await ctx.startServer();
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  const devices = await fx.devices(members);
  const groupId = await fx.group(devices);
  await fx.close();
  const subs = ctx.subscribers(devices, 1);
  const sender = ctx.load("sender");
  try {
    const opened = await Promise.all(
      subs.map((s) => s.proc.call<{ opened: number }>("open", { url: server.url, devices: s.devices, concurrency: 100, perMessage: true })),
    );
    const open = opened.reduce((a, o) => a + o.opened, 0);
    await sender.call("setup", { url: server.url, senders: [{ token: devices[0]!.token, conversationId: groupId }], connections: 1 });
    // One warm-up message, not counted.
    await sender.call("run", { rate: 1, seconds: 1, tag: "warm" });
    await sleep(1500);
    await Promise.all(subs.map((s) => s.proc.call("take")));
    const lastMs: number[] = [];
    const allMs: number[] = [];
    let incomplete = 0;
    for (let i = 0; i < messages; i++) {
      const tag = `g${i}`;
      await sender.call("run", { rate: 1, seconds: 1, tag });
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        const got = await Promise.all(subs.map((s) => s.proc.call<Record<string, number>>("received")));
        if (got.reduce((a, g) => a + (g[tag] ?? 0), 0) >= members - 1) break;
        await sleep(20);
      }
      const taken = await Promise.all(
        subs.map((s) =>
          s.proc.call<{ latencies: Record<string, number[]>; perMessage: Record<string, Array<{ sent: number; last: number; count: number }>> }>("take", {
            tags: [tag],
          }),
        ),
      );
      const per = taken.flatMap((t) => t.perMessage[tag] ?? []);
      const lats = taken.flatMap((t) => t.latencies[tag] ?? []);
      allMs.push(...lats);
      const count = per.reduce((a, p) => a + p.count, 0);
      if (count < members - 1) incomplete++;
      if (per.length > 0) lastMs.push(Math.max(...per.map((p) => p.last)) - per[0]!.sent);
      await sleep(200);
    }
    const last = summarize(lastMs);
    const each = summarize(allMs);
    return {
      id: 5,
      name: "fanout",
      title: `Group fan-out: one message to ${members} members, all subscribed (${messages} messages, one at a time)`,
      headers: [
        "members",
        "subscribed",
        "messages",
        "last member p50 ms",
        "last member p99 ms",
        "last member max ms",
        "per member p50 ms",
        "per member p99 ms",
        "incomplete",
      ],
      rows: [[members, open, messages, last.p50, last.p99, last.max, each.p50, each.p99, incomplete]],
      targets: [{ what: "time to the last member, p99", target: "≤ 250 ms", value: `${last.p99.toFixed(1)} ms`, met: last.p99 <= 250 && incomplete === 0 }],
      notes: ["from the SendMessage call to the 1,023rd other member's stream; the sender's own device is not counted"],
      data: { members, open, messages, lastMs, last, each, incomplete },
    };
  } finally {
    await Promise.all(subs.map((s) => s.proc.call("close").catch(() => undefined)));
    await ctx.stopLoad(sender, ...subs.map((s) => s.proc));
    await ctx.stopServer(server);
  }
}
