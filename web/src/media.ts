import { MediaKind, type Media, type Message } from "@chatwire/client";
import { Upload } from "tus-js-client";
import { h } from "./dom.js";
import { client } from "./state.js";

// Photos, videos, voice notes and documents: sent by declaring the file (MediaService.CreateUpload), uploading
// its bytes over tus to /media/uploads/, then sending a message that names the media id; shown through the
// signed, expiring download URL that GetMedia hands to participants.

/** The media kind the server expects for a file's type. */
function kindOf(type: string): MediaKind {
  if (type.startsWith("image/")) return MediaKind.IMAGE;
  if (type.startsWith("video/")) return MediaKind.VIDEO;
  if (type.startsWith("audio/")) return MediaKind.AUDIO;
  return MediaKind.DOCUMENT;
}

async function sha256Hex(file: Blob): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function imageSize(file: File): Promise<{ width: number; height: number }> {
  if (!file.type.startsWith("image/")) return { width: 0, height: 0 };
  try {
    const bitmap = await createImageBitmap(file);
    const size = { width: bitmap.width, height: bitmap.height };
    bitmap.close();
    return size;
  } catch {
    return { width: 0, height: 0 };
  }
}

/**
 * Declares a file (CreateUpload) and uploads its bytes over tus; resolves with the media id once the server
 * has checked them. `progress` gets the share uploaded (0–1); `requestId` makes a retried declaration count once.
 */
export async function uploadFile(file: File, requestId: string, progress: (share: number) => void = () => undefined): Promise<string> {
  const { width, height } = await imageSize(file);
  const declared = await client.media.createUpload({
    kind: kindOf(file.type),
    mimeType: file.type || "application/octet-stream",
    sizeBytes: BigInt(file.size),
    sha256: await sha256Hex(file),
    fileName: file.name.replace(/[/\\]/g, "_").slice(0, 255),
    width,
    height,
    clientRequestId: requestId,
  });
  const token = (await client.tokens.get())?.accessToken ?? "";
  await new Promise<void>((resolve, reject) => {
    const upload = new Upload(file, {
      endpoint: new URL(declared.uploadUrl, location.origin).href,
      metadata: { media_id: declared.mediaId },
      headers: { authorization: `Bearer ${token}` },
      chunkSize: 5 * 1024 * 1024,
      retryDelays: [0, 1000, 3000],
      onProgress: (sent, total) => progress(total > 0 ? sent / total : 0),
      onSuccess: () => resolve(),
      onError: reject,
    });
    upload.start();
  });
  return declared.mediaId;
}

/** Uploads a file and sends it to the conversation with an optional caption (one client id for both steps). */
export async function sendFile(conversationId: string, file: File, caption: string, progress: (share: number) => void): Promise<Message | undefined> {
  const requestId = crypto.randomUUID();
  const mediaId = await uploadFile(file, requestId, progress);
  const { message } = await client.chat.sendMessage({ conversationId, content: caption, mediaId, clientMessageId: requestId });
  return message;
}

/**
 * A profile photo as an <img>: "/media/<id>" (uploaded through MediaService) through its signed download URL,
 * an http(s) URL as it is; undefined when there is none.
 */
export function photoOf(url: string, alt: string): HTMLImageElement | undefined {
  if (!url) return undefined;
  const img = h("img", { class: "photo", alt, "data-testid": "photo" });
  const mediaId = /^\/media\/([0-9a-f-]{36})$/.exec(url)?.[1];
  if (!mediaId) {
    if (/^https?:\/\//.test(url)) img.src = url;
    return img;
  }
  download(mediaId).then(
    ({ url: signed }) => {
      img.src = signed;
    },
    () => img.remove(),
  );
  return img;
}

/** Download URLs (and the description) by media id, reused until shortly before the URL expires. */
const known = new Map<string, { url: string; media?: Media; until: number }>();

async function download(mediaId: string): Promise<{ url: string; media?: Media }> {
  const hit = known.get(mediaId);
  if (hit && hit.until > Date.now()) return hit;
  const res = await client.media.getMedia({ mediaId });
  const until = res.downloadUrlExpiresAt ? Number(res.downloadUrlExpiresAt.seconds) * 1000 - 60_000 : Date.now() + 60_000;
  const got = { url: res.downloadUrl, media: res.media, until };
  known.set(mediaId, got);
  return got;
}

function sizeText(bytes: bigint): string {
  const n = Number(bytes);
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

/** The media id of a message: its description's, or the one in media_url "/media/<id>" (live events carry only that). */
function mediaIdOf(m: Message): string | undefined {
  return m.media?.mediaId || /^\/media\/([0-9a-f-]{36})$/.exec(m.mediaUrl)?.[1];
}

function kindOfMessage(m: Message): MediaKind {
  return m.media?.kind ?? (m.mediaType ? kindOf(m.mediaType) : MediaKind.UNSPECIFIED);
}

/** The element that shows one media item, its source set once the signed URL is known. */
function viewOf(kind: MediaKind, media: Media | undefined): HTMLElement {
  const name = media?.fileName ?? "";
  switch (kind) {
    case MediaKind.IMAGE:
    case MediaKind.STICKER:
      return h("img", { alt: name || "photo", width: media?.width || undefined, height: media?.height || undefined, loading: "lazy" });
    case MediaKind.VIDEO:
      return h("video", { controls: true, preload: "metadata" });
    case MediaKind.AUDIO:
      return h("audio", { controls: true, preload: "metadata" });
    default:
      return h(
        "a",
        { class: "document", target: "_blank", rel: "noopener", download: name || true },
        `📄 ${name || "Document"}${media ? ` · ${sizeText(media.sizeBytes)}` : ""}`,
      );
  }
}

/** What a message with media shows: the picture, a player, or the document's name and size as a link. */
export function mediaOf(m: Message): HTMLElement | undefined {
  const mediaId = mediaIdOf(m);
  if (!mediaId) return undefined;
  const kind = kindOfMessage(m);
  const box = h("span", { class: "media", "data-testid": "media", "data-kind": MediaKind[kind]?.toLowerCase() ?? "" });
  let el = viewOf(kind, m.media);
  box.append(el);
  download(mediaId).then(
    ({ url, media }) => {
      if (!url) return;
      if (!m.media && media) {
        el = viewOf(media.kind, media); // now with the file name, size and pixels
        box.replaceChildren(el);
      }
      if (el instanceof HTMLAnchorElement) el.href = url;
      else el.setAttribute("src", url);
      box.dataset.ready = "true";
    },
    () => box.replaceChildren(h("span", { class: "hint" }, "Media unavailable")),
  );
  return box;
}

/** The chat list's preview of a message that has media and no caption. */
export function mediaLabel(m: Message): string {
  switch (kindOfMessage(m)) {
    case MediaKind.IMAGE:
      return "📷 Photo";
    case MediaKind.VIDEO:
      return "🎥 Video";
    case MediaKind.AUDIO:
      return "🎤 Audio";
    case MediaKind.STICKER:
      return "Sticker";
    case MediaKind.DOCUMENT:
      return `📄 ${m.media?.fileName || "Document"}`;
    default:
      return "";
  }
}
