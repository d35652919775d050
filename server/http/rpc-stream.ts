// What a fast-path server-streaming call needs beside the unary path: interceptors, headers, output, backpressure. Used by rpc-fast-path.ts.
import type http from "node:http";
import type http2 from "node:http2";
import { create, isMessage, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { Interceptor, StreamRequest, StreamResponse } from "@connectrpc/connect";

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
export function applyInterceptors(
  interceptors: Interceptor[],
  last: (req: StreamRequest) => Promise<StreamResponse>,
): (req: StreamRequest) => Promise<StreamResponse> {
  let next = last as Parameters<Interceptor>[0];
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next);
  return next as (req: StreamRequest) => Promise<StreamResponse>;
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
