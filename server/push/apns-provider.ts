import { readFile } from "node:fs/promises";
import http2 from "node:http2";
import { importPKCS8, SignJWT } from "jose";
import type { PushTarget } from "../db/push-store.js";
import { CONTENT_FREE, type PushNotification, type PushProvider, retryAfterMs, type SendOutcome, transient } from "./provider.js";

export interface ApnsOptions {
  keyFile: string;
  keyId: string;
  teamId: string;
  /** The app's bundle id (apns-topic). */
  topic: string;
  endpoint: string;
  sandboxEndpoint: string;
}

/** Reasons APNs gives for a token that will never work again. */
const DEAD_TOKEN = new Set(["BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic", "ExpiredToken"]);

/**
 * APNs over HTTP/2 (node:http2, one session per endpoint, reopened when it
 * goes away) with token auth: an ES256 JWT (jose) from the team's .p8 key,
 * renewed every 50 minutes (Apple refuses one older than an hour). The alert
 * is generic unless the user allows previews; apns-collapse-id is the
 * conversation, so a burst replaces one notification on the device.
 */
export class ApnsProvider implements PushProvider {
  readonly platform = "apns";
  private jwt: { token: string; until: number } | undefined;
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  constructor(private readonly opts: ApnsOptions) {}

  async send(t: PushTarget, n: PushNotification): Promise<SendOutcome> {
    const alert = n.preview ?? CONTENT_FREE;
    const body = JSON.stringify({
      aps: { alert, badge: n.badge, sound: "default", "thread-id": n.conversationId, "mutable-content": 1 },
      conversation_id: n.conversationId,
      unread: n.unread,
    });
    try {
      const token = await this.token();
      const session = this.session(t.apnsSandbox ? this.opts.sandboxEndpoint : this.opts.endpoint);
      const { status, headers, text } = await request(
        session,
        {
          ":method": "POST",
          ":path": `/3/device/${t.token}`,
          authorization: `bearer ${token}`,
          "apns-topic": this.opts.topic,
          "apns-push-type": "alert",
          "apns-priority": "10",
          "apns-collapse-id": n.conversationId,
          "content-type": "application/json",
        },
        body,
      );
      if (status === 200) return { result: "sent" };
      const reason = (JSON.parse(text || "{}") as { reason?: string }).reason ?? text.slice(0, 200);
      if (status === 410 || DEAD_TOKEN.has(reason)) return { result: "invalid_token", status, reason };
      if (reason === "ExpiredProviderToken") this.jwt = undefined;
      if (transient(status) || reason === "ExpiredProviderToken")
        return { result: "retry", status, reason, retryAfterMs: retryAfterMs(headers["retry-after"]) };
      return { result: "failed", status, reason };
    } catch (err) {
      return { result: "retry", status: 0, reason: (err as Error).message };
    }
  }

  private async token(): Promise<string> {
    if (this.jwt && this.jwt.until > Date.now()) return this.jwt.token;
    const key = await importPKCS8(await readFile(this.opts.keyFile, "utf8"), "ES256");
    const token = await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: this.opts.keyId }).setIssuer(this.opts.teamId).setIssuedAt().sign(key);
    this.jwt = { token, until: Date.now() + 50 * 60_000 };
    return token;
  }

  private session(endpoint: string): http2.ClientHttp2Session {
    const open = this.sessions.get(endpoint);
    if (open && !open.closed && !open.destroyed) return open;
    const s = http2.connect(endpoint);
    s.on("error", () => this.sessions.delete(endpoint));
    s.on("close", () => this.sessions.delete(endpoint));
    s.on("goaway", () => this.sessions.delete(endpoint));
    s.unref();
    this.sessions.set(endpoint, s);
    return s;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}

function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: string,
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    let got: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => (got = h));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve({ status: Number(got[":status"] ?? 0), headers: got, text: Buffer.concat(chunks).toString("utf8") }));
    req.on("error", reject);
    req.on("close", () => {
      if (got[":status"] === undefined) reject(new Error("APNs stream closed without an answer"));
    });
    req.end(body);
  });
}
