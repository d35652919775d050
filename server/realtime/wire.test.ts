import { create, equals, toBinary, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { MessageKind, MessageSchema, ReceiptState } from "../../gen/chat/chat_pb.js";
import { EventSchema, type Event } from "../../gen/realtime/realtime_pb.js";
import { preEncoded, type MaybePreEncoded } from "../pre-encoded.js";
import { decodeFrame, encodeEventBody, eventFrame } from "./wire.js";

const at = timestampFromDate(new Date("2026-12-06T08:15:30.123Z"));
const message = create(MessageSchema, {
  id: "0193a1b2-0000-7000-8000-000000000001",
  conversationId: "0193a1b2-0000-7000-8000-000000000002",
  senderId: "0193a1b2-0000-7000-8000-000000000003",
  content: "Merhaba! ünicode ✓",
  clientMessageId: "m-1",
  createdAt: "2026-12-06T08:15:30.123Z",
  seq: 42n,
  mentionUserIds: ["0193a1b2-0000-7000-8000-000000000004"],
  receiptState: ReceiptState.SENT,
  kind: MessageKind.USER,
});

// One event of each shape the bus carries: a message, a small stored event, an ephemeral one, none at all.
const events: Array<[string, Event]> = [
  ["message_created", create(EventSchema, { at, kind: { case: "messageCreated", value: { message } } })],
  [
    "receipt_updated",
    create(EventSchema, {
      at,
      kind: {
        case: "receiptUpdated",
        value: { conversationId: message.conversationId, userId: message.senderId, lastDeliveredSeq: 7n, deliveredToAllSeq: 7n },
      },
    }),
  ],
  ["typing", create(EventSchema, { at, kind: { case: "typing", value: { conversationId: message.conversationId, userId: message.senderId, active: true } } })],
  ["an empty kind", create(EventSchema, { at })],
];

function decoded(frame: Uint8Array): Event & MaybePreEncoded {
  const f = decodeFrame(frame);
  if (f?.kind !== "event") throw new Error("not an event frame");
  return f.event;
}

describe("bus frames decode to the event that was encoded", () => {
  for (const [name, event] of events) {
    for (const position of [0n, 1n, 300n, 2n ** 40n]) {
      test(`${name}, position ${position}`, () => {
        const body = encodeEventBody(event);
        const got = decoded(eventFrame(body, position));
        const want = create(EventSchema, { ...event, position });
        // Position and kind without decoding the kind's message; then the whole event, as binary and JSON write it.
        expect(got.position).toBe(position);
        expect(got.kind.case).toBe(event.kind.case);
        expect(equals(EventSchema, got, want)).toBe(true);
        expect(toBinary(EventSchema, got)).toEqual(toBinary(EventSchema, want));
        expect(toJson(EventSchema, got)).toEqual(toJson(EventSchema, want));
        // The bytes a binary stream writes are the frame's own.
        expect(got[preEncoded]).toEqual(toBinary(EventSchema, want));
      });
    }
  }

  test("the kind's message is decoded once and then kept, and can be replaced", () => {
    const got = decoded(eventFrame(encodeEventBody(events[0]![1]), 5n));
    const kind = got.kind as { case: "messageCreated"; value: { message?: { content: string } } };
    const first = kind.value;
    expect(first.message?.content).toBe(message.content);
    expect(kind.value).toBe(first);
    kind.value = { message: { content: "other" } };
    expect(kind.value.message?.content).toBe("other");
  });

  test("a frame with a field this version does not know is decoded in full (the field kept as unknown)", () => {
    const body = encodeEventBody(events[1]![1]);
    // Field 99, varint 1: an event kind added by a newer server.
    const frame = eventFrame(new Uint8Array([...body, 0x98, 0x06, 0x01]), 9n);
    const got = decoded(frame);
    expect(got.position).toBe(9n);
    expect(got.kind.case).toBe("receiptUpdated");
    expect(toBinary(EventSchema, got)).toEqual(frame.subarray(1));
  });

  test("a frame that is not protobuf is ignored, not thrown", () => {
    expect(decodeFrame(new Uint8Array([1, 0x12, 0xff, 0xff]))).toBeUndefined();
  });
});
