import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";
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
  /** Media uploads (tus) and downloads under /media/: true when it took the request. */
  media?: (req: Req, res: Res) => boolean;
  /** The built browser client served at `/` (default: `dist/web`, see defaultWebDir). */
  webDir?: string;
}

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const allowedHeaders = [...connectCors.allowedHeaders, "Authorization"].join(", ");
const allowedMethods = connectCors.allowedMethods.join(", ");
const exposedHeaders = connectCors.exposedHeaders.join(", ");

/**
 * Plain HTTP beside the RPCs on the same port: CORS for browsers, liveness,
 * readiness, Prometheus metrics and the browser client's static files.
 * Everything else goes to the Connect adapter.
 */
export function createHttpRoutes(opts: HttpRoutesOptions): RequestHandler {
  const anyOrigin = opts.corsOrigins.includes("*");
  const webDir = path.resolve(opts.webDir ?? defaultWebDir());
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
    if (opts.media?.(req, res)) return;
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
    const urlPath = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method === "GET" || req.method === "HEAD") {
      switch (urlPath) {
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
      // RPC paths have two segments (/pkg.Service/Method); the web app's files have one, or live in /assets/.
      if (urlPath.split("/").length === 2 || urlPath.startsWith("/assets/")) {
        serveStatic(webDir, urlPath, req, res).then(
          (served) => {
            if (served) return;
            if (urlPath === "/") sendJson(res, 404, { error: "the browser client is not built: run `npm run build`" });
            else opts.rpc(req, res);
          },
          () => (res.headersSent ? res.destroy() : sendJson(res, 500, { error: "could not read the file" })),
        );
        return;
      }
    }
    opts.rpc(req, res);
  };
}

/** Where `npm run build` puts the browser client (dist/web), whether this runs from source or from dist/. */
export function defaultWebDir(): string {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  return path.basename(root) === "dist" ? path.join(root, "web") : path.join(root, "dist", "web");
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/**
 * Sends a file of `webDir` for GET/HEAD `urlPath`; false when there is none.
 * Only known file types, never dotfiles or `..`, never outside `webDir`.
 */
async function serveStatic(webDir: string, urlPath: string, req: Req, res: Res): Promise<boolean> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return false;
  }
  if (rel === "/") rel = "/index.html";
  if (rel.includes("\0") || rel.includes("\\") || rel.split("/").some((seg) => seg.startsWith("."))) return false;
  const file = path.resolve(webDir, `.${rel}`);
  if (!file.startsWith(webDir + path.sep)) return false;
  const type = CONTENT_TYPES[path.extname(file)];
  if (!type) return false;
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return false;
  res.writeHead(200, {
    "content-type": type,
    "content-length": info.size,
    // Vite puts a content hash in every asset name; index.html must always be asked for again.
    "cache-control": rel.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
    "x-content-type-options": "nosniff",
  });
  if (req.method === "HEAD") {
    res.end();
    return true;
  }
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(file);
    stream.on("error", reject);
    stream.on("end", resolve);
    stream.pipe(res as NodeJS.WritableStream);
  });
  return true;
}

function sendJson(res: Res, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}
