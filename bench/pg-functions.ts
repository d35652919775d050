import { randomUUID } from "node:crypto";
import { appendFileSync, readFileSync } from "node:fs";
import path from "node:path";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import pino from "pino";
import { sendPreflight } from "../server/db/conversation-store.js";
import { PreparingClient } from "../server/db/database.js";
import { storeMessageRows } from "../server/db/message-store.js";
import { migrateToLatest } from "../server/db/migrate.js";
import { closeStream, openStream } from "../server/db/presence-store.js";
import { markReceipts } from "../server/db/receipt-store.js";
import type { Database } from "../server/db/schema.js";
import type { OutgoingMessage } from "../server/messaging/types.js";
import { PrivatePostgres } from "../server/tests/helpers/private-postgres.js";

// The PostgreSQL side of the per-message cost (issue 15): the database
// functions of the message path, called as their callers call them
// (server/db/message-store.ts, conversation-store.ts, presence-store.ts), on a
// private PostgreSQL of this run's own (initdb into a temp dir, its own port,
// pg_stat_statements and auto_explain loaded; never the machine's server).
//
//   npm run build && node dist/bench/pg-functions.js [--devices=2000] [--calls=300]
//       [--sizes=1,2.4,10,100|none] [--history=20000] [--explain] [--unprepared]
//
// Per function and batch size: wall time per call as the caller sees it, the
// backend's CPU (utime+stime of its /proc entry, 10 ms ticks: hence many
// calls), pg_stat_statements' execution time of the call, each per call and
// per message, and the statements inside that cost most (track = all).
// The calls go as the server sends them, named prepared statements
// (database.ts PreparingClient); --unprepared sends them unnamed, for comparison.
// --explain prints EXPLAIN (ANALYZE, BUFFERS) of every statement inside one
// call of each function (auto_explain, log_nested_statements, as notices).

const args = new Map(
  process.argv
    .slice(2)
    .filter((a) => a.startsWith("--"))
    .map((a) => {
      const [k, v] = a.slice(2).split("=");
      return [k!, v ?? "true"] as const;
    }),
);
const DEVICES = Number(args.get("devices") ?? 2000);
const CALLS = Number(args.get("calls") ?? 300);
// --sizes=none: only the preflight and the stream functions.
const SIZES = args.get("sizes") === "none" ? [] : (args.get("sizes") ?? "1,2.4,10,100").split(",").map(Number);
const HISTORY = Number(args.get("history") ?? 20000);
const EXPLAIN = args.has("explain");
const UNPREPARED = args.has("unprepared");
const TICKS_PER_SECOND = 100;

interface Pair {
  a: string;
  b: string;
  conversationId: string;
}

interface Row {
  fn: string;
  size: string;
  calls: number;
  messages: number;
  wallMs: number;
  cpuMs: number;
  execMs: number;
}

