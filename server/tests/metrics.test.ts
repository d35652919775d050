import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { bearerTransport, login } from "./helpers/login.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { phoneSequence } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The domain metrics on /metrics, as Prometheus scrapes them, on either profile:
// OTP sends and checks by result, streams opened and devices online, messages
// stored, and the queue's backlog.

let s: TestServer;
const phone = phoneSequence("772");
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.stop();
});

/** One sample's value from the exposition text (NaN when absent). */
async function sample(name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `));
  return line ? Number(line.split(" ").at(-1)) : Number.NaN;
}

function post(method: string, body: unknown): Promise<Response> {
  return fetch(`${s.url}/auth.AuthService/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

describe("/metrics", () => {
  test("OTP sends and checks are counted by result, spelled as on the wire", async () => {
    const p = phone();
    expect((await post("SendOTP", { phone_number: p })).status).toBe(200);
    expect((await post("SendOTP", { phone_number: p })).status).toBe(429);
    expect((await post("VerifyOTP", { phone_number: p, otp_code: "000000" })).status).toBe(401);
    expect((await post("VerifyOTP", { phone_number: p, otp_code: "123456" })).status).toBe(200);
    expect(await sample("chatwire_otp_sends_total", 'result="ok"')).toBeGreaterThanOrEqual(1);
    expect(await sample("chatwire_otp_sends_total", 'result="resource_exhausted"')).toBe(1);
    expect(await sample("chatwire_otp_checks_total", 'result="unauthenticated"')).toBe(1);
    expect(await sample("chatwire_otp_checks_total", 'result="ok"')).toBeGreaterThanOrEqual(1);
  });

  test("a device's stream shows as online and opened; a sent message as stored; the queue backlog is a number", async () => {
    const a = await login(s.url, phone());
    const b = await login(s.url, phone());
    const opened = (await sample("chatwire_realtime_streams_opened_total")) || 0;
    const sub = new Subscription(protocolTransport(s.url, b.accessToken, "connect"));
    try {
      await sub.untilKind("ready");
      expect(await sample("chatwire_devices_online")).toBe(1);
      expect(await sample("chatwire_realtime_streams_opened_total")).toBe(opened + 1);
      const chat = createClient(ChatService, bearerTransport(s.url, a.accessToken));
      const { conversation } = await chat.createConversation({ participantIds: [b.id] });
      const before = (await sample("chatwire_worker_messages_total", 'result="stored"')) || 0;
      await chat.sendMessage({ conversationId: conversation!.id, content: "counted", clientMessageId: "metrics-1" });
      await sub.untilKind("messageCreated");
      await expect.poll(() => sample("chatwire_worker_messages_total", 'result="stored"'), { timeout: 15_000 }).toBe(before + 1);
      expect(await sample("chatwire_queue_pending_messages")).toBeGreaterThanOrEqual(0);
      expect(await sample("chatwire_queue_oldest_pending_age_seconds")).toBeGreaterThanOrEqual(0);
    } finally {
      await sub.close();
    }
    await expect.poll(() => sample("chatwire_devices_online"), { timeout: 15_000 }).toBe(0);
  });
});
