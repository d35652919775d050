import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";
import type { RequestHandler } from "../listener.js";
import type { Metrics } from "../metrics.js";

export interface Readiness {
  ready: boolean;
  checks: Record<string, string>;
}

export interface HttpRoutesOptions {
  corsOrigins: readonly string[];
  metrics: Metrics;
  readiness: () => Promise<Readiness>;
  /** The Connect adapter: every RPC path. */
  rpc: RequestHandler;
}

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const allowedHeaders = [...connectCors.allowedHeaders, "Authorization"].join(", ");
const allowedMethods = connectCors.allowedMethods.join(", ");
const exposedHeaders = connectCors.exposedHeaders.join(", ");

/**
 * Plain HTTP beside the RPCs on the same port: CORS for browsers, liveness,
 * readiness and Prometheus metrics. Everything else goes to the Connect adapter.
 */
export function createHttpRoutes(opts: HttpRoutesOptions): RequestHandler {
  const anyOrigin = opts.corsOrigins.includes("*");
  const origins = new Set(opts.corsOrigins);

  const applyCors = (req: Req, res: Res): boolean => {
    const origin = req.headers.origin;
    if (typeof origin !== "string") return false;
    if (!anyOrigin && !origins.has(origin)) return false;
    res.setHeader("Access-Control-Allow-Origin", anyOrigin ? "*" : origin);
    if (!anyOrigin) res.setHeader("Vary", "Origin");
    res.setHeader("Access-Control-Expose-Headers", exposedHeaders);
    return true;
  };

  return (req, res) => {
    const allowed = applyCors(req, res);
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      if (allowed) {
        res.setHeader("Access-Control-Allow-Methods", allowedMethods);
        res.setHeader("Access-Control-Allow-Headers", allowedHeaders);
        res.setHeader("Access-Control-Max-Age", "7200");
      }
      res.writeHead(allowed ? 204 : 403);
      res.end();
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" || req.method === "HEAD") {
      switch (path) {
        case "/healthz":
          return sendJson(res, 200, { status: "ok" });
        case "/readyz":
          opts.readiness().then(
            (r) => sendJson(res, r.ready ? 200 : 503, { status: r.ready ? "ready" : "not ready", checks: r.checks }),
            (err: unknown) => sendJson(res, 503, { status: "not ready", error: String(err) }),
          );
          return;
        case "/metrics":
          opts.metrics.registry.metrics().then(
            (text) => {
              res.writeHead(200, { "content-type": opts.metrics.registry.contentType });
              res.end(text);
            },
            () => sendJson(res, 500, { error: "metrics unavailable" }),
          );
          return;
      }
    }
    opts.rpc(req, res);
  };
}

function sendJson(res: Res, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}
