import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { PresenceSchema, SessionRevokedSchema, StatusPostedSchema, type Event } from "../../gen/realtime/realtime_pb.js";
import type { SessionGuard } from "../auth/session-guard.js";
import type { RealtimeConfig } from "../config.js";
import type { Clock } from "../clock.js";
import { pruneInbox } from "../db/inbox-store.js";
import { appendInboxEvents } from "../db/message-store.js";
import * as presence from "../db/presence-store.js";
import { allowedAudience, presenceAudience } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";
import type { EventBus } from "../messaging/bus.js";
import { publishNotices, userSubject } from "../messaging/message-queue.js";
import type { Metrics } from "../metrics.js";
import { eventBody, storedEvent } from "./events.js";
import { StreamQueue } from "./stream-queue.js";
import { controlFrame, decodeFrame, eventFrame, type BusFrame } from "./wire.js";

/** A stream whose session is gone, or that must make room: ends at once (or is reset) with this. */
const FORCE_RESET_AFTER_MS = 2000;
/**
 * The trailer (gRPC, gRPC-Web) or end-of-stream metadata (Connect) naming the
 * last stored position a stream sent before the server ended it: a device
 * reconnects with since_position set to it (or to the last position it
 * received, if its client library dropped events it had buffered).
 */
export const RESUME_POSITION_KEY = "resume-position";

/** Why the server ends a stream: the error is made when the stream actually ends, with the last stored position sent on it. */
export type StreamEnd = (lastSent: bigint) => ConnectError;
/** Presence rows are renewed this often and expire after three missed renewals. */
const PRESENCE_RENEW_MS = 20_000;
const PRESENCE_TTL_MS = 3 * PRESENCE_RENEW_MS;
/**
 * A user's bus subscription outlives their last local stream this long, so a
 * device that reconnects (network change, reconnect storm) finds it in place
 * instead of unsubscribing and subscribing again.
 */
const CHANNEL_LINGER_MS = 30_000;

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

/** One open Subscribe stream on this instance. */
export class LocalStream {
  readonly id = randomUUID();
  readonly queue: StreamQueue<Event>;
  /** False while replaying: stored events are then read from the database, not buffered. */
  live = false;
  /** Highest stored position announced while not live (the replay reads up to it). */
  maxNotified = 0n;
  /** Last stored position handed to the transport (the resume position an ending names). */
  lastDelivered = 0n;
  private resetTimer: NodeJS.Timeout | undefined;
  ended = false;

  constructor(
    readonly userId: string,
    readonly sessionId: string,
    capacity: number,
    private readonly hub: RealtimeHub,
    /** Cuts the transport when the generator cannot be reached (stuck writing to a device that stopped reading). */
    private readonly resetTransport: () => void,
  ) {
    this.queue = new StreamQueue<Event>(capacity);
  }

  /** A frame from the user's subject (decoded once for all of the user's local streams). */
  onFrame(frame: BusFrame): void {
    if (this.ended) return;
    if (frame.kind === "control") {
      if (frame.control.type === "evict" && frame.control.stream_id === this.id) {
        this.hub.countEnd("evicted");
        this.terminate(
          (position) =>
            new ConnectError(
              `more than ${this.hub.maxStreamsPerUser} streams are open for this account. This one (the oldest) was closed after position ${position}`,
              Code.ResourceExhausted,
              { [RESUME_POSITION_KEY]: String(position) },
            ),
        );
      }
      return;
    }
    this.deliver(frame.event);
  }

  /** Buffers an event for the generator; a full buffer while live ends the stream. */
  private deliver(event: Event): void {
    if (event.position > 0n && !this.live) {
      if (event.position > this.maxNotified) this.maxNotified = event.position;
      return;
    }
    if (!this.queue.push(event)) {
      this.hub.eventDropped();
      // While replaying, only ephemeral events are buffered: dropping one of
      // those is harmless, and the device is not slow, the replay is long.
      if (!this.live) return;
      if (!this.queue.failed) {
        this.hub.countEnd("slow");
        const waiting = this.queue.capacity;
        this.terminate(
          (position) =>
            // No ";:=,": grpc-js reads grpc-message with decodeURI, which leaves those percent-encoded.
            new ConnectError(
              `this device reads events too slowly (more than ${waiting} waiting) so the stream was ended after position ${position}. ` +
                `Reconnect with since_position ${position} (or the last position you received if lower)`,
              Code.ResourceExhausted,
              { [RESUME_POSITION_KEY]: String(position) },
            ),
          this.hub.slowResetAfterMs,
        );
      }
    }
  }

