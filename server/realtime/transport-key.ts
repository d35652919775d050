import { constants, type Http2ServerRequest } from "node:http2";
import type { IncomingMessage } from "node:http";
import { createContextKey } from "@connectrpc/connect";

/**
 * Cuts one request's transport: for a stream whose device stopped reading,
 * where the handler cannot reach the client any more (its writes wait for
 * flow control). HTTP/2: RST_STREAM ENHANCE_YOUR_CALM, which grpc-js reports
 * as ResourceExhausted (connect-node's gRPC client, reading the body, as
 * Internal). HTTP/1.1: the connection is closed.
 */
export const resetTransportKey = createContextKey<() => void>(() => undefined, { description: "reset this request's transport" });

export function transportResetter(req: IncomingMessage | Http2ServerRequest): () => void {
  return () => {
    if ("stream" in req && req.stream) {
      if (!req.stream.destroyed) req.stream.close(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    } else {
      req.socket?.destroy();
    }
  };
}
