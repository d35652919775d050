import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { fileTypeFromBuffer } from "file-type";
import { CreateUploadResponseSchema, DeleteMediaResponseSchema, MediaKind, type MediaService } from "../../gen/media/media_pb.js";
import type { AppContext } from "../context.js";
import * as store from "../db/media-store.js";
import type { MediaRow } from "../db/media-store.js";
import * as privacy from "../db/privacy-store.js";
import { audienceLists } from "../db/status-store.js";
import { findAnswer } from "../db/request-store.js";
import { allows, statusVisible, type AudienceKind } from "../domain/privacy.js";
import { oncePerKey, requestIdField } from "../services/request-replay.js";
import { bad, callerId, uuidField } from "../services/rpc-input.js";
import { mediaView } from "./attach.js";
import { declaredType, maxBytesOf, type MediaKindName, THUMBNAIL_MAX_BYTES, thumbnailTypeOk } from "./kinds.js";
import { type MediaHub, UNREFERENCED_TTL_MS } from "./media-hub.js";
import { UPLOADS_PATH } from "./uploads.js";

const KIND_NAMES: Partial<Record<MediaKind, MediaKindName>> = {
  [MediaKind.IMAGE]: "image",
  [MediaKind.VIDEO]: "video",
  [MediaKind.AUDIO]: "audio",
  [MediaKind.DOCUMENT]: "document",
  [MediaKind.STICKER]: "sticker",
};
const SHA256 = /^[0-9a-f]{64}$/;
const MAX_FILE_NAME = 255;
const DAY_MS = 24 * 3600 * 1000;
const MiB = 1024 * 1024;

const notFound = (id: string) => new ConnectError(`media ${id} not found`, Code.NotFound);
const tooMuch = (message: string) => new ConnectError(message, Code.ResourceExhausted);
const mib = (n: number) => `${Math.round((n / MiB) * 10) / 10} MiB`;

