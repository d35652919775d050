import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type http2 from "node:http2";
import { MarkDeliveredRequestSchema } from "../../gen/chat/chat_pb.js";
import { EventSchema, SubscribeRequestSchema } from "../../gen/realtime/realtime_pb.js";
import { FrameReader, connectH2, grpcFrame, grpcHeaders, unary } from "../lib/h2.js";
import { serve } from "../lib/ipc.js";
import { nowMs, pool, sleep } from "../lib/stats.js";

// Holds Subscribe streams for many devices, each on its own HTTP/2
// connection, as phones would. Records, per device, what a client must
// check: stored positions without gaps or repeats, heartbeats, and the
// send→receive latency of bench messages (content "bench:<tag>:<sent ms>").
// Like the SDK (client-sdk/src/subscription.ts, autoDeliver), each device
// acknowledges the messages it receives from others with MarkDelivered,
// batched per conversation: the first such message starts a 100 ms timer, and
// when it fires one MarkDelivered per conversation goes out with the highest
// seq seen, on the device's own connection.

interface DeviceSpec {
  userId: string;
  token: string;
}

interface DeviceState {
  spec: DeviceSpec;
  session?: http2.ClientHttp2Session;
  stream?: http2.ClientHttp2Stream;
  /** Last stored position received (the resume point). */
  last: bigint;
  caughtUp: boolean;
  stored: number;
  duplicates: number;
  gaps: number;
  lastEventAt: number;
  heartbeats: number;
  lateHeartbeats: number;
  maxHeartbeatGapMs: number;
  ended?: string;
  onCaughtUp?: () => void;
  /** When the last open's ready arrived (nowMs). */
  readyAt?: number;
  /** MarkDelivered batch: conversation → highest seq received from others. */
  deliver: Map<string, bigint>;
  deliverTimer?: NodeJS.Timeout;
}

let url = "";
let heartbeatMs = 15_000;
const devices: DeviceState[] = [];
/** Latencies (ms) of received bench messages by tag. */
let latencies = new Map<string, number[]>();
/** Per tag and message: latest arrival (group fan-out: time to the last member). */
let lastArrival = new Map<string, Map<string, { first: number; last: number; count: number; sent: number }>>();
let trackPerMessage = false;
let autoDeliver = true;
let deliverDelayMs = 100;
const marks = { sent: 0, ok: 0, failed: 0, skipped: 0, errors: new Map<string, number>() };

function noteDelivered(d: DeviceState, conversationId: string, seq: bigint, senderId: string): void {
  if (!autoDeliver || seq <= 0n || senderId === d.spec.userId) return;
  const seen = d.deliver.get(conversationId) ?? 0n;
  if (seq > seen) d.deliver.set(conversationId, seq);
  d.deliverTimer ??= setTimeout(() => flushDelivered(d), deliverDelayMs);
}

function flushDelivered(d: DeviceState): void {
  clearTimeout(d.deliverTimer);
  d.deliverTimer = undefined;
  const session = d.session;
  for (const [conversationId, upToSeq] of d.deliver) {
    // The SDK's call would wait for a new connection; a dropped device here just skips (its next message acknowledges again).
    if (!session || session.closed || session.destroyed) {
      marks.skipped++;
      continue;
    }
    marks.sent++;
    const body = grpcFrame(toBinary(MarkDeliveredRequestSchema, create(MarkDeliveredRequestSchema, { conversationId, upToSeq })));
    void unary(session, grpcHeaders("/chat.ChatService/MarkDelivered", d.spec.token), body, true).then((r) => {
      if (r.status === 0) marks.ok++;
      else {
        marks.failed++;
        const key = `${r.status} ${r.message ?? ""}`.slice(0, 120);
        marks.errors.set(key, (marks.errors.get(key) ?? 0) + 1);
      }
    });
  }
  d.deliver.clear();
}

