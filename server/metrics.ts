import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Prometheus metrics of one server instance (its own registry: no globals). */
export class Metrics {
  readonly registry = new Registry();
  readonly rpcTotal: Counter<"method" | "code" | "protocol">;
  readonly rpcDuration: Histogram<"method" | "code">;
  readonly openStreams: Gauge<"method">;
  readonly realtimeStreamsEnded: Counter<"reason">;
  readonly realtimeEventsDropped: Counter;
  readonly fastPathCalls: Counter<"protocol">;
  readonly streamsOpened: Counter;
  readonly otpSends: Counter<"result">;
  readonly otpChecks: Counter<"result">;
  /** chatwire_worker_messages_total: the worker's and the inline queue's messages, by result. */
  readonly messagesStored: Counter<"result">;

  constructor() {
    // prom-client's standard names (process_cpu_seconds_total, nodejs_eventloop_lag_seconds, ...), as stock
    // Node.js dashboards expect them; instances are told apart by the scrape's job/instance labels.
    collectDefaultMetrics({ register: this.registry });
    this.fastPathCalls = new Counter({
      name: "chatwire_rpc_fast_path_total",
      help: "Unary and server-streaming calls served by the lean handler instead of connect-node (RPC_FAST_PATH), by protocol",
      labelNames: ["protocol"],
      registers: [this.registry],
    });
    this.rpcTotal = new Counter({
      name: "chatwire_rpc_requests_total",
      help: "RPCs handled, by method, final code and protocol",
      labelNames: ["method", "code", "protocol"],
      registers: [this.registry],
    });
    this.rpcDuration = new Histogram({
      name: "chatwire_rpc_duration_seconds",
      help: "RPC duration from request to final status (streams: until they end)",
      labelNames: ["method", "code"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600],
      registers: [this.registry],
    });
    this.openStreams = new Gauge({
      name: "chatwire_open_streams",
      help: "Server-streaming and bidi RPCs currently open, by method",
      labelNames: ["method"],
      registers: [this.registry],
    });
    this.realtimeStreamsEnded = new Counter({
      name: "chatwire_realtime_streams_ended_total",
      help: "Subscribe streams the server ended, by reason (slow, evicted, revoked, shutdown)",
      labelNames: ["reason"],
      registers: [this.registry],
    });
    this.streamsOpened = new Counter({
      name: "chatwire_realtime_streams_opened_total",
      help: "Subscribe streams opened on this instance (ended: chatwire_realtime_streams_ended_total and chatwire_open_streams)",
      registers: [this.registry],
    });
    this.otpSends = new Counter({
      name: "chatwire_otp_sends_total",
      help: "SendOTP outcomes, by result as on the wire: ok (a code sent, or the pending one's answer replayed), resource_exhausted, invalid_argument, unavailable, …",
      labelNames: ["result"],
      registers: [this.registry],
    });
    this.otpChecks = new Counter({
      name: "chatwire_otp_checks_total",
      help: "VerifyOTP outcomes, by result as on the wire: ok (logged in), unauthenticated (wrong or expired code), resource_exhausted, invalid_argument, …",
      labelNames: ["result"],
      registers: [this.registry],
    });
    this.messagesStored = new Counter({
      name: "chatwire_worker_messages_total",
      help: "Messages the queue's worker (or the embedded profile's inline queue) finished, by result: stored, duplicate (stored before), dead_letter / rejected",
      labelNames: ["result"],
      registers: [this.registry],
    });
    this.realtimeEventsDropped = new Counter({
      name: "chatwire_realtime_events_dropped_total",
      help: "Live events not buffered because a stream's buffer was full (that stream is then ended)",
      registers: [this.registry],
    });
  }
}

/**
 * Gauges read when /metrics is scraped: devices with an open stream here, and the message queue's backlog
 * (production: the JetStream stream, whose work-queue retention keeps exactly what is not yet stored; embedded:
 * always 0, the inline queue stores before SendMessage answers).
 */
export function registerLiveGauges(
  metrics: Metrics,
  sources: { openStreams: () => number; backlog: () => Promise<{ messages: number; oldestAgeSeconds: number }> },
): void {
  new Gauge({
    name: "chatwire_devices_online",
    help: "Devices (sessions) with an open Subscribe stream on this instance",
    registers: [metrics.registry],
    collect() {
      this.set(sources.openStreams());
    },
  });
  let last: Promise<{ messages: number; oldestAgeSeconds: number }> | undefined;
  const backlog = () => (last ??= sources.backlog().finally(() => setTimeout(() => (last = undefined), 1000).unref()));
  new Gauge({
    name: "chatwire_queue_pending_messages",
    help: "Messages accepted (SendMessage answered) and not yet stored",
    registers: [metrics.registry],
    async collect() {
      this.set((await backlog().catch(() => ({ messages: Number.NaN }))).messages);
    },
  });
  new Gauge({
    name: "chatwire_queue_oldest_pending_age_seconds",
    help: "Age of the oldest message accepted and not yet stored (0 when none)",
    registers: [metrics.registry],
    async collect() {
      this.set((await backlog().catch(() => ({ oldestAgeSeconds: Number.NaN }))).oldestAgeSeconds);
    },
  });
}
