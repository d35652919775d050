import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { ServerReflection, ServerReflectionRequestSchema, type ServerReflectionResponse } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { grpcJsBidi, grpcJsClient, grpcJsServerStream, grpcJsUnary, firstMessage } from "./helpers/grpc-js.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.stop();
});

const EXPECTED_SERVICES = [
  "auth.AuthService",
  "chat.ChatService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "media.MediaService",
  "push.PushService",
  "realtime.RealtimeService",
  "status.StatusService",
  "user.UserService",
];

// Every connect-node transport a client can pick, by protocol, encoding and HTTP version.
const transports: Array<[name: string, make: () => Transport, caps: { bidi: boolean }]> = [
  ["gRPC (HTTP/2)", () => createGrpcTransport({ baseUrl: s.url }), { bidi: true }],
  ["gRPC-Web binary (HTTP/1.1)", () => createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1" }), { bidi: false }],
  ["gRPC-Web JSON (HTTP/1.1)", () => createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1", useBinaryFormat: false }), { bidi: false }],
  ["Connect JSON (HTTP/1.1)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }), { bidi: false }],
  ["Connect binary (HTTP/1.1)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", useBinaryFormat: true }), { bidi: false }],
  ["Connect JSON (HTTP/2)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "2" }), { bidi: true }],
  ["Connect binary (HTTP/2)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "2", useBinaryFormat: true }), { bidi: true }],
];

async function listServicesOver(transport: Transport): Promise<string[]> {
  const client = createClient(ServerReflection, transport);
  async function* requests() {
    yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "*" } });
  }
  for await (const res of client.serverReflectionInfo(requests())) {
    if (res.messageResponse.case !== "listServicesResponse") throw new Error(`unexpected ${res.messageResponse.case}`);
    return res.messageResponse.value.service.map((svc) => svc.name).sort();
  }
  throw new Error("reflection stream ended without an answer");
}

describe.each(transports)("%s", (_name, makeTransport) => {
  test("health Check answers SERVING", async () => {
    const health = createClient(Health, makeTransport());
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    expect((await health.check({ service: "grpc.health.v1.Health" })).status).toBe(Status.SERVING);
  });

  test("health Check of an unknown service is NotFound", async () => {
    const health = createClient(Health, makeTransport());
    await expect(health.check({ service: "no.Such" })).rejects.toMatchObject({ code: Code.NotFound });
  });

  test("health Watch streams the current state, then each change", async () => {
    const health = createClient(Health, makeTransport());
    const name = `watch.${Math.random().toString(36).slice(2)}`;
    s.server.ctx.health.set(name, "SERVING");
    const abort = new AbortController();
    const seen: Status[] = [];
    for await (const res of health.watch({ service: name }, { signal: abort.signal })) {
      seen.push(res.status);
      if (seen.length === 1) s.server.ctx.health.set(name, "NOT_SERVING");
      if (seen.length === 2) break;
    }
    abort.abort();
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
  });
});

// Bidi streams need HTTP/2 end to end; over HTTP/1.1 only unary and server-streaming exist.
describe.each(transports.filter(([, , caps]) => caps.bidi))("%s bidi", (_name, makeTransport) => {
  test("reflection lists every service", async () => {
    expect(await listServicesOver(makeTransport())).toEqual(EXPECTED_SERVICES);
  });
});

describe("@grpc/grpc-js over h2c (what grpcurl, Postman and Node stubs use)", () => {
  let client: grpc.Client;
  beforeAll(() => {
    client = grpcJsClient(s.url);
  });
  afterAll(() => client.close());

  test("health Check", async () => {
    const res = await grpcJsUnary(client, Health.method.check, { service: "" });
    expect(res.status).toBe(Status.SERVING);
  });

  test("health Watch streams", async () => {
    const first = (await firstMessage(grpcJsServerStream(client, Health.method.watch, { service: "" }))).status;
    expect(first).toBe(Status.SERVING);
  });

  test("reflection list_services", async () => {
    const call = grpcJsBidi(client, ServerReflection.method.serverReflectionInfo);
    const answer = new Promise<ServerReflectionResponse>((resolve, reject) => {
      call.once("data", resolve);
      call.once("error", reject);
    });
    call.write(create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }));
    const res = await answer;
    call.end();
    expect(res.messageResponse.case).toBe("listServicesResponse");
    if (res.messageResponse.case === "listServicesResponse") {
      expect(res.messageResponse.value.service.map((x) => x.name).sort()).toEqual(EXPECTED_SERVICES);
    }
  });

  test("an unknown method is UNIMPLEMENTED", async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      client.makeUnaryRequest(
        "/no.Such/Thing",
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (e) => resolve(e!),
      );
    });
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

describe("plain fetch with JSON (curl users)", () => {
  const post = (path: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }) =>
    fetch(`${s.url}${path}`, { method: "POST", headers, body });

  test("health Check", async () => {
    const res = await post("/grpc.health.v1.Health/Check", '{"service":""}');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });
  });

  test("unknown service or method: 404", async () => {
    expect((await post("/no.Such/Thing", "{}")).status).toBe(404);
    expect((await post("/grpc.health.v1.Health/Nope", "{}")).status).toBe(404);
  });

  test("malformed JSON: invalid_argument", async () => {
    const res = await post("/grpc.health.v1.Health/Check", '{"service": ');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument" });
  });

  test("a field of the wrong type: invalid_argument naming it", async () => {
    const res = await post("/grpc.health.v1.Health/Check", '{"service": 42}');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toContain("service");
  });

  test("a field this server does not know (a newer client) is ignored, as protobuf requires", async () => {
    const res = await post("/grpc.health.v1.Health/Check", '{"service": "", "added_in_a_later_version": 1}');
    expect(res.status).toBe(200);
  });

  test("wrong content type: 415", async () => {
    const res = await post("/grpc.health.v1.Health/Check", "{}", { "content-type": "text/plain" });
    expect(res.status).toBe(415);
  });

  test("an oversize body is refused with resource_exhausted, not internal", async () => {
    const big = JSON.stringify({ service: "x".repeat(s.config.maxMessageBytes + 10) });
    const res = await post("/grpc.health.v1.Health/Check", big);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(await res.json()).toMatchObject({ code: "resource_exhausted" });
  });

  test("oversize over gRPC is RESOURCE_EXHAUSTED", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: s.url }));
    const err = await health.check({ service: "x".repeat(s.config.maxMessageBytes + 10) }).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.ResourceExhausted);
  });

  test("CORS preflight allows Connect headers and Authorization", async () => {
    const res = await fetch(`${s.url}/grpc.health.v1.Health/Check`, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,authorization,connect-protocol-version",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    const allowed = res.headers.get("access-control-allow-headers")!.toLowerCase();
    for (const h of ["authorization", "content-type", "connect-protocol-version", "grpc-timeout", "x-grpc-web"]) {
      expect(allowed).toContain(h);
    }
    expect(res.headers.get("access-control-allow-methods")).toContain("POST");
  });
});
