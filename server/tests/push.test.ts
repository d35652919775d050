import { jetstreamManager } from "@nats-io/jetstream";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { PushPlatform, PushService } from "../../gen/push/push_pb.js";
import { JetStreamQueue } from "../messaging/jetstream-queue.js";
import { bearerTransport, DEV_CODE } from "./helpers/login.js";
import { FakeApns, FakeFcm, FakeWebPush, scratchDir, type BrowserSubscription } from "./helpers/push-fakes.js";
import { Subscription } from "./helpers/realtime.js";
import { codeOf, phoneSequence } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Push delivery end to end, on whichever profile the environment selects:
// real server, real clients; only FCM, APNs and the Web Push service are
// fakes (they check the OAuth token, the APNs provider token and VAPID, and
// the Web Push fake decrypts the RFC 8291 payload).

const phone = phoneSequence("717");

interface Device {
  id: string;
  sessionId: string;
  token: string;
  refreshToken: string;
  push: Client<typeof PushService>;
  chat: Client<typeof ChatService>;
  auth: Client<typeof AuthService>;
}

let s: TestServer;
let fcm: FakeFcm;
let apns: FakeApns;
let web: FakeWebPush;

async function device(pushToken = ""): Promise<Device> {
  const number = phone();
  const anon = createClient(AuthService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
  await anon.sendOTP({ phoneNumber: number });
  const r = await anon.verifyOTP({ phoneNumber: number, otpCode: DEV_CODE, deviceId: `dev-${number}`, pushToken });
  const t = bearerTransport(s.url, r.accessToken);
  return {
    id: r.user!.id,
    sessionId: r.sessionId,
    token: r.accessToken,
    refreshToken: r.refreshToken,
    push: createClient(PushService, t),
    chat: createClient(ChatService, t),
    auth: createClient(AuthService, t),
  };
}

/** Until every stored message has gone through push delivery: the queues empty and nothing waiting in a collapse window. */
async function settled(): Promise<void> {
  const deadline = Date.now() + 20_000;
  const { ctx } = s.server;
  const queue = ctx.messages;
  for (;;) {
    let empty = ctx.push.dispatcher.idle;
    if (empty && queue instanceof JetStreamQueue) {
      const jsm = await jetstreamManager(queue.nc);
      const [m, p] = await Promise.all([jsm.streams.info(queue.names.stream), jsm.streams.info(ctx.push.stream!.stream)]);
      empty = m.state.messages === 0 && p.state.messages === 0 && ctx.push.dispatcher.idle;
    }
    if (empty) return;
    if (Date.now() > deadline) throw new Error("push delivery did not settle");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function until(what: string, predicate: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function burst(from: Device, conversationId: string, n: number, tag: string): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => from.chat.sendMessage({ conversationId, content: `${tag} ${i}`, clientMessageId: `${tag}-${i}` })));
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

let sender: Device;
/** FCM (through VerifyOTP's push_token), APNs (sandbox) and Web Push recipients. */
let android: Device;
let iphone: Device;
let browser: Device;
let sub: BrowserSubscription;
let group: string;

beforeAll(async () => {
  const dir = await scratchDir();
  [fcm, apns, web] = await Promise.all([FakeFcm.start(dir), FakeApns.start(dir), FakeWebPush.start(dir)]);
  s = await startTestServer(
    // The fake Web Push service is on 127.0.0.1: allowed here, as the browsers' push services are by default.
    { FCM_SERVICE_ACCOUNT_FILE: fcm.serviceAccountFile, FCM_ENDPOINT: fcm.url, ...apns.env, PUSH_COLLAPSE_MS: "1500", WEB_PUSH_ALLOWED_HOSTS: "127.0.0.1" },
    { webPushAgent: web.agent },
  );
  sender = await device("fcm-token-of-the-sender");
  android = await device("fcm-token-android");
  iphone = await device();
  browser = await device();
  await iphone.push.registerPushToken({ platform: PushPlatform.APNS, token: "ab".repeat(32), apnsSandbox: true });
  sub = web.subscribe();
  await browser.push.registerPushToken({ platform: PushPlatform.WEB_PUSH, webPush: { endpoint: sub.endpoint, ...sub.keys } });
  const c = await sender.chat.createConversation({ participantIds: [android.id, iphone.id, browser.id], isGroup: true, groupName: "Push" });
  group = c.conversation!.id;
}, 60_000);

afterAll(async () => {
  await s?.stop();
  await Promise.all([fcm?.close(), apns?.close(), web?.close()]);
});

describe("push delivery", () => {
  test("a burst is one content-free push per offline device, at FCM, APNs and Web Push; none to the sender", async () => {
    await burst(sender, group, 5, "burst");
    await until(
      "a push at each fake",
      () => fcm.delivered("fcm-token-android").length > 0 && apns.delivered("ab".repeat(32)).length > 0 && web.delivered(sub.endpoint).length > 0,
    );
    await settled();
    expect(fcm.delivered("fcm-token-android")).toHaveLength(1);
    expect(apns.delivered("ab".repeat(32))).toHaveLength(1);
    expect(web.delivered(sub.endpoint)).toHaveLength(1);
    expect(fcm.received.filter((r) => r.token === "fcm-token-of-the-sender")).toHaveLength(0);

    // Content-free: the conversation and the unread counts (the whole burst), no text.
    const f = fcm.delivered("fcm-token-android")[0]!.body;
    expect(f.data).toEqual({ conversation_id: group, unread: "5", badge: "5" });
    expect(f.android?.collapse_key).toBe(group);
    const a = apns.delivered("ab".repeat(32))[0]!;
    expect(a.body).toMatchObject({ conversation_id: group, unread: 5, aps: { badge: 5, "thread-id": group, alert: { body: "New message" } } });
    expect(a.headers["apns-collapse-id"]).toBe(group);
    expect(JSON.stringify(a.body)).not.toContain("burst");
    // Decrypted by the fake with the browser's keys: the payload is valid RFC 8291.
    expect(web.delivered(sub.endpoint)[0]!.body).toEqual({ conversation_id: group, unread: 5, badge: 5 });
    expect(web.delivered(sub.endpoint)[0]!.headers.topic).toBe(group.replaceAll("-", ""));
    expect(await metric("chatwire_push_notifications_total", 'provider="web_push",result="sent"')).toBeGreaterThanOrEqual(1);
  }, 60_000);

  test("no push to a device with an open Subscribe stream, nor for a muted conversation", async () => {
    const before = { fcm: fcm.received.length, apns: apns.received.length, web: web.received.length };
    const stream = new Subscription(bearerTransport(s.url, browser.token));
    await stream.until((x) => x.of("caughtUp").length > 0, 10_000, "caught up");
    await iphone.chat.muteConversation({ conversationId: group, mutedUntil: timestampFromDate(new Date(Date.now() + 3600_000)) });
    await burst(sender, group, 2, "online");
    await until("the Android push", () => fcm.received.length > before.fcm);
    await stream.until((x) => x.stored("messageCreated").length >= 2, 10_000, "the messages live");
    await settled();
    expect(fcm.received.length).toBe(before.fcm + 1);
    expect(apns.received.length).toBe(before.apns);
    expect(web.received.length).toBe(before.web);
    await iphone.chat.muteConversation({ conversationId: group });
    await stream.close();
    const db = s.server.ctx.database.db;
    await until(
      "the browser offline",
      async () => !(await db.selectFrom("presence_streams").select("stream_id").where("session_id", "=", browser.sessionId).executeTakeFirst()),
    );
  }, 60_000);

  test("a message nobody could be pushed for skips push delivery altogether", async () => {
    await settled();
    const quiet = await device();
    const c = (await sender.chat.createConversation({ participantIds: [quiet.id] })).conversation!.id;
    const queue = s.server.ctx.messages;
    // Production: how many messages the push stream has taken so far. Embedded: none (the dispatcher takes them directly).
    const pushStreamSeq = async () =>
      queue instanceof JetStreamQueue ? (await (await jetstreamManager(queue.nc)).streams.info(s.server.ctx.push.stream!.stream)).state.last_seq : 0;
    const seq0 = await pushStreamSeq();
    const before = fcm.delivered("fcm-token-of-the-sender").length;
    // The recipient has no push token (the sender's own does not count): nothing for push to do.
    await sender.chat.sendMessage({ conversationId: c, content: "nobody to wake", clientMessageId: "quiet-1" });
    // Stored inline on the embedded profile before the answer: nothing was handed to the dispatcher.
    if (!(queue instanceof JetStreamQueue)) expect(s.server.ctx.push.dispatcher.idle).toBe(true);
    // The answer wakes the sender, whose phone has a token.
    await quiet.chat.sendMessage({ conversationId: c, content: "wake the sender", clientMessageId: "quiet-2" });
    await until("the sender's push", () => fcm.delivered("fcm-token-of-the-sender").length > before);
    await settled();
    expect(fcm.delivered("fcm-token-of-the-sender").length).toBe(before + 1);
    // One conversation, one partition: stored, and put on the push stream, in order; only the answer went on it.
    if (queue instanceof JetStreamQueue) expect(await pushStreamSeq()).toBe(seq0 + 1);
    expect((await quiet.chat.listMessages({ conversationId: c })).messages.map((m) => m.content).sort()).toEqual(["nobody to wake", "wake the sender"]);
  }, 60_000);

  test("previews when the user allows them; 5xx retried; a 410 removes the token", async () => {
    expect((await android.push.updatePushSettings({ showPreviews: true })).settings?.showPreviews).toBe(true);
    fcm.answers.set("fcm-token-android", { status: 503, headers: { "retry-after": "0" }, body: '{"error":{"status":"UNAVAILABLE"}}' });
    web.answers.set(sub.endpoint, { status: 410, body: "gone" });
    apns.answers.set("ab".repeat(32), { status: 429, headers: { "retry-after": "0" }, body: '{"reason":"TooManyRequests"}' });
    const before = fcm.delivered("fcm-token-android").length;
    await sender.chat.sendMessage({ conversationId: group, content: "Selam!", clientMessageId: "preview-1" });
    await until("the retried FCM push", () => fcm.delivered("fcm-token-android").length > before);
    await until("the web registration removed", async () => (await browser.push.getPushToken({})).registration === undefined);
    await settled();
    expect(fcm.delivered("fcm-token-android").at(-1)!.body.data).toMatchObject({ conversation_id: group, body: "Selam!" });
    expect(fcm.received.filter((r) => r.token === "fcm-token-android" && r.status === 503)).toHaveLength(1);
    // APNs: 429 then delivered, content-free (the iPhone's user allows no previews).
    expect(
      apns.received
        .filter((r) => r.token === "ab".repeat(32))
        .map((r) => r.status)
        .slice(-2),
    ).toEqual([429, 200]);
    expect(apns.delivered("ab".repeat(32)).at(-1)!.body.aps.alert).toEqual({ title: "Chatwire", body: "New message" });
    expect(await metric("chatwire_push_notifications_total", 'provider="web_push",result="invalid_token"')).toBe(1);
    expect(await metric("chatwire_push_notifications_total", 'provider="fcm",result="retry"')).toBeGreaterThanOrEqual(1);
  }, 60_000);

  test("a token dies with its session", async () => {
    const row = () => s.server.ctx.database.db.selectFrom("push_tokens").selectAll().where("session_id", "=", iphone.sessionId).executeTakeFirst();
    expect(await row()).toBeDefined();
    await iphone.auth.revokeCurrentDevice({ refreshToken: iphone.refreshToken });
    expect(await row()).toBeUndefined();
  });

  test("an FCM token FCM calls UNREGISTERED is removed", async () => {
    fcm.answers.set("fcm-token-android", {
      status: 404,
      body: '{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}',
    });
    await sender.chat.sendMessage({ conversationId: group, content: "still there?", clientMessageId: "unregistered-1" });
    await until("the Android registration removed", async () => (await android.push.getPushToken({})).registration === undefined);
    expect(fcm.received.filter((r) => r.token === "fcm-token-android").at(-1)!.status).toBe(404);
    expect(await metric("chatwire_push_notifications_total", 'provider="fcm",result="invalid_token"')).toBe(1);
  }, 60_000);
});

describe("PushService", () => {
  test("registration is idempotent, moves a token between sessions, and validates", async () => {
    const d = await device();
    const first = await d.push.registerPushToken({ platform: PushPlatform.FCM, token: "shared-token" });
    const again = await d.push.registerPushToken({ platform: PushPlatform.FCM, token: "shared-token" });
    expect(again.registration).toEqual(first.registration);
    expect(first.registration).toMatchObject({ platform: PushPlatform.FCM, token: "shared-token", sessionId: d.sessionId });
    const other = await device();
    await other.push.registerPushToken({ platform: PushPlatform.FCM, token: "shared-token" });
    expect((await d.push.getPushToken({})).registration).toBeUndefined();
    expect((await other.push.unregisterPushToken({})).wasRegistered).toBe(true);
    expect((await other.push.unregisterPushToken({})).wasRegistered).toBe(false);

    expect(await codeOf(d.push.registerPushToken({ platform: PushPlatform.UNSPECIFIED, token: "x" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(d.push.registerPushToken({ platform: PushPlatform.APNS, token: "not hex" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(d.push.registerPushToken({ platform: PushPlatform.WEB_PUSH, webPush: { endpoint: "http://insecure.example/x", ...sub.keys } }))).toBe(
      Code.InvalidArgument,
    );
    expect(
      await codeOf(d.push.registerPushToken({ platform: PushPlatform.WEB_PUSH, webPush: { endpoint: sub.endpoint, p256dh: "AAAA", auth: sub.keys.auth } })),
    ).toBe(Code.InvalidArgument);
    // Not a push service the server sends to: it would otherwise POST wherever a client points it.
    const elsewhere = d.push.registerPushToken({ platform: PushPlatform.WEB_PUSH, webPush: { endpoint: "https://internal.example/admin", ...sub.keys } });
    await expect(elsewhere).rejects.toThrow("web_push.endpoint: internal.example is not a push service this server sends to (WEB_PUSH_ALLOWED_HOSTS)");
    expect(await codeOf(d.push.updatePushSettings({}))).toBe(Code.InvalidArgument);
  });

  test("sessions registering one token at the same time: every call succeeds and the token ends up with exactly one of them", async () => {
    const devices = await Promise.all(Array.from({ length: 6 }, () => device()));
    for (let round = 0; round < 5; round++) {
      const token = `raced-token-${round}`;
      const answers = await Promise.allSettled(devices.map((d) => d.push.registerPushToken({ platform: PushPlatform.FCM, token })));
      const failed = answers.flatMap((a) => (a.status === "rejected" ? [String(a.reason)] : []));
      expect(failed, `round ${round}`).toEqual([]);
      const holders = [];
      for (const d of devices) if ((await d.push.getPushToken({})).registration?.token === token) holders.push(d.sessionId);
      expect(holders, `round ${round}: sessions holding ${token}`).toHaveLength(1);
    }
  });

  test("GetWebPushKey answers the VAPID public key (generated into the data dir in development)", async () => {
    const d = await device();
    const { publicKey } = await d.push.getWebPushKey({});
    expect(Buffer.from(publicKey, "base64url")).toHaveLength(65);
  });
});
