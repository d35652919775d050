import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, createFileRegistry, fromBinary, isFieldSet } from "@bufbuild/protobuf";
import type { DescFile } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService, file_auth_auth } from "../../gen/auth/auth_pb.js";
import { Health, HealthCheckResponse_ServingStatus, file_health_v1_health } from "../../gen/health/v1/health_pb.js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { registerReflection } from "./reflection-service.js";
import {
  reflectionExchange,
  registryOf,
  type GrpcReflectionRequest,
  type GrpcReflectionResponse,
  type ReflectionVersion,
} from "../tests/helpers/reflection.js";

// A proto2 file with an extension, built without json_name, to cover the
// extension requests and json_name restoration (gen/ has no extensions).
function extensionFile(): DescFile {
  const proto = create(FileDescriptorProtoSchema, {
    name: "test/ext.proto",
    package: "test.ext",
    syntax: "proto2",
    dependency: ["google/protobuf/timestamp.proto"],
    messageType: [
      {
        name: "Extendable",
        field: [
          { name: "some_field", number: 1, type: FieldDescriptorProto_Type.STRING, label: FieldDescriptorProto_Label.OPTIONAL },
          {
            name: "at",
            number: 2,
            type: FieldDescriptorProto_Type.MESSAGE,
            label: FieldDescriptorProto_Label.OPTIONAL,
            typeName: ".google.protobuf.Timestamp",
          },
        ],
        extensionRange: [{ start: 100, end: 200 }],
      },
    ],
    extension: [
      {
        name: "extra_note",
        number: 101,
        type: FieldDescriptorProto_Type.STRING,
        label: FieldDescriptorProto_Label.OPTIONAL,
        extendee: ".test.ext.Extendable",
      },
    ],
  });
  return createFileRegistry(proto, (name) => (name === file_google_protobuf_timestamp.proto.name ? file_google_protobuf_timestamp : undefined)).getFile(
    "test/ext.proto",
  )!;
}

const SERVICES = [AuthService.typeName, Health.typeName, v1.ServerReflection.typeName, v1alpha.ServerReflection.typeName];

let server: http2.Http2Server;
let port: number;
const sessions = new Set<http2.ServerHttp2Session>();

beforeAll(async () => {
  server = http2.createServer(
    connectNodeAdapter({
      routes: (router) => {
        registerReflection(
          router,
          [file_auth_auth, file_health_v1_health, v1.file_grpc_reflection_v1_reflection, v1alpha.file_grpc_reflection_v1alpha_reflection, extensionFile()],
          () => SERVICES,
        );
        router.service(Health, {
          check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
          async *watch() {
            yield { status: HealthCheckResponse_ServingStatus.SERVING };
          },
          list: () => ({}),
        });
      },
    }),
  );
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const session of sessions) session.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

type Version = ReflectionVersion;
const exchange = (version: Version, requests: GrpcReflectionRequest[]) => reflectionExchange(`127.0.0.1:${port}`, version, requests);

async function ask(version: Version, request: GrpcReflectionRequest): Promise<GrpcReflectionResponse> {
  const [response, ...rest] = await exchange(version, [request]);
  expect(rest).toHaveLength(0);
  return response!;
}

function decodeFiles(res: GrpcReflectionResponse): FileDescriptorProto[] {
  expect(res.messageResponse, JSON.stringify(res.errorResponse)).toBe("fileDescriptorResponse");
  return res.fileDescriptorResponse!.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, new Uint8Array(bytes)));
}

