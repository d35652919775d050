import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FieldDescriptorProtoSchema, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { file_auth_auth } from "../../gen/auth/auth_pb.js";
import { file_chat_chat } from "../../gen/chat/chat_pb.js";
import { documentedDescriptors } from "./documented-descriptors.js";

describe("documentedDescriptors", () => {
  test("gen/descriptors.ts matches the generated code and carries comments", () => {
    const docs = documentedDescriptors([file_auth_auth, file_chat_chat]);
    expect([...docs.keys()].sort()).toEqual(["auth/auth.proto", "chat/chat.proto"]);
    const auth = fromBinary(FileDescriptorProtoSchema, docs.get("auth/auth.proto")!);
    expect(auth.sourceCodeInfo!.location.length).toBeGreaterThan(100);
  });

  test("a file that no longer matches the generated code is left out (its comments could describe other fields)", () => {
    const stale = clone(FileDescriptorProtoSchema, file_auth_auth.proto);
    stale.messageType[0]!.field.push(create(FieldDescriptorProtoSchema, { name: "gone", number: 99 }));
    const set = toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: [stale, file_chat_chat.proto] }));
    const docs = documentedDescriptors([file_auth_auth, file_chat_chat], undefined, Buffer.from(set).toString("base64"));
    expect([...docs.keys()]).toEqual(["chat/chat.proto"]);
  });

  test("a set that does not decode: nothing documented, no throw", () => {
    expect(documentedDescriptors([file_auth_auth], undefined, Buffer.from("not a descriptor set").toString("base64")).size).toBe(0);
  });
});
