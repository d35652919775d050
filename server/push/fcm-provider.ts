import { readFile } from "node:fs/promises";
import { importPKCS8, SignJWT } from "jose";
import type { PushTarget } from "../db/push-store.js";
import { type PushNotification, type PushProvider, retryAfterMs, type SendOutcome, transient } from "./provider.js";

interface ServiceAccount {
  project_id: string;
  client_email: string;
  private_key: string;
  token_uri: string;
}

const SCOPE = "https://www.googleapis.com/auth/firebase.messaging";

/** Reads and checks a service account key file (the JSON Firebase's console downloads). */
export async function readServiceAccount(file: string): Promise<ServiceAccount> {
  const json = JSON.parse(await readFile(file, "utf8")) as Partial<ServiceAccount>;
  for (const k of ["project_id", "client_email", "private_key"] as const) {
    if (typeof json[k] !== "string" || !json[k]) throw new Error(`FCM_SERVICE_ACCOUNT_FILE: ${file} has no ${k}`);
  }
  return { ...(json as ServiceAccount), token_uri: json.token_uri || "https://oauth2.googleapis.com/token" };
}

/**
 * FCM HTTP v1 (projects.messages.send) with OAuth 2.0 from a service account:
 * a JWT (RS256, signed with jose) exchanged at the account's token_uri for an
 * access token, kept until five minutes before it expires. The push is a data
 * message (the app decides what to show) with the conversation as Android's
 * collapse key, so a burst still queued at FCM is delivered once.
 */
export class FcmProvider implements PushProvider {
  readonly platform = "fcm";
  private access: { token: string; until: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly account: ServiceAccount,
    private readonly endpoint: string,
  ) {}

  async send(t: PushTarget, n: PushNotification): Promise<SendOutcome> {
    let res: Response;
    try {
      const token = await this.accessToken();
      const data: Record<string, string> = { conversation_id: n.conversationId, unread: String(n.unread), badge: String(n.badge) };
      if (n.preview) Object.assign(data, { title: n.preview.title, body: n.preview.body });
      res = await fetch(`${this.endpoint}/v1/projects/${encodeURIComponent(this.account.project_id)}/messages:send`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({
          message: {
            token: t.token,
            data,
            android: { collapse_key: n.conversationId, priority: "high" },
            apns: { headers: { "apns-collapse-id": n.conversationId }, payload: { aps: { badge: n.badge, "content-available": 1 } } },
          },
        }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      return { result: "retry", status: 0, reason: (err as Error).message };
    }
    if (res.ok) {
      await res.body?.cancel();
      return { result: "sent" };
    }
    const text = (await res.text().catch(() => "")).slice(0, 500);
    // UNREGISTERED (404): the app was uninstalled or the token expired.
    if (res.status === 404 || res.status === 410 || text.includes("UNREGISTERED")) return { result: "invalid_token", status: res.status, reason: text };
    if (res.status === 401) this.access = undefined;
    if (transient(res.status) || res.status === 401) {
      return { result: "retry", status: res.status, reason: text, retryAfterMs: retryAfterMs(res.headers.get("retry-after")) };
    }
    return { result: "failed", status: res.status, reason: text };
  }

  private accessToken(): Promise<string> {
    if (this.access && this.access.until > Date.now()) return Promise.resolve(this.access.token);
    this.pending ??= this.fetchAccessToken().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async fetchAccessToken(): Promise<string> {
    const key = await importPKCS8(this.account.private_key, "RS256");
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({ alg: "RS256", typ: "JWT" })
      .setIssuer(this.account.client_email)
      .setAudience(this.account.token_uri)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(key);
    const res = await fetch(this.account.token_uri, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json().catch(() => ({}))) as { access_token?: string; expires_in?: number };
    if (!res.ok || !body.access_token) throw new Error(`FCM OAuth token exchange failed: HTTP ${res.status}`);
    this.access = { token: body.access_token, until: Date.now() + Math.max(60, (body.expires_in ?? 3600) - 300) * 1000 };
    return body.access_token;
  }

  async close(): Promise<void> {}
}
