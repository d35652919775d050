import { fromBinary, toBinary } from "@bufbuild/protobuf";
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
      const event: Event & MaybePreEncoded = fromBinary(EventSchema, bytes);
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
