import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { toConnectError } from "./errors.js";

/**
 * Logs every RPC (method, code, duration, protocol; never headers or bodies)
 * and records its metrics. A throw that is not a ConnectError gets its code
 * from toConnectError (Unavailable when a dependency is unreachable, else
 * Internal: a bug, whose cause is logged).
 */
export function observabilityInterceptor(logger: Logger, metrics: Metrics): Interceptor {
  return (next) => async (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    const protocol = protocolOf(req.header.get("content-type"));
    const started = process.hrtime.bigint();
    const isStream = req.method.methodKind === "server_streaming" || req.method.methodKind === "bidi_streaming";

    const finish = (err: unknown): void => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const ce = err === undefined ? undefined : ConnectError.from(err);
      // As on the wire (Connect's JSON errors): "invalid_argument", not "invalidargument".
      const code = ce === undefined ? "ok" : codeToString(ce.code);
      metrics.rpcTotal.inc({ method, code, protocol });
      metrics.rpcDuration.observe({ method, code }, ms / 1000);
      const line = { rpc: method, code, ms: Math.round(ms * 100) / 100, protocol };
      if (ce && (ce.code === Code.Internal || ce.code === Code.Unknown || ce.code === Code.DataLoss)) {
        logger.error({ ...line, err: ce.cause ?? err }, "rpc failed");
      } else {
        logger.info(line, "rpc");
      }
    };

    const mask = toConnectError;

    let res: UnaryResponse | StreamResponse;
    try {
      res = await next(req);
    } catch (err) {
      const masked = mask(err);
      finish(masked);
      throw masked;
    }
    if (!res.stream) {
      finish(undefined);
      return res;
    }
    if (isStream) metrics.openStreams.inc({ method });
    const source = res.message;
    async function* observed() {
      let done = false;
      try {
        for await (const m of source) yield m;
        done = true;
        finish(undefined);
      } catch (err) {
        done = true;
        const masked = mask(err);
        finish(masked);
        throw masked;
      } finally {
        // The client went away mid-stream: the generator was returned early.
        if (!done) finish(new ConnectError("client closed the stream", Code.Canceled));
        if (isStream) metrics.openStreams.dec({ method });
      }
    }
    return { ...res, message: observed() };
  };
}

function protocolOf(contentType: string | null): string {
  if (!contentType) return "unknown";
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}
