import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";

/** What JetStream answers a publish that it stored (or had stored: `duplicate`). */
export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** A publish JetStream did not confirm; `code` is JetStream's (400, 503 ...) when it answered with an error. */
export class JetStreamPublishError extends Error {
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message);
    this.name = "JetStreamPublishError";
  }
}

interface Pending {
  resolve: (ack: PubAck) => void;
  reject: (err: Error) => void;
  /** performance.now() after which it has timed out. */
  deadline: number;
}

/**
 * JetStream publishes without the client library's per-request machinery
 * (`js.publish` builds a request with its own timer and two Error objects per
 * call: 230–520 µs of CPU each). Each publish is one core `HPUB` with the
 * `Nats-Msg-Id` and `Nats-Expected-Stream` headers and a reply subject on ONE
 * wildcard inbox subscription per connection; a map from the reply token to
 * the waiting publish, and one timer that sweeps timed-out ones (at most a
 * quarter of the timeout late).
 */
export class JetStreamPublisher {
  private readonly pending = new Map<string, Pending>();
  private readonly inbox = createInbox();
  private sub: Subscription | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private next = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    // The connection closed for good: nothing will answer.
    void nc.closed().then(() => this.failAll(new JetStreamPublishError("NATS connection is closed")));
  }

  /** Resolves with JetStream's ack; rejects with JetStreamPublishError (timeout, no responders, an API error). */
  publish(subject: string, data: Uint8Array, msgId: string, expectedStream: string): Promise<PubAck> {
    this.sub ??= this.nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => (err ? this.failAll(err) : this.answer(msg)) });
    const token = (this.next++).toString(36);
    const h = headers();
    h.set("Nats-Msg-Id", msgId);
    h.set("Nats-Expected-Stream", expectedStream);
    return new Promise<PubAck>((resolve, reject) => {
      try {
        this.nc.publish(subject, data, { headers: h, reply: `${this.inbox}.${token}` });
      } catch (err) {
        reject(err instanceof Error ? err : new JetStreamPublishError(String(err)));
        return;
      }
      this.pending.set(token, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      this.sweeper ??= setInterval(() => this.sweep(), Math.max(10, Math.floor(this.timeoutMs / 4))).unref();
    });
  }

  /** Publishes waiting for an answer (tests). */
  get waiting(): number {
    return this.pending.size;
  }

  private answer(msg: Msg): void {
    const token = msg.subject.slice(this.inbox.length + 1);
    const p = this.pending.get(token);
    if (!p) return; // timed out already
    this.pending.delete(token);
    // A status message (no payload): 503 when nothing listens on the subject (no stream takes it, or no JetStream).
    if (msg.headers?.hasError) {
      const { code } = msg.headers;
      p.reject(
        new JetStreamPublishError(code === 503 ? "no responders: no JetStream stream takes the subject" : `status ${code} ${msg.headers.description}`, code),
      );
      return;
    }
    let v: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { code?: number; description?: string } };
    try {
      v = JSON.parse(msg.string()) as typeof v;
    } catch {
      p.reject(new JetStreamPublishError(`JetStream answered something that is not JSON: ${msg.string().slice(0, 100)}`));
      return;
    }
    if (v.error) {
      p.reject(new JetStreamPublishError(v.error.description ?? `JetStream error ${v.error.code}`, v.error.code));
    } else if (typeof v.stream !== "string" || v.stream === "" || typeof v.seq !== "number") {
      p.reject(new JetStreamPublishError(`invalid JetStream ack: ${msg.string().slice(0, 100)}`));
    } else {
      p.resolve({ stream: v.stream, seq: v.seq, duplicate: v.duplicate === true });
    }
  }

  private sweep(): void {
    const now = performance.now();
    // Insertion order is publish order: the oldest come first.
    for (const [token, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(token);
      p.reject(new JetStreamPublishError(`timed out after ${this.timeoutMs} ms waiting for JetStream's ack`));
    }
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.sub = undefined;
  }
}
