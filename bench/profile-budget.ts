import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { table } from "./lib/stats.js";

// The CPU budget of one 1:1 message, by stage, from the server's V8 CPU
// profiles (node --cpu-prof): every sample's time goes to the stage of its
// stack (rules below), and each stage's total is divided by the messages sent.
//
//   node dist/bench/profile-budget.js --messages=N <file.cpuprofile | dir> ... [--top=20] [--cpu-seconds=S]
//
// --cpu-seconds: the profiled main threads' CPU time over the profile's life
// (/proc/<pid>/task/<pid>/stat); the profiler samples by wall-clock, so on a
// busy machine it counts time the process waited for a core, and this scales
// the figures back to CPU. Leave it out on a quiet machine.
//
// or `npm run bench -- --only=9`, which runs the load, stops the server (its
// profile is written on exit) and prints this table.
//
// How a sample finds its stage. The stack is walked from the running
// function outwards; the first frame that matches a rule decides, except
// that a rule with a higher priority (MarkDelivered) wins wherever it is on
// the stack. Frames of helper files (realtime/events.ts, realtime/wire.ts,
// stream-queue.ts, domain/, libraries, Node) match nothing, so they count
// for whoever called them. Code that resumes after an `await` inside a
// library (pg's result parsing, kysely's, the NATS client's protocol parser,
// node:http2's session callbacks) has no Chatwire frame on its stack: it goes
// to a shared row (PostgreSQL client, NATS client, HTTP/2 and sockets, RPC
// libraries), not to a stage: a pg or NATS frame anywhere on such a stack
// decides (their socket writes, node:net's writev and writeBuffer, are theirs,
// not HTTP/2's), else its innermost library frame; native code and the
// microtask queue with no other frame go to "V8 runtime". Server files and
// functions:
//
// | stage                | frames (server/...)                                                               |
// |----------------------|-----------------------------------------------------------------------------------|
// | RPC decode and auth  | listener, http/*, interceptors/*, auth/*, services/rpc-input (every RPC's         |
// |                      | request decode, auth, unary response; MarkDelivered's RPC layer too)              |
// | preflight            | services/chat/messages (the SendMessage handler), db/conversation-store           |
// |                      | sendPreflight                                                                     |
// | publish and ack      | messaging/jetstream-queue (publish, encodeOutgoing, the one write per turn)       |
// | worker fetch         | messaging/message-worker (pull loop, batching, storeAndAck), jetstream-queue      |
// |                      | decodeOutgoing                                                                    |
// | store                | db/message-store (storeMessageRows: the chatwire_store_messages call)             |
// | ack                  | messaging/message-worker release (JetStream acks of the stored batch)             |
// | notices              | messaging/store (live events built from the rows), messaging/message-queue        |
// |                      | publishNotices/encodeNotice, messaging/bus publish                                |
// | hub                  | realtime/hub, messaging/bus subscription callback, message-queue decodeNotice     |
// | stream write         | services/realtime-service (Subscribe), http/rpc-fast-path serveStream and its     |
// |                      | helpers, and the node:http2 writes under them                                    |
// | MarkDelivered        | services/chat/receipts, services/chat/context, db/privacy-store, domain/receipts, |
// |                      | (priority: anywhere on the stack)                                                |
//
// When server/ is restructured, the rules follow the file and function names:
// `--top=N` lists the heaviest functions with the stage each got.

const STAGES = [
  "RPC decode and auth",
  "preflight",
  "publish and ack",
  "worker fetch",
  "store",
  "ack",
  "notices",
  "hub",
  "stream write",
  "MarkDelivered",
] as const;

const SHARED = [
  "PostgreSQL client (pg, kysely), unattributed",
  "NATS client, unattributed",
  "HTTP/2 and sockets (Node), unattributed",
  "RPC libraries (connect, protobuf), unattributed",
  "garbage collector",
  "V8 runtime (program, microtask queue)",
  "other",
] as const;

type Row = (typeof STAGES)[number] | (typeof SHARED)[number];

interface Rule {
  row: Row;
  file: RegExp;
  fn?: RegExp;
  priority?: number;
}

