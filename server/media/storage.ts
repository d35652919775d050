import { createReadStream } from "node:fs";
import { mkdir, unlink } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { FileStore } from "@tus/file-store";
import type { DataStore } from "@tus/utils";

/** A byte range, both ends inclusive (as in HTTP). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Where media bytes live, behind one interface: the disk (embedded profile,
 * one machine) or S3-compatible object storage (several instances). Uploads
 * are written through the tus data store; a complete upload is read back by
 * its id.
 */
export interface MediaStorage {
  readonly kind: "disk" | "s3";
  /** The @tus/server data store uploads go through (id = media id). */
  readonly tus: DataStore;
  /** The bytes of a complete upload, or the range of them. */
  read(id: string, range?: ByteRange): Promise<Readable>;
  /** Deletes an upload, finished or not, and its bytes; nothing when there is none. */
  remove(id: string): Promise<void>;
}

/** Unfinished uploads expire after this (tus expiration extension; the collector deletes them). */
export const UPLOAD_EXPIRY_MS = 24 * 3600 * 1000;

/** The local disk: one file per media id (and tus's `<id>.json` beside it) under `dir`. */
export class DiskStorage implements MediaStorage {
  readonly kind = "disk";
  readonly tus: FileStore;

  private constructor(private readonly dir: string) {
    this.tus = new FileStore({ directory: dir, expirationPeriodInMilliseconds: UPLOAD_EXPIRY_MS });
  }

  static async open(dir: string): Promise<DiskStorage> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new DiskStorage(dir);
  }

  async read(id: string, range?: ByteRange): Promise<Readable> {
    const stream = createReadStream(path.join(this.dir, id), range ? { start: range.start, end: range.end } : {});
    // Fail here (missing file) rather than mid-response.
    await new Promise<void>((resolve, reject) => {
      stream.once("open", () => resolve());
      stream.once("error", reject);
    });
    return stream;
  }

  async remove(id: string): Promise<void> {
    await Promise.all([path.join(this.dir, id), path.join(this.dir, `${id}.json`)].map((f) => unlink(f).catch(ignoreMissing)));
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== "ENOENT") throw err;
}
