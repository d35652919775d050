import type { Readable } from "node:stream";
import { S3 } from "@aws-sdk/client-s3";
import { S3Store } from "@tus/s3-store";
import type { S3Config } from "./media-config.js";
import { type ByteRange, type MediaStorage, UPLOAD_EXPIRY_MS } from "./storage.js";

/**
 * S3-compatible object storage (AWS S3, MinIO, Ceph, R2): uploads become
 * multipart uploads through @tus/s3-store, a complete one the object `<id>`
 * (its tus metadata `<id>.info`), which downloads read with ranged GETs.
 */
export class S3Storage implements MediaStorage {
  readonly kind = "s3";
  readonly tus: S3Store;
  private readonly client: S3;

  constructor(private readonly config: S3Config) {
    const clientConfig = {
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      // Checksums only where S3 requires them: the SDK's default (CRC32 trailers in aws-chunked bodies) is
      // stored verbatim by S3-compatible stores that do not speak it (s3rver, older MinIO and Ceph).
      requestChecksumCalculation: "WHEN_REQUIRED" as const,
      responseChecksumValidation: "WHEN_REQUIRED" as const,
      ...(config.credentials ? { credentials: config.credentials } : {}),
    };
    this.client = new S3(clientConfig);
    // Object tags mark expired uploads for a bucket lifecycle rule; Chatwire's own collector deletes them instead.
    this.tus = new S3Store({ s3ClientConfig: { ...clientConfig, bucket: config.bucket }, useTags: false, expirationPeriodInMilliseconds: UPLOAD_EXPIRY_MS });
  }

  async read(id: string, range?: ByteRange): Promise<Readable> {
    const out = await this.client.getObject({ Bucket: this.config.bucket, Key: id, Range: range ? `bytes=${range.start}-${range.end}` : undefined });
    return out.Body as Readable;
  }

  async remove(id: string): Promise<void> {
    // Ends an unfinished multipart upload; after completion it finds none and throws, which is fine.
    await this.tus.remove(id).catch(() => undefined);
    await this.client.deleteObjects({
      Bucket: this.config.bucket,
      Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }], Quiet: true },
    });
  }
}
