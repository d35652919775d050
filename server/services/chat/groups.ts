import { Code, ConnectError } from "@connectrpc/connect";
import type { Transaction } from "kysely";
import { ParticipantRole } from "../../../gen/chat/chat_pb.js";
import * as convs from "../../db/conversation-store.js";
import { insertSystemMessage } from "../../messaging/store.js";
import type { NewInboxEvent } from "../../messaging/types.js";
import type { Database } from "../../db/schema.js";
import { requireNotBlockedByAny } from "../blocking.js";
import { roleToProto } from "../../domain/conversation-view.js";
import { checkGroupFields, type GroupFields } from "../../domain/group-fields.js";
import { publishNotices } from "../../messaging/message-queue.js";
import { storedEvent } from "../../realtime/events.js";
import { conversationCreatedEvents } from "../direct-conversations.js";
import { requireGroupAddAllowed } from "../group-add-privacy.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, requireAdmin, type ChatHandlers, type ChatRoom } from "./context.js";

const PROTO_TO_ROLE: Partial<Record<ParticipantRole, convs.Role>> = {
  [ParticipantRole.MEMBER]: "member",
  [ParticipantRole.ADMIN]: "admin",
  [ParticipantRole.OWNER]: "owner",
};

/** Group management: its fields, who is in it, their roles, and leaving. */
export function groupHandlers(
  room: ChatRoom,
): ChatHandlers<"updateGroup" | "addParticipants" | "removeParticipant" | "setParticipantRole" | "leaveConversation"> {
  const { ctx, db, clock, conversationFor, snapshotFor } = room;
  const { maxParticipants: MAX_PARTICIPANTS } = ctx.config.chat;

  function participantRemoved(to: string, conversationId: string, userId: string, actorId: string): NewInboxEvent {
    return storedEvent(to, { case: "participantRemoved", value: { $typeName: "realtime.ParticipantRemoved", conversationId, userId, actorId } }, clock.now(), {
      conversationId,
    });
  }

  function roleChanged(to: string, conversationId: string, userId: string, role: convs.Role, actorId: string): NewInboxEvent {
    return storedEvent(
      to,
      { case: "participantRoleChanged", value: { $typeName: "realtime.ParticipantRoleChanged", conversationId, userId, role: roleToProto(role), actorId } },
      clock.now(),
      { conversationId },
    );
  }

  interface GroupChange {
    event: string;
    userIds: string[];
    /** Who sees the system message; default: the current participants. */
    recipients?: string[];
    /** Runs after the system message has its seq (e.g. mark a participant left at it). */
    after?: (seq: string) => Promise<void>;
    /** The change's structured realtime events (participant added, conversation updated ...). */
    events?: (seq: string) => NewInboxEvent[];
  }

  /**
   * A membership or group change in one transaction, under the conversation's
   * row lock: checks that the caller is a current participant of a group, applies
   * the change, writes it into the timeline as a system message, and tells the
   * participants after the commit.
   */
  async function changeGroup(
    me: string,
    rawConversationId: string,
    apply: (
      trx: Transaction<Database>,
      c: { conv: convs.ConversationRow; my: convs.ParticipantRow; people: convs.ParticipantRow[] },
    ) => Promise<GroupChange | null>,
    opts: { formerIsDone?: boolean } = {},
  ): Promise<void> {
    const conversationId = uuidField("conversation_id", rawConversationId);
    const notices = await db.transaction().execute(async (trx) => {
      const conv = await convs.lockConversation(trx, conversationId);
      const my = conv ? await convs.getParticipation(trx, conversationId, me) : undefined;
      // A former participant's leave is already done (a retry): nothing to change.
      if (conv && my && my.left_at !== null && opts.formerIsDone) return [];
      if (!conv || !my || my.left_at !== null) throw notFound(conversationId);
      if (!conv.is_group) throw new ConnectError("this is a direct conversation, not a group", Code.FailedPrecondition);
      const people = await convs.participantsOf(trx, conversationId);
      const change = await apply(trx, { conv, my, people });
      if (!change) return [];
      const sys = await insertSystemMessage(
        trx,
        {
          conversationId,
          actorId: me,
          event: change.event,
          userIds: change.userIds,
          recipients: change.recipients ?? people.map((p) => p.user_id),
          extraEvents: change.events,
        },
        clock.now(),
      );
      await change.after?.(sys.seq);
      return sys.notices;
    });
    publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
  }

  return {
    async updateGroup(req, hc) {
      const me = callerOf(hc).userId;
      const checked = checkGroupFields({ name: req.groupName, description: req.groupDescription, avatarUrl: req.groupAvatarUrl });
      if (!checked.ok) throw bad(checked.problem);
      const { fields } = checked;
      if (Object.keys(fields).length === 0) throw bad("set at least one of group_name, group_description, group_avatar_url");
      await changeGroup(me, req.conversationId, async (trx, { my, conv }) => {
        requireAdmin(my);
        // Every field already so (e.g. a retry): no system message, no event.
        if (Object.entries(fields).every(([k, v]) => conv[k as keyof GroupFields] === v)) return null;
        await convs.updateGroupFields(trx, conv.id, fields);
        const after = (await convs.getConversationRow(trx, conv.id))!;
        const people = await convs.participantsOf(trx, conv.id);
        return {
          event: "group_updated",
          userIds: [],
          events: (seq) =>
            people.map((p) =>
              storedEvent(
                p.user_id,
                {
                  case: "conversationUpdated",
                  value: { $typeName: "realtime.ConversationUpdated", conversation: snapshotFor({ ...after, last_seq: seq }, people, p.user_id), actorId: me },
                },
                clock.now(),
                { conversationId: conv.id },
              ),
            ),
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async addParticipants(req, hc) {
      const me = callerOf(hc).userId;
      const ids = [...new Set(req.userIds.map((id, i) => uuidField(`user_ids[${i}]`, id)))];
      if (ids.length === 0) throw bad("user_ids: name at least one user to add");
      const existing = await convs.existingUserIds(db, ids);
      const unknown = ids.find((id) => !existing.has(id));
      if (unknown) throw new ConnectError(`user_ids: no user with id ${unknown}`, Code.NotFound);
      await requireNotBlockedByAny(db, me, ids);
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const current = new Set(people.map((p) => p.user_id));
        const fresh = ids.filter((id) => !current.has(id));
        if (fresh.length === 0) return null;
        await requireGroupAddAllowed(trx, me, fresh);
        if (current.size + fresh.length > MAX_PARTICIPANTS) {
          throw new ConnectError(`a group has at most ${MAX_PARTICIPANTS} participants (${current.size} now)`, Code.FailedPrecondition);
        }
        // They see the timeline from the message that adds them.
        await convs.addParticipants(trx, conv.id, fresh, conv.last_seq, clock.now());
        const created = await conversationCreatedEvents(trx, conv.id, fresh, clock.now(), BigInt(conv.last_seq) + 1n);
        return {
          event: "participants_added",
          userIds: fresh,
          recipients: [...current, ...fresh],
          events: () => [
            ...created,
            ...[...current, ...fresh].map((userId) =>
              storedEvent(
                userId,
                { case: "participantAdded", value: { $typeName: "realtime.ParticipantAdded", conversationId: conv.id, userIds: fresh, actorId: me } },
                clock.now(),
                {
                  conversationId: conv.id,
                },
              ),
            ),
          ],
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async removeParticipant(req, hc) {
      const me = callerOf(hc).userId;
      const target = uuidField("user_id", req.userId);
      if (target === me) throw bad("user_id: to remove yourself, call LeaveConversation");
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const them = people.find((p) => p.user_id === target);
        // Already gone (e.g. a retry): done, nothing to write or tell.
        if (!them && (await convs.getParticipation(trx, conv.id, target))?.left_at) return null;
        if (!them) throw new ConnectError(`user ${target} is not a participant of this group`, Code.NotFound);
        if (them.role === "owner") throw new ConnectError("the group's owner cannot be removed", Code.PermissionDenied);
        if (them.role === "admin" && my.role !== "owner") throw new ConnectError("only the owner can remove an admin", Code.PermissionDenied);
        return {
          event: "participant_removed",
          userIds: [target],
          events: () => people.map((p) => participantRemoved(p.user_id, conv.id, target, me)),
          // They see their removal, and nothing after it.
          after: (seq: string) => convs.markLeft(trx, conv.id, target, seq, clock.now()),
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async setParticipantRole(req, hc) {
      const me = callerOf(hc).userId;
      const target = uuidField("user_id", req.userId);
      const role = PROTO_TO_ROLE[req.role];
      if (!role) throw bad("role: one of PARTICIPANT_ROLE_MEMBER, PARTICIPANT_ROLE_ADMIN, PARTICIPANT_ROLE_OWNER");
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const them = people.find((p) => p.user_id === target);
        if (!them) throw new ConnectError(`user ${target} is not a participant of this group`, Code.NotFound);
        if (them.role === role) return null;
        if (my.role !== "owner" && !(them.role === "member" && role === "admin")) {
          throw new ConnectError("admins can only make members admins; other role changes are the owner's", Code.PermissionDenied);
        }
        if (them.role === "owner") throw new ConnectError("hand ownership over by making someone else the owner", Code.FailedPrecondition);
        if (role === "owner") await convs.setRole(trx, conv.id, me, "admin");
        await convs.setRole(trx, conv.id, target, role);
        const changes: Array<[string, convs.Role]> =
          role === "owner"
            ? [
                [target, "owner"],
                [me, "admin"],
              ]
            : [[target, role]];
        return {
          event: role === "owner" ? "owner_changed" : "role_changed",
          userIds: [target],
          events: () => changes.flatMap(([userId, r]) => people.map((p) => roleChanged(p.user_id, conv.id, userId, r, me))),
        };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async leaveConversation(req, hc) {
      const me = callerOf(hc).userId;
      await changeGroup(
        me,
        req.conversationId,
        async (trx, { my, conv, people }) => {
          const others = people.filter((p) => p.user_id !== me);
          let heir: convs.ParticipantRow | undefined;
          if (my.role === "owner" && others.length > 0) {
            // people are ordered by joined_at: the longest-standing admin, else participant.
            heir = others.find((p) => p.role === "admin") ?? others[0]!;
            await convs.setRole(trx, conv.id, heir.user_id, "owner");
          }
          return {
            event: "participant_left",
            userIds: [me],
            after: (seq: string) => convs.markLeft(trx, conv.id, me, seq, clock.now()),
            events: () => [
              ...people.map((p) => participantRemoved(p.user_id, conv.id, me, me)),
              ...(heir ? others.map((p) => roleChanged(p.user_id, conv.id, heir.user_id, "owner", me)) : []),
            ],
          };
        },
        { formerIsDone: true },
      );
      return {};
    },
  };
}
