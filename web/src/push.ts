import { type ChatwireClient, PushPlatform } from "@chatwire/client";

// Web Push in the browser client: the service worker (public/sw.js) shows the
// notifications; this module registers it and, on the user's click, subscribes
// with the server's VAPID key and registers the subscription for this session.

/** Registers the service worker (no permission needed); undefined where the browser has none. */
export async function registerServiceWorker(): Promise<ServiceWorkerRegistration | undefined> {
  if (!("serviceWorker" in navigator)) return undefined;
  return navigator.serviceWorker.register("/sw.js", { scope: "/" });
}

function bytes(base64url: string): Uint8Array<ArrayBuffer> {
  const b64 = base64url
    .replaceAll("-", "+")
    .replaceAll("_", "/")
    .padEnd(Math.ceil(base64url.length / 4) * 4, "=");
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function sameKey(a: ArrayBuffer | null | undefined, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.length) return false;
  const x = new Uint8Array(a);
  return x.every((v, i) => v === b[i]);
}

/**
 * Asks for permission, subscribes (again, if the server's key changed) and
 * registers the subscription for this session. Returns what to tell the user.
 */
export async function enablePush(client: ChatwireClient): Promise<string> {
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return "This browser cannot receive push notifications.";
  if ((await Notification.requestPermission()) !== "granted") return "Notifications are blocked for this site.";
  const registration = await navigator.serviceWorker.ready;
  const key = bytes((await client.push.getWebPushKey({})).publicKey);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const { keys } = subscription.toJSON();
  await client.push.registerPushToken({
    platform: PushPlatform.WEB_PUSH,
    webPush: { endpoint: subscription.endpoint, p256dh: keys?.p256dh ?? "", auth: keys?.auth ?? "" },
  });
  return "Notifications are on for this browser.";
}