async function main(): Promise<void> {
  const server = await PrivatePostgres.create();
  appendFileSync(
    path.join(server.dataDir, "postgresql.conf"),
    [
      "shared_preload_libraries = 'pg_stat_statements,auto_explain'",
      "pg_stat_statements.track = all",
      "pg_stat_statements.track_planning = on",
      "track_io_timing = on",
      "auto_explain.log_min_duration = -1",
      "",
    ].join("\n"),
  );
  await server.start();
  const notices: string[] = [];
  // As the server's pool: the functions' calls as named prepared statements (--unprepared: as unnamed ones).
  const pool = new pg.Pool({ connectionString: server.url, max: 1, ...(UNPREPARED ? {} : { Client: PreparingClient }) });
  pool.on("connect", (c) => c.on("notice", (n) => notices.push(n.message ?? "")));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const onSignal = () => void server.dispose().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await migrateToLatest(db, pino({ level: "warn" }));
    await pool.query("create extension pg_stat_statements");
    const version = (await pool.query<{ v: string }>("select version() as v")).rows[0]!.v;
    const pairs = await seed(pool, DEVICES);
    const backend = (await pool.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
    console.log(`${version}\nprivate server on port ${server.port}, backend pid ${backend}; ${DEVICES} devices in ${pairs.length} direct conversations`);

    // History, so indexes and tables are not empty, then fresh statistics.
    for (let stored = 0; stored < HISTORY; stored += 100) await storeMessageRows(db, batchOf(pairs, 100), new Date());
    await pool.query("vacuum analyze");
    console.log(`history: ${HISTORY} messages stored and analyzed\n`);

    const rows: Row[] = [];
    const top: string[] = [];
    for (const size of SIZES) {
      const pattern = batchSizes(size);
      // Warm the connection's plan caches as a long-lived worker connection has them.
      for (let i = 0; i < 20; i++) await storeMessageRows(db, batchOf(pairs, pattern[i % pattern.length]!), new Date());
      let messages = 0;
      const r = await measure(pool, backend, `store`, String(size), async (i) => {
        const n = pattern[i % pattern.length]!;
        messages += n;
        await storeMessageRows(db, batchOf(pairs, n), new Date());
      });
      r.messages = messages;
      rows.push(r);
      top.push(`chatwire_store_messages, ${size} per call:\n${await nested(pool, r.calls)}`);
    }

    const senders = pairs.map((p) => ({ conversationId: p.conversationId, sender: p.a }));
    for (let i = 0; i < 20; i++) await sendPreflight(db, senders[i]!.conversationId, senders[i]!.sender, randomUUID());
    rows.push(
      await measure(pool, backend, "preflight", "1", async (i) => {
        const s = senders[(i * 7919) % senders.length]!;
        await sendPreflight(db, s.conversationId, s.sender, randomUUID());
      }),
    );
    top.push(`chatwire_send_preflight:\n${await nested(pool, CALLS)}`);

    // MarkDelivered as the SDK sends it: a device acknowledges up to the next seq of one of its
    // conversations (each call moves the watermark: two receipt_updated events appended).
    const marked = new Map<string, number>();
    const markArgs = (i: number) => {
      const p = pairs[(i * 7919) % pairs.length]!;
      const upTo = (marked.get(p.conversationId) ?? 0) + 1;
      marked.set(p.conversationId, upTo);
      return { p, upTo };
    };
    for (let i = 0; i < 20; i++) {
      const { p, upTo } = markArgs(CALLS * 3 + i);
      await markReceipts(db, p.conversationId, p.b, BigInt(upTo), false, new Date());
    }
    rows.push(
      await measure(pool, backend, "mark_receipts", "1", async (i) => {
        const { p, upTo } = markArgs(i);
        await markReceipts(db, p.conversationId, p.b, BigInt(upTo), false, new Date());
      }),
    );
    top.push(`chatwire_mark_receipts:\n${await nested(pool, CALLS)}`);
    // Several conversations' marks in one call (chatwire_mark_receipts_many), as a coalescer would send them.
    for (const per of [4, 10]) {
      let items = 0;
      const r = await measure(pool, backend, "mark_receipts_many", String(per), async (i) => {
        const batch = Array.from({ length: per }, (_, k) => {
          const { p, upTo } = markArgs(CALLS * 5 + i * per + k);
          return { o: k, c: p.conversationId, u: p.b, s: upTo, r: false, n: new Date().toISOString() };
        });
        items += per;
        await pool.query({ name: "mark_many", text: "select * from chatwire_mark_receipts_many($1::jsonb)", values: [JSON.stringify(batch)] });
      });
      r.messages = items;
      rows.push(r);
    }
    // The statements MarkDelivered sent one by one before migration 0015, for comparison (exec ms: not counted).
    rows.push(await measure(pool, backend, "mark, statements before 0015", "1", (i) => markOneByOne(pool, markArgs(CALLS + i))));

    // Each device opens one stream (comes online: audience read), then closes it (goes offline).
    const users = pairs.flatMap((p) => [p.a, p.b]);
    const sessions = await sessionsOf(pool, users);
    const streams: Array<{ streamId: string; userId: string }> = [];
    const open = async (i: number) => {
      const userId = users[i % users.length]!;
      const streamId = randomUUID();
      const now = new Date();
      await openStream(db, {
        streamId,
        userId,
        sessionId: sessions.get(userId)!,
        instanceId: "bench",
        now,
        expiresAt: new Date(now.getTime() + 60_000),
        maxStreams: 10,
      });
      streams.push({ streamId, userId });
    };
    const close = async (i: number) => {
      const s = streams[i]!;
      await closeStream(db, { ...s, now: new Date() });
    };
    for (let i = 0; i < 20; i++) await open(CALLS + i);
    for (let i = 0; i < 20; i++) await close(i);
    streams.length = 0;
    rows.push(await measure(pool, backend, "open_stream", "1", open));
    top.push(`chatwire_presence_open_stream:\n${await nested(pool, CALLS)}`);
    rows.push(await measure(pool, backend, "close_stream", "1", close));
    top.push(`chatwire_presence_close_stream:\n${await nested(pool, CALLS)}`);

    console.log(table(rows));
    console.log(`\nStatements inside (pg_stat_statements, track = all; per call of the function; plan = planning time):\n`);
    console.log(top.join("\n\n"));

    if (EXPLAIN) {
      await pool.query(
        "set auto_explain.log_min_duration = 0; set auto_explain.log_analyze = on; set auto_explain.log_buffers = on; " +
          "set auto_explain.log_nested_statements = on; set auto_explain.log_timing = on; set client_min_messages = log",
      );
      const show = async (title: string, fn: () => Promise<unknown>) => {
        notices.length = 0;
        await fn();
        console.log(`\n===== EXPLAIN (ANALYZE, BUFFERS): ${title}\n${notices.filter((n) => n.includes("Query Text")).join("\n\n")}`);
      };
      await show("chatwire_store_messages, 10 messages", () => storeMessageRows(db, batchOf(pairs, 10), new Date()));
      await show("chatwire_mark_receipts", () => {
        const { p, upTo } = markArgs(1);
        return markReceipts(db, p.conversationId, p.b, BigInt(upTo), false, new Date());
      });
      await show("chatwire_send_preflight", () => sendPreflight(db, pairs[1]!.conversationId, pairs[1]!.a, randomUUID()));
      streams.length = 0;
      await show("chatwire_presence_open_stream", () => open(0));
      await show("chatwire_presence_close_stream", () => close(0));
      await pool.query("set client_min_messages = notice; set auto_explain.log_min_duration = -1");
    }
  } finally {
    await db.destroy().catch(() => undefined);
    await server.dispose();
  }
}

