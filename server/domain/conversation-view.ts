import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConversationSchema, ParticipantRole, ParticipantSchema, type Conversation } from "../../gen/chat/chat_pb.js";
import type { ConversationRow, ParticipantRow } from "../db/conversation-store.js";

const ROLE_TO_PROTO: Record<string, ParticipantRole> = {
  owner: ParticipantRole.OWNER,
  admin: ParticipantRole.ADMIN,
  member: ParticipantRole.MEMBER,
};

export function roleToProto(role: string): ParticipantRole {
  return ROLE_TO_PROTO[role] ?? ParticipantRole.MEMBER;
}

/**
 * A conversation on the wire as the participant `my` sees it (GetConversation,
 * GetConversations, realtime conversation events), from rows at hand. The last
 * message and unread count, which need their own reads, are the caller's to add.
 */
export function toConversation(conv: ConversationRow, people: ParticipantRow[], my: ParticipantRow | undefined, now: Date): Conversation {
  return create(ConversationSchema, {
    id: conv.id,
    participantIds: people.map((p) => p.user_id),
    createdAt: conv.created_at.toISOString(),
    isGroup: conv.is_group,
    groupName: conv.group_name,
    groupDescription: conv.group_description,
    groupAvatarUrl: conv.group_avatar_url,
    myRole: my ? roleToProto(my.role) : ParticipantRole.UNSPECIFIED,
    mutedUntil: my?.muted_until && my.muted_until > now ? timestampFromDate(my.muted_until) : undefined,
    archived: my?.archived ?? false,
    lastActivityAt: timestampFromDate(conv.last_activity_at),
    lastSeq: BigInt(conv.last_seq),
    myLastReadSeq: BigInt(my?.last_read_seq ?? 0),
    myLastDeliveredSeq: BigInt(my?.last_delivered_seq ?? 0),
    participants: people.map((p) =>
      create(ParticipantSchema, { userId: p.user_id, role: roleToProto(p.role), joinedAt: timestampFromDate(p.joined_at) }),
    ),
  });
}
