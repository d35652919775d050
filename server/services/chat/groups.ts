import { Code, ConnectError } from "@connectrpc/connect";
import { ParticipantRole } from "../../../gen/chat/chat_pb.js";
import * as convs from "../../db/conversation-store.js";
import type { NewInboxEvent } from "../../messaging/types.js";
import * as invites from "../../db/invite-store.js";
import { refusingGroupAdd } from "../../db/privacy-store.js";
import { permits, policyChanges, type PolicyColumns } from "../../domain/group-policies.js";
import { newInviteCode, PERSONAL_INVITE_TTL_MS } from "../../domain/invites.js";
import { groupRoom } from "./group-change.js";
import { requireNotBlockedByAny } from "../blocking.js";
import { roleToProto } from "../../domain/conversation-view.js";
import { checkGroupFields, type GroupFields } from "../../domain/group-fields.js";
import { storedEvent } from "../../realtime/events.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { requireAdmin, type ChatHandlers, type ChatRoom } from "./context.js";

const PROTO_TO_ROLE: Partial<Record<ParticipantRole, convs.Role>> = {
  [ParticipantRole.MEMBER]: "member",
  [ParticipantRole.ADMIN]: "admin",
  [ParticipantRole.OWNER]: "owner",
};

/** Group management: its fields, who is in it, their roles, and leaving. */
export function groupHandlers(
  room: ChatRoom,
): ChatHandlers<"updateGroup" | "addParticipants" | "removeParticipant" | "setParticipantRole" | "leaveConversation"> {
  const { db, clock, conversationFor, snapshotFor } = room;
  const { changeGroup, admit, requestEvents, inviteEvent } = groupRoom(room);

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

  return {
    async updateGroup(req, hc) {
      const me = callerOf(hc).userId;
      const checked = checkGroupFields({ name: req.groupName, description: req.groupDescription, avatarUrl: req.groupAvatarUrl });
      if (!checked.ok) throw bad(checked.problem);
      const { fields } = checked;
      const policies = policyChanges({
        send: req.sendMessagesPolicy,
        editInfo: req.editInfoPolicy,
        add: req.addParticipantsPolicy,
        approve: req.approveNewMembers,
        names: { send: "send_messages_policy", editInfo: "edit_info_policy", add: "add_participants_policy" },
      });
      if (!policies.ok) throw bad(policies.problem);
      const { changes } = policies;
      if (Object.keys(fields).length === 0 && Object.keys(changes).length === 0) {
        throw bad("set at least one of group_name, group_description, group_avatar_url, or a policy field");
      }
      await changeGroup(me, req.conversationId, async (trx, { my, conv }) => {
        if (Object.keys(fields).length > 0 && !permits(conv.edit_info_policy, my.role)) {
          throw new ConnectError("only admins can edit this group's info (its edit_info policy)", Code.PermissionDenied);
        }
        if (Object.keys(changes).length > 0 && !permits("admins", my.role)) {
          throw new ConnectError("only group admins can change the group's policies", Code.PermissionDenied);
        }
        // Every field already so (e.g. a retry): no system message, no event.
        const infoChanged = Object.entries(fields).some(([k, v]) => conv[k as keyof GroupFields] !== v);
        const policiesChanged = Object.entries(changes).some(([k, v]) => conv[k as keyof PolicyColumns] !== v);
        if (!infoChanged && !policiesChanged) return null;
        await convs.updateGroupFields(trx, conv.id, { ...fields, ...changes });
        const after = (await convs.getConversationRow(trx, conv.id))!;
        const people = await convs.participantsOf(trx, conv.id);
        return {
          before: infoChanged && policiesChanged ? "group_updated" : undefined,
          event: policiesChanged ? "group_policies_updated" : "group_updated",
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
      const invited: string[] = [];
      const pending: string[] = [];
      await changeGroup(me, req.conversationId, async (trx, locked) => {
        const { my, conv, people } = locked;
        if (!permits(conv.add_policy, my.role)) {
          throw new ConnectError("only admins can add participants to this group (its add_participants policy)", Code.PermissionDenied);
        }
        const current = new Set(people.map((p) => p.user_id));
        const fresh = ids.filter((id) => !current.has(id));
        if (fresh.length === 0) return null;
        const isAdmin = permits("admins", my.role);
        const events: NewInboxEvent[] = [];
        // Refused by their group_add setting: a personal invite each (one per group while usable).
        const refused = new Set(await refusingGroupAdd(trx, me, fresh));
        for (const userId of refused) {
          const now = clock.now();
          let link = await invites.activePersonalInvite(trx, conv.id, userId, now);
          if (!link) {
            link = await invites.insertInviteLink(trx, {
              code: newInviteCode(),
              conversationId: conv.id,
              createdBy: me,
              now,
              expiresAt: new Date(now.getTime() + PERSONAL_INVITE_TTL_MS),
              maxUses: 1,
              requiresApproval: false,
              inviteeId: userId,
            });
            events.push(inviteEvent(link, locked, conv.approve_new_members && !isAdmin));
          }
          invited.push(userId);
        }
        let addable = fresh.filter((id) => !refused.has(id));
        // A plain member's adds wait for an admin when the group asks for approval.
        if (conv.approve_new_members && !isAdmin) {
          for (const userId of addable) {
            const before = await invites.getJoinRequest(trx, conv.id, userId);
            if (before?.state !== "pending") {
              const r = await invites.upsertPendingRequest(trx, { conversationId: conv.id, userId, addedBy: me, inviteCode: null, now: clock.now() });
              events.push(...requestEvents(r, people, me));
            }
            pending.push(userId);
          }
          addable = [];
        }
        if (addable.length === 0) return { events: () => events };
        const admitted = await admit(trx, me, locked, addable);
        return {
          event: "participants_added",
          userIds: addable,
          recipients: admitted.recipients,
          events: () => [...admitted.events(), ...events],
        };
      });
      return {
        conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)),
        invitedUserIds: invited,
        pendingApprovalUserIds: pending,
      };
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
