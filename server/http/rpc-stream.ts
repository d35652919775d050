// What a fast-path server-streaming call needs beside the unary path: interceptors, headers, output, backpressure. Used by rpc-fast-path.ts.
import type http from "node:http";
import type http2 from "node:http2";
import { create, isMessage, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor, type StreamRequest, type StreamResponse } from "@connectrpc/connect";

type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Resolves when the response can take more, or is gone. */
export function drained(res: Res, closed: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (closed()) return resolve();
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** As connect's applyInterceptors: the first interceptor is the outermost. */
function applyInterceptors(
  interceptors: Interceptor[],
  last: (req: StreamRequest) => Promise<StreamResponse>,
): (req: StreamRequest) => Promise<StreamResponse> {
  let next = last as Parameters<Interceptor>[0];
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next);
  return next as (req: StreamRequest) => Promise<StreamResponse>;
}

/** A stream call's handler context, on its way to the end of the route's interceptor chain (see streamChain). */
const streamContextKey = createContextKey<HandlerContext | undefined>(undefined, { description: "fast path: this stream call's handler context" });

/**
 * A server-streaming route's interceptor chain, made once per route: its end reads the request's one message
 * and calls the handler. Per call, the handler context travels in the request's context values (`call`
 * puts it there, the chain's end takes it out before the handler sees them). A chain made per call would be
 * held, closures and all, by the interceptors' stream wrappers for as long as the stream is open.
 */
export function streamChain(
  interceptors: Interceptor[],
  service: DescService,
  method: DescMethod,
  impl: (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>,
): (req: StreamRequest, context: HandlerContext) => Promise<StreamResponse> {
  const chain = applyInterceptors(interceptors, async (r: StreamRequest) => {
    const context = r.contextValues.get(streamContextKey);
    // Set back to its default rather than deleted: a deleted property turns connect's context values object into a
    // dictionary, several times its size, for the stream's life.
    r.contextValues.set(streamContextKey, undefined);
    if (context === undefined) throw new ConnectError("fast path: the call's handler context was not passed on", Code.Internal);
    let first: unknown;
    for await (const m of r.message) first = m;
    return {
      stream: true as const,
      service,
      method,
      header: context.responseHeader,
      trailer: context.responseTrailer,
      message: impl(first, {
        ...context,
        service: r.service,
        requestHeader: r.header,
        signal: r.signal,
        values: r.contextValues,
      }) as AsyncIterable<DescMessage>,
    } as StreamResponse;
  });
  return (req, context) => {
    req.contextValues.set(streamContextKey, context);
    return chain(req);
  };
}

export function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  to.forEach((_, key) => to.delete(key));
  from.forEach((value, key) => to.set(key, value));
}

/** Handlers may yield init objects; connect turns them into messages (its normalize). */
export function normalizeOutput(schema: DescMessage, value: unknown): MessageShape<DescMessage> {
  if (isMessage(value, schema)) return value;
  return create(schema, value as MessageInitShape<DescMessage>);
}
