import { create, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";
import { CreateConversationRequestSchema, SendMessageRequestSchema } from "../../gen/chat/chat_pb.js";
import { EventSchema } from "../../gen/realtime/realtime_pb.js";
import { textFieldsInterceptor } from "./text-fields.js";

const interceptor = textFieldsInterceptor();
const passed = Symbol("passed");
const call = interceptor(async () => passed as never);

async function refusal(input: DescMessage, message: unknown): Promise<string | undefined> {
  try {
    const r = await call({ stream: false, method: { input }, message } as unknown as UnaryRequest);
    expect(r).toBe(passed);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.InvalidArgument);
    return (e as ConnectError).rawMessage;
  }
}

describe("U+0000 in a string field is refused, naming the field", () => {
  test("top-level and repeated strings", async () => {
    expect(await refusal(SendMessageRequestSchema, create(SendMessageRequestSchema, { conversationId: "c", content: "hello" }))).toBeUndefined();
    expect(await refusal(SendMessageRequestSchema, create(SendMessageRequestSchema, { content: "a\0b" }))).toBe("content: must not contain U+0000");
    expect(await refusal(SendMessageRequestSchema, create(SendMessageRequestSchema, { clientMessageId: "\0" }))).toBe(
      "client_message_id: must not contain U+0000",
    );
    expect(await refusal(CreateConversationRequestSchema, create(CreateConversationRequestSchema, { participantIds: ["a", "b\0"] }))).toBe(
      "participant_ids[1]: must not contain U+0000",
    );
  });

  test("strings inside oneofs, nested and repeated messages", async () => {
    const ok = create(EventSchema, { kind: { case: "reactionChanged", value: { emoji: "x", reactions: [{ emoji: "y", userIds: ["u"] }] } } });
    expect(await refusal(EventSchema, ok)).toBeUndefined();
    const bad = create(EventSchema, {
      kind: { case: "reactionChanged", value: { emoji: "x", reactions: [{ emoji: "y" }, { emoji: "z", userIds: ["u", "v\0"] }] } },
    });
    expect(await refusal(EventSchema, bad)).toBe("reaction_changed.reactions[1].user_ids[1]: must not contain U+0000");
  });

  test("every message of a stream is checked", async () => {
    async function* two() {
      yield create(SendMessageRequestSchema, { content: "fine" });
      yield create(SendMessageRequestSchema, { content: "not\0fine" });
    }
    const seen: unknown[] = [];
    const streaming = interceptor(async (req) => {
      for await (const m of (req as StreamRequest).message) seen.push(m);
      return passed as never;
    });
    await expect(streaming({ stream: true, method: { input: SendMessageRequestSchema }, message: two() } as unknown as StreamRequest)).rejects.toThrow(
      "content: must not contain U+0000",
    );
    expect(seen).toHaveLength(1);
  });
});
