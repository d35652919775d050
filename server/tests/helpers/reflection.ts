import { createRequire } from "node:module";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { create, createFileRegistry, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";

/**
 * Like grpcurl and Postman: a registry built only from the files reflection
 * returned, every import resolved among them (dependencies first).
 */
export function registryOf(protos: Iterable<FileDescriptorProto>): Registry {
  const byName = new Map([...protos].map((p) => [p.name, p]));
  const ordered: FileDescriptorProto[] = [];
  const visit = (name: string): void => {
    const proto = byName.get(name);
    if (!proto) throw new Error(`reflection did not return dependency ${name}`);
    if (ordered.includes(proto)) return;
    proto.dependency.forEach(visit);
    ordered.push(proto);
  };
  [...byName.keys()].forEach(visit);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

// --- a grpc-js reflection client, loaded from the upstream reflection.proto (as Postman does)

const require = createRequire(import.meta.url);
const protoRoot = require.resolve("@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto").replace(/grpc\/reflection\/v1\/reflection\.proto$/, "");

export type ReflectionVersion = "v1" | "v1alpha";

export interface GrpcReflectionRequest {
  host?: string;
  fileByFilename?: string;
  fileContainingSymbol?: string;
  fileContainingExtension?: { containingType: string; extensionNumber: number };
  allExtensionNumbersOfType?: string;
  listServices?: string;
}

export interface GrpcReflectionResponse {
  validHost: string;
  originalRequest: GrpcReflectionRequest & { messageRequest?: string };
  messageResponse: "fileDescriptorResponse" | "allExtensionNumbersResponse" | "listServicesResponse" | "errorResponse";
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  allExtensionNumbersResponse?: { baseTypeName: string; extensionNumber: number[] };
  listServicesResponse?: { service: { name: string }[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

type ReflectionClient = grpc.Client & {
  ServerReflectionInfo(): grpc.ClientDuplexStream<GrpcReflectionRequest, GrpcReflectionResponse>;
};

function grpcClient(address: string, version: ReflectionVersion): ReflectionClient {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [protoRoot], oneofs: true, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<ReflectionVersion, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  const Ctor = loaded.grpc.reflection[version].ServerReflection;
  return new Ctor(address, grpc.credentials.createInsecure()) as unknown as ReflectionClient;
}

/** Sends all requests on one reflection stream (grpc-js, `host:port`) and collects every response. */
export async function reflectionExchange(address: string, version: ReflectionVersion, requests: GrpcReflectionRequest[]): Promise<GrpcReflectionResponse[]> {
  const client = grpcClient(address, version);
  try {
    return await new Promise<GrpcReflectionResponse[]>((resolve, reject) => {
      const responses: GrpcReflectionResponse[] = [];
      const call = client.ServerReflectionInfo();
      call.on("data", (res: GrpcReflectionResponse) => responses.push(res));
      call.on("error", reject);
      call.on("end", () => resolve(responses));
      for (const req of requests) call.write(req);
      call.end();
    });
  } finally {
    client.close();
  }
}