describe.each<Version>(["v1", "v1alpha"])("grpc.reflection.%s over @grpc/grpc-js", (version) => {
  it("lists every service and echoes host and original request", async () => {
    const res = await ask(version, { host: "example.test", listServices: "*" });
    expect(res.messageResponse).toBe("listServicesResponse");
    expect(res.listServicesResponse!.service.map((s) => s.name)).toEqual(SERVICES);
    expect(res.validHost).toBe("example.test");
    expect(res.originalRequest.listServices).toBe("*");
    expect(res.originalRequest.messageRequest).toBe("listServices");
  });

  it.each([
    ["auth.AuthService", "auth/auth.proto"],
    ["auth.AuthService.SendOTP", "auth/auth.proto"],
    ["auth.User", "auth/auth.proto"],
    [".auth.User", "auth/auth.proto"],
    ["auth.User.phone_number", "auth/auth.proto"],
    ["grpc.health.v1.HealthCheckResponse.ServingStatus", "health/v1/health.proto"],
    ["grpc.health.v1.HealthCheckResponse.SERVING", "health/v1/health.proto"],
    ["grpc.health.v1.HealthListResponse.StatusesEntry", "health/v1/health.proto"],
    [`grpc.reflection.${version}.ServerReflection`, `grpc/reflection/${version}/reflection.proto`],
    ["test.ext.extra_note", "test/ext.proto"],
  ])("file_containing_symbol %s → %s", async (symbol, fileName) => {
    const files = decodeFiles(await ask(version, { fileContainingSymbol: symbol }));
    expect(files[0]!.name).toBe(fileName);
  });

  it("returns descriptors from which every method of every listed service resolves", async () => {
    const list = await ask(version, { listServices: "" });
    const names = list.listServicesResponse!.service.map((s) => s.name);
    const responses = await exchange(
      version,
      names.map((name) => ({ fileContainingSymbol: name })),
    );
    const protos = new Map<string, FileDescriptorProto>();
    for (const res of responses) {
      const files = decodeFiles(res);
      expect(new Set(files.map((f) => f.name)).size).toBe(files.length);
      for (const file of files) protos.set(file.name, file);
    }
    const registry = registryOf(protos.values());
    for (const name of names) {
      const service = registry.getService(name);
      expect(service, name).toBeDefined();
      expect(service!.methods.length).toBeGreaterThan(0);
      for (const method of service!.methods) {
        expect(registry.getMessage(method.input.typeName)).toBe(method.input);
        expect(registry.getMessage(method.output.typeName)).toBe(method.output);
      }
    }
    expect(registry.getService("grpc.health.v1.Health")!.methods.map((m) => [m.name, m.methodKind])).toEqual([
      ["Check", "unary"],
      ["Watch", "server_streaming"],
      ["List", "unary"],
    ]);
    expect(registry.getService(`grpc.reflection.${version}.ServerReflection`)!.methods[0]!.methodKind).toBe("bidi_streaming");
    const verify = registry.getService("auth.AuthService")!.methods.find((m) => m.name === "VerifyOTP")!;
    expect(verify.output.field.user!.message!.typeName).toBe("auth.User");
    const status = registry.getMessage("grpc.health.v1.HealthCheckResponse")!.field.status!;
    expect(status.enum!.values.map((v) => v.name)).toContain("SERVICE_UNKNOWN");
  });

  it("serves descriptors with json_name set on every field, like protoc", async () => {
    const [auth] = decodeFiles(await ask(version, { fileByFilename: "auth/auth.proto" }));
    const user = auth!.messageType.find((m) => m.name === "User")!;
    const phone = user.field.find((f) => f.name === "phone_number")!;
    expect(isFieldSet(phone, FieldDescriptorProtoSchema.field.jsonName)).toBe(true);
    expect(phone.jsonName).toBe("phoneNumber");
    const [ext] = decodeFiles(await ask(version, { fileByFilename: "test/ext.proto" }));
    expect(ext!.messageType[0]!.field[0]!.jsonName).toBe("someField");
    expect(ext!.extension[0]!.jsonName).toBe("extraNote");
  });

  it("file_by_filename returns the file first, each file once", async () => {
    const files = decodeFiles(await ask(version, { fileByFilename: "auth/auth.proto" }));
    expect(files.map((f) => f.name)).toEqual(["auth/auth.proto", "google/protobuf/timestamp.proto"]);
    expect(files[0]!.package).toBe("auth");
    expect(files[0]!.service[0]!.method.map((m) => m.name)).toContain("SendOTP");
  });

  it("returns the transitive imports after the requested file, resolvable like grpcurl does", async () => {
    const files = decodeFiles(await ask(version, { fileByFilename: "test/ext.proto" }));
    expect(files.map((f) => f.name)).toEqual(["test/ext.proto", "google/protobuf/timestamp.proto"]);
    const registry = registryOf(files);
    expect(registry.getMessage("test.ext.Extendable")!.field.at!.message!.typeName).toBe("google.protobuf.Timestamp");
    const wkt = decodeFiles(await ask(version, { fileContainingSymbol: "google.protobuf.Timestamp" }));
    expect(wkt.map((f) => f.name)).toEqual(["google/protobuf/timestamp.proto"]);
  });

  it("answers extension requests from the registered files", async () => {
    const files = decodeFiles(await ask(version, { fileContainingExtension: { containingType: "test.ext.Extendable", extensionNumber: 101 } }));
    expect(files[0]!.name).toBe("test/ext.proto");

    const numbers = await ask(version, { allExtensionNumbersOfType: "test.ext.Extendable" });
    expect(numbers.allExtensionNumbersResponse).toEqual({ baseTypeName: "test.ext.Extendable", extensionNumber: [101] });

    const none = await ask(version, { allExtensionNumbersOfType: "auth.User" });
    expect(none.allExtensionNumbersResponse).toEqual({ baseTypeName: "auth.User", extensionNumber: [] });

    const missingExt = await ask(version, { fileContainingExtension: { containingType: "auth.User", extensionNumber: 5 } });
    expect(missingExt.errorResponse!.errorCode).toBe(5);
    const missingType = await ask(version, { allExtensionNumbersOfType: "auth.Nope" });
    expect(missingType.errorResponse!.errorCode).toBe(5);
  });

  it("answers unknown symbols and files with NOT_FOUND and an empty request with INVALID_ARGUMENT", async () => {
    const [symbol, file, empty, after] = await exchange(version, [
      { fileContainingSymbol: "auth.DoesNotExist" },
      { fileByFilename: "nope.proto" },
      {},
      { listServices: "" },
    ]);
    expect(symbol!.messageResponse).toBe("errorResponse");
    expect(symbol!.errorResponse).toEqual({ errorCode: 5, errorMessage: "symbol not found: auth.DoesNotExist" });
    expect(file!.errorResponse!.errorCode).toBe(5);
    expect(empty!.errorResponse!.errorCode).toBe(3);
    // The stream survives errors.
    expect(after!.messageResponse).toBe("listServicesResponse");
  });

  it("answers several requests on one stream in order", async () => {
    const requests: GrpcReflectionRequest[] = [
      { fileContainingSymbol: "grpc.health.v1.Health" },
      { listServices: "" },
      { fileContainingSymbol: "auth.User" },
      { fileByFilename: "health/v1/health.proto" },
      { fileContainingSymbol: "missing.Thing" },
    ];
    const responses = await exchange(version, requests);
    expect(responses.map((r) => r.originalRequest.messageRequest)).toEqual([
      "fileContainingSymbol",
      "listServices",
      "fileContainingSymbol",
      "fileByFilename",
      "fileContainingSymbol",
    ]);
    expect(responses.map((r) => r.messageResponse)).toEqual([
      "fileDescriptorResponse",
      "listServicesResponse",
      "fileDescriptorResponse",
      "fileDescriptorResponse",
      "errorResponse",
    ]);
    expect(decodeFiles(responses[0]!)[0]!.name).toBe("health/v1/health.proto");
    expect(decodeFiles(responses[2]!)[0]!.name).toBe("auth/auth.proto");
    expect(responses[4]!.originalRequest.fileContainingSymbol).toBe("missing.Thing");
  });
});

describe("over the connect-node gRPC transport", () => {
  it("lists services with v1 and v1alpha", async () => {
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
    for (const [service, requestSchema] of [
      [v1.ServerReflection, v1.ServerReflectionRequestSchema],
      [v1alpha.ServerReflection, v1alpha.ServerReflectionRequestSchema],
    ] as const) {
      const client = createClient(service, transport);
      async function* requests() {
        yield create(requestSchema, { host: "h", messageRequest: { case: "listServices", value: "" } });
      }
      const names: string[] = [];
      for await (const res of client.serverReflectionInfo(requests())) {
        expect(res.validHost).toBe("h");
        if (res.messageResponse.case === "listServicesResponse") {
          names.push(...res.messageResponse.value.service.map((s) => s.name));
        }
      }
      expect(names).toEqual(SERVICES);
    }
  });
});
