import { fromBinary, toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type DescriptorProto, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { documentedDescriptorSet } from "../../gen/descriptors.js";

/**
 * The API's descriptors with their proto comments (`source_code_info`), for reflection: protoc-gen-es embeds
 * descriptors without them, so `buf generate` also writes `gen/descriptors.ts` (scripts/protoc-gen-descriptors.mjs:
 * the FileDescriptorSet in base64; CI checks it is reproducible like the rest of gen/). Returns file name →
 * serialized FileDescriptorProto, only for files whose definitions match
 * the generated code the server runs (an out-of-date file is left out with a warning: its comments could
 * describe fields that are not there).
 */
export function documentedDescriptors(files: DescFile[], logger?: Logger, base64Set: string = documentedDescriptorSet): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let set: FileDescriptorProto[];
  try {
    set = fromBinary(FileDescriptorSetSchema, Buffer.from(base64Set, "base64")).file;
  } catch (err) {
    logger?.warn({ err }, "reflection serves descriptors without proto comments: gen/descriptors.ts does not decode (buf generate)");
    return out;
  }
  const byName = new Map(set.map((f) => [f.name, f]));
  for (const file of files) {
    const documented = byName.get(file.proto.name);
    if (!documented) continue;
    if (shape(documented) !== shape(file.proto)) {
      logger?.warn({ file: file.proto.name }, "gen/descriptors.ts does not match the generated code for this file (buf generate): served without comments");
      continue;
    }
    out.set(file.proto.name, toBinary(FileDescriptorProtoSchema, documented));
  }
  return out;
}

/** What a client could call or decode: services, methods, messages, fields and enum values, without comments or options. */
function shape(f: FileDescriptorProto): string {
  const msg = (m: DescriptorProto): string =>
    `${m.name}{${m.field.map((x) => `${x.name}=${x.number}:${x.type}:${x.typeName}`).join(",")}|${m.nestedType.map(msg).join(";")}|${m.enumType.map((e) => `${e.name}(${e.value.map((v) => `${v.name}=${v.number}`).join(",")})`).join(";")}}`;
  return [
    f.package,
    f.dependency.join(","),
    f.messageType.map(msg).join(";"),
    f.enumType.map((e) => `${e.name}(${e.value.map((v) => `${v.name}=${v.number}`).join(",")})`).join(";"),
    f.service.map((s) => `${s.name}(${s.method.map((m) => `${m.name}:${m.inputType}>${m.outputType}:${m.serverStreaming}`).join(",")})`).join(";"),
  ].join("\n");
}
