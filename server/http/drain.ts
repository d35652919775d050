import http2 from "node:http2";

/**
 * Reads and drops what is left of an HTTP/2 request body, up to `maxBytes`;
 * resolves true when the body ended, false when it went past `maxBytes` or the
 * stream closed or `waitMs` passed. Past `maxBytes`, a stream whose response is complete
 * (`responded`) is reset with NO_ERROR, which asks the client to stop sending
 * (RFC 9113 §8.1); otherwise reading just stops.
 *
 * Why it matters: node's http2 client (and so @grpc/grpc-js) counts its own
 * unsent request bytes against its session memory (10 MB by default) and,
 * past it, refuses every stream of the connection, including the answers to
 * the calls that filled it (RST_STREAM 11), for good. A server that answers
 * before reading the body must read it anyway.
 */
export function drainHttp2Request(req: http2.Http2ServerRequest, maxBytes: number, responded: boolean, waitMs = 5000): Promise<boolean> {
  const stream = req.stream;
  if (req.complete || stream.readableEnded || stream.closed || stream.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    let read = 0;
    // A client that stops sending mid-body is not waited for long.
    const timer = setTimeout(() => {
      source.pause();
      finish(false);
    }, waitMs);
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      source.off("data", onData);
      source.off("end", onEnd);
      stream.off("close", onClose);
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      read += chunk.byteLength;
      if (read > maxBytes) {
        if (responded) {
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
        } else {
          source.pause();
        }
        finish(false);
      }
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(false);
    // A destroyed request (connect-node stops reading by destroying it) no longer passes data on: read the stream itself.
    const source = (req.destroyed ? stream : req) as NodeJS.EventEmitter & { resume(): void; pause(): void };
    if (req.destroyed) stream.removeAllListeners("data");
    source.on("data", onData);
    source.once("end", onEnd);
    stream.once("close", onClose);
    source.resume();
  });
}

/**
 * Ends an HTTP/2 stream whose response is complete while its request is not (a client-streaming or bidi call
 * answered early, e.g. a message over MAX_MESSAGE_BYTES): RST_STREAM(NO_ERROR) right after the trailers, as
 * gRPC servers do (RFC 9113 §8.1: the client stops sending and keeps the response). Without it a client that
 * keeps its side open (a bidi client does) holds a half-open stream for good: the response's 'finish' never
 * comes while the request is open, so the drain after a finished response (server/listener.ts) never starts.
 *
 * Call it before the response starts. The compatibility layer sends the trailers from its own 'wantTrailers'
 * listener (registered first), on a setImmediate; the check runs on the next one, after them.
 */
export function endUnreadHttp2Request(req: http2.Http2ServerRequest): void {
  const stream = req.stream;
  stream.once("wantTrailers", () =>
    setImmediate(() => {
      // remoteClose: the client's END_STREAM arrived (its request is complete, nothing to stop).
      if (stream.closed || stream.destroyed || stream.state.remoteClose) return;
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
    }),
  );
}
