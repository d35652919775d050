import { createClient, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { RealtimeService, type Event } from "../../../gen/realtime/realtime_pb.js";

type KindValue<K> = Extract<Event["kind"], { case: K }> extends { value: infer V } ? V : never;

export type Protocol = "grpc" | "grpc-web" | "connect";

/** A transport of the given protocol sending `Authorization: Bearer <token>`. */
export function protocolTransport(baseUrl: string, token: string, protocol: Protocol): Transport {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  switch (protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors: [bearer] });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] });
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] });
  }
}

/** An open Subscribe stream that records what arrives, as a device would. */
export class Subscription {
  readonly events: Event[] = [];
  /** Set when the stream ended: undefined for a clean end, else the error. */
  ended: { error: ConnectError | undefined } | undefined;
  private readonly abort = new AbortController();
  private readonly waiters = new Set<() => void>();
  readonly done: Promise<void>;

  constructor(transport: Transport, sincePosition?: bigint) {
    const client = createClient(RealtimeService, transport);
    this.done = (async () => {
      try {
        for await (const e of client.subscribe(sincePosition === undefined ? {} : { sincePosition }, { signal: this.abort.signal })) {
          this.events.push(e);
          this.notify();
        }
        this.ended = { error: undefined };
      } catch (err) {
        this.ended = { error: ConnectError.from(err) };
      }
      this.notify();
    })();
  }

  /** Stored events (position > 0) of a kind, in arrival order. */
  stored(kind?: Event["kind"]["case"]): Event[] {
    return this.events.filter((e) => e.position > 0n && (kind === undefined || e.kind.case === kind));
  }

  of<K extends NonNullable<Event["kind"]["case"]>>(kind: K): Array<KindValue<K>> {
    return this.events.filter((e) => e.kind.case === kind).map((e) => e.kind.value as unknown as KindValue<K>);
  }

  /** The last stored position seen (what a device keeps to resume). */
  get lastPosition(): bigint {
    const caught = this.of("caughtUp").at(-1)?.position ?? 0n;
    const stored = this.stored().at(-1)?.position ?? 0n;
    return stored > caught ? stored : caught;
  }

  /** Resolves once `predicate` holds, or rejects after `timeoutMs` with what arrived. */
  async until(predicate: (s: Subscription) => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    const started = Date.now();
    while (!predicate(this)) {
      if (this.ended && !predicate(this)) {
        throw new Error(`stream ended (${this.ended.error?.message ?? "cleanly"}) before ${what}; got ${this.describe()}`);
      }
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 200));
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  untilKind(kind: NonNullable<Event["kind"]["case"]>, count = 1, timeoutMs = 10_000): Promise<void> {
    return this.until((s) => s.of(kind).length >= count, timeoutMs, `${count} × ${kind}`);
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }

  describe(): string {
    return this.events.map((e) => `${e.position}:${e.kind.case}`).join(", ") || "nothing";
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }
}
