import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http2 from "node:http2";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError, loadConfig } from "../config.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { ServerReflection, ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { grpcJsServerStream, grpcJsUnary, firstMessage } from "./helpers/grpc-js.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUF = path.join(ROOT, "node_modules/.bin/buf");

let dir: string;
let certFile: string;
let keyFile: string;
let ca: Buffer;
let s: TestServer;

/** A self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI. */
async function makeCertificate(): Promise<void> {
  try {
    await run("openssl", ["version"]);
  } catch (err) {
    throw new Error(`the openssl CLI is needed to make a test certificate (apt-get install openssl): ${(err as Error).message}`);
  }
  dir = await mkdtemp(path.join(os.tmpdir(), "chatwire-tls-"));
  certFile = path.join(dir, "cert.pem");
  keyFile = path.join(dir, "key.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  ca = await readFile(certFile);
}

beforeAll(async () => {
  await makeCertificate();
  s = await startTestServer({ TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile });
});
afterAll(async () => {
  await s?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface HttpsAnswer {
  status: number | undefined;
  httpVersion: string;
  alpn: string | false | null;
  body: string;
}

/** One request with node:https (HTTP/1.1 only), trusting the test certificate. */
function httpsRequest(urlPath: string, init: { method?: string; headers?: Record<string, string>; body?: string; ca?: Buffer } = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${s.url}${urlPath}`,
      { method: init.method ?? "GET", headers: init.headers, ca: "ca" in init ? init.ca : ca, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode, httpVersion: res.httpVersion, alpn: (res.socket as tls.TLSSocket).alpnProtocol, body }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** The protocol the server picks by ALPN for a client offering `offer`. */
function negotiate(offer: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: s.port, ca, ALPNProtocols: offer }, () => {
      resolve(socket.alpnProtocol ?? false);
      socket.end();
    });
    socket.on("error", reject);
  });
}

async function listServicesOver(transport: Transport): Promise<string[]> {
  async function* requests() {
    yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "*" } });
  }
  for await (const res of createClient(ServerReflection, transport).serverReflectionInfo(requests())) {
    if (res.messageResponse.case !== "listServicesResponse") throw new Error(`unexpected ${res.messageResponse.case}`);
    return res.messageResponse.value.service.map((svc) => svc.name).sort();
  }
  throw new Error("reflection stream ended without an answer");
}

async function firstWatch(transport: Transport): Promise<Status> {
  const abort = new AbortController();
  try {
    for await (const res of createClient(Health, transport).watch({ service: "" }, { signal: abort.signal })) return res.status;
    throw new Error("watch ended without a message");
  } finally {
    abort.abort();
  }
}

const EXPECTED_SERVICES = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

describe("TLS (TLS_CERT_FILE, TLS_KEY_FILE)", () => {
  test("the server reports an https URL", () => {
    expect(s.url).toBe(`https://127.0.0.1:${s.port}`);
    expect(s.config.tls).toEqual({ certFile, keyFile });
  });

  test("ALPN offers h2 and falls back to http/1.1", async () => {
    expect(await negotiate(["h2", "http/1.1"])).toBe("h2");
    expect(await negotiate(["http/1.1"])).toBe("http/1.1");
  });

  test("GET /healthz over https (HTTP/1.1)", async () => {
    const res = await httpsRequest("/healthz");
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(JSON.parse(res.body)).toEqual({ status: "ok" });
  });

  test("GET /healthz over https (HTTP/2)", async () => {
    const session = http2.connect(s.url, { ca });
    try {
      const { status, body } = await new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
        const req = session.request({ ":path": "/healthz" });
        let body = "";
        let status: number | undefined;
        req.on("response", (h) => (status = h[":status"]));
        req.setEncoding("utf8").on("data", (c: string) => (body += c));
        req.on("end", () => resolve({ status, body }));
        req.on("error", reject);
        req.end();
      });
      expect(status).toBe(200);
      expect(JSON.parse(body)).toEqual({ status: "ok" });
      expect(session.alpnProtocol).toBe("h2");
    } finally {
      session.close();
    }
  });

  test("a client that does not trust the certificate is refused by its own verification", async () => {
    await expect(httpsRequest("/healthz", { ca: undefined })).rejects.toMatchObject({ code: "DEPTH_ZERO_SELF_SIGNED_CERT" });
  });

  test("cleartext HTTP on the TLS port gets no answer", async () => {
    await expect(fetch(`http://127.0.0.1:${s.port}/healthz`)).rejects.toThrow();
  });

  test("Connect JSON with curl-style https POST (HTTP/1.1)", async () => {
    const res = await httpsRequest("/grpc.health.v1.Health/Check", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"service":""}',
    });
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(JSON.parse(res.body)).toEqual({ status: "SERVING" });
  });

  describe.each<[name: string, make: () => Transport]>([
    ["Connect JSON (HTTP/1.1)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", nodeOptions: { ca } })],
    ["Connect binary (HTTP/1.1)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", useBinaryFormat: true, nodeOptions: { ca } })],
    ["Connect JSON (HTTP/2)", () => createConnectTransport({ baseUrl: s.url, httpVersion: "2", nodeOptions: { ca } })],
    ["gRPC (HTTP/2)", () => createGrpcTransport({ baseUrl: s.url, nodeOptions: { ca } })],
  ])("connect-node %s over TLS", (name, make) => {
    test("health Check and Watch", async () => {
      const transport = make();
      const health = createClient(Health, transport);
      expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
      expect(await firstWatch(transport)).toBe(Status.SERVING);
    });

    if (name.includes("HTTP/2")) {
      test("reflection (bidi) lists the health and reflection services", async () => {
        expect(await listServicesOver(make())).toEqual(expect.arrayContaining(EXPECTED_SERVICES));
      });
    }
  });

  describe("@grpc/grpc-js with grpc.credentials.createSsl(ca)", () => {
    let client: grpc.Client;
    beforeAll(() => {
      client = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createSsl(ca));
    });
    afterAll(() => client.close());

    test("health Check", async () => {
      expect((await grpcJsUnary(client, Health.method.check, { service: "" })).status).toBe(Status.SERVING);
    });

    test("health Watch streams", async () => {
      const first = (await firstMessage(grpcJsServerStream(client, Health.method.watch, { service: "" }))).status;
      expect(first).toBe(Status.SERVING);
    });

    test("a client without the CA fails with UNAVAILABLE", async () => {
      const untrusting = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createSsl());
      try {
        const err = await grpcJsUnary(untrusting, Health.method.check, { service: "" }, new grpc.Metadata()).then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
        expect(err?.code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        untrusting.close();
      }
    });
  });

  describe("buf curl --cacert", () => {
    test.each([
      ["grpc", ["--protocol", "grpc"]],
      ["connect", ["--protocol", "connect"]],
      ["grpcweb", ["--protocol", "grpcweb"]],
    ])("Health/Check over https with reflection (%s)", async (_name, flags) => {
      const { stdout } = await run(BUF, ["curl", "--cacert", certFile, ...flags, `${s.url}/grpc.health.v1.Health/Check`], {
        cwd: ROOT,
        timeout: 20_000,
      });
      expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
    });
  });
});

describe("TLS configuration errors", () => {
  const base = { PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "silent" };
  const configError = (env: Record<string, string>): ConfigError => {
    try {
      loadConfig({ ...base, ...env });
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error("loadConfig accepted the configuration");
  };

  test("TLS_CERT_FILE without TLS_KEY_FILE names TLS_KEY_FILE", () => {
    const err = configError({ TLS_CERT_FILE: certFile });
    expect(err.variable).toBe("TLS_KEY_FILE");
    expect(err.message).toMatch(/^TLS_KEY_FILE: /);
  });

  test("TLS_KEY_FILE without TLS_CERT_FILE names TLS_CERT_FILE", () => {
    expect(configError({ TLS_KEY_FILE: keyFile }).variable).toBe("TLS_CERT_FILE");
  });

  test("a certificate file that does not exist names TLS_CERT_FILE", () => {
    const err = configError({ TLS_CERT_FILE: path.join(dir, "missing.pem"), TLS_KEY_FILE: keyFile });
    expect(err.variable).toBe("TLS_CERT_FILE");
    expect(err.message).toContain("missing.pem");
  });

  test("both files present: TLS is on", () => {
    expect(loadConfig({ ...base, TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile }).tls).toEqual({ certFile, keyFile });
  });
});
