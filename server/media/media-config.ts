import path from "node:path";
import { ConfigError, boolVar, intVar } from "../config-vars.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** The largest value any byte setting accepts (1 TiB). */
const MAX_BYTES = 1024 * GiB;

/** Where media bytes live and how much a user may keep (MEDIA_* settings). */
export interface MediaConfig {
  /** Disk storage (when no S3 bucket is set): MEDIA_DIR, default `<CHATWIRE_DATA_DIR>/media`. */
  dir: string;
  /** S3-compatible storage, shared by every instance; set by MEDIA_S3_BUCKET. */
  s3: S3Config | undefined;
  /** Largest upload per kind, bytes (stickers count as images). */
  maxBytes: { image: number; video: number; audio: number; document: number };
  /** Bytes a user may keep in all (pending and ready media). */
  userQuotaBytes: number;
  /** Bytes a user may declare per 24 hours. */
  dailyUploadBytes: number;
  /** How long a GetMedia download URL works. */
  urlTtlSeconds: number;
}

export interface S3Config {
  bucket: string;
  /** Undefined: AWS's endpoint for the region. */
  endpoint: string | undefined;
  region: string;
  /** Undefined: the AWS SDK's default credential chain (environment, profile, instance role). */
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** Path-style URLs (bucket in the path): what MinIO, Ceph and s3rver need. */
  forcePathStyle: boolean;
}

/** The MEDIA_* settings; only config.ts calls it (it alone reads process.env). */
export function mediaConfig(get: (n: string) => string | undefined, dataDir: string): MediaConfig {
  const bytes = (name: string, def: number) => intVar(get, name, def, 1, MAX_BYTES);
  const bucket = get("MEDIA_S3_BUCKET");
  let s3: S3Config | undefined;
  if (bucket !== undefined) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError("MEDIA_S3_BUCKET", `"${bucket}" is not an S3 bucket name`);
    const endpoint = get("MEDIA_S3_ENDPOINT");
    if (endpoint !== undefined && !/^https?:\/\/\S+$/.test(endpoint)) {
      throw new ConfigError("MEDIA_S3_ENDPOINT", `must be an http(s) URL such as http://127.0.0.1:9000, got "${endpoint}"`);
    }
    const accessKeyId = get("MEDIA_S3_ACCESS_KEY_ID");
    const secretAccessKey = get("MEDIA_S3_SECRET_ACCESS_KEY");
    if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
      throw new ConfigError(
        accessKeyId === undefined ? "MEDIA_S3_ACCESS_KEY_ID" : "MEDIA_S3_SECRET_ACCESS_KEY",
        "set both MEDIA_S3_ACCESS_KEY_ID and MEDIA_S3_SECRET_ACCESS_KEY, or neither",
      );
    }
    s3 = {
      bucket,
      endpoint,
      region: get("MEDIA_S3_REGION") ?? "us-east-1",
      credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
      forcePathStyle: boolVar(get, "MEDIA_S3_FORCE_PATH_STYLE", endpoint !== undefined),
    };
  } else {
    for (const name of ["MEDIA_S3_ENDPOINT", "MEDIA_S3_ACCESS_KEY_ID", "MEDIA_S3_SECRET_ACCESS_KEY", "MEDIA_S3_REGION"]) {
      if (get(name) !== undefined) throw new ConfigError(name, "needs MEDIA_S3_BUCKET (S3 storage is on only with a bucket)");
    }
  }
  return {
    dir: path.resolve(get("MEDIA_DIR") ?? path.join(dataDir, "media")),
    s3,
    maxBytes: {
      image: bytes("MEDIA_MAX_IMAGE_BYTES", 16 * MiB),
      video: bytes("MEDIA_MAX_VIDEO_BYTES", 64 * MiB),
      audio: bytes("MEDIA_MAX_AUDIO_BYTES", 64 * MiB),
      document: bytes("MEDIA_MAX_DOCUMENT_BYTES", 100 * MiB),
    },
    userQuotaBytes: bytes("MEDIA_USER_QUOTA_BYTES", 2 * GiB),
    dailyUploadBytes: bytes("MEDIA_DAILY_UPLOAD_BYTES", GiB),
    urlTtlSeconds: intVar(get, "MEDIA_URL_TTL_SECONDS", 300, 10, 7 * 86_400),
  };
}
