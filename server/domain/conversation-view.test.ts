import { describe, expect, test } from "vitest";
import { ReceiptState } from "../../gen/chat/chat_pb.js";
import type { ConversationRow, ParticipantRow } from "../db/conversation-store.js";
import type { MessageRow } from "../db/history-store.js";
import { asSeenBy } from "./conversation-view.js";
import { DEFAULT_POLICIES } from "./group-policies.js";
import { receiptState } from "./message-view.js";

const at = new Date("2026-01-01T00:00:00Z");
const conv: ConversationRow = {
  id: "c",
  is_group: true,
  group_name: "Now",
  group_description: "now",
  group_avatar_url: "",
  last_seq: "9",
  created_at: at,
  last_activity_at: new Date("2026-01-02T00:00:00Z"),
  ...DEFAULT_POLICIES,
};
const person = (user_id: string, joined_seq = "0", read = "0", delivered = read): ParticipantRow => ({
  conversation_id: "c",
  user_id,
  role: "member",
  joined_at: at,
  joined_seq,
  left_at: null,
  left_seq: null,
  last_delivered_seq: delivered,
  last_read_seq: read,
  muted_until: null,
  archived: false,
});

describe("asSeenBy", () => {
  test("a current participant sees the conversation now", () => {
    const me = person("me");
    expect(asSeenBy(conv, [me, person("new")], me)).toEqual({ conv, people: [me, person("new")] });
  });

  test("a former participant sees the snapshot of when they left, nothing after", () => {
    const me: ParticipantRow = {
      ...person("me"),
      left_at: at,
      left_seq: "4",
      left_view: JSON.stringify({
        group_name: "Then",
        group_description: "then",
        group_avatar_url: "https://x.example/a.png",
        participants: [{ user_id: "o", role: "owner", joined_at: at.toISOString(), joined_seq: "0", last_delivered_seq: "3", last_read_seq: "2" }],
      }),
    };
    const seen = asSeenBy(conv, [person("o"), person("new", "5")], me);
    expect(seen.conv).toMatchObject({ group_name: "Then", group_description: "then", last_seq: "4", last_activity_at: at });
    expect(seen.people).toEqual([{ ...person("o", "0", "2", "3"), role: "owner" }]);
  });
});

describe("receiptState", () => {
  const msg = { kind: "user", sender_id: "s", seq: "3" } as MessageRow;
  test("counts only those who joined before the message", () => {
    expect(receiptState(msg, [person("s"), person("a", "0", "3"), person("late", "5")])).toBe(ReceiptState.READ);
  });
  test("stops at delivered when read state is not shared", () => {
    expect(receiptState(msg, [person("s"), person("a", "0", "3")], false)).toBe(ReceiptState.DELIVERED);
    expect(receiptState(msg, [person("s"), person("a", "0", "0", "2")], false)).toBe(ReceiptState.SENT);
  });
});
