import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FieldDescriptorProtoSchema, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { file_auth_auth } from "../../gen/auth/auth_pb.js";
import { file_chat_chat } from "../../gen/chat/chat_pb.js";
import { documentedDescriptors } from "./documented-descriptors.js";

const tmp = () => mkdtempSync(path.join(os.tmpdir(), "chatwire-descriptors-"));

describe("documentedDescriptors", () => {
  test("gen/descriptors.binpb matches the generated code and carries comments", () => {
    const docs = documentedDescriptors([file_auth_auth, file_chat_chat]);
    expect([...docs.keys()].sort()).toEqual(["auth/auth.proto", "chat/chat.proto"]);
    const auth = fromBinary(FileDescriptorProtoSchema, docs.get("auth/auth.proto")!);
    expect(auth.sourceCodeInfo!.location.length).toBeGreaterThan(100);
  });

  test("a file that no longer matches the generated code is left out (its comments could describe other fields)", () => {
    const stale = clone(FileDescriptorProtoSchema, file_auth_auth.proto);
    stale.messageType[0]!.field.push(create(FieldDescriptorProtoSchema, { name: "gone", number: 99 }));
    const dir = tmp();
    writeFileSync(path.join(dir, "d.binpb"), toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: [stale, file_chat_chat.proto] })));
    const docs = documentedDescriptors([file_auth_auth, file_chat_chat], undefined, pathToFileURL(path.join(dir, "d.binpb")));
    expect([...docs.keys()]).toEqual(["chat/chat.proto"]);
  });

  test("no file: nothing documented, no throw", () => {
    expect(documentedDescriptors([file_auth_auth], undefined, pathToFileURL(path.join(tmp(), "missing.binpb"))).size).toBe(0);
  });
});
