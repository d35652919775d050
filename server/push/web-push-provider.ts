import type { Agent } from "node:https";
import webpush, { WebPushError } from "web-push";
import type { PushTarget } from "../db/push-store.js";
import { type PushNotification, type PushProvider, retryAfterMs, type SendOutcome, transient } from "./provider.js";

export interface VapidKeys {
  publicKey: string;
  privateKey: string;
  subject: string;
}

/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) through the web-push library,
 * which encrypts the payload (RFC 8291, aes128gcm) for the subscription's keys.
 * The Topic header collapses a conversation's pushes still queued at the push service.
 */
export class WebPushProvider implements PushProvider {
  readonly platform = "web_push";

  constructor(
    private readonly vapid: VapidKeys,
    /** Tests: an agent trusting the fake push service's certificate. */
    private readonly agent?: Agent,
  ) {}

  async send(t: PushTarget, n: PushNotification): Promise<SendOutcome> {
    const payload = JSON.stringify({
      conversation_id: n.conversationId,
      unread: n.unread,
      badge: n.badge,
      ...(n.preview ? { title: n.preview.title, body: n.preview.body } : {}),
    });
    try {
      await webpush.sendNotification({ endpoint: t.token, keys: { p256dh: t.p256dh, auth: t.auth } }, payload, {
        vapidDetails: this.vapid,
        TTL: 24 * 3600,
        urgency: "high",
        // At most 32 base64url characters: the UUID without its dashes.
        topic: n.conversationId.replaceAll("-", ""),
        timeout: 10_000,
        ...(this.agent ? { agent: this.agent } : {}),
      });
      return { result: "sent" };
    } catch (err) {
      if (!(err instanceof WebPushError)) return { result: "retry", status: 0, reason: (err as Error).message };
      const reason = err.body?.slice(0, 200) || err.message;
      if (err.statusCode === 404 || err.statusCode === 410) return { result: "invalid_token", status: err.statusCode, reason };
      if (transient(err.statusCode)) return { result: "retry", status: err.statusCode, reason, retryAfterMs: retryAfterMs(err.headers?.["retry-after"]) };
      return { result: "failed", status: err.statusCode, reason };
    }
  }

  async close(): Promise<void> {}
}
