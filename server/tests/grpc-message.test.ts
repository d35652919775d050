import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { UserService } from "../../gen/user/user_pb.js";
import { grpcMessageEncode } from "../http/grpc-message.js";
import { grpcJsClient, grpcJsServerStream, grpcJsUnary } from "./helpers/grpc-js.js";
import { login } from "./helpers/login.js";
import { phoneSequence } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// grpc-message as the gRPC spec encodes it, so @grpc/grpc-js (and Postman,
// which uses it) shows the server's message as written: error.details equals
// the message a Connect JSON client gets, on the lean fast path and through
// connect-node alike, for unary calls and streams.

test("the spec's encoding: only bytes outside 0x20-0x7E and % are escaped", () => {
  expect(grpcMessageEncode('phone_number: "1" must start with +, e.g. +90')).toBe('phone_number: "1" must start with +, e.g. +90');
  expect(grpcMessageEncode("100% ü\n")).toBe("100%25 %C3%BC%0A");
});

const phone = phoneSequence("773");

describe.each([
  ["the fast path", {}],
  ["connect-node", { RPC_FAST_PATH: "false" }],
])("over %s", (_name, env) => {
  let s: TestServer;
  let client: grpc.Client;
  beforeAll(async () => {
    s = await startTestServer(env);
    client = grpcJsClient(s.url);
  });
  afterAll(async () => {
    client?.close();
    await s?.stop();
  });

  /** What a Connect JSON client (curl) is told for the same call. */
  async function connectMessage(path: string, body: unknown, token?: string): Promise<string> {
    const res = await fetch(`${s.url}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return ((await res.json()) as { message: string }).message;
  }

  test("a unary error's details are the message as written (quotes, +, commas, colons)", async () => {
    const expected = await connectMessage("auth.AuthService/SendOTP", { phone_number: "12345" });
    expect(expected).toMatch(/[":+,]/);
    const err = (await grpcJsUnary(client, AuthService.method.sendOTP, { phoneNumber: "12345" }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe(expected);
  });

  test("non-ASCII text in a message survives (UTF-8, percent-encoded on the wire)", async () => {
    const u = await login(s.url, phone());
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${u.accessToken}`);
    const expected = await connectMessage("user.UserService/GetUsers", { user_ids: ["ğüş"] }, u.accessToken);
    expect(expected).toContain("ğüş");
    const err = (await grpcJsUnary(client, UserService.method.getUsers, { userIds: ["ğüş"] }, md).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.details).toBe(expected);
  });

  test("a stream's error details are the message as written", async () => {
    const expected = await connectMessage("realtime.RealtimeService/SendTyping", {});
    const stream = grpcJsServerStream(client, RealtimeService.method.subscribe, {});
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on("error", resolve);
      stream.on("data", () => undefined);
    });
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.details).toBe(expected);
  });
});
