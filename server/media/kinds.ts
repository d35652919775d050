import type { MediaConfig } from "./media-config.js";

// What each kind of media may be: the declared types CreateUpload accepts and
// the types content sniffing (file-type) must find. Documents are any file.

export type MediaKindName = "image" | "video" | "audio" | "document" | "sticker";

const IMAGE = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif"];
const VIDEO = ["video/mp4", "video/quicktime", "video/webm", "video/3gpp", "video/x-matroska"];
// Voice notes: opus in ogg (WhatsApp, Android), aac/m4a (iOS), amr (old phones).
const AUDIO = ["audio/ogg", "audio/opus", "audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/aac", "audio/amr", "audio/webm", "audio/wav", "audio/x-wav"];

const ALLOWED: Record<Exclude<MediaKindName, "document">, readonly string[]> = {
  image: IMAGE,
  // file-type tells webm audio from video only by the tracks; an audio-only webm may sniff as video/webm.
  video: VIDEO,
  // An ogg without an opus or vorbis header in its first page sniffs as the bare container.
  audio: [...AUDIO, "video/webm", "application/ogg"],
  sticker: ["image/webp", "image/png"],
};

/** Thumbnails: small client-made previews. */
export const THUMBNAIL_MAX_BYTES = 32 * 1024;
const THUMBNAIL_TYPES = ["image/jpeg", "image/webp"];

const MIME = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

/** The declared type, lower-cased without parameters, or why it is refused. */
export function declaredType(kind: MediaKindName, raw: string, encrypted: boolean): { type: string } | { error: string } {
  const type = raw.split(";")[0]!.trim().toLowerCase();
  if (!MIME.test(type)) return { error: `mime_type: "${raw}" is not a type/subtype such as image/jpeg` };
  if (kind === "document" || encrypted) return { type };
  const allowed = kind === "audio" ? AUDIO : ALLOWED[kind];
  if (!allowed.includes(type)) return { error: `mime_type: ${kind} media must be one of ${allowed.join(", ")}; got ${type}` };
  return { type };
}

/** Whether content sniffed as `sniffed` (undefined: not recognised) may be sent as `kind`. */
export function contentMatches(kind: MediaKindName, sniffed: string | undefined): boolean {
  if (kind === "document") return true;
  return sniffed !== undefined && ALLOWED[kind].includes(sniffed);
}

/** Whether a thumbnail's sniffed type is one thumbnails may have. */
export function thumbnailTypeOk(sniffed: string | undefined): boolean {
  return sniffed !== undefined && THUMBNAIL_TYPES.includes(sniffed);
}

/** The largest upload of a kind (stickers count as images). */
export function maxBytesOf(config: MediaConfig, kind: MediaKindName): number {
  return config.maxBytes[kind === "sticker" ? "image" : kind];
}

/** Documents download as attachments; everything else may show inline. */
export function dispositionOf(kind: string): "attachment" | "inline" {
  return kind === "document" ? "attachment" : "inline";
}