/** media.MediaService: declare uploads (the bytes go over tus), look media up, delete them. */
export function createMediaService(ctx: AppContext, hub: MediaHub): ServiceImpl<typeof MediaService> {
  const db = ctx.database.db;
  const { clock } = ctx;
  const config = ctx.config.media;

  /** Whether `userId` may see the item: uploader, participant of a conversation it was sent in, or audience of a live status carrying it. */
  async function maySee(userId: string, row: MediaRow): Promise<boolean> {
    if (row.uploader_id === userId) return true;
    if (row.state !== "ready") return false;
    if (await store.sentToParticipant(db, row.id, userId)) return true;
    const carried = await store.statusesCarrying(db, row.id, clock.now());
    if (carried.length === 0) return profilePhotoVisible(userId, row);
    const authors = [...new Set(carried.map((s) => s.user_id))];
    const [settings, relations, lists] = await Promise.all([
      privacy.getPrivacyMany(db, authors),
      privacy.relationsTo(db, userId, authors),
      audienceLists(
        db,
        carried.filter((s) => s.audience !== "contacts").map((s) => s.id),
      ),
    ]);
    const seen = carried.some((s) =>
      statusVisible(
        settings.get(s.user_id)!.status,
        { kind: s.audience as AudienceKind, userIds: lists.get(s.id) ?? new Set() },
        userId,
        relations.get(s.user_id)!,
      ),
    );
    return seen || (await profilePhotoVisible(userId, row));
  }

  /** Whether the item is the uploader's profile photo and their "profile photo" privacy setting shows it to `userId`. */
  async function profilePhotoVisible(userId: string, row: MediaRow): Promise<boolean> {
    if (row.kind !== "image" || !(await store.isProfilePhotoOf(db, row.id, row.uploader_id))) return false;
    const [settings, relations] = await Promise.all([privacy.getPrivacyMany(db, [row.uploader_id]), privacy.relationsTo(db, userId, [row.uploader_id])]);
    return allows(settings.get(row.uploader_id)!.profilePhoto, relations.get(row.uploader_id)!);
  }

  return {
    async createUpload(req, hc) {
      const me = callerId(hc);
      const kind = KIND_NAMES[req.kind];
      if (!kind) throw bad("kind: set one of MEDIA_KIND_IMAGE, _VIDEO, _AUDIO, _DOCUMENT, _STICKER");
      const type = declaredType(kind, req.mimeType, req.encrypted);
      if ("error" in type) throw bad(type.error);
      const size = Number(req.sizeBytes);
      if (!(size > 0)) throw bad("size_bytes: must be positive (the exact size of the file)");
      const limit = maxBytesOf(config, kind);
      if (size > limit) throw tooMuch(`size_bytes: ${kind} media may be at most ${limit} bytes (${mib(limit)}); this is ${size}`);
      const sha256 = req.sha256.trim().toLowerCase();
      if (!SHA256.test(sha256)) throw bad("sha256: must be the SHA-256 of the bytes as 64 hex digits");
      const fileName = req.fileName.trim();
      if ([...fileName].length > MAX_FILE_NAME) throw bad(`file_name: at most ${MAX_FILE_NAME} characters`);
      if (/[/\\]/.test(fileName)) throw bad("file_name: a name without a path (no / or \\)");
      if (req.thumbnail.length > THUMBNAIL_MAX_BYTES) throw bad(`thumbnail: at most ${THUMBNAIL_MAX_BYTES} bytes; this is ${req.thumbnail.length}`);
      if (req.thumbnail.length > 0 && !thumbnailTypeOk((await fileTypeFromBuffer(req.thumbnail))?.mime)) {
        throw bad("thumbnail: must be a JPEG or WebP image");
      }
      const requestId = requestIdField(req.clientRequestId);
      const key = requestId ? { owner: me, rpc: "media.MediaService/CreateUpload", key: requestId } : undefined;
      return oncePerKey(ctx, key, CreateUploadResponseSchema, async (trx) => {
        const now = clock.now();
        const usage = await store.usageOf(trx, me, new Date(now.getTime() - DAY_MS));
        if (usage.kept + size > config.userQuotaBytes) {
          throw tooMuch(`storage quota: your media take ${usage.kept} of ${config.userQuotaBytes} bytes; delete some (DeleteMedia) first`);
        }
        if (usage.recent + size > config.dailyUploadBytes) {
          throw tooMuch(`daily upload budget: ${usage.recent} of ${config.dailyUploadBytes} bytes declared in the last 24 hours; try again later`);
        }
        const id = randomUUID();
        await store.insertMedia(trx, {
          id,
          uploaderId: me,
          kind,
          mimeType: type.type,
          sizeBytes: size,
          sha256,
          fileName,
          width: req.width,
          height: req.height,
          durationMs: req.durationMs,
          thumbnail: req.thumbnail.length > 0 ? req.thumbnail : null,
          encrypted: req.encrypted,
          createdAt: now,
        });
        return {
          answer: create(CreateUploadResponseSchema, {
            mediaId: id,
            uploadUrl: `${UPLOADS_PATH}/`,
            maxSizeBytes: BigInt(limit),
            expiresAt: timestampFromDate(new Date(now.getTime() + UNREFERENCED_TTL_MS)),
          }),
        };
      });
    },

    async getMedia(req, hc) {
      const me = callerId(hc);
      const id = uuidField("media_id", req.mediaId);
      const row = await store.getMedia(db, id);
      if (!row || !(await maySee(me, row))) throw notFound(id);
      if (row.state !== "ready") return { media: mediaView(row) };
      const { url, expires } = hub.downloadUrl(row.id);
      return { media: mediaView(row), downloadUrl: url, downloadUrlExpiresAt: timestampFromDate(expires) };
    },

    async deleteMedia(req, hc) {
      const me = callerId(hc);
      const id = uuidField("media_id", req.mediaId);
      // The media's id is the request key: a retry finds the delete done although the row is gone.
      const key = { owner: me, rpc: "media.MediaService/DeleteMedia", key: id };
      if (await findAnswer(db, key, clock.now())) return {};
      const row = await store.getMedia(db, id);
      if (!row || row.uploader_id !== me) throw notFound(id);
      // Bytes first: a failure leaves the row, and the call (or the collector) tries again.
      await hub.storage.remove(id);
      return oncePerKey(ctx, key, DeleteMediaResponseSchema, async (trx) => {
        await store.deleteMediaRow(trx, id, me);
        return { answer: create(DeleteMediaResponseSchema) };
      });
    },
  };
}
