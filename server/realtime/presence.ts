import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { PresenceSchema } from "../../gen/realtime/realtime_pb.js";
import type { Clock } from "../clock.js";
import * as store from "../db/presence-store.js";
import { allowedAudience, presenceAudience } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";
import { eventBody } from "./events.js";
import type { UserChannels } from "./user-channels.js";

/** Presence rows are renewed this often and expire after three missed renewals. */
export const PRESENCE_RENEW_MS = 20_000;
const PRESENCE_TTL_MS = 3 * PRESENCE_RENEW_MS;

export interface PresenceOptions {
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  channels: UserChannels;
  /** This instance: its streams' rows name it. */
  instanceId: string;
  maxStreamsPerUser: number;
}

/** The stream a presence row stands for. */
export interface PresenceStream {
  readonly id: string;
  readonly userId: string;
  readonly sessionId: string;
}

/**
 * The presence rows of this instance's streams: one per open stream, renewed
 * while it lives, removed when it closes, swept by any instance once expired
 * (a dead instance's). The first row of a user announces them online, the
 * removal of their last one offline.
 */
export class Presence {
  constructor(private readonly opts: PresenceOptions) {}

  /**
   * Records the stream's row; announces the user online when it is their
   * first stream, and evicts their oldest streams beyond the limit.
   */
  async open(s: PresenceStream): Promise<store.OpenResult> {
    const { db, clock, channels, maxStreamsPerUser } = this.opts;
    const now = clock.now();
    const result = await store.openStream(db, {
      streamId: s.id,
      userId: s.userId,
      sessionId: s.sessionId,
      instanceId: this.opts.instanceId,
      now,
      expiresAt: new Date(now.getTime() + PRESENCE_TTL_MS),
      maxStreams: maxStreamsPerUser,
    });
    for (const id of result.evicted) channels.publishControl(s.userId, { type: "evict", stream_id: id });
    if (result.cameOnline) await this.announce(s.userId, true, null, allowedAudience(s.userId, result.audience));
    return result;
  }

  /** Removes the stream's row; announces the user offline when it was their last. Never rejects (a failure is logged). */
  close(s: PresenceStream): Promise<void> {
    const { db, clock, logger } = this.opts;
    const now = clock.now();
    return store
      .closeStream(db, { streamId: s.id, userId: s.userId, now })
      .then(({ wentOffline, audience }) => (wentOffline ? this.announce(s.userId, false, now, allowedAudience(s.userId, audience)) : undefined))
      .catch((err: unknown) => logger.warn({ err, userId: s.userId }, "closing a stream's presence failed"));
  }

  /** Pushes the expiry of these streams' rows forward (the periodic renewal). */
  async renew(streamIds: string[]): Promise<void> {
    await store.renewStreams(this.opts.db, streamIds, new Date(this.opts.clock.now().getTime() + PRESENCE_TTL_MS));
  }

  /** Removes expired rows (any instance's) and announces the users who went offline with them. */
  async sweep(): Promise<void> {
    const offline = await store.sweepExpired(this.opts.db, this.opts.clock.now());
    for (const userId of offline) await this.announce(userId, false, this.opts.clock.now());
  }

  /** Users with a live stream on any instance. */
  online(userIds: readonly string[]): Promise<Set<string>> {
    return store.online(this.opts.db, userIds, this.opts.clock.now());
  }

  /**
   * Tells the users allowed to see it that `userId` came online or went offline
   * (ephemeral): who has a direct conversation with them or has them as a
   * contact, as far as their last-seen privacy and blocks (either way) allow.
   * `audience`: that list when it was read with the transition itself.
   */
  async announce(userId: string, online: boolean, lastSeen: Date | null, audience?: string[]): Promise<void> {
    audience ??= await presenceAudience(this.opts.db, userId);
    if (audience.length === 0) return;
    const body = eventBody(
      {
        case: "presence",
        value: create(PresenceSchema, { userId, online, lastSeenAt: lastSeen ? timestampFromDate(lastSeen) : undefined }),
      },
      this.opts.clock.now(),
    );
    this.opts.channels.publishEvent(audience, body);
  }
}
