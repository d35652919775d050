import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import S3rver from "s3rver";

// s3rver, the fake S3 at the edge, with the two multipart calls it lacks and
// @tus/s3-store makes: ListParts (GET ?uploadId, how a resumed upload learns
// its offset) and AbortMultipartUpload (DELETE ?uploadId, termination). Both
// read and remove the parts where s3rver's own UploadPart wrote them.

export interface FakeS3 {
  endpoint: string;
  bucket: string;
  /** The object's bytes, or undefined when it does not exist. */
  close(): Promise<void>;
}

interface KoaCtx {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  status: number;
  body: unknown;
}

export async function startFakeS3(bucket: string): Promise<FakeS3> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "chatwire-s3rver-"));
  const s3 = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket, configs: [] }] });
  const store = (s3 as unknown as { store: { getResourcePath(b: string, k: undefined, r: string): string } }).store;
  const multipart = async (ctx: KoaCtx, next: () => Promise<void>) => {
    const uploadId = ctx.query.uploadId;
    const m = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
    if (!uploadId || !m || (ctx.method !== "GET" && ctx.method !== "DELETE")) return next();
    const uploadDir = path.join(store.getResourcePath(m[1]!, undefined, "uploads"), path.basename(uploadId));
    if (ctx.method === "DELETE") {
      await rm(uploadDir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    const names = await readdir(uploadDir).catch(() => undefined);
    if (!names) {
      ctx.status = 404;
      ctx.body = { Error: { Code: "NoSuchUpload", Message: "The specified upload does not exist." } };
      return;
    }
    const numbers = names
      .filter((n) => /^\d+$/.test(n))
      .map(Number)
      .sort((a, b) => a - b);
    const Part = await Promise.all(
      numbers.map(async (n) => {
        const file = path.join(uploadDir, String(n));
        const [info, md5] = await Promise.all([stat(file), readFile(`${file}.md5`, "utf8")]);
        return { PartNumber: n, ETag: `"${md5}"`, Size: info.size, LastModified: info.mtime.toISOString() };
      }),
    );
    ctx.body = { ListPartsResult: { Bucket: m[1], Key: decodeURIComponent(m[2]!), UploadId: uploadId, IsTruncated: false, Part } };
  };
  // Before s3rver's router (the last middleware), which answers MethodNotAllowed to both.
  const chain = (s3 as unknown as { middleware: unknown[] }).middleware;
  chain.splice(chain.length - 1, 0, multipart);
  const { address, port } = await s3.run();
  return {
    endpoint: `http://${address}:${port}`,
    bucket,
    async close() {
      await s3.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
