import { createHash, randomBytes } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import * as tus from "tus-js-client";
import { MediaService } from "../../../gen/media/media_pb.js";
import { bearerTransport } from "./login.js";
import type { TestServer } from "./test-server.js";

// Media test helpers: files that sniff as what they claim, a MediaService
// client, and tus-js-client uploads that can be cut off part-way.

export const MiB = 1024 * 1024;

export function mediaClient(s: TestServer, token: string): Client<typeof MediaService> {
  return createClient(MediaService, bearerTransport(s.url, token, "connect"));
}

/** `size` bytes that file-type reads as video/mp4 (an ISO BMFF `ftyp` box, then noise). */
export function fakeMp4(size: number): Buffer {
  const b = randomBytes(size);
  Buffer.from("00000018667479706973736f6d0000020069736f6d6d703431", "hex").copy(b, 0);
  return b;
}

/** A tiny valid-looking JPEG header (what file-type needs to say image/jpeg). */
export function fakeJpeg(size: number): Buffer {
  const b = randomBytes(size);
  Buffer.from("ffd8ffe000104a46494600", "hex").copy(b, 0);
  return b;
}

export const sha256 = (b: Buffer | Uint8Array): string => createHash("sha256").update(b).digest("hex");

export interface TusRun {
  /** The upload's URL (tus Location), once created. */
  url: string | null;
  /** Bytes the server has acknowledged. */
  accepted: number;
}

/**
 * Uploads `data` with tus-js-client in `chunk`-byte PATCHes: from scratch
 * (POST to the creation endpoint with `media_id` metadata), or resuming at
 * `resumeUrl`. With `stopAfter`, aborts once that many bytes are acknowledged
 * and resolves with what was done; else resolves when the upload succeeds.
 */
export function tusUpload(
  s: TestServer,
  token: string,
  mediaId: string,
  data: Buffer,
  opts: { chunk: number; stopAfter?: number; resumeUrl?: string },
): Promise<TusRun> {
  return new Promise((resolve, reject) => {
    const run: TusRun = { url: null, accepted: 0 };
    const upload = new tus.Upload(data, {
      endpoint: `${s.url}/media/uploads/`,
      uploadUrl: opts.resumeUrl ?? null,
      metadata: { media_id: mediaId },
      headers: { authorization: `Bearer ${token}` },
      chunkSize: opts.chunk,
      retryDelays: null,
      onChunkComplete: (_size, accepted) => {
        run.accepted = accepted;
        run.url = upload.url;
        if (opts.stopAfter !== undefined && accepted >= opts.stopAfter) {
          upload.abort().then(() => resolve(run), reject);
        }
      },
      onSuccess: () => {
        run.url = upload.url;
        run.accepted = data.length;
        resolve(run);
      },
      onError: reject,
    });
    upload.start();
  });
}

/** What `get` answers once it answers something (a stored message, in production the worker's doing); polls for up to 10 s. */
export async function whenSome<T>(get: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await get();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("not there after 10 s");
}