  /** Pushes an event made on this instance (typing expiry) like one from the bus. */
  inject(event: Event): void {
    if (!this.ended) this.deliver(event);
  }

  /**
   * Ends the stream at the generator's next pull, with the error `end` makes
   * then (see ending()). If the generator is stuck writing to a device that
   * stopped reading, the status can only follow what is in flight: the device
   * gets it if it reads again within `resetAfterMs`; after that the transport
   * is reset (HTTP/2 RST_STREAM ENHANCE_YOUR_CALM, which grpc-js reports as
   * ResourceExhausted; HTTP/1.1: the connection is closed).
   */
  terminate(end: StreamEnd, resetAfterMs = FORCE_RESET_AFTER_MS): void {
    if (this.queue.failed || this.ended) return;
    this.queue.fail(end);
    this.resetTimer = setTimeout(() => {
      if (!this.ended) this.resetTransport();
    }, resetAfterMs);
    this.resetTimer.unref();
  }

  /** The error the server ended this stream with (after terminate()), naming the last position sent. */
  ending(): ConnectError {
    return (this.queue.failure as StreamEnd)(this.lastDelivered);
  }

  /** Stops taking frames; the hub then unregisters presence. */
  detach(): void {
    this.ended = true;
    clearTimeout(this.resetTimer);
  }
}

/**
 * One subscription to a user's bus subject per instance, shared by that
 * user's local streams: each frame is decoded once and handed to each.
 */
interface UserChannel {
  readonly streams: Set<LocalStream>;
  readonly unsubscribe: () => void;
  /** Set while no local stream is left: the subscription ends when it fires. */
  linger: NodeJS.Timeout | undefined;
}

/**
 * Realtime on one instance: the open streams, their presence rows, session
 * revocation, ephemeral fan-out to users' subjects, and the periodic jobs
 * (presence renewal and sweep, inbox pruning).
 */
export class RealtimeHub {
  readonly instanceId = randomUUID();
  private readonly streams = new Map<string, LocalStream>();
  private readonly channels = new Map<string, UserChannel>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private stopRevocations: (() => void) | undefined;

  constructor(private readonly opts: RealtimeHubOptions) {}

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

  start(): void {
    const { logger, clock, db, config } = this.opts;
    this.stopRevocations = this.opts.guard.onRevoked((sessionId) => {
      for (const s of this.streams.values()) {
        if (s.sessionId !== sessionId) continue;
        this.countEnd("revoked");
        s.terminate(() => new ConnectError("this session was signed out; sign in again", Code.Unauthenticated));
      }
    });
    const every = (ms: number, what: string, job: () => Promise<unknown>) => {
      const t = setInterval(() => this.track(job().catch((err: unknown) => logger.warn({ err }, `${what} failed`))), ms);
      t.unref();
      this.timers.push(t);
    };
    every(PRESENCE_RENEW_MS, "renewing presence", () =>
      presence.renewStreams(db, [...this.streams.keys()], new Date(clock.now().getTime() + PRESENCE_TTL_MS)),
    );
    every(PRESENCE_RENEW_MS, "sweeping presence", () => this.sweepPresence());
    every(config.inboxPruneIntervalSeconds * 1000, "pruning the inbox", () => this.pruneInbox());
  }

