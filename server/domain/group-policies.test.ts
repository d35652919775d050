import { describe, expect, test } from "vitest";
import { GroupPermission } from "../../gen/chat/chat_pb.js";
import { DEFAULT_POLICIES, permits, policiesToProto, policyChanges } from "./group-policies.js";

const names = { send: "send", editInfo: "edit", add: "add" };

describe("group policies", () => {
  test("'all' permits every role, 'admins' only admins and the owner", () => {
    expect(["member", "admin", "owner"].map((r) => permits("all", r))).toEqual([true, true, true]);
    expect(["member", "admin", "owner"].map((r) => permits("admins", r))).toEqual([false, true, true]);
  });

  test("defaults: everyone sends, admins edit and add, no approval", () => {
    expect(policiesToProto(DEFAULT_POLICIES)).toMatchObject({
      sendMessages: GroupPermission.ALL_PARTICIPANTS,
      editInfo: GroupPermission.ADMINS_ONLY,
      addParticipants: GroupPermission.ADMINS_ONLY,
      approveNewMembers: false,
    });
  });

  test("UNSPECIFIED is not given; unknown values name the field", () => {
    expect(policyChanges({ send: GroupPermission.UNSPECIFIED, editInfo: GroupPermission.ALL_PARTICIPANTS, names })).toEqual({
      ok: true,
      changes: { edit_info_policy: "all" },
    });
    expect(policyChanges({ add: 9 as GroupPermission, names })).toEqual({
      ok: false,
      problem: "add: one of GROUP_PERMISSION_ALL_PARTICIPANTS, GROUP_PERMISSION_ADMINS_ONLY",
    });
    expect(policyChanges({ approve: false, names })).toEqual({ ok: true, changes: { approve_new_members: false } });
  });
});