/** MarkDelivered's statements before chatwire_mark_receipts (the watermark moves; 1:1: two events). */
async function markOneByOne(pool: pg.Pool, { p, upTo }: { p: Pair; upTo: number }): Promise<void> {
  const [c, me, other] = [p.conversationId, p.b, p.a];
  await pool.query("select * from conversation_participants where conversation_id = $1 and user_id = $2", [c, me]);
  await pool.query("select * from conversations where id = $1", [c]);
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query("select id from conversations where id = $1 for key share", [c]);
    await client.query("select * from conversation_participants where conversation_id in ($1) and left_at is null order by joined_at, user_id", [c]);
    await client.query(
      "update conversation_participants set last_delivered_seq = greatest(last_delivered_seq, $1::bigint) where conversation_id = $2 and user_id = $3 returning last_delivered_seq, last_read_seq",
      [upTo, c, me],
    );
    await client.query("insert into receipt_marks (conversation_id, user_id, kind, up_to_seq, at) values ($1, $2, $3, $4, $5) on conflict do nothing", [
      c,
      me,
      "delivered",
      upTo,
      new Date(),
    ]);
    await client.query(
      `select c.id, c.is_group, ps.read_receipts from conversations as c inner join conversation_participants as p on p.conversation_id = c.id
       left join privacy_settings as ps on ps.user_id = p.user_id where c.id in ($1) and c.is_group = $2`,
      [c, false],
    );
    const users = [me, other].sort();
    const { rows } = await client.query<{ user_id: string; last_position: string }>(
      `insert into inbox_positions (user_id, last_position) values ($1, $2), ($3, $4)
       on conflict (user_id) do update set last_position = inbox_positions.last_position + excluded.last_position returning user_id, last_position`,
      [users[0], 1, users[1], 1],
    );
    await client.query(
      "insert into inbox (user_id, position, event_type, conversation_id, message_id, payload, created_at) values ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)",
      rows.flatMap((r) => [
        r.user_id,
        r.last_position,
        "receipt_updated",
        c,
        null,
        JSON.stringify({ event: { receiptUpdated: { conversationId: c } } }),
        new Date(),
      ]),
    );
    await client.query("commit");
  } finally {
    client.release();
  }
}

/** Runs CALLS calls of fn on the one pooled connection; wall, backend CPU and pg_stat_statements' exec time. */
async function measure(pool: pg.Pool, backend: number, fn: string, size: string, call: (i: number) => Promise<void>): Promise<Row> {
  await pool.query("select pg_stat_statements_reset()");
  const cpu0 = backendTicks(backend);
  const t0 = performance.now();
  for (let i = 0; i < CALLS; i++) await call(i);
  const wallMs = performance.now() - t0;
  const cpuMs = ((backendTicks(backend) - cpu0) / TICKS_PER_SECOND) * 1000;
  const { rows } = await pool.query<{ exec: number }>(
    "select coalesce(sum(total_exec_time), 0)::float8 as exec from pg_stat_statements where toplevel and query ~ 'chatwire_' and query !~ 'pg_stat_statements'",
  );
  return { fn, size, calls: CALLS, messages: CALLS, wallMs, cpuMs, execMs: rows[0]!.exec };
}

