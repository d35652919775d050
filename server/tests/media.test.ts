import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { MediaKind, MediaState } from "../../gen/media/media_pb.js";
import { fakeMp4, MiB, mediaClient, sha256, tusUpload, whenSome } from "./helpers/media.js";
import { startFakeS3, type FakeS3 } from "./helpers/s3-fake.js";
import { codeOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The media path end to end, on the disk and on S3 (s3rver, a fake S3 at the
// edge): CreateUpload, a 20 MiB video through tus-js-client cut off at half
// and resumed, the stored bytes' SHA-256, Range downloads through the signed
// URL, and a stranger refused.

let s3: FakeS3;
beforeAll(async () => {
  s3 = await startFakeS3("chatwire-media");
});
afterAll(async () => {
  await s3?.close();
});

const storages: [string, () => Record<string, string>][] = [
  ["disk", () => ({})],
  [
    "S3 (s3rver)",
    () => ({
      MEDIA_S3_BUCKET: s3.bucket,
      MEDIA_S3_ENDPOINT: s3.endpoint,
      MEDIA_S3_ACCESS_KEY_ID: "S3RVER",
      MEDIA_S3_SECRET_ACCESS_KEY: "S3RVER",
    }),
  ],
];

describe.each(storages)("media on %s", (name, env) => {
  let s: TestServer;
  const nextPhone = phoneSequence(name === "disk" ? "711" : "712");
  let alice: SocialUser;
  let bob: SocialUser;
  let stranger: SocialUser;

  beforeAll(async () => {
    s = await startTestServer(env());
    [alice, bob, stranger] = [await socialUser(s, nextPhone()), await socialUser(s, nextPhone()), await socialUser(s, nextPhone())];
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("a 20 MiB video: uploaded, cut off at half, resumed, checked, streamed by Range; a stranger is refused", async () => {
    const video = fakeMp4(20 * MiB);
    const media = mediaClient(s, alice.token);
    const created = await media.createUpload({
      kind: MediaKind.VIDEO,
      mimeType: "video/mp4",
      sizeBytes: BigInt(video.length),
      sha256: sha256(video),
      width: 1280,
      height: 720,
      durationMs: 61_000,
      clientRequestId: `video-${name}`,
    });
    expect(created.uploadUrl).toBe("/media/uploads/");
    expect(created.maxSizeBytes).toBe(BigInt(64 * MiB));
    // A retry of CreateUpload declares nothing new.
    const again = await media.createUpload({
      kind: MediaKind.VIDEO,
      mimeType: "video/mp4",
      sizeBytes: BigInt(video.length),
      sha256: sha256(video),
      clientRequestId: `video-${name}`,
    });
    expect(again.mediaId).toBe(created.mediaId);

    // First half, then the connection is "lost".
    const first = await tusUpload(s, alice.token, created.mediaId, video, { chunk: 5 * MiB, stopAfter: 10 * MiB });
    expect(first.url).toMatch(new RegExp(`/media/uploads/${created.mediaId}$`));
    const head = await fetch(first.url!, { method: "HEAD", headers: { "tus-resumable": "1.0.0", authorization: `Bearer ${alice.token}` } });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("upload-offset"))).toBe(10 * MiB);
    expect(head.headers.get("upload-length")).toBe(String(20 * MiB));
    // Not ready yet: no download URL.
    const pending = await media.getMedia({ mediaId: created.mediaId });
    expect(pending.media?.state).toBe(MediaState.PENDING);
    expect(pending.downloadUrl).toBe("");
    // Someone else's token cannot see or continue the upload.
    const foreign = await fetch(first.url!, { method: "HEAD", headers: { "tus-resumable": "1.0.0", authorization: `Bearer ${stranger.token}` } });
    expect(foreign.status).toBe(404);

    // Resume where it stopped: tus-js-client asks the offset (HEAD) and sends only the rest.
    await tusUpload(s, alice.token, created.mediaId, video, { chunk: 5 * MiB, resumeUrl: first.url! });

    const got = await media.getMedia({ mediaId: created.mediaId });
    expect(got.media).toMatchObject({
      state: MediaState.READY,
      kind: MediaKind.VIDEO,
      mimeType: "video/mp4",
      sizeBytes: BigInt(video.length),
      width: 1280,
      durationMs: 61_000,
    });
    expect(got.downloadUrl).toMatch(new RegExp(`^/media/${created.mediaId}\\?exp=\\d+&sig=`));

    // Alice sends it to Bob; Bob's history carries its description, and Bob may download it.
    const conversationId = (await alice.chat.createConversation({ participantIds: [bob.id] })).conversation!.id;
    const sent = await alice.chat.sendMessage({ conversationId, mediaId: created.mediaId, content: "look" });
    expect(sent.message).toMatchObject({ mediaUrl: `/media/${created.mediaId}`, mediaType: "video/mp4" });
    expect(sent.message?.media).toMatchObject({ mediaId: created.mediaId, width: 1280, height: 720, durationMs: 61_000 });
    const seen = await whenSome(async () => (await bob.chat.listMessages({ conversationId })).messages.find((m) => m.id === sent.message!.id && m.seq > 0n));
    expect(seen.media).toMatchObject({ mediaId: created.mediaId, kind: MediaKind.VIDEO, sizeBytes: BigInt(video.length) });
    const forBob = await mediaClient(s, bob.token).getMedia({ mediaId: created.mediaId });
    expect(forBob.downloadUrl).toMatch(/^\/media\//);

    // The stored bytes, read back whole by Alice and by ranges by Bob, are the video's.
    const whole = await fetch(`${s.url}${got.downloadUrl}`);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-type")).toBe("video/mp4");
    expect(whole.headers.get("cache-control")).toContain("immutable");
    expect(sha256(Buffer.from(await whole.arrayBuffer()))).toBe(sha256(video));
    const parts: Buffer[] = [];
    for (let start = 0; start < video.length; start += 7 * MiB) {
      const end = Math.min(start + 7 * MiB, video.length) - 1;
      const r = await fetch(`${s.url}${forBob.downloadUrl}`, { headers: { range: `bytes=${start}-${end}` } });
      expect(r.status).toBe(206);
      expect(r.headers.get("content-range")).toBe(`bytes ${start}-${end}/${video.length}`);
      parts.push(Buffer.from(await r.arrayBuffer()));
    }
    expect(sha256(Buffer.concat(parts))).toBe(sha256(video));
    const outside = await fetch(`${s.url}${got.downloadUrl}`, { headers: { range: `bytes=${video.length}-` } });
    expect(outside.status).toBe(416);

    // A stranger gets no URL, and a forged or altered one serves nothing.
    expect(await codeOf(mediaClient(s, stranger.token).getMedia({ mediaId: created.mediaId }))).toBe(Code.NotFound);
    const forged = got.downloadUrl.replace(/sig=./, (m) => (m.endsWith("A") ? "sig=B" : "sig=A"));
    expect((await fetch(`${s.url}${forged}`)).status).toBe(403);
    const later = got.downloadUrl.replace(/exp=(\d+)/, (_m, e: string) => `exp=${Number(e) + 3600}`);
    expect((await fetch(`${s.url}${later}`)).status).toBe(403);
    // 20 MiB through tus and back four times: seconds, or a minute on a loaded machine.
  }, 120_000);
});
