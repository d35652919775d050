import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BUF, EXIT_UNAVAILABLE, EXIT_UNIMPLEMENTED, HEALTH_SCHEMA, ROOT, buf, bufEnv, jsonDocuments } from "./helpers/buf.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

const EXPECTED_SERVICES = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

beforeAll(() => {
  if (!existsSync(BUF)) throw new Error(`${BUF} not found: run \`npm install\` (the Buf CLI is a devDependency)`);
});

describe("buf curl against a running server", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  describe("gRPC (h2c) with the schema from server reflection", () => {
    test.each([
      ["default reflection protocol", []],
      ["--reflect-protocol grpc-v1", ["--reflect-protocol", "grpc-v1"]],
      ["--reflect-protocol grpc-v1alpha", ["--reflect-protocol", "grpc-v1alpha"]],
    ])("Health/Check answers SERVING (%s)", async (_name, extra) => {
      const r = await buf(["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...extra, `${s.url}/grpc.health.v1.Health/Check`]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ status: "SERVING" });
    });

    test("a request body is sent: Check of a named service", async () => {
      const r = await buf([
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        '{"service": "grpc.reflection.v1.ServerReflection"}',
        `${s.url}/grpc.health.v1.Health/Check`,
      ]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ status: "SERVING" });
    });

    test("--list-services lists Health and both reflection services", async () => {
      const r = await buf(["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", s.url]);
      expect(r.code).toBe(0);
      const services = r.stdout.trim().split("\n");
      // Other API services may be listed too; these three are always there.
      expect(services).toEqual(expect.arrayContaining(EXPECTED_SERVICES));
      for (const name of services) expect(name).toMatch(/^[a-z][\w]*(\.\w+)+$/i);
    });

    test("--list-methods lists Check, Watch and List of Health", async () => {
      const r = await buf(["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", s.url]);
      expect(r.code).toBe(0);
      const methods = r.stdout.trim().split("\n");
      expect(methods.filter((m) => m.startsWith("grpc.health.v1.Health/")).sort()).toEqual([
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/List",
        "grpc.health.v1.Health/Watch",
      ]);
      expect(methods).toContain("grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
      expect(methods).toContain("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
    });

    test("Health/List returns the server and every service as SERVING", async () => {
      const r = await buf(["curl", "--protocol", "grpc", "--http2-prior-knowledge", `${s.url}/grpc.health.v1.Health/List`]);
      expect(r.code).toBe(0);
      const { statuses } = JSON.parse(r.stdout) as { statuses: Record<string, { status: string }> };
      expect(Object.keys(statuses)).toEqual(expect.arrayContaining(["", ...EXPECTED_SERVICES]));
      for (const v of Object.values(statuses)) expect(v.status).toBe("SERVING");
    });
  });

  // Reflection is a bidi stream, which needs HTTP/2; over HTTP/1.1 the schema comes from the proto files.
  describe.each([
    ["Connect", "connect"],
    ["gRPC-Web", "grpcweb"],
  ])("%s over HTTP/1.1 with --schema", (_name, protocol) => {
    test("Health/Check answers SERVING, over HTTP/1.1", async () => {
      const r = await buf(["curl", "--protocol", protocol, "--schema", HEALTH_SCHEMA, "-v", `${s.url}/grpc.health.v1.Health/Check`]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ status: "SERVING" });
      // -v shows the exchange: an HTTP/1.1 response with this protocol's content type.
      expect(r.stderr).toMatch(/< \(#1\) HTTP\/1\.1 200 OK/);
      expect(r.stderr).toContain(protocol === "connect" ? "Content-Type: application/proto" : "Content-Type: application/grpc-web+proto");
    });

    test("the schema may also name the .proto file", async () => {
      const r = await buf(["curl", "--protocol", protocol, "--schema", `${HEALTH_SCHEMA}/health/v1/health.proto`, `${s.url}/grpc.health.v1.Health/Check`]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ status: "SERVING" });
    });

    test("Check of an unknown service fails with not_found", async () => {
      const r = await buf(["curl", "--protocol", protocol, "--schema", HEALTH_SCHEMA, "-d", '{"service": "no.Such"}', `${s.url}/grpc.health.v1.Health/Check`]);
      expect(r.code).toBe(5 << 3);
      expect(r.stderr).toContain('"code": "not_found"');
    });
  });

  test("--schema without reflection also lists the methods", async () => {
    const r = await buf(["curl", "--schema", HEALTH_SCHEMA, "--list-methods"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").sort()).toEqual(["grpc.health.v1.Health/Check", "grpc.health.v1.Health/List", "grpc.health.v1.Health/Watch"]);
  });

  describe("errors", () => {
    let dir: string;
    let ghost: string;
    beforeAll(async () => {
      // A schema for a service this server does not serve: the call reaches the server.
      dir = await mkdtemp(path.join(os.tmpdir(), "chatwire-buf-"));
      ghost = path.join(dir, "ghost.proto");
      await writeFile(ghost, 'syntax = "proto3";\npackage ghost.v1;\nmessage Empty {}\nservice GhostService { rpc Haunt(Empty) returns (Empty); }\n');
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    test("an unknown method (via reflection): non-zero exit naming the missing method", async () => {
      const r = await buf(["curl", "--protocol", "grpc", "--http2-prior-knowledge", `${s.url}/grpc.health.v1.Health/Nope`]);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/no such method/i);
      expect(r.stderr).toContain("Nope");
    });

    test("an unknown service (via reflection): non-zero exit, not found", async () => {
      const r = await buf(["curl", "--protocol", "grpc", "--http2-prior-knowledge", `${s.url}/no.Such/Thing`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/failed to find service named "no\.Such"/);
    });

    test.each([
      ["grpc", ["--protocol", "grpc", "--http2-prior-knowledge"]],
      ["connect", ["--protocol", "connect"]],
      ["grpcweb", ["--protocol", "grpcweb"]],
    ])("a method the server does not serve is unimplemented (%s)", async (_name, flags) => {
      const r = await buf(["curl", ...flags, "--schema", ghost, `${s.url}/ghost.v1.GhostService/Haunt`]);
      expect(r.code).toBe(EXIT_UNIMPLEMENTED);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain('"code": "unimplemented"');
    });
  });
});

describe("buf curl server streaming: Health/Watch", () => {
  test("prints each state change and ends with unavailable when the server stops", async () => {
    const s = await startTestServer();
    let stopped = false;
    const child = spawn(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", `${s.url}/grpc.health.v1.Health/Watch`], {
      cwd: ROOT,
      env: bufEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      let stderr = "";
      const waiters: Array<() => void> = [];
      child.stdout.setEncoding("utf8").on("data", (c: string) => {
        stdout += c;
        for (const w of waiters.splice(0)) w();
      });
      child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      const untilDocuments = (n: number): Promise<unknown[]> =>
        new Promise((resolve, reject) => {
          const check = (): void => {
            const docs = jsonDocuments(stdout);
            if (docs.length >= n) resolve(docs);
            else waiters.push(check);
          };
          void exited.then((code) => reject(new Error(`buf curl exited (${code}) early; stdout: ${stdout} stderr: ${stderr}`)));
          check();
        });

      expect(await untilDocuments(1)).toEqual([{ status: "SERVING" }]);
      s.server.ctx.health.set("", "NOT_SERVING");
      expect(await untilDocuments(2)).toEqual([{ status: "SERVING" }, { status: "NOT_SERVING" }]);
      s.server.ctx.health.set("", "SERVING");
      expect(await untilDocuments(3)).toEqual([{ status: "SERVING" }, { status: "NOT_SERVING" }, { status: "SERVING" }]);

      // A graceful stop ends the open stream with Unavailable; buf curl exits with that code.
      await s.stop();
      stopped = true;
      expect(await exited).toBe(EXIT_UNAVAILABLE);
      expect(stderr).toContain('"code": "unavailable"');
      expect(stderr).toContain("shutting down");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      if (!stopped) await s.stop();
    }
  });
});