function onEvent(d: DeviceState, payload: Buffer): void {
  const e = fromBinary(EventSchema, payload);
  const now = nowMs();
  const k = e.kind;
  if (k.case === "heartbeat") {
    d.heartbeats++;
    const gap = now - d.lastEventAt;
    if (gap > d.maxHeartbeatGapMs) d.maxHeartbeatGapMs = gap;
    // On time: within a second (or a fifth) of the announced interval after the last event.
    if (gap > heartbeatMs + Math.max(1000, heartbeatMs / 5)) d.lateHeartbeats++;
  }
  d.lastEventAt = now;
  if (e.position > 0n) {
    if (e.position <= d.last) d.duplicates++;
    else {
      if (e.position > d.last + 1n) d.gaps += Number(e.position - d.last - 1n);
      d.last = e.position;
      d.stored++;
    }
  }
  if (k.case === "ready") {
    d.readyAt = nowMs();
    // A fresh stream (no since_position) starts at the account's current position.
    if (d.last === 0n) d.last = k.value.position;
  } else if (k.case === "caughtUp") {
    if (k.value.position > d.last) d.last = k.value.position;
    d.caughtUp = true;
    d.onCaughtUp?.();
  } else if (k.case === "messageCreated") {
    const m = k.value.message;
    if (m) noteDelivered(d, m.conversationId, m.seq, m.senderId);
    if (!m || m.senderId === d.spec.userId || !m.content.startsWith("bench:")) return;
    const [, tag, sent] = m.content.split(":");
    const lat = now - Number(sent);
    let list = latencies.get(tag!);
    if (!list) latencies.set(tag!, (list = []));
    list.push(lat);
    if (trackPerMessage) {
      let per = lastArrival.get(tag!);
      if (!per) lastArrival.set(tag!, (per = new Map()));
      const rec = per.get(m.id);
      if (!rec) per.set(m.id, { first: now, last: now, count: 1, sent: Number(sent) });
      else {
        rec.last = Math.max(rec.last, now);
        rec.count++;
      }
    }
  }
}

async function openOne(d: DeviceState, since: bigint | undefined, timeoutMs: number): Promise<boolean> {
  d.caughtUp = false;
  d.ended = undefined;
  try {
    d.session ??= await connectH2(url);
  } catch (err) {
    d.ended = `connect: ${(err as Error).message}`;
    return false;
  }
  const session = d.session;
  session.once("close", () => {
    if (d.session === session) d.session = undefined;
  });
  const req = session.request(grpcHeaders("/realtime.RealtimeService/Subscribe", d.spec.token));
  d.stream = req;
  const reader = new FrameReader();
  const done = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    d.onCaughtUp = () => {
      clearTimeout(timer);
      d.onCaughtUp = undefined;
      resolve(true);
    };
    req.on("close", () => {
      clearTimeout(timer);
      resolve(d.caughtUp);
    });
  });
  req.on("response", (h) => {
    if (h["grpc-status"] !== undefined) d.ended = `status ${h["grpc-status"]}: ${String(h["grpc-message"] ?? "")}`;
  });
  req.on("trailers", (t) => (d.ended = `status ${String(t["grpc-status"])}: ${String(t["grpc-message"] ?? "")}`));
  req.on("data", (c: Buffer) => reader.push(c, (_flags, p) => onEvent(d, p)));
  req.on("error", (err) => (d.ended ??= err.message));
  req.on("close", () => (d.ended ??= "closed"));
  d.lastEventAt = nowMs();
  req.end(grpcFrame(toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, since === undefined ? {} : { sincePosition: since }))));
  return done;
}

function counts() {
  let caughtUp = 0;
  let ended = 0;
  for (const d of devices) {
    if (d.caughtUp && !d.ended) caughtUp++;
    if (d.ended) ended++;
  }
  return { devices: devices.length, caughtUp, ended };
}