  /** Ends this instance's jobs and waits for stream clean-ups in flight (streams end through the shutdown signal). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.stopRevocations?.();
    // Streams have ended with the listener; drop the subscriptions still lingering.
    for (const [userId, ch] of this.channels) {
      if (ch.streams.size > 0) continue;
      clearTimeout(ch.linger);
      ch.unsubscribe();
      this.channels.delete(userId);
    }
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
  async open(userId: string, sessionId: string, resetTransport: () => void): Promise<{ stream: LocalStream; inbox: presence.OpenResult["inbox"] }> {
    const { bus, subjectPrefix, clock, db, config } = this.opts;
    const s = new LocalStream(userId, sessionId, config.streamBufferEvents, this, resetTransport);
    this.attach(s);
    this.streams.set(s.id, s);
    let result: presence.OpenResult;
    try {
      const now = clock.now();
      result = await presence.openStream(db, {
        streamId: s.id,
        userId,
        sessionId,
        instanceId: this.instanceId,
        now,
        expiresAt: new Date(now.getTime() + PRESENCE_TTL_MS),
        maxStreams: config.maxStreamsPerUser,
      });
      for (const id of result.evicted) bus.publish(userSubject(subjectPrefix, userId), controlFrame({ type: "evict", stream_id: id }));
      if (result.cameOnline) await this.announcePresence(userId, true, null, allowedAudience(userId, result.audience));
    } catch (err) {
      this.streams.delete(s.id);
      this.release(s);
      throw err;
    }
    return { stream: s, inbox: result.inbox };
  }

  /** Starts handing the user's bus frames to the stream (subscribing to their subject if no stream of theirs is listening yet). */
  private attach(s: LocalStream): void {
    let ch = this.channels.get(s.userId);
    if (ch) {
      clearTimeout(ch.linger);
      ch.linger = undefined;
    } else {
      const streams = new Set<LocalStream>();
      const unsubscribe = this.opts.bus.subscribe(userSubject(this.opts.subjectPrefix, s.userId), (payload) => {
        if (streams.size === 0) return;
        const frame = decodeFrame(payload);
        if (frame) for (const stream of streams) stream.onFrame(frame);
      });
      ch = { streams, unsubscribe, linger: undefined };
      this.channels.set(s.userId, ch);
    }
    ch.streams.add(s);
  }

  /** Detaches the stream; the user's subscription lingers a while after their last stream. */
  private release(s: LocalStream): void {
    s.detach();
    const ch = this.channels.get(s.userId);
    if (!ch || !ch.streams.delete(s) || ch.streams.size > 0) return;
    ch.linger = setTimeout(() => {
      if (ch.streams.size > 0 || this.channels.get(s.userId) !== ch) return;
      this.channels.delete(s.userId);
      ch.unsubscribe();
    }, CHANNEL_LINGER_MS);
    ch.linger.unref();
  }

  /** Unregisters a stream; announces the user offline when it was their last. */
  close(s: LocalStream): Promise<void> {
    this.release(s);
    this.streams.delete(s.id);
    const now = this.opts.clock.now();
    return this.track(
      presence
        .closeStream(this.opts.db, { streamId: s.id, userId: s.userId, now })
        .then(({ wentOffline, audience }) => (wentOffline ? this.announcePresence(s.userId, false, now, allowedAudience(s.userId, audience)) : undefined))
        .catch((err: unknown) => this.opts.logger.warn({ err, userId: s.userId }, "closing a stream's presence failed")),
    );
  }

  /**
   * Tells the users allowed to see it that `userId` came online or went offline
   * (ephemeral): who has a direct conversation with them or has them as a
   * contact, as far as their last-seen privacy and blocks (either way) allow.
   * `audience`: that list when it was read with the transition itself.
   */
  async announcePresence(userId: string, online: boolean, lastSeen: Date | null, audience?: string[]): Promise<void> {
    audience ??= await presenceAudience(this.opts.db, userId);
    if (audience.length === 0) return;
    const body = eventBody(
      {
        case: "presence",
        value: create(PresenceSchema, { userId, online, lastSeenAt: lastSeen ? timestampFromDate(lastSeen) : undefined }),
      },
      this.opts.clock.now(),
    );
    this.publishEphemeral(audience, body);
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
    const frame = eventFrame(body);
    for (const id of new Set(userIds)) this.opts.bus.publish(userSubject(this.opts.subjectPrefix, id), frame);
  }

  /** Users with a live stream on any instance. */
  online(userIds: readonly string[]): Promise<Set<string>> {
    return presence.online(this.opts.db, userIds, this.opts.clock.now());
  }

  async sweepPresence(): Promise<void> {
    const offline = await presence.sweepExpired(this.opts.db, this.opts.clock.now());
    for (const userId of offline) await this.announcePresence(userId, false, this.opts.clock.now());
  }

  async pruneInbox(): Promise<number> {
    const cutoff = new Date(this.opts.clock.now().getTime() - this.opts.config.inboxRetentionDays * 86_400_000);
    const n = await pruneInbox(this.opts.db, cutoff);
    if (n > 0) this.opts.logger.info({ deleted: n, cutoff }, "pruned inbox events past retention");
    return n;
  }

  countEnd(reason: "slow" | "evicted" | "revoked" | "shutdown"): void {
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
