import { type Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { ChatService } from "../../../gen/chat/chat_pb.js";
import { StatusService } from "../../../gen/status/status_pb.js";
import { UserService } from "../../../gen/user/user_pb.js";
import { bearerTransport, login } from "./login.js";
import type { TestServer } from "./test-server.js";

// Users logged in through the seed flow, with generated clients for the
// user, status and chat services, and curl-style JSON calls.

export interface SocialUser {
  id: string;
  phone: string;
  token: string;
  users: Client<typeof UserService>;
  statuses: Client<typeof StatusService>;
  chat: Client<typeof ChatService>;
}

/** Valid, distinct US numbers per call site: `prefix` keeps test files apart. */
export function phoneSequence(prefix: string): () => string {
  let n = 0;
  return () => `+1415${prefix}${String(n++).padStart(4, "0")}`;
}

export async function socialUser(s: TestServer, phone: string, protocol: "grpc" | "connect" = "connect"): Promise<SocialUser> {
  const u = await login(s.url, phone);
  const t = bearerTransport(s.url, u.accessToken, protocol);
  return {
    id: u.id,
    phone,
    token: u.accessToken,
    users: createClient(UserService, t),
    statuses: createClient(StatusService, t),
    chat: createClient(ChatService, t),
  };
}

/** POSTs JSON the way curl does (`service` like "user.UserService") and returns status and parsed body. */
export async function curlJson(s: TestServer, token: string | undefined, service: string, method: string, body: unknown) {
  const res = await fetch(`${s.url}/${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

/** The Connect code a call fails with; throws if it succeeds. */
export async function codeOf(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error("expected the call to fail");
}

/** The error a call fails with; throws if it succeeds. */
export async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}
