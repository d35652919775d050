import type { EventBus } from "../messaging/bus.js";
import { userSubject } from "../messaging/message-queue.js";
import type { LocalStream } from "./local-stream.js";
import { controlFrame, decodeFrame, eventFrame, type Control } from "./wire.js";

/**
 * A user's bus subscription outlives their last local stream this long, so a
 * device that reconnects (network change, reconnect storm) finds it in place
 * instead of unsubscribing and subscribing again.
 */
const CHANNEL_LINGER_MS = 30_000;

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

/** The users' bus subjects (`<prefix>.user.<id>`) on this instance: who listens to them, and what is published to them. */
export class UserChannels {
  private readonly channels = new Map<string, UserChannel>();

  constructor(
    private readonly bus: EventBus,
    private readonly subjectPrefix: string,
  ) {}

  /** Starts handing the user's bus frames to the stream (subscribing to their subject if no stream of theirs is listening yet). */
  attach(s: LocalStream): void {
    let ch = this.channels.get(s.userId);
    if (ch) {
      clearTimeout(ch.linger);
      ch.linger = undefined;
    } else {
      const streams = new Set<LocalStream>();
      const unsubscribe = this.bus.subscribe(userSubject(this.subjectPrefix, s.userId), (payload) => {
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
  release(s: LocalStream): void {
    s.detach();
    const ch = this.channels.get(s.userId);
    if (!ch?.streams.delete(s) || ch.streams.size > 0) return;
    ch.linger = setTimeout(() => {
      if (ch.streams.size > 0 || this.channels.get(s.userId) !== ch) return;
      this.channels.delete(s.userId);
      ch.unsubscribe();
    }, CHANNEL_LINGER_MS);
    ch.linger.unref();
  }

  /** Drops the subscriptions still lingering (at stop: the streams have ended with the listener). */
  dropIdle(): void {
    for (const [userId, ch] of this.channels) {
      if (ch.streams.size > 0) continue;
      clearTimeout(ch.linger);
      ch.unsubscribe();
      this.channels.delete(userId);
    }
  }

  /** Publishes an encoded ephemeral event (position 0) to each user's subject. */
  publishEvent(userIds: Iterable<string>, body: Uint8Array): void {
    const frame = eventFrame(body);
    for (const id of new Set(userIds)) this.bus.publish(userSubject(this.subjectPrefix, id), frame);
  }

  /** Publishes a control message to the streams of one user, on every instance. */
  publishControl(userId: string, control: Control): void {
    this.bus.publish(userSubject(this.subjectPrefix, userId), controlFrame(control));
  }
}
