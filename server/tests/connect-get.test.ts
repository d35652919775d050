import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ChatService } from "../../gen/chat/chat_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { StatusService } from "../../gen/status/status_pb.js";
import { UserService } from "../../gen/user/user_pb.js";
import { login, type LoggedIn } from "./helpers/login.js";
import { phoneSequence } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Connect GET for the RPCs without side effects (idempotency_level =
// NO_SIDE_EFFECTS in the protos): curl and browsers can GET them (the request
// message in the query string), and a Connect-Web client with useHttpGet does.
// Every other RPC answers GET with 405. Driven by the descriptors.

const SERVICES = [AuthService, ChatService, RealtimeService, UserService, StatusService];
const readOnly = SERVICES.flatMap((s) =>
  s.methods.filter((m) => m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS).map((m) => `${s.typeName}/${m.name}`),
);
const others = SERVICES.flatMap((s) =>
  s.methods.filter((m) => m.methodKind === "unary" && m.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS).map((m) => `${s.typeName}/${m.name}`),
);

let s: TestServer;
let a: LoggedIn;
let b: LoggedIn;
const phone = phoneSequence("771");
beforeAll(async () => {
  s = await startTestServer();
  a = await login(s.url, phone());
  b = await login(s.url, phone());
});
afterAll(async () => {
  await s?.stop();
});

/** curl -G: the Connect GET form of a unary call with a JSON message. */
function get(path: string, message: unknown, token = a.accessToken): Promise<Response> {
  const q = new URLSearchParams({ connect: "v1", encoding: "json", message: JSON.stringify(message) });
  return fetch(`${s.url}/${path}?${q}`, { headers: { authorization: `Bearer ${token}` } });
}

describe("Connect GET", () => {
  test("the read-only RPCs are the ones the issue names, and more than a handful", () => {
    expect(readOnly).toEqual(
      expect.arrayContaining([
        "chat.ChatService/GetConversations",
        "chat.ChatService/ListMessages",
        "user.UserService/GetMe",
        "user.UserService/GetUsers",
        "auth.AuthService/ListSessions",
      ]),
    );
    expect(readOnly.length).toBeGreaterThanOrEqual(15);
  });

  test.each(readOnly)("GET %s is served (200, or a Connect error that is not about the method)", async (path) => {
    const res = await get(path, {});
    expect(res.status, await res.clone().text()).not.toBe(405);
    const body = (await res.json()) as { code?: string };
    if (res.status !== 200) expect(["invalid_argument", "not_found"]).toContain(body.code);
  });

  test.each(others)("GET %s is refused with 405 (it has side effects: POST only)", async (path) => {
    const res = await get(path, {});
    expect(res.status).toBe(405);
    await res.body?.cancel();
  });

  test("GET answers what POST answers, and needs the same token", async () => {
    const byGet = await get("user.UserService/GetMe", {});
    const byPost = await fetch(`${s.url}/user.UserService/GetMe`, {
      method: "POST",
      headers: { authorization: `Bearer ${a.accessToken}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(await byGet.json()).toEqual(await byPost.json());
    const anonymous = await fetch(`${s.url}/user.UserService/GetMe?connect=v1&encoding=json&message=%7B%7D`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { code: string }).code).toBe("unauthenticated");
  });

  test("a Connect-Web client with useHttpGet lists messages over GET (binary, base64 in the URL)", async () => {
    const methods: string[] = [];
    const transport = createConnectTransport({
      baseUrl: s.url,
      useHttpGet: true,
      fetch: (input, init) => {
        methods.push(init?.method ?? "GET");
        return fetch(input, init);
      },
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${a.accessToken}`);
          return next(req);
        },
      ],
    });
    const chat = createClient(ChatService, transport);
    const { conversation } = await chat.createConversation({ participantIds: [b.id] });
    await chat.sendMessage({ conversationId: conversation!.id, content: "over GET", clientMessageId: "get-1" });
    await expect
      .poll(async () => (await chat.listMessages({ conversationId: conversation!.id })).messages.map((m) => m.content), { timeout: 15_000 })
      .toEqual(["over GET"]);
    expect(methods).toContain("GET");
    expect(methods.slice(0, 2)).toEqual(["POST", "POST"]);
  });
});
