import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { SessionRevokedSchema, StatusPostedSchema } from "../../gen/realtime/realtime_pb.js";
import type { SessionGuard } from "../auth/session-guard.js";
import type { RealtimeConfig } from "../config.js";
import type { Clock } from "../clock.js";
import { pruneInbox } from "../db/inbox-store.js";
import { appendInboxEvents } from "../db/message-store.js";
import type { OpenResult } from "../db/presence-store.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "../messaging/bus.js";
import { publishNotices } from "../messaging/message-queue.js";
import type { Metrics } from "../metrics.js";
import { eventBody, storedEvent } from "./events.js";
import { FORCE_RESET_AFTER_MS, LocalStream, type StreamEndReason, type StreamHost } from "./local-stream.js";
import { Presence } from "./presence.js";
import { UserChannels } from "./user-channels.js";

export interface RealtimeHubOptions {
  bus: EventBus;
  subjectPrefix: string;
  clock: Clock;
  logger: Logger;
  db: Kysely<Database>;
  guard: SessionGuard;
  config: RealtimeConfig;
  metrics: Metrics;
}

/**
 * Realtime on one instance, composed of the local streams (local-stream.ts),
 * the users' bus subjects (user-channels.ts) and the streams' presence rows
 * (presence.ts); here: opening and closing streams, session revocation,
 * ephemeral fan-out, and the work the periodic jobs call (server/jobs.ts).
 */
export class RealtimeHub implements StreamHost {
  readonly instanceId = randomUUID();
  private readonly streams = new Map<string, LocalStream>();
  private readonly channels: UserChannels;
  private readonly presence: Presence;
  private readonly pending = new Set<Promise<unknown>>();
  private stopRevocations: (() => void) | undefined;

  constructor(private readonly opts: RealtimeHubOptions) {
    this.channels = new UserChannels(opts.bus, opts.subjectPrefix);
    this.presence = new Presence({
      db: opts.db,
      clock: opts.clock,
      logger: opts.logger,
      channels: this.channels,
      instanceId: this.instanceId,
      maxStreamsPerUser: opts.config.maxStreamsPerUser,
    });
  }

  get maxStreamsPerUser(): number {
    return this.opts.config.maxStreamsPerUser;
  }

  get config(): RealtimeConfig {
    return this.opts.config;
  }

  /**
   * How long a stream cut for reading too slowly, stuck behind data the device
   * has not read, waits for the device to read it and the status after it:
   * two heartbeats (a device that heard nothing for that long reconnects on
   * its own), at least FORCE_RESET_AFTER_MS.
   */
  get slowResetAfterMs(): number {
    return Math.max(FORCE_RESET_AFTER_MS, 2 * this.opts.config.heartbeatSeconds * 1000);
  }

  /** Ends the streams of a session when it is revoked (the periodic jobs are the server's scheduler's). */
  start(): void {
    this.stopRevocations = this.opts.guard.onRevoked((sessionId) => {
      for (const s of this.streams.values()) {
        if (s.sessionId !== sessionId) continue;
        this.countEnd("revoked");
        s.terminate(() => new ConnectError("this session was signed out; sign in again", Code.Unauthenticated));
      }
    });
  }