/** The statements run inside the measured calls, costliest first. */
async function nested(pool: pg.Pool, calls: number): Promise<string> {
  const { rows } = await pool.query<{ q: string; calls: string; exec: number; plan: number; rows: string; hit: string; dirtied: string }>(
    `select regexp_replace(query, '\\s+', ' ', 'g') as q, calls, total_exec_time::float8 as exec, total_plan_time::float8 as plan, rows,
            shared_blks_hit + shared_blks_read as hit, shared_blks_dirtied as dirtied
     from pg_stat_statements where not toplevel order by total_exec_time + total_plan_time desc limit 8`,
  );
  return rows
    .map(
      (r) =>
        `  ${((r.exec / calls) * 1000).toFixed(0).padStart(5)} µs exec ${((r.plan / calls) * 1000).toFixed(0).padStart(4)} µs plan ` +
        `${(Number(r.calls) / calls).toFixed(1).padStart(4)}×/call ${(Number(r.hit) / calls).toFixed(0).padStart(4)} blks ` +
        `${(Number(r.dirtied) / calls).toFixed(1).padStart(4)} dirtied  ${r.q.slice(0, 110)}`,
    )
    .join("\n");
}

function table(rows: Row[]): string {
  const out = [
    "| function | msgs/call | calls | wall ms/call | exec ms/call | backend CPU ms/call | wall ms/msg | exec ms/msg | CPU ms/msg |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    const per = r.messages / r.calls;
    const f = (v: number) => v.toFixed(3);
    out.push(
      `| ${r.fn} | ${per.toFixed(1)} | ${r.calls} | ${f(r.wallMs / r.calls)} | ${f(r.execMs / r.calls)} | ${f(r.cpuMs / r.calls)} | ` +
        `${f(r.wallMs / r.messages)} | ${f(r.execMs / r.messages)} | ${f(r.cpuMs / r.messages)} |`,
    );
  }
  return out.join("\n");
}

function backendTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Batch sizes cycling to the given mean (2.4 → 2,3,2,3,2). */
function batchSizes(mean: number): number[] {
  if (Number.isInteger(mean)) return [mean];
  const lo = Math.floor(mean);
  const out: number[] = [];
  let sum = 0;
  for (let i = 1; i <= 10; i++) {
    const n = sum + lo + 1 <= mean * i + 1e-9 ? lo + 1 : lo;
    out.push(n);
    sum += n;
  }
  return out;
}

let next = 0;
/** n user messages from the first device of n different pairs (round robin), as the worker's batch. */
function batchOf(pairs: Pair[], n: number): OutgoingMessage[] {
  const now = new Date().toISOString();
  return Array.from({ length: n }, () => {
    const p = pairs[next++ % pairs.length]!;
    const senderId = next % 2 === 0 ? p.a : p.b;
    const id = randomUUID();
    return {
      id,
      conversationId: p.conversationId,
      senderId,
      clientMessageId: id,
      content: "bench message of a typical length, about sixty characters",
      mediaUrl: "",
      mediaType: "",
      replyToMessageId: null,
      mentionUserIds: [],
      sentAt: now,
      disappearingSeconds: 0, // as SendMessage sends it: the timer it read (off)
    };
  });
}

/** Users with one device each, in direct conversations (0,1), (2,3), ... as bench/lib/fixtures.ts does. */
async function seed(pool: pg.Pool, n: number): Promise<Pair[]> {
  const phones = Array.from({ length: n }, (_, i) => `+1415${2_000_000 + i}`);
  const ids = (await pool.query<{ id: string }>("insert into users (phone_number) select unnest($1::text[]) returning id", [phones])).rows.map((r) => r.id);
  await pool.query(
    `insert into user_devices (user_id, device_id, device_name, device_type, refresh_token_hash, refresh_expires_at)
     select u, 'bench', 'bench', 'bench', md5(u::text), now() + interval '7 days' from unnest($1::uuid[]) as u`,
    [ids],
  );
  const pairs: Pair[] = [];
  for (let i = 0; i + 1 < ids.length; i += 2) {
    const [a, b] = [ids[i]!, ids[i + 1]!];
    const { rows } = await pool.query<{ id: string }>("insert into conversations (is_group, direct_key, created_by) values (false, $1, $2) returning id", [
      [a, b].sort().join(":"),
      a,
    ]);
    pairs.push({ a, b, conversationId: rows[0]!.id });
  }
  await pool.query("insert into conversation_participants (conversation_id, user_id) select * from unnest($1::uuid[], $2::uuid[])", [
    pairs.flatMap((p) => [p.conversationId, p.conversationId]),
    pairs.flatMap((p) => [p.a, p.b]),
  ]);
  return pairs;
}

async function sessionsOf(pool: pg.Pool, users: string[]): Promise<Map<string, string>> {
  const { rows } = await pool.query<{ id: string; user_id: string }>("select id, user_id from user_devices where user_id = any($1::uuid[])", [users]);
  return new Map(rows.map((r) => [r.user_id, r.id]));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
