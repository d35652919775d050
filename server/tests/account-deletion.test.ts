import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { MediaKind } from "../../gen/media/media_pb.js";
import { grpcJsClient, grpcJsUnary } from "./helpers/grpc-js.js";
import { DEV_CODE } from "./helpers/login.js";
import { fakeJpeg, mediaClient, sha256, tusUpload, whenSome } from "./helpers/media.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { curlJson, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// Issue 17, item 9: DeleteAccount after a fresh code, and ExportAccountData.
// The fake clock moves past the one-code-per-30-s limit between logins and
// the deletion's SendOTP.

const clock = new FakeClock();
let s: TestServer;
const open: Subscription[] = [];
const nextPhone = phoneSequence("619");

beforeAll(async () => {
  s = await startTestServer({}, { clock });
});
afterAll(async () => {
  for (const sub of open) await sub.close();
  await s?.stop();
});

function subscribe(u: SocialUser): Subscription {
  const sub = new Subscription(protocolTransport(s.url, u.token, "connect"));
  open.push(sub);
  return sub;
}

/** A user who has a bit of everything: a push token, a contact, a block, a status, media and messages with `peer`. */
async function busyUser(peer: SocialUser, blocked: SocialUser) {
  const phone = nextPhone();
  await curlJson(s, undefined, "auth.AuthService", "SendOTP", { phone_number: phone });
  const v = await curlJson(s, undefined, "auth.AuthService", "VerifyOTP", { phone_number: phone, otp_code: DEV_CODE, push_token: "fcm-secret-token-123" });
  expect(v.status).toBe(200);
  clock.advance(31_000);
  const u = await socialUser(s, phone);
  await u.users.syncContacts({ phoneNumbers: [peer.phone] });
  await peer.users.syncContacts({ phoneNumbers: [phone] });
  await u.users.updateProfile({ displayName: "Doomed", aboutText: "about to go" });
  await u.users.blockUser({ userId: blocked.id });
  await u.statuses.createStatus({ content: "my status" });
  const conversationId = (await u.chat.createConversation({ participantIds: [peer.id] })).conversation!.id;
  const photo = fakeJpeg(1500);
  const media = mediaClient(s, u.token);
  const { mediaId } = await media.createUpload({ kind: MediaKind.IMAGE, mimeType: "image/jpeg", sizeBytes: BigInt(photo.length), sha256: sha256(photo) });
  await tusUpload(s, u.token, mediaId, photo, { chunk: photo.length });
  const mine = (await u.chat.sendMessage({ conversationId, content: "from the doomed", clientMessageId: "m1" })).message!;
  await u.chat.sendMessage({ conversationId, mediaId, clientMessageId: "m2" });
  const last = (await peer.chat.sendMessage({ conversationId, content: "from the peer" })).message!;
  // On the production profile the worker stores them after SendMessage answers: wait until all three are stored.
  await whenSome(async () =>
    (await u.chat.listMessages({ conversationId, limit: 10 })).messages.some((m) => m.id === last.id && m.seq > 0n) ? true : undefined,
  );
  return { u, conversationId, mine, mediaId };
}

/** Rows of the user's left in the tables deletion empties. */
async function leftovers(userId: string) {
  const db = s.server.ctx.database.db;
  const count = async (q: Promise<unknown[]>) => (await q).length;
  return {
    sessions: await count(db.selectFrom("user_devices").select("id").where("user_id", "=", userId).execute()),
    contacts: await count(
      db
        .selectFrom("contacts")
        .select("user_id")
        .where((eb) => eb.or([eb("user_id", "=", userId), eb("contact_user_id", "=", userId)]))
        .execute(),
    ),
    blocks: await count(
      db
        .selectFrom("blocked_users")
        .select("blocker_id")
        .where((eb) => eb.or([eb("blocker_id", "=", userId), eb("blocked_id", "=", userId)]))
        .execute(),
    ),
    statuses: await count(db.selectFrom("status_updates").select("id").where("user_id", "=", userId).execute()),
    pushTokens: await count(db.selectFrom("push_tokens").select("token").where("user_id", "=", userId).execute()),
    media: await count(db.selectFrom("media").select("id").where("uploader_id", "=", userId).execute()),
  };
}