  /** Stops listening for revocations and waits for stream clean-ups in flight (streams end through the shutdown signal). */
  async stop(): Promise<void> {
    this.stopRevocations?.();
    // Streams have ended with the listener; drop the subscriptions still lingering.
    this.channels.dropIdle();
    // Bounded: once the deadline has passed, racing it again resolves at once, so looping on it would spin forever
    // in microtasks (no timer, signal or I/O ever runs again) while this process still holds the worker's leader lock.
    let late = false;
    const deadline = new Promise<void>((r) => {
      setTimeout(() => {
        late = true;
        r();
      }, 3000).unref();
    });
    while (this.pending.size > 0 && !late) await Promise.race([Promise.allSettled([...this.pending]), deadline]);
    if (this.pending.size > 0) this.opts.logger.warn({ pending: this.pending.size }, "stream clean-ups still running after 3 s; stopping without them");
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /**
   * Registers a stream: listens on the user's subject at once (so nothing
   * published from now on is missed), then records presence; announces the
   * user online when this is their first stream, and evicts their oldest
   * streams beyond the limit.
   */
  async open(userId: string, sessionId: string, resetTransport: () => void): Promise<{ stream: LocalStream; inbox: OpenResult["inbox"] }> {
    const s = new LocalStream(userId, sessionId, this.opts.config.streamBufferEvents, this, resetTransport);
    this.channels.attach(s);
    this.streams.set(s.id, s);
    this.opts.metrics.streamsOpened.inc();
    let result: OpenResult;
    try {
      result = await this.presence.open(s);
    } catch (err) {
      this.streams.delete(s.id);
      this.channels.release(s);
      throw err;
    }
    return { stream: s, inbox: result.inbox };
  }

  /** Unregisters a stream; announces the user offline when it was their last. */
  close(s: LocalStream): Promise<void> {
    this.channels.release(s);
    this.streams.delete(s.id);
    return this.track(this.presence.close(s));
  }

  /** Tells the audience's online devices that a status was posted (ephemeral). */
  statusPosted(status: { statusId: string; authorId: string; expiresAt: Date }, audienceUserIds: readonly string[]): void {
    const body = eventBody(
      {
        case: "statusPosted",
        value: create(StatusPostedSchema, { statusId: status.statusId, authorId: status.authorId, expiresAt: timestampFromDate(status.expiresAt) }),
      },
      this.opts.clock.now(),
    );
    this.publishEphemeral(audienceUserIds, body);
  }

  /**
   * Stores a session_revoked event for the user's devices and announces it.
   * (The revoked session's own streams end through SessionGuard.onRevoked.)
   */
  async sessionsRevoked(userId: string, sessionIds: readonly string[]): Promise<void> {
    if (sessionIds.length === 0) return;
    const now = this.opts.clock.now();
    const notices = await this.opts.db.transaction().execute((trx) =>
      appendInboxEvents(
        trx,
        sessionIds.map((sessionId) =>
          storedEvent(userId, { case: "sessionRevoked", value: create(SessionRevokedSchema, { sessionId }) }, now, { conversationId: null }),
        ),
        now,
      ),
    );
    publishNotices(this.opts.bus, this.opts.subjectPrefix, notices);
  }

  /** Publishes an encoded ephemeral event (position 0) to each user's subject. */
  publishEphemeral(userIds: Iterable<string>, body: Uint8Array): void {
    this.channels.publishEvent(userIds, body);
  }

  /** Users with a live stream on any instance. */
  online(userIds: readonly string[]): Promise<Set<string>> {
    return this.presence.online(userIds);
  }

  /** Periodic job: keeps this instance's streams' presence rows alive. */
  renewPresence(): Promise<void> {
    return this.presence.renew([...this.streams.keys()]);
  }

  /** Periodic job: removes expired presence rows (a dead instance's) and announces who went offline. */
  sweepPresence(): Promise<void> {
    return this.presence.sweep();
  }

  /** Periodic job: deletes inbox events past retention. */
  async pruneInbox(): Promise<number> {
    const cutoff = new Date(this.opts.clock.now().getTime() - this.opts.config.inboxRetentionDays * 86_400_000);
    const n = await pruneInbox(this.opts.db, cutoff);
    if (n > 0) this.opts.logger.info({ deleted: n, cutoff }, "pruned inbox events past retention");
    return n;
  }

  countEnd(reason: StreamEndReason): void {
    this.opts.metrics.realtimeStreamsEnded.inc({ reason });
  }

  eventDropped(): void {
    this.opts.metrics.realtimeEventsDropped.inc();
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
    return p;
  }
}
