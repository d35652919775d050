// Reading and decoding a fast-path request: headers, the body under readMaxBytes, the gRPC envelope, the message. Used by rpc-fast-path.ts.
import type http from "node:http";
import type http2 from "node:http2";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { MethodSerializationLookup } from "@connectrpc/connect/protocol";
import { decodeError, isDecodeError } from "./node-adapter.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;

/** A request that is not valid protobuf is the client's bad input: InvalidArgument (connect says Internal). */
export function parse(serialization: MethodSerializationLookup<DescMessage, DescMessage>, binary: boolean, bytes: Uint8Array, typeName: string) {
  try {
    return serialization.getI(binary).parse(bytes);
  } catch (e) {
    if (e instanceof ConnectError && isDecodeError(e)) throw decodeError(typeName, e.rawMessage);
    throw e;
  }
}

export function header(v: string | string[] | undefined): string | null {
  if (v === undefined) return null;
  return typeof v === "string" ? v : v.join(", ");
}

/**
 * How far past readMaxBytes a body is still read (and dropped) before it is refused. Node's http2 client
 * (and so @grpc/grpc-js) refuses answers while more than 10 MB of its own request is unsent; reading up to
 * 4 × 4 MiB leaves a larger body's sender under that when the refusal arrives. Reading costs only bandwidth
 * the client spends anyway.
 */
const DRAIN_FACTOR = 4;

/** What a request's error after its body was read does (the body's promise is settled by then). */
function ignoreError(): void {}

/** The whole request body, refused past `readMaxBytes` (as connect's readAllBytes). */
export function readBody(req: Req, readMaxBytes: number, contentLength: string | null): Promise<Uint8Array> {
  const hint = contentLength === null ? NaN : Number(contentLength);
  if (Number.isInteger(hint) && hint > readMaxBytes) {
    req.resume();
    return Promise.reject(new ConnectError(`message size ${hint} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const tooLarge = () => new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    const onData = (chunk: Buffer) => {
      if (failed) return;
      size += chunk.byteLength;
      // Past the limit the rest is read and dropped, and the refusal waits for the end of the body (see
      // readInput in RpcFastPath.serveStream for why); past DRAIN_FACTOR times the limit it is refused at once.
      if (size > DRAIN_FACTOR * readMaxBytes) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      if (size <= readMaxBytes) chunks.push(chunk);
      else chunks.length = 0;
    };
    const onEnd = () => {
      // The listeners' scope holds the body: a long-lived stream's request must not keep it. (An error
      // listener stays, as before, but one that closes over nothing.)
      req.off("data", onData);
      req.off("error", onError);
      req.on("error", ignoreError);
      if (failed) return;
      if (size > readMaxBytes) return reject(tooLarge());
      if (Number.isInteger(hint) && hint >= 0 && hint !== size) {
        reject(new ConnectError(`protocol error: promised ${hint} bytes, received ${size}`, Code.InvalidArgument));
        return;
      }
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      chunks.length = 0;
      resolve(body);
    };
    const onError = (err: Error) => {
      if (!failed) reject(new ConnectError("the request body could not be read", Code.Canceled, undefined, undefined, err));
      failed = true;
    };
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", onError);
  });
}

/** The one message of a unary gRPC or server-streaming request (5-byte envelope: flags, big-endian length). */
export function unwrapEnvelope(raw: Uint8Array, readMaxBytes: number, kind = "unary"): Uint8Array {
  if (raw.byteLength === 0) throw new ConnectError(`protocol error: missing input message for ${kind} method`, Code.Unimplemented);
  if (raw.byteLength < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const flags = raw[0]!;
  const length = ((raw[1]! << 24) | (raw[2]! << 16) | (raw[3]! << 8) | raw[4]!) >>> 0;
  if (length > readMaxBytes) throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
  if (raw.byteLength < 5 + length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (raw.byteLength > 5 + length) throw new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.Unimplemented);
  if (flags !== 0) throw new ConnectError("received a compressed message without a grpc-encoding header", Code.InvalidArgument);
  return raw.subarray(5);
}
