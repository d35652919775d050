import { createHash } from "node:crypto";
import { eventTypeOf } from "../realtime/events.js";
import { decodeFrame, eventFrame } from "../realtime/wire.js";
import type { EventBus } from "./bus.js";
import type { InboxNotice, OutgoingMessage, RejectReason, StoredMessage } from "./types.js";

/**
 * Where SendMessage hands a message (ARCHITECTURE.md, "The message path").
 * Production: a JetStream stream the worker consumes. Embedded: stored inline.
 */
export interface MessageQueue {
  readonly kind: "inline" | "jetstream";
  /**
   * Resolves once the message is durable: JetStream acked it (production) or it
   * is stored (inline; then `stored` is set). Throws QueueUnavailableError when
   * NATS cannot take it, and (inline only) MessageRejectedError when it can
   * never be stored.
   */
  publish(msg: OutgoingMessage): Promise<{ stored?: StoredMessage }>;
  ready(): boolean;
}

/** The queue could not take the message; a retry with the same client_message_id is safe. */
export class QueueUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "QueueUnavailableError";
  }
}

/**
 * The message can never be stored: the conversation is gone or the sender is
 * no longer a participant (membership changed after the API checked it).
 * Thrown by the inline queue; the worker dead-letters such messages instead.
 */
export class MessageRejectedError extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
    this.name = "MessageRejectedError";
  }
}

/**
 * The message id of (sender, client message id): a UUID built from
 * sha256(`${senderId}:${clientMessageId}`) with version nibble 8 (custom,
 * RFC 9562) and the RFC 4122 variant, so a retry after JetStream's dedup
 * window yields the same id as the first attempt.
 */
export function messageIdFor(senderId: string, clientMessageId: string): string {
  const b = createHash("sha256").update(`${senderId}:${clientMessageId}`).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The bus subject of a user's live events (stored and ephemeral) and stream controls. */
export function userSubject(prefix: string, userId: string): string {
  return `${prefix}.user.${userId}`;
}

/** A live notice as tests and tools read it off the bus (int8 values as strings). */
export interface InboxNoticeWire {
  position: string;
  event_type: string;
  conversation_id: string | null;
  message_id: string | null;
  seq?: string;
}

/** The bus frame of a notice: the event with its position (server/realtime/wire.ts). */
function encodeNotice(n: InboxNotice): Uint8Array {
  return eventFrame(n.body, n.position);
}

/** Reads a stored-event frame back into its inbox coordinates (throws for anything else). */
export function decodeNotice(payload: Uint8Array): InboxNoticeWire {
  const frame = decodeFrame(payload);
  if (frame?.kind !== "event" || !frame.event.kind.case) throw new Error("not an event frame");
  const { event } = frame;
  const v = event.kind.value as { message?: { id: string; conversationId: string; seq: bigint }; conversationId?: string; messageId?: string };
  return {
    position: event.position.toString(),
    event_type: eventTypeOf(event.kind.case!),
    conversation_id: v.message?.conversationId ?? v.conversationId ?? null,
    message_id: v.message?.id ?? v.messageId ?? null,
    ...(v.message ? { seq: v.message.seq.toString() } : {}),
  };
}

/** Publishes one live notice per inbox event (after the events committed). */
export function publishNotices(bus: EventBus, prefix: string, notices: readonly InboxNotice[]): void {
  for (const n of notices) bus.publish(userSubject(prefix, n.userId), encodeNotice(n));
}
