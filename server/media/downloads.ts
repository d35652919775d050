import { createHmac, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import type http2 from "node:http2";
import { pipeline } from "node:stream/promises";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import parseRange from "range-parser";
import type { Clock } from "../clock.js";
import { getMedia } from "../db/media-store.js";
import type { Database } from "../db/schema.js";
import { isUuid } from "../domain/ids.js";
import { dispositionOf } from "./kinds.js";
import type { MediaStorage } from "./storage.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Download URLs: `/media/<id>?exp=<unix seconds>&sig=<HMAC-SHA256(id.exp)>`,
 * signed with a key derived from the server secret, so any instance checks
 * them without the database and nobody can make one for another id or a
 * later expiry.
 */
export class UrlSigner {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = createHmac("sha256", secret).update("chatwire media download url v1").digest();
  }

  private mac(id: string, exp: number): Buffer {
    return createHmac("sha256", this.key).update(`${id}.${exp}`).digest();
  }

  /** The URL path of a download of `id` that works until `expires`. */
  url(id: string, expires: Date): string {
    const exp = Math.floor(expires.getTime() / 1000);
    return `/media/${id}?exp=${exp}&sig=${this.mac(id, exp).toString("base64url")}`;
  }

  /** Whether `sig` signs (id, exp); the expiry is checked by the caller. */
  valid(id: string, exp: number, sig: string): boolean {
    const given = Buffer.from(sig, "base64url");
    const want = this.mac(id, exp);
    return given.length === want.length && timingSafeEqual(given, want);
  }
}

export interface DownloadsOptions {
  db: Kysely<Database>;
  storage: MediaStorage;
  signer: UrlSigner;
  clock: Clock;
  logger: Logger;
}

/**
 * GET/HEAD /media/<id>?exp&sig: the bytes of a ready media item to whoever
 * holds an unexpired signed URL. Single byte ranges answer 206 (video
 * seeking); the content never changes under an id, so it may be cached forever.
 */
export function createDownloads(opts: DownloadsOptions): (req: Req, res: Res, id: string, query: URLSearchParams) => void {
  const { db, storage, signer, clock, logger } = opts;

  const text = (res: Res, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers });
    res.end(`${body}\n`);
  };

  async function serve(req: Req, res: Res, rawId: string, query: URLSearchParams): Promise<void> {
    const id = rawId.toLowerCase();
    const exp = Number(query.get("exp"));
    const sig = query.get("sig") ?? "";
    if (!isUuid(id) || !Number.isSafeInteger(exp) || !signer.valid(id, exp, sig)) {
      return text(res, 403, "not a valid download URL: ask media.MediaService/GetMedia for one");
    }
    if (exp * 1000 <= clock.now().getTime()) return text(res, 403, "this download URL has expired: ask media.MediaService/GetMedia for a new one");
    const row = await getMedia(db, id);
    if (row?.state !== "ready") return text(res, 404, "no such media (it may have been deleted)");
    const size = Number(row.size_bytes);
    const headers: Record<string, string | number> = {
      "content-type": row.mime_type,
      "accept-ranges": "bytes",
      "cache-control": "private, max-age=31536000, immutable",
      etag: `"${row.sha256}"`,
      "x-content-type-options": "nosniff",
    };
    if (dispositionOf(row.kind) === "attachment") {
      headers["content-disposition"] = `attachment; filename*=UTF-8''${encodeURIComponent(row.file_name || `${row.id}`)}`;
    }
    let range: { start: number; end: number } | undefined;
    const rangeHeader = req.headers.range;
    if (typeof rangeHeader === "string") {
      const ranges = parseRange(size, rangeHeader, { combine: true });
      if (ranges === -1) return text(res, 416, `the range is outside the ${size} bytes`, { "content-range": `bytes */${size}` });
      // Malformed (-2) or several ranges: the whole body, as RFC 9110 allows.
      if (ranges !== -2 && ranges.type === "bytes" && ranges.length === 1) range = ranges[0];
    }
    if (range) {
      headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
      headers["content-length"] = range.end - range.start + 1;
    } else {
      headers["content-length"] = size;
    }
    if (req.method === "HEAD") {
      res.writeHead(range ? 206 : 200, headers);
      res.end();
      return;
    }
    const body = size === 0 ? undefined : await storage.read(id, range);
    res.writeHead(range ? 206 : 200, headers);
    if (!body) return void res.end();
    await pipeline(body, res as NodeJS.WritableStream);
  }

  return (req, res, id, query) => {
    serve(req, res, id, query).catch((err: unknown) => {
      logger.warn({ err, mediaId: id }, "media download failed");
      if (!res.headersSent) text(res, 503, "the media could not be read; retry");
      else res.destroy();
    });
  };
}
