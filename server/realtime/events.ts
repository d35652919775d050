import { create, fromJson, toJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MessageKind, MessageSchema, ReceiptState, StatusReferenceSchema, type Message } from "../../gen/chat/chat_pb.js";
import { EventSchema, type Event } from "../../gen/realtime/realtime_pb.js";
import type { NewInboxEvent, OutgoingMessage } from "../messaging/types.js";
import { forwardMarks } from "../domain/message-view.js";
import { encodeEventBody } from "./wire.js";

/** The `kind` of a realtime.Event (its oneof). */
export type EventKind = Exclude<Event["kind"], { case: undefined }>;

/**
 * Stored event types whose payload names a message: the replay reads the
 * message as it is now (edited, deleted) instead of a copy per recipient.
 */
export const MESSAGE_EVENTS: ReadonlySet<string> = new Set(["message_created", "message_edited"]);

/** snake_case inbox event_type of an Event kind ("messageCreated" → "message_created"). */
export function eventTypeOf(kind: EventKind["case"]): string {
  return kind.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Encodes an event without position: the body every recipient's frame shares. */
export function eventBody(kind: EventKind, at: Date): Uint8Array {
  return encodeEventBody(create(EventSchema, { at: timestampFromDate(at), kind }));
}

/**
 * An inbox event for one user whose stored payload is the event itself (as
 * proto JSON), so the replay sends exactly what the live stream sent.
 */
export function storedEvent(userId: string, kind: EventKind, at: Date, refs: { conversationId: string | null; messageId?: string | null }): NewInboxEvent {
  const event = create(EventSchema, { at: timestampFromDate(at), kind });
  return {
    userId,
    eventType: eventTypeOf(kind.case),
    conversationId: refs.conversationId,
    messageId: refs.messageId ?? null,
    payload: { event: toJson(EventSchema, event) as JsonObject },
    body: encodeEventBody(event),
  };
}

/** The Event stored in an inbox payload by storedEvent (undefined for message events). */
export function eventFromPayload(payload: unknown): Event | undefined {
  const p = (typeof payload === "string" ? JSON.parse(payload) : payload) as { event?: JsonObject } | null;
  if (!p?.event) return undefined;
  return fromJson(EventSchema, p.event, { ignoreUnknownFields: true });
}

/** A just-stored user message as ListMessages shows it (nobody has it yet: SENT, no reactions). */
export function messageFromOutgoing(m: OutgoingMessage, seq: string, createdAt: Date, expiresAt?: Date | null): Message {
  return create(MessageSchema, {
    id: m.id,
    conversationId: m.conversationId,
    senderId: m.senderId,
    content: m.content,
    mediaUrl: m.mediaUrl,
    mediaType: m.mediaType,
    clientMessageId: m.clientMessageId,
    createdAt: createdAt.toISOString(),
    seq: BigInt(seq),
    replyToMessageId: m.replyToMessageId ?? "",
    mentionUserIds: m.mentionUserIds,
    receiptState: ReceiptState.SENT,
    kind: MessageKind.USER,
    ...forwardMarks(m.forwardCount ?? 0),
    replyToStatus: m.replyToStatus ? create(StatusReferenceSchema, m.replyToStatus) : undefined,
    expiresAt: expiresAt ? timestampFromDate(expiresAt) : undefined,
  });
}

/** A just-written system message (group changes) as ListMessages shows it. */
export function systemMessageView(m: {
  id: string;
  conversationId: string;
  actorId: string;
  event: string;
  userIds: string[];
  seq: string;
  createdAt: Date;
  content?: string;
  replyToMessageId?: string;
}): Message {
  return create(MessageSchema, {
    id: m.id,
    conversationId: m.conversationId,
    senderId: m.actorId,
    createdAt: m.createdAt.toISOString(),
    seq: BigInt(m.seq),
    kind: MessageKind.SYSTEM,
    systemEvent: m.event,
    systemUserIds: m.userIds,
    content: m.content ?? "",
    replyToMessageId: m.replyToMessageId ?? "",
  });
}
