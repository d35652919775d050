import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { bearerTransport, DEV_CODE } from "./helpers/login.js";
import { FakeFcm, scratchDir } from "./helpers/push-fakes.js";
import { phoneSequence } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The push role apart (CHATWIRE_ROLES): one instance runs the API and the
// message worker, another only push delivery. The worker puts what it stored
// on the push stream; the push instance consumes its partitions and sends.
// Always through JetStream: NATS_URL, else the NATS every machine runs on 127.0.0.1.
const NATS = process.env.NATS_URL || "nats://127.0.0.1:4222";
const phone = phoneSequence("718");
const started: TestServer[] = [];
let fcm: FakeFcm | undefined;

afterAll(async () => {
  for (const s of started.reverse()) await s.stop();
  await fcm?.close();
});

test("an instance with only the push role delivers what another instance's worker stored", async () => {
  fcm = await FakeFcm.start(await scratchDir());
  const env = { NATS_URL: NATS, FCM_SERVICE_ACCOUNT_FILE: fcm.serviceAccountFile, FCM_ENDPOINT: fcm.url, PUSH_COLLAPSE_MS: "200" };
  const api = await startTestServer({ ...env, CHATWIRE_ROLES: "api,worker" });
  started.push(api);
  const push = await startTestServer({ ...env, CHATWIRE_ROLES: "push" }, { shareWith: api });
  started.push(push);

  const anon = createClient(AuthService, createConnectTransport({ baseUrl: api.url, httpVersion: "1.1" }));
  const login = async (pushToken: string) => {
    const n = phone();
    await anon.sendOTP({ phoneNumber: n });
    return anon.verifyOTP({ phoneNumber: n, otpCode: DEV_CODE, deviceId: "phone", pushToken });
  };
  const [a, b] = [await login(""), await login("fcm-token-b")];
  const chat = createClient(ChatService, bearerTransport(api.url, a.accessToken));
  const c = await chat.createConversation({ participantIds: [b.user!.id] });
  await chat.sendMessage({ conversationId: c.conversation!.id, content: "wake up", clientMessageId: "roles-1" });

  const deadline = Date.now() + 20_000;
  while (fcm.delivered("fcm-token-b").length === 0) {
    if (Date.now() > deadline) throw new Error("no push arrived");
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(fcm.delivered("fcm-token-b")[0]!.body.data).toEqual({ conversation_id: c.conversation!.id, unread: "1", badge: "1" });
  // Only the push instance works the push partitions.
  expect((await api.server.readiness()).checks.push).toBeUndefined();
  expect((await push.server.readiness()).checks.push).toBe("16 of 16 partitions");
}, 60_000);
