// Chatwire's service worker (served at /sw.js, scope /): shows a notification
// for each Web Push the server sends. The payload, decrypted by the browser, is
// JSON: conversation_id, unread (in that conversation), badge (across them), and
// title and body only when the user allows previews (push.PushSettings). One
// notification per conversation (its tag), replaced by the next.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  const conversationId = typeof data.conversation_id === "string" ? data.conversation_id : "";
  const unread = Number(data.unread) || 0;
  const title = typeof data.title === "string" && data.title ? data.title : "Chatwire";
  const body = typeof data.body === "string" && data.body ? data.body : unread > 1 ? `${unread} new messages` : "New message";
  const shown = self.registration.showNotification(title, {
    body,
    tag: conversationId || "chatwire",
    renotify: true,
    icon: "/favicon.svg",
    data: { conversationId },
  });
  const badge = "setAppBadge" in navigator ? navigator.setAppBadge(Number(data.badge) || 0).catch(() => undefined) : undefined;
  event.waitUntil(Promise.all([shown, badge]));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const conversationId = event.notification.data?.conversationId ?? "";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => "focus" in w);
      if (open) {
        open.postMessage({ type: "open-conversation", conversationId });
        return open.focus();
      }
      return self.clients.openWindow(conversationId ? `/#conversation=${conversationId}` : "/");
    }),
  );
});
