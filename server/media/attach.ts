import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { type Media, MediaKind, MediaSchema, MediaState } from "../../gen/media/media_pb.js";
import { getMedia, getMediaMany, type MediaRow } from "../db/media-store.js";
import type { Database } from "../db/schema.js";
import { isUuid } from "../domain/ids.js";
import { bad, uuidField } from "../services/rpc-input.js";

// Messages and statuses carrying media by id: the checks SendMessage and
// CreateStatus make, the media_url they store ("/media/<id>"), and the
// description (Media) their views carry.

type Db = Kysely<Database> | Transaction<Database>;

const KINDS: Record<string, MediaKind> = {
  image: MediaKind.IMAGE,
  video: MediaKind.VIDEO,
  audio: MediaKind.AUDIO,
  document: MediaKind.DOCUMENT,
  sticker: MediaKind.STICKER,
};

/** What a message or status stores as media_url for media sent by id (old clients see it; GET needs a signed URL). */
export const mediaPath = (id: string): string => `/media/${id}`;

const PATH = /^\/media\/([0-9a-f-]{36})$/;

/** A media row as messages, statuses and GetMedia describe it. */
export function mediaView(r: MediaRow): Media {
  return create(MediaSchema, {
    mediaId: r.id,
    kind: KINDS[r.kind] ?? MediaKind.UNSPECIFIED,
    mimeType: r.mime_type,
    sizeBytes: BigInt(r.size_bytes),
    sha256: r.sha256,
    fileName: r.file_name,
    width: r.width,
    height: r.height,
    durationMs: r.duration_ms,
    thumbnail: r.thumbnail ?? new Uint8Array(),
    encrypted: r.encrypted,
    state: r.state === "ready" ? MediaState.READY : MediaState.PENDING,
    uploaderId: r.uploader_id,
    createdAt: timestampFromDate(r.created_at),
  });
}

/**
 * The media a SendMessage / CreateStatus `media_id` names: one of the
 * caller's, uploaded and checked. `mediaUrl` is the request's own media_url,
 * which may not be set with it.
 */
export async function attachableMedia(db: Db, callerId: string, rawId: string, mediaUrl: string): Promise<MediaRow> {
  const id = uuidField("media_id", rawId);
  if (mediaUrl.trim() !== "") throw bad("media_id and media_url: set one (media_id for media uploaded here, media_url for an outside link)");
  const row = await getMedia(db, id);
  if (!row || row.uploader_id !== callerId) throw new ConnectError(`media ${id} not found among your uploads`, Code.NotFound);
  if (row.state !== "ready") throw new ConnectError(`media ${id}: its upload is not finished (GetMedia says READY once it is)`, Code.FailedPrecondition);
  return row;
}

/** Sets `media` on each item whose media_url names media sent by id; one query for all. */
export async function withMedia<T extends { mediaUrl: string; media?: Media }>(db: Db, items: T[]): Promise<T[]> {
  const ids = new Map<T, string>();
  for (const item of items) {
    const id = PATH.exec(item.mediaUrl)?.[1];
    if (id && isUuid(id)) ids.set(item, id);
  }
  if (ids.size === 0) return items;
  const rows = new Map((await getMediaMany(db, [...new Set(ids.values())])).map((r) => [r.id, r]));
  for (const [item, id] of ids) {
    const row = rows.get(id);
    if (row) item.media = mediaView(row);
  }
  return items;
}
