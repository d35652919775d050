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
    this.realtimeEventsDropped = new Counter({
      name: "chatwire_realtime_events_dropped_total",
      help: "Live events not buffered because a stream's buffer was full (that stream is then ended)",
      registers: [this.registry],
    });
  }
}