describe("account deletion", () => {
  test("over Connect JSON: a fresh code deletes the account; messages stay as from a deleted account; the number registers anew", async () => {
    const peer = await socialUser(s, nextPhone());
    const other = await socialUser(s, nextPhone());
    const { u, conversationId, mine } = await busyUser(peer, other);
    const uStream = subscribe(u);
    const peerStream = subscribe(peer);
    await Promise.all([uStream.untilKind("caughtUp"), peerStream.untilKind("caughtUp")]);
    const auth = (method: string, body: unknown) => curlJson(s, undefined, "auth.AuthService", method, body);

    // No code pending (the login's is spent), then a wrong one.
    const none = await auth("DeleteAccount", { access_token: u.token, otp_code: DEV_CODE });
    expect(none.body.code).toBe("failed_precondition");
    clock.advance(31_000);
    expect((await auth("SendOTP", { phone_number: u.phone })).status).toBe(200);
    const wrong = await auth("DeleteAccount", { access_token: u.token, otp_code: "000000" });
    expect(wrong.body.code).toBe("unauthenticated");
    expect(wrong.body.message).toMatch(/wrong code/);
    const done = await auth("DeleteAccount", { access_token: u.token, otp_code: DEV_CODE });
    expect(done.status).toBe(200);
    expect(done.body.success).toBe(true);
    // A retry with the same token (a lost answer): the same answer.
    const again = await auth("DeleteAccount", { access_token: u.token, otp_code: DEV_CODE });
    expect(again.body).toEqual(done.body);

    // Open streams end; the token is dead; the peer hears of it.
    await uStream.done;
    expect(uStream.ended?.error).toBeDefined();
    expect((await curlJson(s, u.token, "user.UserService", "GetMe", {})).body.code).toBe("unauthenticated");
    await peerStream.untilKind("userDeleted");
    expect(peerStream.of("userDeleted")[0]!.userId).toBe(u.id);
    expect(await leftovers(u.id)).toEqual({ sessions: 0, contacts: 0, blocks: 0, statuses: 0, pushTokens: 0, media: 0 });

    // The peer still reads the messages, from a deleted account.
    const history = await curlJson(s, peer.token, "chat.ChatService", "ListMessages", { conversation_id: conversationId });
    expect(history.body.messages.map((m: { content: string }) => m.content)).toContain("from the doomed");
    expect(history.body.messages.find((m: { id: string }) => m.id === mine.id).sender_id).toBe(u.id);
    const profile = await curlJson(s, peer.token, "user.UserService", "GetUsers", { user_ids: [u.id] });
    expect(profile.body.users[0]).toMatchObject({ id: u.id, phone_number: "", display_name: "", about_text: "", deleted: true });

    // The number registers again: a new user.
    clock.advance(31_000);
    await auth("SendOTP", { phone_number: u.phone });
    const fresh = await auth("VerifyOTP", { phone_number: u.phone, otp_code: DEV_CODE });
    expect(fresh.body.is_new_user).toBe(true);
    expect(fresh.body.user.id).not.toBe(u.id);
    expect(fresh.body.user.phone_number).toBe(u.phone);
  });

  test("over gRPC (@grpc/grpc-js): ExportAccountData pages the user's messages and redacts push tokens; then DeleteAccount", async () => {
    const peer = await socialUser(s, nextPhone(), "grpc");
    const other = await socialUser(s, nextPhone(), "grpc");
    const { u, conversationId } = await busyUser(peer, other);
    const client = grpcJsClient(s.url);
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${u.token}`);
    try {
      const first = await grpcJsUnary(client, AuthService.method.exportAccountData, { messageLimit: 1 }, md);
      const data = JSON.parse(first.dataJson);
      expect(data.format).toBe("chatwire-export-1");
      expect(data.profile).toMatchObject({ id: u.id, phone_number: u.phone, display_name: "Doomed" });
      expect(data.contacts.map((c: { user_id: string }) => c.user_id)).toEqual([peer.id]);
      expect(data.blocked.map((b: { user_id: string }) => b.user_id)).toEqual([other.id]);
      expect(data.conversations.map((c: { id: string }) => c.id)).toEqual([conversationId]);
      expect(data.statuses.map((x: { content: string }) => x.content)).toEqual(["my status"]);
      expect(data.privacy).toBeDefined();
      expect(data.push_registrations).toHaveLength(1);
      expect(first.dataJson).not.toContain("fcm-secret-token-123");
      expect(data.messages).toHaveLength(1);
      expect(first.nextMessagesPageToken).not.toBe("");
      const second = await grpcJsUnary(client, AuthService.method.exportAccountData, { messageLimit: 1, messagesPageToken: first.nextMessagesPageToken }, md);
      const rest = JSON.parse(second.dataJson).messages;
      expect(rest).toHaveLength(1);
      expect(second.nextMessagesPageToken).toBe("");
      // Only the user's own messages, each once.
      expect(new Set([data.messages[0].id, rest[0].id]).size).toBe(2);
      expect([data.messages[0].content, rest[0].content].sort()).toEqual(["", "from the doomed"]);
      const bad = (await grpcJsUnary(client, AuthService.method.exportAccountData, { messagesPageToken: "nonsense" }, md).catch(
        (e: unknown) => e,
      )) as grpc.ServiceError;
      expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);

      clock.advance(31_000);
      await grpcJsUnary(client, AuthService.method.sendOTP, { phoneNumber: u.phone });
      const res = await grpcJsUnary(client, AuthService.method.deleteAccount, { accessToken: u.token, otpCode: DEV_CODE });
      expect(res.success).toBe(true);
      const gone = (await grpcJsUnary(client, AuthService.method.exportAccountData, {}, md).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(gone.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(await leftovers(u.id)).toEqual({ sessions: 0, contacts: 0, blocks: 0, statuses: 0, pushTokens: 0, media: 0 });
      const [profile] = (await peer.users.getUsers({ userIds: [u.id] })).users;
      expect(profile).toMatchObject({ id: u.id, phoneNumber: "", displayName: "", deleted: true });
    } finally {
      client.close();
    }
  });
});
