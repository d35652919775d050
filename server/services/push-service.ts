import { create } from "@bufbuild/protobuf";
import { webPushHostAllowed } from "../push/push-config.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { PushPlatform, PushRegistrationSchema, type PushRegistration, type PushService, type RegisterPushTokenRequest } from "../../gen/push/push_pb.js";
import type { AppContext } from "../context.js";
import * as store from "../db/push-store.js";
import type { PushTokenRow } from "../db/schema.js";
import { bad, callerId, callerOf } from "./rpc-input.js";

const MAX_TOKEN = 4096;
const MAX_ENDPOINT = 2048;

const PLATFORM_NAMES: Partial<Record<PushPlatform, store.PushPlatformName>> = {
  [PushPlatform.FCM]: "fcm",
  [PushPlatform.APNS]: "apns",
  [PushPlatform.WEB_PUSH]: "web_push",
};
const PLATFORM_PROTO: Record<store.PushPlatformName, PushPlatform> = { fcm: PushPlatform.FCM, apns: PushPlatform.APNS, web_push: PushPlatform.WEB_PUSH };
const PLATFORM_LABEL: Record<store.PushPlatformName, string> = { fcm: "FCM", apns: "APNs", web_push: "Web Push" };

function registration(r: PushTokenRow): PushRegistration {
  const web = r.platform === "web_push";
  return create(PushRegistrationSchema, {
    platform: PLATFORM_PROTO[r.platform as store.PushPlatformName],
    token: web ? "" : r.token,
    apnsSandbox: r.apns_sandbox,
    webPush: web ? { endpoint: r.token, p256dh: r.p256dh, auth: r.auth } : undefined,
    sessionId: r.session_id,
    updatedAt: timestampFromDate(r.updated_at),
  });
}

function base64urlBytes(field: string, value: string, bytes: number): string {
  const v = value.trim();
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(v) || Buffer.from(v, "base64url").length !== bytes) {
    throw bad(`${field}: must be ${bytes} bytes in base64url (PushSubscription.toJSON().keys), got "${value.slice(0, 100)}"`);
  }
  return v.replace(/=+$/, "");
}

/** What a RegisterPushToken request asks to store, validated. */
function parseRegistration(
  req: RegisterPushTokenRequest,
  webPushHosts: string[] | "any",
): Pick<store.NewRegistration, "platform" | "token" | "apnsSandbox" | "p256dh" | "auth"> {
  const platform = PLATFORM_NAMES[req.platform];
  if (!platform) throw bad(`platform: must be PUSH_PLATFORM_FCM, PUSH_PLATFORM_APNS or PUSH_PLATFORM_WEB_PUSH, got ${req.platform}`);
  if (platform === "web_push") {
    const w = req.webPush;
    if (!w) throw bad("web_push: the browser's subscription (endpoint, p256dh, auth) is required for PUSH_PLATFORM_WEB_PUSH");
    const endpoint = w.endpoint.trim();
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {}
    if (url?.protocol !== "https:" || endpoint.length > MAX_ENDPOINT) {
      throw bad(`web_push.endpoint: must be an https URL of at most ${MAX_ENDPOINT} characters (PushSubscription.endpoint)`);
    }
    if (!webPushHostAllowed(url.hostname, webPushHosts)) {
      throw bad(`web_push.endpoint: ${url.hostname} is not a push service this server sends to (WEB_PUSH_ALLOWED_HOSTS)`);
    }
    const p256dh = base64urlBytes("web_push.p256dh", w.p256dh, 65);
    if (Buffer.from(p256dh, "base64url")[0] !== 0x04) throw bad("web_push.p256dh: must be an uncompressed P-256 point (first byte 0x04)");
    return { platform, token: endpoint, apnsSandbox: false, p256dh, auth: base64urlBytes("web_push.auth", w.auth, 16) };
  }
  const token = req.token.trim();
  if (token.length === 0 || token.length > MAX_TOKEN) throw bad(`token: the ${PLATFORM_LABEL[platform]} token is required, at most ${MAX_TOKEN} characters`);
  if (platform === "apns" && !/^[0-9a-fA-F]{32,200}$/.test(token)) throw bad("token: an APNs device token is hexadecimal (32 to 200 digits)");
  if (platform === "fcm" && !/^[\x21-\x7e]+$/.test(token)) throw bad("token: an FCM registration token is printable ASCII without spaces");
  return { platform, token: platform === "apns" ? token.toLowerCase() : token, apnsSandbox: platform === "apns" && req.apnsSandbox, p256dh: "", auth: "" };
}

/** push.PushService (proto/push/push.proto). */
export function createPushService(ctx: AppContext): ServiceImpl<typeof PushService> {
  const { db } = ctx.database;
  const { clock } = ctx;
  return {
    async registerPushToken(req, hc) {
      const caller = callerOf(hc);
      const r = parseRegistration(req, ctx.config.push.webPushHosts);
      if (!ctx.push.platforms.has(r.platform)) {
        throw new ConnectError(
          `platform: ${PLATFORM_LABEL[r.platform]} is not configured on this server; it could never send to this token`,
          Code.FailedPrecondition,
        );
      }
      const row = await db
        .transaction()
        .execute((trx) => store.upsertRegistration(trx, { ...r, sessionId: caller.sessionId, userId: caller.userId, now: clock.now() }));
      return { registration: registration(row) };
    },

    async unregisterPushToken(_req, hc) {
      return { wasRegistered: (await store.deleteRegistrations(db, [callerOf(hc).sessionId])) > 0 };
    },

    async getPushToken(_req, hc) {
      const row = await store.getRegistration(db, callerOf(hc).sessionId);
      return { registration: row ? registration(row) : undefined };
    },

    async getWebPushKey() {
      const key = ctx.push.vapidPublicKey;
      if (!key) throw new ConnectError("Web Push is not configured on this server (VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY)", Code.FailedPrecondition);
      return { publicKey: key };
    },

    async getPushSettings(_req, hc) {
      return { settings: { showPreviews: await store.getShowPreviews(db, callerId(hc)) } };
    },

    async updatePushSettings(req, hc) {
      if (req.showPreviews === undefined) throw bad("show_previews: nothing to change (set show_previews)");
      return { settings: { showPreviews: await store.setShowPreviews(db, callerId(hc), req.showPreviews, clock.now()) } };
    },
  };
}
