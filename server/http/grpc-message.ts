// grpc-message as the gRPC spec encodes it (PROTOCOL-HTTP2.md, "Status-Message"): the UTF-8 bytes of the
// message, each byte outside 0x20–0x7E and "%" itself written as %XX, everything else as it is. connect-es
// writes it with encodeURIComponent, which also encodes spaces, "+", ",", ":" and the like; grpc-js (and so
// Postman) decodes only what the spec encodes and showed `phone_number%3A "12345" must start with %2B…`.

const encoder = new TextEncoder();

/** The spec's percent-encoding of a status message. */
export function grpcMessageEncode(raw: string): string {
  let out = "";
  for (const b of encoder.encode(raw)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Rewrites a grpc-message that connect-es percent-encoded with encodeURIComponent into the spec's encoding, in place. */
export function respecGrpcMessage(headers: Headers | undefined): void {
  const v = headers?.get("grpc-message");
  if (v === null || v === undefined) return;
  let raw: string;
  try {
    raw = decodeURIComponent(v);
  } catch {
    return; // not what connect-es wrote: leave it
  }
  headers!.set("grpc-message", grpcMessageEncode(raw));
}
