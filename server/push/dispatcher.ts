import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Clock } from "../clock.js";
import { deleteToken, previewOf, pushTargets, type PushPlatformName, type PushTarget } from "../db/push-store.js";
import type { Database } from "../db/schema.js";
import type { PushNotification, PushProvider } from "./provider.js";

/** A stored user message, as push delivery needs it. */
export interface PushEvent {
  messageId: string;
  conversationId: string;
  senderId: string;
}

export interface PushDispatcherOptions {
  db: Kysely<Database>;
  providers: PushProvider[];
  logger: Logger;
  clock: Clock;
  registry: Registry;
  /** A conversation's events within this window make one push per device. */
  collapseMs: number;
  /** Attempts per push while the service answers 429/5xx. */
  maxAttempts: number;
}

type Result = "sent" | "invalid_token" | "retry" | "failed" | "no_provider";

interface Burst {
  events: PushEvent[];
  /** Told once the burst's pushes are done (true) or could not be worked out (false: database down). */
  settle: Array<(ok: boolean) => void>;
  timer: NodeJS.Timeout;
}

const PREVIEW_CHARS = 100;

/**
 * Turns stored messages into pushes: collapses each conversation's messages
 * within collapseMs into one burst, then wakes every registered device of its
 * participants that has no open Subscribe stream, but the sender's and those
 * who muted it (db/push-store.ts pushTargets), with one push each, content-free
 * unless the user allows previews. Retries 429/5xx with backoff (the
 * service's Retry-After when it gives one); removes a token the service calls invalid.
 */
export class PushDispatcher {
  private readonly pending = new Map<string, Burst>();
  private readonly flushing = new Set<Promise<void>>();
  private readonly providers: Map<PushPlatformName, PushProvider>;
  private readonly logger: Logger;
  private readonly counter: Counter<"provider" | "result">;
  private readonly gauge: Gauge;
  private stopping = false;
  private readonly wake = new Set<() => void>();

  constructor(private readonly opts: PushDispatcherOptions) {
    this.providers = new Map(opts.providers.map((p) => [p.platform, p]));
    this.logger = opts.logger.child({ component: "push" });
    this.counter = new Counter({
      name: "chatwire_push_notifications_total",
      help: "Push attempts by provider (fcm, apns, web_push) and result (sent, invalid_token, retry, failed, no_provider)",
      labelNames: ["provider", "result"],
      registers: [opts.registry],
    });
    this.gauge = new Gauge({
      name: "chatwire_push_pending_conversations",
      help: "Conversations whose push is waiting for its collapse window or being sent",
      registers: [opts.registry],
      collect: () => this.gauge.set(this.pending.size + this.flushing.size),
    });
  }

  /** Which platforms this server can send to. */
  has(platform: PushPlatformName): boolean {
    return this.providers.has(platform);
  }

  /** Queues a stored message's push; `settle` is told when its burst is done. */
  enqueue(e: PushEvent, settle?: (ok: boolean) => void): void {
    if (this.stopping) {
      settle?.(false);
      return;
    }
    let burst = this.pending.get(e.conversationId);
    if (!burst) {
      const timer = setTimeout(() => this.flush(e.conversationId), this.opts.collapseMs);
      burst = { events: [], settle: [], timer };
      this.pending.set(e.conversationId, burst);
    }
    burst.events.push(e);
    if (settle) burst.settle.push(settle);
  }

  /** Nothing waiting and nothing being sent. */
  get idle(): boolean {
    return this.pending.size === 0 && this.flushing.size === 0;
  }

  /** Sends what is waiting now (without its window), waits for every send, and closes the providers. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const [conversationId, burst] of this.pending) {
      clearTimeout(burst.timer);
      this.flush(conversationId);
    }
    for (const w of this.wake) w();
    await Promise.all([...this.flushing]);
    await Promise.all([...this.providers.values()].map((p) => p.close()));
  }

  private flush(conversationId: string): void {
    const burst = this.pending.get(conversationId);
    if (!burst) return;
    this.pending.delete(conversationId);
    const run = this.send(conversationId, burst.events).then(
      () => true,
      (err: unknown) => {
        this.logger.warn({ err: (err as Error).message, conversationId }, "working out a push failed");
        return false;
      },
    );
    const done = run.then((ok) => {
      for (const s of burst.settle) s(ok);
    });
    this.flushing.add(done);
    void done.finally(() => this.flushing.delete(done));
  }

  private async send(conversationId: string, events: PushEvent[]): Promise<void> {
    const { db, clock } = this.opts;
    const now = clock.now();
    const seen = new Set<string>();
    const targets: PushTarget[] = [];
    for (const sender of new Set(events.map((e) => e.senderId))) {
      for (const t of await pushTargets(db, conversationId, sender, now)) {
        if (!seen.has(t.sessionId)) targets.push(t);
        seen.add(t.sessionId);
      }
    }
    const previews = new Map<string, Promise<PushNotification["preview"]>>();
    await Promise.all(
      targets.map(async (t) => {
        let preview: PushNotification["preview"];
        // The newest message of the burst that is not the recipient's own.
        const latest = events.findLast((e) => e.senderId !== t.userId);
        if (t.showPreviews && latest) {
          if (!previews.has(latest.messageId)) previews.set(latest.messageId, this.preview(latest.messageId));
          preview = await previews.get(latest.messageId);
        }
        await this.deliver(t, { conversationId, unread: t.unread, badge: t.badge, ...(preview ? { preview } : {}) });
      }),
    );
  }

  private async preview(messageId: string): Promise<PushNotification["preview"]> {
    const m = await previewOf(this.opts.db, messageId);
    if (!m) return undefined;
    const text = [...(m.content || (m.mediaType ? `[${m.mediaType.split("/")[0]}]` : ""))];
    const body = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1).join("")}…` : text.join("");
    return { title: m.isGroup ? `${m.senderName} @ ${m.groupName}` : m.senderName, body };
  }

  /** One device: attempts with backoff while the service says "later"; an invalid token is removed. */
  private async deliver(t: PushTarget, n: PushNotification): Promise<void> {
    const provider = this.providers.get(t.platform);
    if (!provider) {
      this.count(t.platform, "no_provider");
      return;
    }
    const ctx = { platform: t.platform, userId: t.userId, sessionId: t.sessionId, conversationId: n.conversationId };
    for (let attempt = 1; ; attempt++) {
      const out = await provider.send(t, n);
      if (out.result === "sent") {
        this.count(t.platform, "sent");
        this.logger.debug({ ...ctx, attempt }, "push sent");
        return;
      }
      if (out.result === "invalid_token") {
        this.count(t.platform, "invalid_token");
        this.logger.info({ ...ctx, status: out.status, reason: out.reason }, "push token invalid: removed");
        await deleteToken(this.opts.db, t.platform, t.token);
        return;
      }
      if (out.result === "failed" || attempt >= this.opts.maxAttempts || this.stopping) {
        this.count(t.platform, "failed");
        this.logger.warn({ ...ctx, status: out.status, reason: out.reason, attempt }, "push not delivered");
        return;
      }
      this.count(t.platform, "retry");
      await this.sleep(Math.min(out.retryAfterMs ?? 500 * 2 ** (attempt - 1), 30_000));
    }
  }

  private count(provider: PushPlatformName, result: Result): void {
    this.counter.inc({ provider, result });
  }

  /** Sleeps, cut short by stop(). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake.add(done);
    });
  }
}