serve({
  async open(arg: {
    url: string;
    devices: DeviceSpec[];
    concurrency: number;
    heartbeatSeconds?: number;
    timeoutMs?: number;
    perMessage?: boolean;
    /** MarkDelivered as the SDK does (default true). */
    autoDeliver?: boolean;
    deliverDelayMs?: number;
  }) {
    url = arg.url;
    autoDeliver = arg.autoDeliver ?? true;
    deliverDelayMs = arg.deliverDelayMs ?? 100;
    if (arg.heartbeatSeconds) heartbeatMs = arg.heartbeatSeconds * 1000;
    trackPerMessage = arg.perMessage ?? false;
    const started = nowMs();
    const fresh = arg.devices.map((spec) => {
      const d: DeviceState = {
        spec,
        last: 0n,
        caughtUp: false,
        stored: 0,
        duplicates: 0,
        gaps: 0,
        lastEventAt: 0,
        heartbeats: 0,
        lateHeartbeats: 0,
        maxHeartbeatGapMs: 0,
        deliver: new Map(),
      };
      devices.push(d);
      return d;
    });
    const ok = await pool(fresh, arg.concurrency, (d) => openOne(d, undefined, arg.timeoutMs ?? 60_000));
    const errors = fresh
      .filter((d) => d.ended)
      .slice(0, 3)
      .map((d) => d.ended);
    return { opened: ok.filter(Boolean).length, ms: nowMs() - started, errors };
  },

  /** Drops every connection abruptly (as a network change would), keeping each device's position. */
  async drop() {
    for (const d of devices) {
      d.caughtUp = false;
      d.session?.destroy();
      d.session = undefined;
    }
    await sleep(50);
    return counts();
  },

  /** Reconnects every device with since_position = its last position; resolves when all are caught up. */
  async resume(arg: { concurrency: number; timeoutMs?: number }) {
    const started = nowMs();
    let slowest = 0;
    const toReady: number[] = [];
    const toCaughtUp: number[] = [];
    const timeoutMs = arg.timeoutMs ?? 60_000;
    let retried = 0;
    const ok = await pool(devices, arg.concurrency, async (d) => {
      const t = nowMs();
      d.readyAt = undefined;
      let r = await openOne(d, d.last, timeoutMs);
      // As the SDK's subscription does (client-sdk/src/subscription.ts): a stream the server ended with
      // Unavailable (status 14: e.g. no database connection free within its timeout) is opened again after a
      // jittered backoff (from 500 ms, doubling), from the position it reached; the time counts from the first open.
      for (let attempt = 0; !r && d.ended?.startsWith("status 14") && nowMs() - t < timeoutMs; attempt++) {
        retried++;
        const ceiling = Math.min(30_000, 500 * 2 ** attempt);
        await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
        r = await openOne(d, d.last, Math.max(1, timeoutMs - (nowMs() - t)));
      }
      slowest = Math.max(slowest, nowMs() - started);
      if (r) {
        toReady.push((d.readyAt ?? nowMs()) - t);
        toCaughtUp.push(nowMs() - t);
      }
      return r;
    });
    return { resumed: ok.filter(Boolean).length, ms: nowMs() - started, lastCaughtUpMs: slowest, toReady, toCaughtUp, retried };
  },

  /** Latencies recorded since the last take, by tag (and then forgotten). */
  take(arg: { tags?: string[] }) {
    const out: Record<string, number[]> = {};
    for (const [tag, list] of latencies) if (!arg.tags || arg.tags.includes(tag)) out[tag] = list;
    const per: Record<string, Array<{ id: string; sent: number; first: number; last: number; count: number }>> = {};
    for (const [tag, m] of lastArrival) per[tag] = [...m].map(([id, r]) => ({ id, ...r }));
    latencies = new Map();
    lastArrival = new Map();
    return { latencies: out, perMessage: per };
  },

  /** Received counts of bench messages by tag so far (without taking them). */
  received() {
    const out: Record<string, number> = {};
    for (const [tag, list] of latencies) out[tag] = list.length;
    return out;
  },

  /** MarkDelivered calls so far: sent, answered ok, failed (with the first errors), skipped (no connection). */
  marks() {
    return { sent: marks.sent, ok: marks.ok, failed: marks.failed, skipped: marks.skipped, errors: Object.fromEntries([...marks.errors].slice(0, 3)) };
  },

  check() {
    let duplicates = 0;
    let gaps = 0;
    let heartbeats = 0;
    let lateHeartbeats = 0;
    let maxHeartbeatGapMs = 0;
    for (const d of devices) {
      duplicates += d.duplicates;
      gaps += d.gaps;
      heartbeats += d.heartbeats;
      lateHeartbeats += d.lateHeartbeats;
      maxHeartbeatGapMs = Math.max(maxHeartbeatGapMs, d.maxHeartbeatGapMs);
    }
    return {
      ...counts(),
      duplicates,
      gaps,
      heartbeats,
      lateHeartbeats,
      maxHeartbeatGapMs,
      positions: devices.map((d) => [d.spec.userId, d.last.toString()] as const),
      endedSample: devices
        .filter((d) => d.ended)
        .slice(0, 3)
        .map((d) => d.ended),
    };
  },

  resetHeartbeats() {
    for (const d of devices) {
      d.heartbeats = 0;
      d.lateHeartbeats = 0;
      d.maxHeartbeatGapMs = 0;
    }
    return true;
  },

  async close() {
    for (const d of devices) {
      clearTimeout(d.deliverTimer);
      d.stream?.close();
      d.session?.destroy();
    }
    devices.length = 0;
    return true;
  },
});