const srv = (p: string) => new RegExp(`/server/${p}\\.js$`);

/** First match wins among rules of one frame; see the table above. */
const RULES: Rule[] = [
  { row: "MarkDelivered", file: srv("services/chat/(receipts|context)"), priority: 2 },
  { row: "MarkDelivered", file: srv("db/privacy-store"), fn: /^readStateSharedIn$/, priority: 2 },
  { row: "MarkDelivered", file: srv("domain/receipts"), priority: 2 },
  { row: "preflight", file: srv("db/conversation-store"), fn: /^sendPreflight$/ },
  { row: "preflight", file: srv("services/chat/messages") },
  { row: "worker fetch", file: srv("messaging/jetstream-queue"), fn: /^decodeOutgoing$/ },
  { row: "publish and ack", file: srv("messaging/jetstream-queue") },
  { row: "ack", file: srv("messaging/message-worker"), fn: /^release$/ },
  { row: "worker fetch", file: srv("messaging/message-worker") },
  { row: "store", file: srv("db/message-store") },
  { row: "hub", file: srv("messaging/message-queue"), fn: /^decodeNotice$/ },
  { row: "notices", file: srv("messaging/(store|message-queue)") },
  { row: "notices", file: srv("messaging/bus"), fn: /^publish$/ },
  { row: "hub", file: srv("messaging/bus") },
  { row: "hub", file: srv("realtime/hub") },
  { row: "stream write", file: srv("services/realtime-service") },
  { row: "stream write", file: srv("http/rpc-fast-path"), fn: /^(serveStream|sendHead|drained|onClose|onShutdown|done)$/ },
  { row: "RPC decode and auth", file: srv("(listener|http/[\\w-]+|interceptors/[\\w-]+|auth/[\\w-]+|services/rpc-input)") },
];

const PG_CLIENT = /node_modules\/(pg|pg-protocol|pg-pool|pg-types|pgpass|kysely)\//;
const NATS_CLIENT = /node_modules\/@nats-io\//;

/**
 * A stack with no rule's frame and one of these anywhere on it goes to that client: its socket writes
 * (node:net writev / writeBuffer under pg's query submit or the NATS client's flush) are not HTTP/2's.
 */
const SOCKET_OWNERS: Array<{ row: Row; file: RegExp }> = [
  { row: "PostgreSQL client (pg, kysely), unattributed", file: PG_CLIENT },
  { row: "NATS client, unattributed", file: NATS_CLIENT },
];

