import { create } from "@bufbuild/protobuf";
import { GroupPermission, GroupPoliciesSchema, type GroupPolicies } from "../../gen/chat/chat_pb.js";

// A group's policies (issue 17): who may send, edit the group's info and add
// participants ('all' or 'admins'), and whether new members need an admin's
// approval. The defaults keep what groups did before policies existed
// (everyone sends; only admins edit and add; no approval), so clients that
// know nothing of policies see no change. WhatsApp's defaults differ (anyone
// edits info and adds) but would widen what plain members may do in every
// existing group.

/** The policy columns of a conversation row. */
export interface PolicyColumns {
  send_policy: string;
  edit_info_policy: string;
  add_policy: string;
  approve_new_members: boolean;
}

export const DEFAULT_POLICIES: PolicyColumns = { send_policy: "all", edit_info_policy: "admins", add_policy: "admins", approve_new_members: false };

const isAdminRole = (role: string) => role === "admin" || role === "owner";

/** Whether a participant of `role` may do what `permission` governs. */
export function permits(permission: string, role: string): boolean {
  return permission === "all" || isAdminRole(role);
}

const TO_PROTO: Record<string, GroupPermission> = { all: GroupPermission.ALL_PARTICIPANTS, admins: GroupPermission.ADMINS_ONLY };

export function policiesToProto(c: PolicyColumns): GroupPolicies {
  return create(GroupPoliciesSchema, {
    sendMessages: TO_PROTO[c.send_policy] ?? GroupPermission.ALL_PARTICIPANTS,
    editInfo: TO_PROTO[c.edit_info_policy] ?? GroupPermission.ADMINS_ONLY,
    addParticipants: TO_PROTO[c.add_policy] ?? GroupPermission.ADMINS_ONLY,
    approveNewMembers: c.approve_new_members,
  });
}

export type PolicyCheck = { ok: true; changes: Partial<PolicyColumns> } | { ok: false; problem: string };

/**
 * Policy fields of a request (CreateConversation's policies, UpdateGroup's
 * *_policy fields) as column changes: UNSPECIFIED is "not given"; an unknown
 * value is a problem naming the field, for an InvalidArgument answer.
 */
export function policyChanges(input: {
  send?: GroupPermission;
  editInfo?: GroupPermission;
  add?: GroupPermission;
  approve?: boolean;
  /** Field names as the request spells them. */
  names: { send: string; editInfo: string; add: string };
}): PolicyCheck {
  const changes: Partial<PolicyColumns> = {};
  const pairs = [
    ["send_policy", input.send, input.names.send],
    ["edit_info_policy", input.editInfo, input.names.editInfo],
    ["add_policy", input.add, input.names.add],
  ] as const;
  for (const [column, value, name] of pairs) {
    if (value === undefined || value === GroupPermission.UNSPECIFIED) continue;
    if (value === GroupPermission.ALL_PARTICIPANTS) changes[column] = "all";
    else if (value === GroupPermission.ADMINS_ONLY) changes[column] = "admins";
    else return { ok: false, problem: `${name}: one of GROUP_PERMISSION_ALL_PARTICIPANTS, GROUP_PERMISSION_ADMINS_ONLY` };
  }
  if (input.approve !== undefined) changes.approve_new_members = input.approve;
  return { ok: true, changes };
}
