import { describe, expect, test } from "vitest";
import { DEFAULT_WEB_PUSH_HOSTS, webPushHostAllowed } from "./push-config.js";

describe("webPushHostAllowed", () => {
  test("the browsers' push services and their subdomains, nothing else", () => {
    for (const host of ["fcm.googleapis.com", "updates.push.services.mozilla.com", "wns2-par02p.notify.windows.com", "web.push.apple.com"]) {
      expect(webPushHostAllowed(host, DEFAULT_WEB_PUSH_HOSTS), host).toBe(true);
    }
    for (const host of ["evil-fcm.googleapis.com.example", "127.0.0.1", "metadata.google.internal", "xpush.apple.com"]) {
      expect(webPushHostAllowed(host, DEFAULT_WEB_PUSH_HOSTS), host).toBe(false);
    }
    expect(webPushHostAllowed("anything.example", "any")).toBe(true);
  });
});
