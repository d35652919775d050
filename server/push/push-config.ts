import { existsSync } from "node:fs";
import { boolVar, ConfigError, intVar } from "../config-vars.js";

// The push settings (PUSH_*, VAPID_*, FCM_*, APNS_*): parsed here from the
// `get` config.ts hands over (config.ts stays the only reader of process.env).

export interface PushConfig {
  /** PUSH_ENABLED=false: no push at all (no stream, no delivery); the RPCs still store registrations. */
  enabled: boolean;
  /**
   * Web Push: VAPID keys (base64url) and the contact the push services see.
   * Keys unset outside production: generated once into CHATWIRE_DATA_DIR/vapid.json.
   */
  vapid: { publicKey: string; privateKey: string; subject: string } | { generateInto: string; subject: string } | undefined;
  /** FCM HTTP v1: a service account's JSON key file, and the API's base URL. */
  fcm: { serviceAccountFile: string; endpoint: string } | undefined;
  /** APNs token auth: the .p8 key, its id, the team and the app's bundle id (apns-topic); endpoints for production and sandbox tokens. */
  apns: { keyFile: string; keyId: string; teamId: string; topic: string; endpoint: string; sandboxEndpoint: string } | undefined;
  /** A burst in one conversation within this window is one push (per device). */
  collapseMs: number;
  /** Attempts per push while the service answers 429 or 5xx (with backoff). */
  maxAttempts: number;
  /**
   * WEB_PUSH_ALLOWED_HOSTS: the push services a Web Push subscription may point at (a host or a parent
   * domain each), so a client cannot make the server POST to any URL it likes; "any" with `*`.
   */
  webPushHosts: string[] | "any";
}

/** The browsers' push services: Chrome/Edge/Opera (FCM), Firefox (Mozilla autopush), Edge (WNS), Safari (Apple). */
export const DEFAULT_WEB_PUSH_HOSTS = ["fcm.googleapis.com", "push.services.mozilla.com", "notify.windows.com", "push.apple.com"];

/** Whether a Web Push endpoint's host is one of the allowed push services (equal to one, or below it). */
export function webPushHostAllowed(host: string, allowed: string[] | "any"): boolean {
  if (allowed === "any") return true;
  const h = host.toLowerCase().replace(/\.$/, "");
  return allowed.some((a) => h === a || h.endsWith(`.${a}`));
}

const base64url = /^[A-Za-z0-9_-]+$/;

function urlVar(get: (n: string) => string | undefined, name: string, def: string): string {
  const v = get(name) ?? def;
  if (!/^https?:\/\/[^/\s]+\/?$/.test(v)) throw new ConfigError(name, `must be a base URL such as ${def}, got "${v}"`);
  return v.replace(/\/$/, "");
}

function fileVar(get: (n: string) => string | undefined, name: string): string | undefined {
  const v = get(name);
  if (v !== undefined && !existsSync(v)) throw new ConfigError(name, `file not found: ${v}`);
  return v;
}

export function pushConfigFrom(get: (n: string) => string | undefined, isProduction: boolean, dataDir: string): PushConfig {
  const subject = get("VAPID_SUBJECT") ?? "mailto:push@chatwire.invalid";
  if (!/^(mailto:|https:\/\/)\S+$/.test(subject)) throw new ConfigError("VAPID_SUBJECT", `must be a mailto: or https: URL, got "${subject}"`);
  const publicKey = get("VAPID_PUBLIC_KEY");
  const privateKey = get("VAPID_PRIVATE_KEY");
  let vapid: PushConfig["vapid"];
  if (publicKey !== undefined || privateKey !== undefined) {
    if (publicKey === undefined) throw new ConfigError("VAPID_PUBLIC_KEY", "is required when VAPID_PRIVATE_KEY is set");
    if (privateKey === undefined) throw new ConfigError("VAPID_PRIVATE_KEY", "is required when VAPID_PUBLIC_KEY is set");
    if (!base64url.test(publicKey) || Buffer.from(publicKey, "base64url").length !== 65) {
      throw new ConfigError("VAPID_PUBLIC_KEY", "must be a P-256 public key, 65 bytes in base64url (npx web-push generate-vapid-keys)");
    }
    if (!base64url.test(privateKey) || Buffer.from(privateKey, "base64url").length !== 32) {
      throw new ConfigError("VAPID_PRIVATE_KEY", "must be a P-256 private key, 32 bytes in base64url (npx web-push generate-vapid-keys)");
    }
    vapid = { publicKey, privateKey, subject };
  } else if (!isProduction) {
    vapid = { generateInto: dataDir, subject };
  }

  const fcmFile = fileVar(get, "FCM_SERVICE_ACCOUNT_FILE");
  const fcm = fcmFile ? { serviceAccountFile: fcmFile, endpoint: urlVar(get, "FCM_ENDPOINT", "https://fcm.googleapis.com") } : undefined;

  const apnsVars = ["APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC"] as const;
  const apnsSet = apnsVars.filter((v) => get(v) !== undefined);
  if (apnsSet.length > 0 && apnsSet.length < apnsVars.length) {
    const missing = apnsVars.find((v) => get(v) === undefined)!;
    throw new ConfigError(missing, `is required when ${apnsSet.join(", ")} is set (APNs token auth needs all four)`);
  }
  const apns =
    apnsSet.length === apnsVars.length
      ? {
          keyFile: fileVar(get, "APNS_KEY_FILE")!,
          keyId: get("APNS_KEY_ID")!,
          teamId: get("APNS_TEAM_ID")!,
          topic: get("APNS_TOPIC")!,
          endpoint: urlVar(get, "APNS_ENDPOINT", "https://api.push.apple.com"),
          sandboxEndpoint: urlVar(get, "APNS_SANDBOX_ENDPOINT", "https://api.sandbox.push.apple.com"),
        }
      : undefined;

  return {
    enabled: boolVar(get, "PUSH_ENABLED", true),
    vapid,
    fcm,
    apns,
    collapseMs: intVar(get, "PUSH_COLLAPSE_MS", 1000, 0, 60_000),
    maxAttempts: intVar(get, "PUSH_MAX_ATTEMPTS", 5, 1, 20),
    webPushHosts: webPushHostsVar(get("WEB_PUSH_ALLOWED_HOSTS")),
  };
}

function webPushHostsVar(raw: string | undefined): string[] | "any" {
  if (raw === undefined) return DEFAULT_WEB_PUSH_HOSTS;
  if (raw.trim() === "*") return "any";
  const hosts = raw
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  for (const h of hosts) {
    if (!/^[a-z0-9.-]+$|^\[[0-9a-f:]+\]$/.test(h))
      throw new ConfigError("WEB_PUSH_ALLOWED_HOSTS", `"${h}" is not a host name such as push.services.mozilla.com (or * for any)`);
  }
  if (hosts.length === 0) throw new ConfigError("WEB_PUSH_ALLOWED_HOSTS", "lists no host (unset it for the browsers' push services, or * for any)");
  return hosts;
}
