import { create, fromBinary, toBinary, type DescField } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { EventSchema, type Event } from "../../gen/realtime/realtime_pb.js";
import { preEncoded, type MaybePreEncoded } from "../pre-encoded.js";

/**
 * What travels on a user's bus subject (`<prefix>.user.<id>`): one tag byte,
 * then either a realtime.Event in protobuf binary (stored events carry their
 * position, ephemeral ones position 0) or a JSON control message for the
 * streams of that user.
 */
const TAG_EVENT = 1;
const TAG_CONTROL = 2;

export type Control =
  /** Too many streams for the user: the stream with this id ends (ResourceExhausted). */
  { type: "evict"; stream_id: string };

export type BusFrame = { kind: "event"; event: Event } | { kind: "control"; control: Control };

/** Encodes an event once; `withPosition` then makes per-user frames cheaply. */
export function encodeEventBody(event: Event): Uint8Array {
  return toBinary(EventSchema, event);
}

/**
 * A frame for one user: the position field (1, varint) followed by the event
 * body encoded without a position. Protobuf merges concatenated encodings, so
 * this equals encoding the event with the position set.
 */
export function eventFrame(body: Uint8Array, position: bigint | string = 0n): Uint8Array {
  const pos = BigInt(position);
  const head: number[] = [TAG_EVENT];
  if (pos > 0n) {
    head.push(0x08);
    let v = pos;
    while (v >= 0x80n) {
      head.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    head.push(Number(v));
  }
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

export function controlFrame(control: Control): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(control));
  const out = new Uint8Array(json.length + 1);
  out[0] = TAG_CONTROL;
  out.set(json, 1);
  return out;
}

/** Undefined for a frame this version does not understand (ignored by streams). */
export function decodeFrame(payload: Uint8Array): BusFrame | undefined {
  try {
    if (payload[0] === TAG_EVENT) {
      const bytes = payload.subarray(1);
      const event: Event & MaybePreEncoded = shallowEvent(bytes) ?? fromBinary(EventSchema, bytes);
      // The stream writes these bytes as they are (binary protocols), not a re-encoding.
      event[preEncoded] = bytes;
      return { kind: "event", event };
    }
    if (payload[0] === TAG_CONTROL) {
      return { kind: "control", control: JSON.parse(new TextDecoder().decode(payload.subarray(1))) as Control };
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** Event's `kind` members by field number (all of them messages). */
const KIND_FIELDS: ReadonlyMap<number, DescField> = new Map(EventSchema.oneofs.find((o) => o.localName === "kind")!.fields.map((f) => [f.number, f]));

/**
 * An event's position, time and kind, with the kind's message decoded only
 * when something reads it (`kind.value`). A stream on a binary protocol writes
 * the frame's bytes as they are and reads only the position and the kind's
 * case, so most notices are never decoded further; a JSON stream, a typing
 * event's timer and tools read `value` and get the decoded message, the same
 * object each time. Undefined for anything but the frames eventFrame makes
 * (a field this code does not know, a member twice): the caller decodes
 * those in full. The kind's bytes are not checked before they are read or
 * written: frames come from Chatwire's own encoder, over NATS or in-process.
 */
function shallowEvent(bytes: Uint8Array): Event | undefined {
  const r = new BinaryReader(bytes);
  let position = 0n;
  let at: Timestamp | undefined;
  let member: DescField | undefined;
  let memberBytes: Uint8Array | undefined;
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1 && wireType === WireType.Varint) {
      position = BigInt(r.int64());
    } else if (no === 2 && wireType === WireType.LengthDelimited && at === undefined) {
      at = fromBinary(TimestampSchema, r.bytes());
    } else if (wireType === WireType.LengthDelimited && member === undefined && KIND_FIELDS.has(no)) {
      member = KIND_FIELDS.get(no)!;
      memberBytes = r.bytes();
    } else {
      return undefined;
    }
  }
  const event = create(EventSchema);
  event.position = position;
  event.at = at;
  if (member?.message) event.kind = lazyKind(member.localName, member.message, memberBytes!) as Event["kind"];
  return event;
}

function lazyKind(name: string, schema: NonNullable<DescField["message"]>, bytes: Uint8Array): { case: string; value: unknown } {
  return {
    case: name,
    get value(): unknown {
      const value = fromBinary(schema, bytes);
      Object.defineProperty(this, "value", { value, writable: true, enumerable: true, configurable: true });
      return value;
    },
  };
}
