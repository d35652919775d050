/**
 * gRPC server reflection (grpc.reflection.v1 and grpc.reflection.v1alpha)
 * for connect-es, so grpcurl, Postman, Kreya, evans etc. can discover the API.
 *
 *   registerReflection(router, files, serviceNames)
 *
 * - `files`: the descriptors to expose, e.g. the `file_*` GenFile exports from
 *   gen/. Their imports are followed transitively, and the two reflection
 *   files are always included.
 * - `serviceNames`: called on every list_services request; returns the fully
 *   qualified names of the services the server exposes (the caller includes
 *   the reflection services and grpc.health.v1.Health when registered).
 *
 * - `documented`: file name → serialized descriptor carrying the proto comments
 *   (documentedDescriptors()); such a file is served as it is, so grpcurl
 *   `describe` and Postman show the comments. Other files are served from
 *   their embedded descriptors (no comments).
 *
 * Registers `ServerReflectionInfo` of both reflection versions on `router`,
 * backed by one implementation. Each request on the stream gets exactly one
 * response, in order. Failed lookups are answered in-stream with an
 * error_response (NOT_FOUND, or INVALID_ARGUMENT for an empty request) and
 * the stream stays open, as in grpc-go.
 */
import { clone, create, isFieldSet, toBinary } from "@bufbuild/protobuf";
import type { DescExtension, DescFile } from "@bufbuild/protobuf";
import { nestedTypes, protoCamelCase } from "@bufbuild/protobuf/reflect";
import { FieldDescriptorProtoSchema, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { DescriptorProto, EnumDescriptorProto, FieldDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type ReflectionRequest = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;

// Version-neutral init shape of the message_response oneof; create() with
// either version's schema accepts it.
type ResponseBody =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

export function registerReflection(router: ConnectRouter, files: DescFile[], serviceNames: () => string[], documented = new Map<string, Uint8Array>()): void {
  const answer = createReflector([...files, v1.file_grpc_reflection_v1_reflection, v1alpha.file_grpc_reflection_v1alpha_reflection], serviceNames, documented);
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(v1.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse: answer(req),
        });
      }
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse: answer(req),
        });
      }
    },
  });
}

