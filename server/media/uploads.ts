import { createHash } from "node:crypto";
import type http from "node:http";
import { Server, type ServerOptions } from "@tus/server";
import type { Upload } from "@tus/utils";
import { fileTypeFromBuffer } from "file-type";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { SessionGuard } from "../auth/session-guard.js";
import { TokenError, type TokenService } from "../auth/tokens.js";
import { deleteMediaRow, getMedia, markReady, type MediaRow } from "../db/media-store.js";
import type { Database } from "../db/schema.js";
import { isUuid } from "../domain/ids.js";
import { contentMatches, type MediaKindName } from "./kinds.js";
import type { MediaStorage } from "./storage.js";

/** The tus endpoint: creation at UPLOADS_PATH, each upload at UPLOADS_PATH/<media id>. */
export const UPLOADS_PATH = "/media/uploads";
/** How much of the start of a file content sniffing looks at. */
const SNIFF_BYTES = 64 * 1024;

/** What @tus/server turns into an HTTP answer: thrown from a hook, it ends the request with that status and body. */
interface TusAnswer {
  status_code: number;
  body: string;
}
const answer = (status_code: number, body: string): TusAnswer => ({ status_code, body: `${body}\n` });

export interface UploadsOptions {
  db: Kysely<Database>;
  storage: MediaStorage;
  tokens: TokenService;
  guard: SessionGuard;
  logger: Logger;
  /** The largest upload of any kind (each upload must also equal its declared size). */
  maxBytes: number;
  corsOrigins: readonly string[];
}

type Req = Parameters<NonNullable<ServerOptions["onIncomingRequest"]>>[0];

/**
 * tus 1.0 (core, creation, creation-with-upload, termination, expiration)
 * through @tus/server, for media declared by CreateUpload: the uploader's
 * bearer token on every request, the tus upload id = the media id (sent as
 * `media_id` metadata at creation), Upload-Length = the declared size, and on
 * the last byte the size, SHA-256 and content type checked before the media
 * is ready.
 */
export function createUploads(opts: UploadsOptions): { handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> } {
  const { db, storage, logger } = opts;
  const anyOrigin = opts.corsOrigins.includes("*");
  const origins = new Set(opts.corsOrigins);

  async function callerOf(req: Req): Promise<string> {
    const header = req.headers.get("authorization")?.trim() ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw answer(401, "send `Authorization: Bearer <access token>` (the uploader's)");
    try {
      const claims = await opts.tokens.verify("access", match[1]!);
      if (!(await opts.guard.isLive(claims.sessionId, claims.userId))) throw answer(401, "the session of this access token has been revoked; log in again");
      return claims.userId;
    } catch (err) {
      if (err instanceof TokenError) throw answer(401, err.message);
      throw err;
    }
  }

  /** The media being uploaded, of the caller; 404 otherwise (as for an id that does not exist). */
  async function ownMedia(req: Req, id: string): Promise<MediaRow> {
    const userId = await callerOf(req);
    const row = isUuid(id) ? await getMedia(db, id.toLowerCase()) : undefined;
    if (!row || row.uploader_id !== userId) throw answer(404, `no upload ${id} of yours: declare it with media.MediaService/CreateUpload first`);
    return row;
  }

  /** Reads the stored bytes back: size, SHA-256 and type against what CreateUpload declared. Undefined: all good. */
  async function check(row: MediaRow): Promise<string | undefined> {
    const hash = createHash("sha256");
    const head: Buffer[] = [];
    let headBytes = 0;
    let size = 0;
    for await (const chunk of await storage.read(row.id)) {
      const b = chunk as Buffer;
      hash.update(b);
      size += b.length;
      if (headBytes < SNIFF_BYTES) {
        head.push(b);
        headBytes += b.length;
      }
    }
    if (size !== Number(row.size_bytes)) return `the upload has ${size} bytes; CreateUpload declared ${row.size_bytes}`;
    const digest = hash.digest("hex");
    if (digest !== row.sha256) return `the upload's SHA-256 is ${digest}; CreateUpload declared ${row.sha256}`;
    if (row.encrypted) return undefined;
    const sniffed = await fileTypeFromBuffer(Buffer.concat(head).subarray(0, SNIFF_BYTES));
    if (!contentMatches(row.kind as MediaKindName, sniffed?.mime)) {
      return `the content is ${sniffed ? sniffed.mime : "of no recognised type"}, which ${row.kind} media may not be (declare it as a document, or as encrypted)`;
    }
    return undefined;
  }

  const server = new Server({
    path: UPLOADS_PATH,
    datastore: storage.tus,
    relativeLocation: true,
    maxSize: opts.maxBytes,
    allowedHeaders: ["Authorization"],
    allowedOrigins: (origin) => anyOrigin || origins.has(origin),
    // Retried chunks must not overwrite a finished upload.
    disableTerminationForFinishedUploads: false,
    namingFunction: (_req, metadata) => {
      const id = metadata?.media_id?.trim().toLowerCase();
      if (!id || !isUuid(id)) throw answer(400, "Upload-Metadata needs `media_id` (the id CreateUpload answered, base64-encoded as tus metadata is)");
      return id;
    },
    onIncomingRequest: async (req, id) => {
      const row = await ownMedia(req, id);
      if (req.method === "POST") {
        const existing = await storage.tus.getUpload(id).catch(() => undefined);
        if (existing) throw answer(409, `the upload of media ${id} already exists: resume it at ${UPLOADS_PATH}/${id} (HEAD, then PATCH)`);
      } else if (req.method === "PATCH" && row.state === "ready") {
        throw answer(409, `media ${id} is already uploaded`);
      }
    },
    onUploadCreate: async (req, upload) => {
      const row = await ownMedia(req, upload.id);
      if (upload.size === undefined) throw answer(400, "Upload-Defer-Length is not supported: send Upload-Length (the declared size_bytes)");
      if (upload.size !== Number(row.size_bytes)) {
        throw answer(400, `Upload-Length is ${upload.size}; CreateUpload declared size_bytes ${row.size_bytes}`);
      }
      return {};
    },
    onUploadFinish: async (_req, upload: Upload) => {
      const row = await getMedia(db, upload.id);
      if (!row) throw answer(404, `media ${upload.id} was deleted during its upload`);
      const problem = await check(row);
      if (problem) {
        logger.info({ mediaId: row.id, uploaderId: row.uploader_id, problem }, "media upload refused");
        await storage.remove(row.id);
        await deleteMediaRow(db, row.id);
        throw answer(422, `${problem}; the media is deleted`);
      }
      await markReady(db, row.id);
      return {};
    },
    onResponseError: (_req, err) => {
      if (err instanceof Error) {
        logger.warn({ err }, "media upload failed");
        return { status_code: 500, body: "the upload could not be stored; retry\n" };
      }
      return undefined;
    },
  });
  return { handle: (req, res) => server.handle(req, res) };
}
