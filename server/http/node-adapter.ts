import { Code, ConnectError, createConnectRouter, type ConnectRouter, type ContextValues } from "@connectrpc/connect";
import { respecGrpcMessage } from "./grpc-message.js";
import type { ConnectRouterOptions } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { endStreamFlag, errorFromJson, errorToJson, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type http from "node:http";
import type http2 from "node:http2";
import type { Logger } from "pino";
import { drainHttp2Request, endUnreadHttp2Request } from "./drain.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const PARSE_BINARY = "parse binary: ";

/**
 * The error for a request that is not valid protobuf: the client's bad
 * input (InvalidArgument), not the server's fault (connect says Internal).
 */
export function decodeError(typeName: string, rawMessage: string): ConnectError {
  return new ConnectError(`the request is not a valid ${typeName} protobuf message (${rawMessage.slice(PARSE_BINARY.length)})`, Code.InvalidArgument);
}

/** connect's error for an undecodable protobuf request, as the fast path and connect-node raise it. */
export function isDecodeError(err: ConnectError | undefined): err is ConnectError {
  return err !== undefined && err.code === Code.Internal && err.rawMessage.startsWith(PARSE_BINARY);
}

export interface NodeAdapterOptions extends ConnectRouterOptions {
  routes: (router: ConnectRouter) => void;
  contextValues: (req: Req) => ContextValues;
  logger: Logger;
  /** How much of an unread request body is read and dropped before answering (HTTP/2). */
  drainBytes: number;
}

/**
 * connect-node's `connectNodeAdapter`, with two changes: an undecodable
 * protobuf request answers InvalidArgument on every protocol, and an HTTP/2
 * answer waits for the request body (see drainHttp2Request).
 *
 * connect raises "parse binary: …" as Internal inside each protocol handler,
 * before any interceptor sees the call, and encodes it there (a gRPC trailer,
 * a gRPC-Web trailer frame, a Connect JSON error or end-of-stream message).
 * No option or interceptor reaches it, so the encoded answer is rewritten
 * here. Only error answers are decoded again; a normal response costs one
 * byte test per gRPC-Web or Connect-stream chunk.
 */
export function createNodeAdapter(options: NodeAdapterOptions): (req: Req, res: Res) => void {
  const router = createConnectRouter(options);
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) paths.set(handler.requestPath, handler);
  return (req, res) => {
    const handler = paths.get((req.url ?? "").split("?", 2)[0] ?? "");
    if (!handler) {
      res.writeHead(404);
      res.end();
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues(req));
    const typeName = handler.method.input.typeName;
    // An answer that comes before the request body was read (too large, unauthenticated stream) waits until
    // the client could send it: over HTTP/2 it may refuse the answer otherwise (see drainHttp2Request).
    const streamingRequest = handler.method.methodKind === "bidi_streaming" || handler.method.methodKind === "client_streaming";
    const readFirst = req.httpVersionMajor === 2 && !streamingRequest;
    // A streaming request answered before the client ended it (an error) is then reset with NO_ERROR.
    if (req.httpVersionMajor === 2 && streamingRequest) endUnreadHttp2Request(req as http2.Http2ServerRequest);
    handler(uReq)
      .then(async (uRes) => {
        if (readFirst) await drainHttp2Request(req as http2.Http2ServerRequest, options.drainBytes, false);
        return universalResponseToNodeResponse(mapDecodeErrors(uRes, header(req.headers["content-type"]), typeName), res);
      })
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.logger.warn({ err: reason, rpc: req.url }, "connect handler failed");
      });
  };
}

function header(v: string | string[] | undefined): string {
  return typeof v === "string" ? v : (v?.join(", ") ?? "");
}

/** The response with a decode error re-encoded as InvalidArgument; others untouched. */
function mapDecodeErrors(res: UniversalServerResponse, contentType: string, typeName: string): UniversalServerResponse {
  if (res.body === undefined || res.body instanceof Uint8Array) return res;
  const body = res.body;
  if (contentType.startsWith("application/grpc-web")) {
    respecGrpcMessage(res.header);
    return { ...res, body: mapChunks(body, (chunk) => (chunk[0] === trailerFlag ? grpcWebTrailer(chunk, typeName) : chunk)) };
  }
  if (contentType.startsWith("application/grpc")) {
    respecGrpcMessage(res.header);
    const trailer = res.trailer;
    if (trailer === undefined) return res;
    return {
      ...res,
      body: mapChunks(
        body,
        (chunk) => chunk,
        () => {
          const err = findTrailerError(trailer);
          if (isDecodeError(err)) setTrailerStatus(trailer, decodeError(typeName, err.rawMessage));
          respecGrpcMessage(trailer);
        },
      ),
    };
  }
  if (contentType.startsWith("application/connect+")) {
    return { ...res, body: mapChunks(body, (chunk) => (chunk[0] === endStreamFlag ? connectEndStream(chunk, typeName) : chunk)) };
  }
  // Connect unary (POST or GET): an Internal error is HTTP 500 with a JSON body (never compressed: it is small).
  if (res.status !== 500 || res.header?.get("content-encoding")) return res;
  const out = { ...res };
  out.body = connectUnary(out, body, typeName);
  return out;
}

async function* mapChunks(body: AsyncIterable<Uint8Array>, map: (chunk: Uint8Array) => Uint8Array, atEnd?: () => void): AsyncIterable<Uint8Array> {
  for await (const chunk of body) yield map(chunk);
  atEnd?.();
}

function grpcWebTrailer(chunk: Uint8Array, typeName: string): Uint8Array {
  const trailer = trailerParse(chunk.subarray(5));
  const err = findTrailerError(trailer);
  if (err === undefined) return chunk;
  if (isDecodeError(err)) setTrailerStatus(trailer, decodeError(typeName, err.rawMessage));
  respecGrpcMessage(trailer);
  return envelope(trailerFlag, trailerSerialize(trailer));
}

function connectEndStream(chunk: Uint8Array, typeName: string): Uint8Array {
  let end: { error?: unknown };
  let err: ConnectError | undefined;
  try {
    end = JSON.parse(new TextDecoder().decode(chunk.subarray(5))) as { error?: unknown };
    if (end.error === undefined) return chunk;
    err = errorFromJson(end.error as never, undefined, new ConnectError("", Code.Unknown));
  } catch {
    return chunk;
  }
  if (!isDecodeError(err)) return chunk;
  end.error = errorToJson(decodeError(typeName, err.rawMessage), undefined);
  return envelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(end)));
}

async function* connectUnary(res: UniversalServerResponse, body: AsyncIterable<Uint8Array>, typeName: string): AsyncIterable<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let err: ConnectError | undefined;
  try {
    err = errorFromJson(JSON.parse(bytes.toString("utf8")) as never, undefined, new ConnectError("", Code.Unknown));
  } catch {
    err = undefined;
  }
  if (!isDecodeError(err)) {
    yield bytes;
    return;
  }
  const out = errorToJsonBytes(decodeError(typeName, err.rawMessage), {});
  res.status = 400;
  res.header?.set("content-length", String(out.byteLength));
  yield out;
}

/** One length-prefixed gRPC / Connect-stream frame (the fast path writes its frames with it too). */
export function envelope(flags: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + data.byteLength);
  out[0] = flags;
  out.writeUInt32BE(data.byteLength, 1);
  out.set(data, 5);
  return out;
}