function createReflector(roots: DescFile[], serviceNames: () => string[], documented: Map<string, Uint8Array>): (req: ReflectionRequest) => ResponseBody {
  const filesByName = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const messageTypes = new Set<string>();
  // extendee type name -> extension number -> extension
  const extensions = new Map<string, Map<number, DescExtension>>();
  const serialized = new Map<DescFile, Uint8Array>();

  const addSymbol = (name: string, file: DescFile) => {
    if (!symbols.has(name)) symbols.set(name, file);
  };
  // Symbols come from the raw descriptor rather than the Desc* objects,
  // which hide map entry messages (pkg.Msg.FooEntry is a symbol to protoc).
  const addEnum = (scope: string, enumType: EnumDescriptorProto, file: DescFile) => {
    const name = join(scope, enumType.name);
    addSymbol(name, file);
    for (const value of enumType.value) {
      // Protobuf scopes enum values as siblings of their enum; the
      // Enum.VALUE form is accepted too because people type it.
      addSymbol(join(scope, value.name), file);
      addSymbol(join(name, value.name), file);
    }
  };
  const addMessage = (scope: string, message: DescriptorProto, file: DescFile): void => {
    const name = join(scope, message.name);
    addSymbol(name, file);
    messageTypes.add(name);
    for (const member of [...message.field, ...message.extension, ...message.oneofDecl]) {
      addSymbol(join(name, member.name), file);
    }
    for (const nested of message.nestedType) addMessage(name, nested, file);
    for (const enumType of message.enumType) addEnum(name, enumType, file);
  };
  const addFile = (file: DescFile): void => {
    if (filesByName.has(file.proto.name)) return;
    filesByName.set(file.proto.name, file);
    const pkg = file.proto.package;
    for (const message of file.proto.messageType) addMessage(pkg, message, file);
    for (const enumType of file.proto.enumType) addEnum(pkg, enumType, file);
    for (const extension of file.proto.extension) addSymbol(join(pkg, extension.name), file);
    for (const service of file.proto.service) {
      const name = join(pkg, service.name);
      addSymbol(name, file);
      for (const method of service.method) addSymbol(join(name, method.name), file);
    }
    for (const type of nestedTypes(file)) {
      if (type.kind !== "extension") continue;
      let byNumber = extensions.get(type.extendee.typeName);
      if (!byNumber) extensions.set(type.extendee.typeName, (byNumber = new Map()));
      if (!byNumber.has(type.number)) byNumber.set(type.number, type);
    }
    for (const dep of file.dependencies) addFile(dep);
  };
  roots.forEach(addFile);

  const serialize = (file: DescFile): Uint8Array => {
    let bytes = serialized.get(file);
    if (!bytes) {
      bytes = documented.get(file.proto.name) ?? toBinary(FileDescriptorProtoSchema, withJsonNames(file));
      serialized.set(file, bytes);
    }
    return bytes;
  };

  // The file first, then its transitive imports, each once.
  const withDependencies = (file: DescFile): ResponseBody => {
    const seen = new Set<DescFile>([file]);
    const queue = [file];
    for (let i = 0; i < queue.length; i++) {
      for (const dep of queue[i]!.dependencies) {
        if (!seen.has(dep)) {
          seen.add(dep);
          queue.push(dep);
        }
      }
    }
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: queue.map(serialize) } };
  };

  // Connect's Code values are the gRPC status numbers error_code expects.
  const error = (code: Code, message: string): ResponseBody => ({
    case: "errorResponse",
    value: { errorCode: code, errorMessage: message },
  });

  const stripDot = (name: string) => (name.startsWith(".") ? name.slice(1) : name);

  return (req) => {
    const request = req.messageRequest;
    switch (request.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: [...new Set(serviceNames())].map((name) => ({ name })) },
        };
      case "fileByFilename": {
        const file = filesByName.get(request.value);
        return file ? withDependencies(file) : error(Code.NotFound, `file not found: ${request.value}`);
      }
      case "fileContainingSymbol": {
        const file = symbols.get(stripDot(request.value));
        return file ? withDependencies(file) : error(Code.NotFound, `symbol not found: ${request.value}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = request.value;
        const extension = extensions.get(stripDot(containingType))?.get(extensionNumber);
        return extension ? withDependencies(extension.file) : error(Code.NotFound, `extension not found: ${containingType} field ${extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        const typeName = stripDot(request.value);
        if (!messageTypes.has(typeName)) {
          return error(Code.NotFound, `message type not found: ${request.value}`);
        }
        // A known message without extensions answers an empty list, as grpc-go does.
        const numbers = [...(extensions.get(typeName)?.keys() ?? [])].sort((a, b) => a - b);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: typeName, extensionNumber: numbers } };
      }
      case undefined:
        return error(Code.InvalidArgument, "empty reflection request: no message_request field set");
    }
  };
}

/**
 * protoc-gen-es strips json_name from the embedded descriptors when it equals
 * the default; fileDesc() restores it for message fields, but not for
 * extensions, and descriptors from other sources may lack it. protoc always
 * sets it, and clients such as grpcurl use it for JSON, so set it everywhere.
 */
function join(scope: string, name: string): string {
  return scope ? `${scope}.${name}` : name;
}

function withJsonNames(file: DescFile) {
  const proto = clone(FileDescriptorProtoSchema, file.proto);
  const restore = (fields: FieldDescriptorProto[]) => {
    for (const field of fields) {
      if (!isFieldSet(field, FieldDescriptorProtoSchema.field.jsonName)) {
        field.jsonName = protoCamelCase(field.name);
      }
    }
  };
  const restoreMessage = (message: DescriptorProto): void => {
    restore(message.field);
    restore(message.extension);
    message.nestedType.forEach(restoreMessage);
  };
  restore(proto.extension);
  proto.messageType.forEach(restoreMessage);
  return proto;
}
