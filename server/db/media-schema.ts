import type { ColumnType, Generated } from "kysely";

// ---- 0018_media -------------------------------------------------------------------

type Int8 = ColumnType<string, string | number, string | number>;

/** One declared upload (CreateUpload) and, once checked, a downloadable item. */
interface MediaTable {
  id: string;
  uploader_id: string;
  /** image | video | audio | document | sticker. */
  kind: string;
  mime_type: string;
  size_bytes: Int8;
  sha256: string;
  file_name: Generated<string>;
  width: Generated<number>;
  height: Generated<number>;
  duration_ms: Generated<number>;
  thumbnail: Uint8Array | null;
  encrypted: Generated<boolean>;
  /** pending | ready. */
  state: Generated<string>;
  created_at: Date;
  referenced_at: Date | null;
}

/** Who may download a media item besides its uploader: a conversation's participants or a status's audience. */
interface MediaRefsTable {
  media_id: string;
  conversation_id: string | null;
  status_id: string | null;
  message_id: string | null;
}

export interface MediaTables {
  media: MediaTable;
  media_refs: MediaRefsTable;
}