/** Where any other stack with no rule's frame goes: its innermost frame that matches one of these. */
const FALLBACK: Array<{ row: Row; file: RegExp }> = [
  { row: "RPC libraries (connect, protobuf), unattributed", file: /node_modules\/(@connectrpc|@bufbuild)\// },
  { row: "HTTP/2 and sockets (Node), unattributed", file: /^node:(internal\/)?(http2|net|stream|streams|stream_base_commons|internal\/stream_base_commons)/ },
  // jose verifies and signs JWTs with WebCrypto, which resumes in Node's crypto job callbacks.
  { row: "RPC decode and auth", file: /^node:internal\/crypto\// },
];

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  /** µs, CLOCK_MONOTONIC (as process.hrtime in any process on the machine). */
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const MESSAGE_START: Row[] = ["preflight", "publish and ack"];
const MESSAGE_END: Row[] = ["store", "notices", "hub", "stream write", "MarkDelivered"];

export interface Budget {
  messages: number;
  /** CPU time ÷ profile time (1 when no CPU time was given); every µs figure is multiplied by it. */
  scale: number;
  /** µs per message by row (stages, then shared rows). */
  perMessage: Map<Row, number>;
  /** µs of CPU in the window (idle excluded), over all profiles. */
  busyUs: number;
  windowUs: number;
  idleUs: number;
  samples: number;
  /** Heaviest functions by self time in the window: name, file, row, µs. */
  top: Array<{ fn: string; file: string; row: Row | "idle"; us: number }>;
}

function classify(stack: CallFrame[]): Row | "idle" {
  const leaf = stack[0]!;
  if (leaf.functionName === "(idle)") return "idle";
  if (leaf.functionName === "(garbage collector)") return "garbage collector";
  if (leaf.functionName === "(program)") return "V8 runtime (program, microtask queue)";
  let best: { row: Row; priority: number } | undefined;
  for (const f of stack) {
    const rule = RULES.find((r) => r.file.test(f.url) && (!r.fn || r.fn.test(f.functionName)));
    if (rule && (best === undefined || (rule.priority ?? 1) > best.priority)) best = { row: rule.row, priority: rule.priority ?? 1 };
  }
  if (best) return best.row;
  // A socket write or read under the PostgreSQL or NATS client is that client's, wherever it is on the stack:
  // node:net and node:stream frames are shared by every socket, not only HTTP/2's.
  for (const f of stack) {
    const owner = SOCKET_OWNERS.find((r) => r.file.test(f.url));
    if (owner) return owner.row;
  }
  for (const f of stack) {
    const fb = FALLBACK.find((r) => r.file.test(f.url));
    if (fb) return fb.row;
  }
  // Only native frames and the microtask queue (promise reactions, nextTick) on the stack.
  if (stack.every((f) => f.url === "" || f.url === "node:internal/process/task_queues")) return "V8 runtime (program, microtask queue)";
  return "other";
}

/**
 * Adds up the profiles' samples by row and divides by `messages`. The window:
 * [fromUs, toUs] when given (the bench's sending step), else each profile's
 * first message sample (preflight, publish) to its last (store …
 * MarkDelivered), so start-up, stream opening and shutdown are left out.
 */
export interface BudgetOptions {
  /** The heaviest functions to list. */
  top?: number;
  /** Only samples in [fromUs, toUs] (CLOCK_MONOTONIC µs) instead of the first-to-last-message window. */
  fromUs?: number;
  toUs?: number;
  /** The profiled main threads' CPU seconds over the same window (or the profiles' whole life without one). */
  mainThreadCpuSeconds?: number;
}

export function budget(profiles: CpuProfile[], messages: number, o: BudgetOptions = {}): Budget {
  const topN = o.top ?? 0;
  const mainThreadCpuSeconds = o.mainThreadCpuSeconds;
  const totals = new Map<Row, number>();
  const fnTotals = new Map<string, { fn: string; file: string; row: Row | "idle"; us: number }>();
  let busyUs = 0;
  let windowUs = 0;
  let idleUs = 0;
  let samples = 0;
  let lifeBusyUs = 0;
  for (const p of profiles) {
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const rowOf = new Map<number, Row | "idle">();
    const row = (id: number): Row | "idle" => {
      let r = rowOf.get(id);
      if (r === undefined) {
        const stack: CallFrame[] = [];
        for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) stack.push(byId.get(at)!.callFrame);
        rowOf.set(id, (r = classify(stack)));
      }
      return r;
    };
    // A sample lasts until the next one.
    const dur = (i: number) => p.timeDeltas[i + 1] ?? 0;
    let first = -1;
    let last = -1;
    let at = p.startTime;
    p.samples.forEach((id, i) => {
      at += p.timeDeltas[i] ?? 0;
      const r = row(id);
      if (o.fromUs !== undefined && o.toUs !== undefined) {
        if (at >= o.fromUs && at <= o.toUs) {
          if (first < 0) first = i;
          last = i;
        }
        return;
      }
      if (r !== "idle") lifeBusyUs += dur(i);
      if (first < 0 && (MESSAGE_START as string[]).includes(r)) first = i;
      if ((MESSAGE_END as string[]).includes(r)) last = i;
    });
    if (first < 0 || last < first) continue;
    for (let i = first; i <= last; i++) {
      const id = p.samples[i]!;
      const r = row(id);
      const us = dur(i);
      windowUs += us;
      samples++;
      if (r === "idle") idleUs += us;
      else {
        busyUs += us;
        totals.set(r, (totals.get(r) ?? 0) + us);
      }
      if (topN > 0) {
        const cf = byId.get(id)!.callFrame;
        const key = `${cf.functionName}|${cf.url}|${cf.lineNumber}`;
        const e = fnTotals.get(key) ?? { fn: cf.functionName || "(anonymous)", file: `${shortUrl(cf.url)}:${cf.lineNumber + 1}`, row: r, us: 0 };
        e.us += us;
        fnTotals.set(key, e);
      }
    }
  }
  // The profiler samples by wall-clock: while the process is runnable but not
  // running (a busy machine), the time goes to whatever was on the stack.
  // Given the main threads' CPU time over the profiles' life, every figure is
  // scaled to it, keeping the shares.
  const scaleBase = o.fromUs !== undefined ? busyUs : lifeBusyUs;
  const scale = mainThreadCpuSeconds && scaleBase > 0 ? (mainThreadCpuSeconds * 1e6) / scaleBase : 1;
  const perMessage = new Map<Row, number>();
  for (const r of [...STAGES, ...SHARED]) perMessage.set(r, ((totals.get(r) ?? 0) * scale) / Math.max(1, messages));
  const top = [...fnTotals.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((t) => ({ ...t, us: t.us * scale }));
  return { messages, scale, perMessage, busyUs: busyUs * scale, windowUs, idleUs, samples, top };
}

function shortUrl(url: string): string {
  const i = url.indexOf("/server/");
  if (i >= 0) return url.slice(i + 1);
  const j = url.lastIndexOf("node_modules/");
  if (j >= 0) return url.slice(j + 13);
  return url || "(native)";
}

/** The budget as table rows: row, µs/msg, share of the busy time. */
export function budgetRows(b: Budget): Array<Array<string | number>> {
  const busyPerMsg = b.busyUs / Math.max(1, b.messages);
  const rows: Array<Array<string | number>> = [];
  const line = (name: string, us: number) => rows.push([name, us.toFixed(1), `${((us / Math.max(busyPerMsg, 1e-9)) * 100).toFixed(1)} %`]);
  let staged = 0;
  for (const s of STAGES) {
    const us = b.perMessage.get(s) ?? 0;
    staged += us;
    line(s, us);
  }
  line("= the stages", staged);
  for (const s of SHARED) line(s, b.perMessage.get(s) ?? 0);
  rows.push(["= total (main thread, busy)", busyPerMsg.toFixed(1), "100 %"]);
  rows.push(["→ msg/s one core could carry", busyPerMsg > 0 ? Math.round(1e6 / busyPerMsg) : "–", ""]);
  return rows;
}

export function readProfiles(inputs: string[]): CpuProfile[] {
  const files = inputs.flatMap((p) =>
    statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith(".cpuprofile"))
          .map((f) => path.join(p, f))
      : [p],
  );
  return files.map((f) => JSON.parse(readFileSync(f, "utf8")) as CpuProfile);
}

function main(): void {
  const args = process.argv.slice(2);
  const messages = Number(args.find((a) => a.startsWith("--messages="))?.slice(11));
  const top = Number(args.find((a) => a.startsWith("--top="))?.slice(6) ?? 0);
  const cpuSeconds = Number(args.find((a) => a.startsWith("--cpu-seconds="))?.slice(14) ?? 0) || undefined;
  const inputs = args.filter((a) => !a.startsWith("--"));
  if (!messages || inputs.length === 0) {
    console.error("usage: node dist/bench/profile-budget.js --messages=N <file.cpuprofile | dir> ... [--top=N] [--cpu-seconds=S]");
    process.exit(2);
  }
  const b = budget(readProfiles(inputs), messages, { top, mainThreadCpuSeconds: cpuSeconds });
  console.log(`${b.messages} messages, ${(b.windowUs / 1e6).toFixed(1)} s of profile window, ${b.samples} samples, CPU/profile scale ${b.scale.toFixed(2)}\n`);
  console.log(table(["stage", "µs/msg", "share"], budgetRows(b)).text);
  if (top > 0) {
    console.log(`\nheaviest functions (self time in the window):`);
    console.log(
      table(
        ["function", "file", "row", "µs/msg"],
        b.top.map((t) => [t.fn, t.file, t.row, (t.us / b.messages).toFixed(2)]),
      ).text,
    );
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
