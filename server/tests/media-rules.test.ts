import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { MediaKind, MediaState } from "../../gen/media/media_pb.js";
import { purgeExpiredStatuses } from "../db/status-store.js";
import { StatusAudience } from "../../gen/status/status_pb.js";
import { Visibility } from "../../gen/user/user_pb.js";
import { fakeJpeg, fakeMp4, MiB, mediaClient, sha256, tusUpload, whenSome } from "./helpers/media.js";
import { codeOf, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// media.MediaService's rules over a real server (disk storage): what
// CreateUpload refuses, the checks on the last byte, quotas, documents,
// encrypted media, deletion, statuses carrying media, and the collector.

const clock = new FakeClock();
let s: TestServer;
const nextPhone = phoneSequence("713");
const newUser = () => socialUser(s, nextPhone());
/** The same user with a new token (after the fake clock moved past the old one's expiry). */
const again = (u: SocialUser) => socialUser(s, u.phone);
const ok = (p: Promise<unknown>) => p.then(() => "ok");

beforeAll(async () => {
  // Small limits, so that quotas are reached with small files.
  s = await startTestServer(
    { MEDIA_MAX_IMAGE_BYTES: String(MiB), MEDIA_USER_QUOTA_BYTES: String(3 * MiB), MEDIA_DAILY_UPLOAD_BYTES: String(2 * MiB) },
    { clock },
  );
});
afterAll(async () => {
  await s?.stop();
});

/** Declares and uploads `data` as `who`; resolves with the media id (or rejects with tus's error). */
async function upload(who: SocialUser, data: Buffer, kind: MediaKind, mimeType: string, extra: { encrypted?: boolean; fileName?: string; sha?: string } = {}) {
  const { mediaId } = await mediaClient(s, who.token).createUpload({
    kind,
    mimeType,
    sizeBytes: BigInt(data.length),
    sha256: extra.sha ?? sha256(data),
    encrypted: extra.encrypted ?? false,
    fileName: extra.fileName ?? "",
  });
  await tusUpload(s, who.token, mediaId, data, { chunk: 256 * 1024 });
  return mediaId;
}

describe("CreateUpload", () => {
  test("refuses bad declarations with InvalidArgument, too much with ResourceExhausted", async () => {
    const alice = await newUser();
    const m = mediaClient(s, alice.token);
    const decl = { kind: MediaKind.IMAGE, mimeType: "image/jpeg", sizeBytes: 1000n, sha256: "a".repeat(64) };
    expect(await codeOf(m.createUpload({ ...decl, kind: MediaKind.UNSPECIFIED }))).toBe(Code.InvalidArgument);
    expect((await errorOf(m.createUpload({ ...decl, mimeType: "application/pdf" }))).rawMessage).toContain("image media must be one of");
    expect(await codeOf(m.createUpload({ ...decl, sizeBytes: 0n }))).toBe(Code.InvalidArgument);
    expect(await codeOf(m.createUpload({ ...decl, sha256: "xyz" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(m.createUpload({ ...decl, fileName: "../etc/passwd" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(m.createUpload({ ...decl, thumbnail: new Uint8Array(33 * 1024) }))).toBe(Code.InvalidArgument);
    expect((await errorOf(m.createUpload({ ...decl, thumbnail: fakeMp4(100) }))).rawMessage).toContain("JPEG or WebP");
    expect(await ok(m.createUpload({ ...decl, thumbnail: fakeJpeg(100) }))).toBe("ok");
    const big = await errorOf(m.createUpload({ ...decl, sizeBytes: BigInt(MiB + 1) }));
    expect([big.code, big.rawMessage]).toEqual([Code.ResourceExhausted, expect.stringContaining("image media may be at most 1048576 bytes")]);
    // Any type, when the bytes are client-encrypted.
    expect(await ok(m.createUpload({ ...decl, mimeType: "application/x-whatever", encrypted: true }))).toBe("ok");
  });

  test("the daily upload budget, then the storage quota", async () => {
    const carol = await newUser();
    let m = mediaClient(s, carol.token);
    const doc = (n: number) => ({ kind: MediaKind.DOCUMENT, mimeType: "application/pdf", sizeBytes: BigInt(n), sha256: "b".repeat(64) });
    await m.createUpload(doc(2 * MiB));
    const day = await errorOf(m.createUpload(doc(1)));
    expect([day.code, day.rawMessage]).toEqual([Code.ResourceExhausted, expect.stringContaining("daily upload budget")]);
    clock.advance(25 * 3600 * 1000);
    m = mediaClient(s, (await again(carol)).token);
    await m.createUpload(doc(MiB));
    const quota = await errorOf(m.createUpload(doc(MiB)));
    expect([quota.code, quota.rawMessage]).toEqual([Code.ResourceExhausted, expect.stringContaining("storage quota")]);
  });
});

describe("the last byte", () => {
  test("content that is not what the kind allows is refused (422) and deleted; encrypted bytes are not sniffed", async () => {
    const alice = await newUser();
    const bytes = fakeMp4(300 * 1024);
    const refused = await upload(alice, bytes, MediaKind.IMAGE, "image/jpeg").then(
      () => "accepted",
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/response code: 422.*the content is video\/mp4, which image media may not be/s);
    const encrypted = await upload(alice, bytes, MediaKind.IMAGE, "image/jpeg", { encrypted: true });
    expect((await mediaClient(s, alice.token).getMedia({ mediaId: encrypted })).media?.state).toBe(MediaState.READY);
  });

  test("bytes whose SHA-256 is not the declared one are refused and the media deleted", async () => {
    const alice = await newUser();
    const bytes = fakeJpeg(100 * 1024);
    const m = mediaClient(s, alice.token);
    const { mediaId } = await m.createUpload({ kind: MediaKind.IMAGE, mimeType: "image/jpeg", sizeBytes: BigInt(bytes.length), sha256: "c".repeat(64) });
    const err = await tusUpload(s, alice.token, mediaId, bytes, { chunk: 64 * 1024 }).then(
      () => "accepted",
      (e: Error) => e.message,
    );
    expect(err).toMatch(/422.*SHA-256/s);
    expect(await codeOf(m.getMedia({ mediaId }))).toBe(Code.NotFound);
  });

  test("an upload without a token, or with a length other than declared, is refused", async () => {
    const [alice, bob] = [await newUser(), await newUser()];
    const { mediaId } = await mediaClient(s, alice.token).createUpload({
      kind: MediaKind.IMAGE,
      mimeType: "image/png",
      sizeBytes: 10n,
      sha256: "d".repeat(64),
    });
    const meta = `media_id ${Buffer.from(mediaId).toString("base64")}`;
    const post = (headers: Record<string, string>) =>
      fetch(`${s.url}/media/uploads/`, { method: "POST", headers: { "tus-resumable": "1.0.0", "upload-metadata": meta, ...headers } });
    expect((await post({ "upload-length": "10" })).status).toBe(401);
    const wrong = await post({ "upload-length": "11", authorization: `Bearer ${alice.token}` });
    expect([wrong.status, await wrong.text()]).toEqual([400, expect.stringContaining("CreateUpload declared size_bytes 10")]);
    expect((await post({ "upload-length": "10", authorization: `Bearer ${bob.token}` })).status).toBe(404);
  });
});

describe("downloads, deletion, statuses and collection", () => {
  test("a document downloads as an attachment under its name; DeleteMedia ends its URL and is safe to retry", async () => {
    const alice = await newUser();
    const pdf = Buffer.concat([Buffer.from("%PDF-1.7\n"), fakeJpeg(2000)]);
    const id = await upload(alice, pdf, MediaKind.DOCUMENT, "application/pdf", { fileName: "Q3 report.pdf" });
    const m = mediaClient(s, alice.token);
    const { downloadUrl } = await m.getMedia({ mediaId: id });
    const res = await fetch(`${s.url}${downloadUrl}`);
    expect(res.headers.get("content-disposition")).toBe("attachment; filename*=UTF-8''Q3%20report.pdf");
    expect(res.headers.get("content-type")).toBe("application/pdf");
    expect(Buffer.from(await res.arrayBuffer()).equals(pdf)).toBe(true);
    expect(await codeOf(mediaClient(s, (await newUser()).token).deleteMedia({ mediaId: id }))).toBe(Code.NotFound);
    await m.deleteMedia({ mediaId: id });
    await m.deleteMedia({ mediaId: id });
    expect((await fetch(`${s.url}${downloadUrl}`)).status).toBe(404);
  });

  test("SendMessage refuses someone else's media and an unfinished upload", async () => {
    const [alice, bob] = [await newUser(), await newUser()];
    const conversationId = (await bob.chat.createConversation({ participantIds: [alice.id] })).conversation!.id;
    const alices = await upload(alice, fakeJpeg(5000), MediaKind.IMAGE, "image/jpeg");
    expect(await codeOf(bob.chat.sendMessage({ conversationId, mediaId: alices }))).toBe(Code.NotFound);
    const { mediaId: pending } = await mediaClient(s, bob.token).createUpload({
      kind: MediaKind.IMAGE,
      mimeType: "image/png",
      sizeBytes: 10n,
      sha256: "e".repeat(64),
    });
    expect(await codeOf(bob.chat.sendMessage({ conversationId, mediaId: pending }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(bob.chat.sendMessage({ conversationId, mediaId: pending, mediaUrl: "https://x.example/a.png" }))).toBe(Code.InvalidArgument);
  });

  test("a status carries its media to its audience; media never sent is collected after 24 hours, sent media once its last reference is gone", async () => {
    const [alice, bob] = [await newUser(), await newUser()];
    const dave = await newUser();
    await alice.users.syncContacts({ phoneNumbers: [bob.phone] });
    const photo = await upload(alice, fakeJpeg(8000), MediaKind.IMAGE, "image/jpeg");
    const unsent = await upload(alice, fakeJpeg(8000), MediaKind.IMAGE, "image/jpeg");
    const posted = await alice.statuses.createStatus({ mediaId: photo, caption: "view", audience: StatusAudience.CONTACTS });
    expect(posted.status?.media).toMatchObject({ mediaId: photo, kind: MediaKind.IMAGE });
    const feed = await whenSome(async () => (await bob.statuses.getStatuses({ userId: alice.id })).statuses[0]);
    expect(feed.media?.mediaId).toBe(photo);
    expect((await mediaClient(s, bob.token).getMedia({ mediaId: photo })).downloadUrl).not.toBe("");
    expect(await codeOf(mediaClient(s, dave.token).getMedia({ mediaId: photo }))).toBe(Code.NotFound);

    // A day later: the unsent item is collected, the status's item stays until the status's row is gone.
    clock.advance(24 * 3600 * 1000 + 1000);
    await s.server.ctx.media.collect();
    const alice2 = await again(alice);
    const m = mediaClient(s, alice2.token);
    expect(await codeOf(m.getMedia({ mediaId: unsent }))).toBe(Code.NotFound);
    expect((await m.getMedia({ mediaId: photo })).media?.state).toBe(MediaState.READY);
    // The status expired with the day; its purge drops the last reference.
    await purgeExpiredStatuses(s.server.ctx.database.db, clock.now());
    await s.server.ctx.media.collect();
    expect(await codeOf(m.getMedia({ mediaId: photo }))).toBe(Code.NotFound);
  });

  test("a profile photo from MediaService: set as /media/<id>, downloadable as the photo setting allows, kept by the collector", async () => {
    const [alice, bob, carol] = [await newUser(), await newUser(), await newUser()];
    const photo = await upload(alice, fakeJpeg(8000), MediaKind.IMAGE, "image/jpeg");
    const video = await upload(alice, fakeMp4(9000), MediaKind.VIDEO, "video/mp4");
    const bobsPhoto = await upload(bob, fakeJpeg(8000), MediaKind.IMAGE, "image/jpeg");
    const pending = (await mediaClient(s, alice.token).createUpload({ kind: MediaKind.IMAGE, mimeType: "image/jpeg", sizeBytes: 100n, sha256: "b".repeat(64) }))
      .mediaId;
    // Only a ready image of one's own.
    expect((await errorOf(alice.users.updateProfile({ profilePictureUrl: `/media/${video}` }))).rawMessage).toContain("not an image");
    expect(await codeOf(alice.users.updateProfile({ profilePictureUrl: `/media/${bobsPhoto}` }))).toBe(Code.NotFound);
    expect(await codeOf(alice.users.updateProfile({ profilePictureUrl: `/media/${pending}` }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(alice.users.updateProfile({ profilePictureUrl: "/media/nope" }))).toBe(Code.InvalidArgument);
    const { user } = await alice.users.updateProfile({ profilePictureUrl: `/media/${photo}` });
    expect(user?.profilePictureUrl).toBe(`/media/${photo}`);
    // Bob, no contact of Alice's, sees it (the default setting is everyone) and may download it.
    const [seen] = (await bob.users.getUsers({ userIds: [alice.id] })).users;
    expect(seen?.profilePictureUrl).toBe(`/media/${photo}`);
    const { downloadUrl } = await mediaClient(s, bob.token).getMedia({ mediaId: photo });
    expect((await fetch(`${s.url}${downloadUrl}`)).status).toBe(200);
    // "My contacts" only: Carol, a contact, may; Bob may not, and his GetUsers shows no photo.
    await alice.users.syncContacts({ phoneNumbers: [carol.phone] });
    await alice.users.updatePrivacy({ profilePhoto: Visibility.CONTACTS });
    expect(await codeOf(mediaClient(s, bob.token).getMedia({ mediaId: photo }))).toBe(Code.NotFound);
    expect((await bob.users.getUsers({ userIds: [alice.id] })).users[0]?.profilePictureUrl).toBe("");
    expect((await mediaClient(s, carol.token).getMedia({ mediaId: photo })).downloadUrl).not.toBe("");
    // A day on, the collector keeps the photo in use and takes the unused video.
    clock.advance(24 * 3600 * 1000 + 1000);
    await s.server.ctx.media.collect();
    const m = mediaClient(s, (await again(alice)).token);
    expect((await m.getMedia({ mediaId: photo })).media?.state).toBe(MediaState.READY);
    expect(await codeOf(m.getMedia({ mediaId: video }))).toBe(Code.NotFound);
  });
});
