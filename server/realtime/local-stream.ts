import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Event } from "../../gen/realtime/realtime_pb.js";
import { StreamQueue } from "./stream-queue.js";
import type { BusFrame } from "./wire.js";

/** A stream whose session is gone, or that must make room: ends at once (or is reset) with this. */
export const FORCE_RESET_AFTER_MS = 2000;
/**
 * The trailer (gRPC, gRPC-Web) or end-of-stream metadata (Connect) naming the
 * last stored position a stream sent before the server ended it: a device
 * reconnects with since_position set to it (or to the last position it
 * received, if its client library dropped events it had buffered).
 */
const RESUME_POSITION_KEY = "resume-position";

/** Why the server ends a stream: the error is made when the stream actually ends, with the last stored position sent on it. */
export type StreamEnd = (lastSent: bigint) => ConnectError;

/** Why the server ended a stream, as the metrics count it. */
export type StreamEndReason = "slow" | "evicted" | "revoked" | "shutdown";

/** What a stream needs from the instance that holds it (the hub): limits and counters. */
export interface StreamHost {
  readonly maxStreamsPerUser: number;
  /** How long a stream ended for reading too slowly waits for the device before its transport is reset. */
  readonly slowResetAfterMs: number;
  countEnd(reason: StreamEndReason): void;
  eventDropped(): void;
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
    private readonly host: StreamHost,
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
        this.host.countEnd("evicted");
        this.terminate(
          (position) =>
            new ConnectError(
              `more than ${this.host.maxStreamsPerUser} streams are open for this account. This one (the oldest) was closed after position ${position}`,
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
      this.host.eventDropped();
      // While replaying, only ephemeral events are buffered: dropping one of
      // those is harmless, and the device is not slow, the replay is long.
      if (!this.live) return;
      if (!this.queue.failed) {
        this.host.countEnd("slow");
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
          this.host.slowResetAfterMs,
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
