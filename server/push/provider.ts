import type { PushPlatformName, PushTarget } from "../db/push-store.js";

/** What one push says; the provider shapes it for its service. */
export interface PushNotification {
  conversationId: string;
  /** Unread user messages in the conversation, and across the user's conversations (the badge). */
  unread: number;
  badge: number;
  /** Only when the user allows previews: the title (sender, or group and sender) and the text. */
  preview?: { title: string; body: string };
}

/** How a send ended: retry (429, 5xx, network) with the service's Retry-After when it gave one. */
export type SendOutcome =
  | { result: "sent" }
  | { result: "invalid_token"; status: number; reason: string }
  | { result: "retry"; status: number; reason: string; retryAfterMs?: number }
  | { result: "failed"; status: number; reason: string };

/** One push service (FCM, APNs, Web Push). */
export interface PushProvider {
  readonly platform: PushPlatformName;
  send(target: PushTarget, n: PushNotification): Promise<SendOutcome>;
  close(): Promise<void>;
}

/** The generic line a content-free push shows (the app fetches the rest). */
export const CONTENT_FREE = { title: "Chatwire", body: "New message" };

/** Seconds or an HTTP date, as Retry-After carries it. */
export function retryAfterMs(header: string | string[] | null | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The common verdict on an HTTP status: 429 and 5xx are worth retrying. */
export function transient(status: number): boolean {
  return status === 429 || status >= 500;
}
