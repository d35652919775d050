import type http from "node:http";
import type http2 from "node:http2";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { SessionGuard } from "../auth/session-guard.js";
import type { TokenService } from "../auth/tokens.js";
import type { Clock } from "../clock.js";
import { collectable, deleteMediaRow } from "../db/media-store.js";
import type { Database } from "../db/schema.js";
import { createDownloads, UrlSigner } from "./downloads.js";
import type { MediaConfig } from "./media-config.js";
import { S3Storage } from "./s3-storage.js";
import { DiskStorage, type MediaStorage } from "./storage.js";
import { createUploads, UPLOADS_PATH } from "./uploads.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Media never referenced by a message or status is deleted this long after CreateUpload. */
export const UNREFERENCED_TTL_MS = 24 * 3600 * 1000;
const COLLECT_BATCH = 500;
const DOWNLOAD_PATH = /^\/media\/([^/]+)$/;

export interface MediaHubOptions {
  config: MediaConfig;
  db: Kysely<Database>;
  tokens: TokenService;
  guard: SessionGuard;
  /** The server secret download URLs are signed with (a key derived from it). */
  secret: string;
  corsOrigins: readonly string[];
  clock: Clock;
  logger: Logger;
}

/** Media of one server: the storage, tus uploads and signed downloads on the port, and the collector. */
export class MediaHub {
  readonly signer: UrlSigner;
  private readonly uploads: ReturnType<typeof createUploads>;
  private readonly downloads: ReturnType<typeof createDownloads>;
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;

  private constructor(
    private readonly opts: MediaHubOptions,
    readonly storage: MediaStorage,
  ) {
    const { config, db, clock, logger } = opts;
    this.signer = new UrlSigner(opts.secret);
    const maxBytes = Math.max(...Object.values(config.maxBytes));
    this.uploads = createUploads({ db, storage, tokens: opts.tokens, guard: opts.guard, logger, maxBytes, corsOrigins: opts.corsOrigins });
    this.downloads = createDownloads({ db, storage, signer: this.signer, clock, logger });
    this.anyOrigin = opts.corsOrigins.includes("*");
    this.origins = new Set(opts.corsOrigins);
  }

  static async create(opts: MediaHubOptions): Promise<MediaHub> {
    const storage = opts.config.s3 ? new S3Storage(opts.config.s3) : await DiskStorage.open(opts.config.dir);
    return new MediaHub(opts, storage);
  }

  /** Serves `/media/...` requests; false for other paths. */
  handle(req: Req, res: Res): boolean {
    const url = req.url ?? "/";
    if (!url.startsWith("/media/")) return false;
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (path === UPLOADS_PATH || path.startsWith(`${UPLOADS_PATH}/`)) {
      // @tus/server answers CORS, preflight included, itself.
      this.uploads.handle(req as http.IncomingMessage, res as http.ServerResponse).catch((err: unknown) => {
        this.opts.logger.warn({ err }, "tus request failed");
        if (!res.headersSent) res.writeHead(500).end();
      });
      return true;
    }
    const m = DOWNLOAD_PATH.exec(path);
    const origin = req.headers.origin;
    if (typeof origin === "string" && (this.anyOrigin || this.origins.has(origin))) {
      res.setHeader("access-control-allow-origin", this.anyOrigin ? "*" : origin);
      res.setHeader("access-control-expose-headers", "content-range, content-length, accept-ranges, content-disposition, etag");
    }
    if (req.method === "OPTIONS") {
      res.setHeader("access-control-allow-methods", "GET, HEAD");
      res.setHeader("access-control-allow-headers", "range");
      res.writeHead(204).end();
    } else if (!m || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(m ? 405 : 404, { "content-type": "text/plain; charset=utf-8" }).end(m ? "GET or HEAD\n" : "not found\n");
    } else {
      this.downloads(req, res, decodeURIComponent(m[1]!), new URLSearchParams(q < 0 ? "" : url.slice(q + 1)));
    }
    return true;
  }

  /** A signed download URL path for `id`, and when it stops working. */
  downloadUrl(id: string): { url: string; expires: Date } {
    const expires = new Date(this.opts.clock.now().getTime() + this.opts.config.urlTtlSeconds * 1000);
    return { url: this.signer.url(id, expires), expires };
  }

  /** Deletes one item's bytes, then its row (so a failed delete of the bytes is retried by the collector). */
  async remove(id: string): Promise<void> {
    await this.storage.remove(id);
    await deleteMediaRow(this.opts.db, id);
  }

  /** Deletes media never referenced within 24 h, and media whose last reference is gone. Returns how many. */
  async collect(): Promise<number> {
    const before = new Date(this.opts.clock.now().getTime() - UNREFERENCED_TTL_MS);
    let total = 0;
    for (;;) {
      const ids = await collectable(this.opts.db, before, COLLECT_BATCH);
      for (const id of ids) await this.remove(id);
      total += ids.length;
      if (ids.length < COLLECT_BATCH) return total;
    }
  }
}
