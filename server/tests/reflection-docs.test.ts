import { readFileSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { reflectionExchange, type ReflectionVersion } from "./helpers/reflection.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// What Postman and `grpcurl describe` show: the proto comments, served by the
// real server's reflection (source_code_info from gen/descriptors.binpb), read
// with @grpc/grpc-js as those tools do.

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s?.stop();
});

async function fileOf(version: ReflectionVersion, symbol: string): Promise<FileDescriptorProto> {
  const [res] = await reflectionExchange(`127.0.0.1:${s.port}`, version, [{ fileContainingSymbol: symbol }]);
  expect(res!.messageResponse, JSON.stringify(res!.errorResponse)).toBe("fileDescriptorResponse");
  return fromBinary(FileDescriptorProtoSchema, new Uint8Array(res!.fileDescriptorResponse!.fileDescriptorProto[0]!));
}

/** The comment lines right above `rpc <name>(` in a proto file, as protoc reads them. */
function commentAbove(protoPath: string, rpc: string): string {
  const lines = readFileSync(new URL(`../../proto/${protoPath}`, import.meta.url), "utf8").split("\n");
  const at = lines.findIndex((l) => l.trim().startsWith(`rpc ${rpc}(`));
  const out: string[] = [];
  for (let i = at - 1; i >= 0 && lines[i]!.trim().startsWith("//"); i--) out.unshift(lines[i]!.trim().slice(2));
  return `${out.join("\n")}\n`;
}

function leadingComment(file: FileDescriptorProto, path: number[]): string | undefined {
  return file.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]))?.leadingComments;
}

describe.each<ReflectionVersion>(["v1", "v1alpha"])("reflection %s", (version) => {
  test("auth.AuthService.SendOTP carries its proto comment, word for word", async () => {
    const file = await fileOf(version, "auth.AuthService.SendOTP");
    const si = file.service.findIndex((x) => x.name === "AuthService");
    const mi = file.service[si]!.method.findIndex((m) => m.name === "SendOTP");
    // FileDescriptorProto.service = 6, ServiceDescriptorProto.method = 2.
    const comment = leadingComment(file, [6, si, 2, mi]);
    expect(comment).toBe(commentAbove("auth/auth.proto", "SendOTP"));
    expect(comment).toMatch(/ResourceExhausted/);
  });

  test("every RPC of every Chatwire service is documented", async () => {
    const undocumented: string[] = [];
    for (const symbol of [
      "auth.AuthService",
      "chat.ChatService",
      "realtime.RealtimeService",
      "user.UserService",
      "status.StatusService",
      "media.MediaService",
      "push.PushService",
    ]) {
      const file = await fileOf(version, symbol);
      const si = file.service.findIndex((x) => `${file.package}.${x.name}` === symbol);
      expect(leadingComment(file, [6, si])?.trim(), symbol).toBeTruthy();
      file.service[si]!.method.forEach((m, mi) => {
        if (!leadingComment(file, [6, si, 2, mi])?.trim()) undocumented.push(`${symbol}.${m.name}`);
      });
    }
    expect(undocumented).toEqual([]);
  });
});
