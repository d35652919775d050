import { openDatabase } from "../../server/db/database.js";
import { storeMessageRows } from "../../server/db/message-store.js";
import { createLogger } from "../../server/logger.js";
import { messageIdFor } from "../../server/messaging/message-queue.js";
import type { OutgoingMessage } from "../../server/messaging/types.js";
import { DbFixtures, type Pair } from "../lib/fixtures.js";
import { nowMs, sleep, summarize } from "../lib/stats.js";
import type { BenchContext, ScenarioResult } from "../lib/context.js";

interface Config {
  batch: number;
  /** Batches in flight at once (1 = the one active worker). */
  lanes: number;
}

/**
 * What this PostgreSQL takes through chatwire_store_messages alone (issue 15
 * item 8): no server, no NATS, no subscribers; the bench process calls
 * storeMessageRows (the worker's one statement per batch) back to back with
 * batches of direct messages between 1,000 devices, and PostgreSQL's CPU is
 * sampled from /proc meanwhile.
 */
export async function scenarioStore(ctx: BenchContext): Promise<ScenarioResult> {
  const seconds = ctx.quick ? 3 : 8;
  const configs: Config[] = [
    { batch: 1, lanes: 1 },
    { batch: 10, lanes: 1 },
    { batch: 100, lanes: 1 },
    { batch: 100, lanes: 2 },
  ];
  const fx = await DbFixtures.connect(ctx.databaseUrl, ctx.jwtSecret);
  let pairs: Pair[];
  try {
    pairs = await fx.pairs(await fx.devices(1000));
  } finally {
    await fx.close();
  }
  const handle = await openDatabase({ databaseUrl: ctx.databaseUrl, dataDir: ctx.dataDir, logger: createLogger("warn") });
  const rows: Array<Array<string | number>> = [];
  const data: unknown[] = [];
  let counter = 0;
  const batchOf = (n: number, lane: number, lanes: number): OutgoingMessage[] =>
    Array.from({ length: n }, () => {
      // Lanes take disjoint conversations, as partitioned workers would.
      const i = counter++;
      const p = pairs[(Math.floor(i / lanes) * lanes + lane) % pairs.length]!;
      const from = i % 2 === 0 ? p.a : p.b;
      const clientMessageId = `store-${i}`;
      return {
        id: messageIdFor(from.userId, clientMessageId),
        conversationId: p.conversationId,
        senderId: from.userId,
        clientMessageId,
        content: `bench:store:${i} a message of ordinary length, about sixty characters`,
        mediaUrl: "",
        mediaType: "",
        replyToMessageId: null,
        mentionUserIds: [],
        sentAt: new Date().toISOString(),
      };
    });
  try {
    // Warm-up: the function's plan, the pool's connections.
    for (let i = 0; i < 20; i++) await storeMessageRows(handle.db, batchOf(10, 0, 1), new Date());
    for (const c of configs) {
      const sampler = ctx.cpuSampler();
      await sampler.start();
      const t0 = nowMs();
      const endAt = t0 + seconds * 1000;
      const lat: number[] = [];
      let stored = 0;
      await Promise.all(
        Array.from({ length: c.lanes }, async (_, lane) => {
          while (nowMs() < endAt) {
            const batch = batchOf(c.batch, lane, c.lanes);
            const b0 = nowMs();
            const res = await storeMessageRows(handle.db, batch, new Date());
            lat.push(nowMs() - b0);
            stored += res.filter((r) => r.ok && !r.message.duplicate).length;
          }
        }),
      );
      const elapsed = (nowMs() - t0) / 1000;
      const cores = await sampler.stop();
      const perSecond = stored / elapsed;
      const l = summarize(lat);
      rows.push([
        c.batch,
        c.lanes,
        perSecond,
        lat.length / elapsed,
        l.p50,
        l.p99,
        cores.postgres.toFixed(2),
        cores.postgres > 0 ? perSecond / cores.postgres : 0,
        ((cores.postgres * 1e6) / perSecond).toFixed(0),
        cores.load.toFixed(2),
      ]);
      data.push({ ...c, stored, elapsed, perSecond, batchMs: l, cores });
      console.log(
        `  batch ${c.batch} × ${c.lanes}: ${perSecond.toFixed(0)} msg/s, batch p50 ${l.p50.toFixed(2)} ms, postgres ${cores.postgres.toFixed(2)} cores`,
      );
      await sleep(300);
    }
  } finally {
    await handle.close();
  }
  return {
    id: 8,
    name: "store",
    title: "chatwire_store_messages alone: stored messages per second on this PostgreSQL (nothing else running in the bench)",
    headers: ["batch", "in flight", "msg/s", "batches/s", "batch p50 ms", "batch p99 ms", "postgres cores", "msg/pg-core-s", "pg µs/msg", "bench cores"],
    rows,
    targets: [],
    notes: [
      "storeMessageRows (server/db/message-store.ts) = one `select * from chatwire_store_messages($batch::jsonb, now)` per batch, its own transaction, as the worker calls it; 500 direct conversations, senders alternating; 'in flight' 2 = two batches at once on disjoint conversations (as two partitions' workers would)",
      "the worker's batch is what arrived together, up to WORKER_BATCH_SIZE (100): 1 and 10 are what it sees at moderate rates",
      "postgres cores: the bench database's backends plus the cluster's shared background processes (WAL writer, checkpointer, ...); bench cores: this process building the batches and reading the results",
    ],
    data,
  };
}
