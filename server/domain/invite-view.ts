import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  InviteLinkSchema,
  InvitePreviewSchema,
  JoinRequestSchema,
  JoinRequestState,
  type InviteLink,
  type InvitePreview,
  type JoinRequest,
} from "../../gen/chat/chat_pb.js";
import type { ConversationRow } from "../db/conversation-store.js";
import type { InviteLinkRow, JoinRequestRow } from "../db/invite-store.js";
import { linkProblem } from "./invites.js";

const STATE: Record<string, JoinRequestState> = {
  pending: JoinRequestState.PENDING,
  approved: JoinRequestState.APPROVED,
  rejected: JoinRequestState.REJECTED,
};

export function toInviteLink(l: InviteLinkRow, now: Date): InviteLink {
  return create(InviteLinkSchema, {
    code: l.code,
    conversationId: l.conversation_id,
    createdBy: l.created_by,
    createdAt: timestampFromDate(l.created_at),
    expiresAt: l.expires_at ? timestampFromDate(l.expires_at) : undefined,
    maxUses: l.max_uses,
    useCount: l.use_count,
    requiresApproval: l.requires_approval,
    revokedAt: l.revoked_at ? timestampFromDate(l.revoked_at) : undefined,
    inviteeId: l.invitee_id ?? "",
    active: linkProblem(l, now) === undefined,
  });
}

export function toJoinRequest(r: JoinRequestRow): JoinRequest {
  return create(JoinRequestSchema, {
    conversationId: r.conversation_id,
    userId: r.user_id,
    state: STATE[r.state] ?? JoinRequestState.UNSPECIFIED,
    createdAt: timestampFromDate(r.created_at),
    addedBy: r.added_by ?? "",
    decidedAt: r.decided_at ? timestampFromDate(r.decided_at) : undefined,
    decidedBy: r.decided_by ?? "",
  });
}

export function toInvitePreview(
  conv: ConversationRow,
  link: InviteLinkRow,
  v: { participantCount: number; requiresApproval: boolean; alreadyParticipant: boolean },
): InvitePreview {
  return create(InvitePreviewSchema, {
    conversationId: conv.id,
    groupName: conv.group_name,
    groupDescription: conv.group_description,
    groupAvatarUrl: conv.group_avatar_url,
    participantCount: v.participantCount,
    requiresApproval: v.requiresApproval,
    alreadyParticipant: v.alreadyParticipant,
    expiresAt: link.expires_at ? timestampFromDate(link.expires_at) : undefined,
  });
}

/**
 * Whether using the link files a join request: the link says so, or the
 * group's approve_new_members policy is on, unless it is a personal invite
 * from someone who is an admin now (an admin's add needs no approval).
 */
export function needsApproval(conv: ConversationRow, link: InviteLinkRow, creatorRole: string | undefined): boolean {
  if (link.requires_approval) return true;
  if (!conv.approve_new_members) return false;
  return !(link.invitee_id !== null && (creatorRole === "admin" || creatorRole === "owner"));
}
