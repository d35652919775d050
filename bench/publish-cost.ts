import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { JetStreamPublisher } from "../server/messaging/jetstream-publisher.js";
import { argValue } from "./lib/args.js";

// Client CPU of one JetStream publish, as SendMessage makes it: the library's
// `js.publish` (a request per publish) against Chatwire's JetStreamPublisher
// (one HPUB, replies on a shared inbox), alternated in one process on a
// stream of its own (removed at the end), paced at --rate for --n messages a run.
//
//   node dist/bench/publish-cost.js [--rate=200] [--n=2000] [--runs=3] [--nats=nats://127.0.0.1:4222]

const arg = (name: string, dflt: string) => argValue(name) ?? dflt;
const rate = Number(arg("rate", "200"));
const n = Number(arg("n", "2000"));
const runs = Number(arg("runs", "3"));
const servers = arg("nats", process.env.BENCH_NATS_URL || process.env.NATS_URL || "nats://127.0.0.1:4222").split(",");

const nc = await connect({ servers, noAsyncTraces: true });
const jsm = await jetstreamManager(nc);
const id = randomBytes(4).toString("hex");
const stream = `PUBCOST_${id.toUpperCase()}`;
await jsm.streams.add({ name: stream, subjects: [`pubcost${id}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
const js = jetstream(nc);
const publisher = new JetStreamPublisher(nc, 5000);
// A SendMessage-sized body (the queue's JSON of a short text message).
const data = new TextEncoder().encode(
  JSON.stringify({ id: "x".repeat(36), conversationId: "y".repeat(36), senderId: "z".repeat(36), content: "hello ".repeat(8) }),
);
let seq = 0;
const variants = {
  "js.publish": (subject: string, msgId: string) => js.publish(subject, data, { msgID: msgId, timeout: 5000, expect: { streamName: stream } }),
  JetStreamPublisher: (subject: string, msgId: string) => publisher.publish(subject, data, msgId, stream),
};

/** µs of process CPU per message, and the rate achieved. */
async function run(publish: (subject: string, msgId: string) => Promise<unknown>): Promise<{ cpu: number; achieved: number }> {
  const pending: Array<Promise<unknown>> = [];
  const perTick = Math.max(1, Math.round(rate / 100));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      for (let k = 0; k < perTick && pending.length < n; k++) pending.push(publish(`pubcost${id}.${seq % 16}.c`, `m${seq++}`));
      if (pending.length >= n) {
        clearInterval(t);
        resolve();
      }
    }, 10);
  });
  await Promise.all(pending);
  const c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / n, achieved: (n / (performance.now() - t0)) * 1000 };
}

try {
  for (const publish of Object.values(variants)) for (let i = 0; i < 200; i++) await publish(`pubcost${id}.w`, `w${seq++}`); // warm-up
  const got: Record<string, string[]> = { "js.publish": [], JetStreamPublisher: [] };
  for (let r = 0; r < runs; r++) {
    for (const [name, publish] of Object.entries(variants)) {
      const { cpu, achieved } = await run(publish);
      got[name]!.push(`${cpu.toFixed(0)} µs (${achieved.toFixed(0)} msg/s)`);
    }
  }
  console.log(`client CPU per JetStream publish, ${n} messages a run at ${rate}/s, runs alternated:`);
  for (const [name, figures] of Object.entries(got)) console.log(`  ${name.padEnd(18)} ${figures.join(", ")}`);
} finally {
  await jsm.streams.delete(stream);
  await nc.close();
}
