import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConversationSchema, ParticipantRole, ParticipantSchema, type Conversation } from "../../gen/chat/chat_pb.js";
import type { ConversationRow, ParticipantRow } from "../db/conversation-store.js";
import { policiesToProto } from "./group-policies.js";

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
    participants: people.map((p) => create(ParticipantSchema, { userId: p.user_id, role: roleToProto(p.role), joinedAt: timestampFromDate(p.joined_at) })),
    policies: conv.is_group ? policiesToProto(conv) : undefined,
    disappearingSeconds: conv.disappearing_seconds ?? 0,
  });
}

/** A participant as a former participant's snapshot records them. */
interface FormerPeer {
  user_id: string;
  role: string;
  joined_at: string;
  joined_seq: string;
  last_delivered_seq: string;
  last_read_seq: string;
}

/** The group as it was when a participant left (conversation_participants.left_view, written by markLeft). */
interface FormerView {
  group_name: string;
  group_description: string;
  group_avatar_url: string;
  participants: FormerPeer[];
}

function parseFormerView(raw: unknown): FormerView | undefined {
  const v = (typeof raw === "string" ? JSON.parse(raw) : raw) as FormerView | null | undefined;
  return v && Array.isArray(v.participants) ? v : undefined;
}

/**
 * The conversation and its participants as `my` sees them: now for a current
 * participant; for a former one, as it was when they left (who was in it, with
 * the roles and receipt watermarks of then, the group's name, description and
 * avatar of then, its last message and activity their own last). Nothing that
 * happened after they left shows through.
 */
export function asSeenBy(
  conv: ConversationRow,
  current: ParticipantRow[],
  my: ParticipantRow | undefined,
): { conv: ConversationRow; people: ParticipantRow[] } {
  if (!my || my.left_at === null || my.left_seq === null) return { conv, people: current };
  const view = parseFormerView(my.left_view);
  return {
    conv: {
      ...conv,
      group_name: view?.group_name ?? conv.group_name,
      group_description: view?.group_description ?? conv.group_description,
      group_avatar_url: view?.group_avatar_url ?? conv.group_avatar_url,
      last_seq: my.left_seq,
      last_activity_at: my.left_at,
    },
    people: formerParticipants(my),
  };
}

/** The other participants as they were when `my` left (with their roles and receipt watermarks of then). */
export function formerParticipants(my: Pick<ParticipantRow, "conversation_id" | "left_view">): ParticipantRow[] {
  return (parseFormerView(my.left_view)?.participants ?? []).map((p) => ({
    conversation_id: my.conversation_id,
    user_id: p.user_id,
    role: p.role,
    joined_at: new Date(p.joined_at),
    joined_seq: String(p.joined_seq),
    left_at: null,
    left_seq: null,
    last_delivered_seq: String(p.last_delivered_seq),
    last_read_seq: String(p.last_read_seq),
    muted_until: null,
    archived: false,
  }));
}
