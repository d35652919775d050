import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Transaction } from "kysely";
import { CreateInviteLinkResponseSchema, ResetInviteLinksResponseSchema } from "../../../gen/chat/chat_pb.js";
import * as convs from "../../db/conversation-store.js";
import * as invites from "../../db/invite-store.js";
import type { Database } from "../../db/schema.js";
import { toInviteLink, toInvitePreview, toJoinRequest, needsApproval } from "../../domain/invite-view.js";
import { checkLinkSettings, INVITE_CODE_MAX, linkProblem, newInviteCode } from "../../domain/invites.js";
import { publishNotices } from "../../messaging/message-queue.js";
import type { InboxNotice } from "../../messaging/types.js";
import { requireNotBlockedByAny } from "../blocking.js";
import { oncePerKey, requestIdField } from "../request-replay.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, requireAdmin, type ChatHandlers, type ChatRoom } from "./context.js";
import { groupRoom } from "./group-change.js";

const LIST_MAX = 100;

/** Invite links (shared and personal), joining by them, and join requests (issue 17, item 2). */
export function inviteHandlers(
  room: ChatRoom,
): ChatHandlers<
  | "createInviteLink"
  | "listInviteLinks"
  | "revokeInviteLink"
  | "resetInviteLinks"
  | "getInvitePreview"
  | "joinByInvite"
  | "listJoinRequests"
  | "approveJoinRequest"
  | "rejectJoinRequest"
  | "listMyGroupInvites"
> {
  const { ctx, db, clock, conversationFor } = room;
  const { changeGroup, writeChange, admit, requestEvents } = groupRoom(room);
  const MAX_REQUESTS = ctx.config.chat.maxParticipants;

  /** The group, when the caller is one of its current admins: NotFound, FailedPrecondition (direct) or PermissionDenied otherwise. */
  async function adminOf(me: string, rawConversationId: string) {
    const id = uuidField("conversation_id", rawConversationId);
    const my = await convs.getParticipation(db, id, me);
    if (!my || my.left_at !== null) throw notFound(id);
    const conv = (await convs.getConversationRow(db, id))!;
    if (!conv.is_group) throw new ConnectError("this is a direct conversation, not a group", Code.FailedPrecondition);
    requireAdmin(my);
    return conv;
  }

  function codeField(raw: string): string {
    const code = raw.trim();
    if (code === "") throw bad("code: the invite code is required");
    return code;
  }

  const noSuchCode = () => new ConnectError("no invite with this code", Code.NotFound);

  /** The link behind a code the caller may use (a personal invite only by its invitee). */
  async function linkFor(me: string, rawCode: string) {
    const code = codeField(rawCode);
    const link = code.length > INVITE_CODE_MAX ? undefined : await invites.getInviteLink(db, code);
    if (!link || (link.invitee_id !== null && link.invitee_id !== me)) throw noSuchCode();
    return link;
  }

  function settings(expiresInSeconds: bigint, maxUses: number, now: Date) {
    const checked = checkLinkSettings(expiresInSeconds, maxUses, now);
    if (!checked.ok) throw bad(checked.problem);
    return checked;
  }

  /** What CreateInviteLink and ResetInviteLinks check first: the settings, the request id, the caller an admin. */
  async function linkRequest(
    req: { expiresInSeconds: bigint; maxUses: number; clientRequestId: string; conversationId: string },
    hc: HandlerContext,
    rpc: "CreateInviteLink" | "ResetInviteLinks",
  ) {
    const me = callerOf(hc).userId;
    const now = clock.now();
    const s = settings(req.expiresInSeconds, req.maxUses, now);
    const requestId = requestIdField(req.clientRequestId);
    const conv = await adminOf(me, req.conversationId);
    const key = requestId ? { owner: me, rpc: `chat.ChatService/${rpc}`, key: requestId } : undefined;
    return { me, now, s, conv, key };
  }

  /** A new shared link of the group, made by `me`. */
  function insertLink(
    trx: Transaction<Database>,
    conversationId: string,
    me: string,
    now: Date,
    s: { expiresAt: Date | null; maxUses: number },
    requiresApproval: boolean,
  ) {
    return invites.insertInviteLink(trx, {
      code: newInviteCode(),
      conversationId,
      createdBy: me,
      now,
      expiresAt: s.expiresAt,
      maxUses: s.maxUses,
      requiresApproval,
    });
  }

  return {
    async createInviteLink(req, hc) {
      const { me, now, s, conv, key } = await linkRequest(req, hc, "CreateInviteLink");
      return oncePerKey(ctx, key, CreateInviteLinkResponseSchema, async (trx) => {
        const link = await insertLink(trx, conv.id, me, now, s, req.requiresApproval);
        return { answer: create(CreateInviteLinkResponseSchema, { link: toInviteLink(link, now) }) };
      });
    },

    async listInviteLinks(req, hc) {
      const me = callerOf(hc).userId;
      const conv = await adminOf(me, req.conversationId);
      const rows = await invites.listInviteLinks(db, conv.id, { includeInactive: req.includeInactive, now: clock.now(), limit: LIST_MAX });
      return { links: rows.map((l) => toInviteLink(l, clock.now())) };
    },

    async revokeInviteLink(req, hc) {
      const me = callerOf(hc).userId;
      const code = codeField(req.code);
      const conv = await adminOf(me, req.conversationId);
      const link = code.length > INVITE_CODE_MAX ? undefined : await invites.getInviteLink(db, code);
      if (!link || link.conversation_id !== conv.id) throw new ConnectError("no invite link of this group has this code", Code.NotFound);
      const revoked = (await invites.revokeInviteLink(db, code, clock.now())) ?? link;
      return { link: toInviteLink(revoked, clock.now()) };
    },

    async resetInviteLinks(req, hc) {
      const { me, now, s, conv, key } = await linkRequest(req, hc, "ResetInviteLinks");
      return oncePerKey(ctx, key, ResetInviteLinksResponseSchema, async (trx) => {
        const revokedCount = await invites.revokeSharedLinks(trx, conv.id, now);
        const link = await insertLink(trx, conv.id, me, now, s, req.requiresApproval);
        return { answer: create(ResetInviteLinksResponseSchema, { link: toInviteLink(link, now), revokedCount }) };
      });
    },

    async getInvitePreview(req, hc) {
      const me = callerOf(hc).userId;
      const link = await linkFor(me, req.code);
      const problem = linkProblem(link, clock.now());
      if (problem) throw new ConnectError(problem, Code.FailedPrecondition);
      const conv = (await convs.getConversationRow(db, link.conversation_id))!;
      const people = await convs.participantsOf(db, conv.id);
      const creator = people.find((p) => p.user_id === link.created_by);
      return {
        preview: toInvitePreview(conv, link, {
          participantCount: people.length,
          requiresApproval: needsApproval(conv, link, creator?.role),
          alreadyParticipant: people.some((p) => p.user_id === me),
        }),
      };
    },

    async joinByInvite(req, hc) {
      const me = callerOf(hc).userId;
      const peek = await linkFor(me, req.code);
      const conversationId = peek.conversation_id;
      const out = await db.transaction().execute(async (trx): Promise<{ request?: invites.JoinRequestRow; notices: InboxNotice[] }> => {
        // Lock order: the conversation, then the link (its use count).
        const conv = (await convs.lockConversation(trx, conversationId))!;
        const link = (await invites.lockInviteLink(trx, peek.code))!;
        const people = await convs.participantsOf(trx, conversationId);
        // A retry, or already in: nothing more (no second use counted).
        if (people.some((p) => p.user_id === me)) return { notices: [] };
        const prior = await invites.getJoinRequest(trx, conversationId, me);
        if (prior?.state === "pending") return { request: prior, notices: [] };
        const problem = linkProblem(link, clock.now());
        if (problem) throw new ConnectError(problem, Code.FailedPrecondition);
        if (prior?.state === "rejected") {
          throw new ConnectError("an admin of this group declined your request to join; an admin can still add you", Code.PermissionDenied);
        }
        await requireNotBlockedByAny(trx, me, [link.created_by]);
        await invites.countUse(trx, link.code);
        const creator = people.find((p) => p.user_id === link.created_by);
        const locked = { conv, people };
        if (needsApproval(conv, link, creator?.role)) {
          const request = await invites.upsertPendingRequest(trx, { conversationId, userId: me, addedBy: null, inviteCode: link.code, now: clock.now() });
          return { request, notices: await writeChange(trx, me, locked, { events: () => requestEvents(request, people, me) }) };
        }
        const admitted = await admit(trx, me, locked, [me]);
        return {
          notices: await writeChange(trx, me, locked, {
            event: "participant_joined",
            userIds: [me],
            recipients: admitted.recipients,
            events: admitted.events,
          }),
        };
      });
      publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, out.notices);
      if (out.request) return { joinRequest: toJoinRequest(out.request) };
      return { conversation: await conversationFor(me, conversationId) };
    },

    async listJoinRequests(req, hc) {
      const me = callerOf(hc).userId;
      const conv = await adminOf(me, req.conversationId);
      return { requests: (await invites.pendingRequests(db, conv.id, MAX_REQUESTS)).map(toJoinRequest) };
    },

    async approveJoinRequest(req, hc) {
      const me = callerOf(hc).userId;
      const target = uuidField("user_id", req.userId);
      await changeGroup(me, req.conversationId, async (trx, locked) => {
        const { my, conv, people } = locked;
        requireAdmin(my);
        const r = await invites.getJoinRequest(trx, conv.id, target);
        if (!r) throw new ConnectError(`no join request of user ${target} in this group`, Code.NotFound);
        if (r.state === "rejected")
          throw new ConnectError("this join request was rejected; add the user with AddParticipants instead", Code.FailedPrecondition);
        if (r.state === "approved") return null;
        if (people.some((p) => p.user_id === target)) {
          const decided = await invites.decideRequests(trx, conv.id, [target], "approved", me, clock.now());
          return { events: () => decided.flatMap((d) => requestEvents(d, people, me)) };
        }
        await requireNotBlockedByAny(trx, me, [target]);
        const admitted = await admit(trx, me, locked, [target]);
        return { event: "participants_added", userIds: [target], recipients: admitted.recipients, events: admitted.events };
      });
      return { conversation: await conversationFor(me, uuidField("conversation_id", req.conversationId)) };
    },

    async rejectJoinRequest(req, hc) {
      const me = callerOf(hc).userId;
      const target = uuidField("user_id", req.userId);
      let answer: invites.JoinRequestRow | undefined;
      await changeGroup(me, req.conversationId, async (trx, { my, conv, people }) => {
        requireAdmin(my);
        const r = await invites.getJoinRequest(trx, conv.id, target);
        if (!r) throw new ConnectError(`no join request of user ${target} in this group`, Code.NotFound);
        if (r.state === "approved") throw new ConnectError("this join request was already approved; remove the participant instead", Code.FailedPrecondition);
        answer = r;
        if (r.state === "rejected") return null;
        const decided = await invites.decideRequests(trx, conv.id, [target], "rejected", me, clock.now());
        answer = decided[0] ?? r;
        return { events: () => decided.flatMap((d) => requestEvents(d, people, me)) };
      });
      return { request: toJoinRequest(answer!) };
    },

    async listMyGroupInvites(_req, hc) {
      const me = callerOf(hc).userId;
      const now = clock.now();
      const links = await invites.personalInvites(db, me, now, LIST_MAX);
      const ids = [...new Set(links.map((l) => l.conversation_id))];
      const participants = await convs.currentParticipants(db, ids);
      const rows = new Map<string, convs.ConversationRow>();
      for (const id of ids) rows.set(id, (await convs.getConversationRow(db, id))!);
      return {
        invites: links
          .filter((l) => !(participants.get(l.conversation_id) ?? []).some((p) => p.user_id === me))
          .map((l) => {
            const conv = rows.get(l.conversation_id)!;
            const people = participants.get(l.conversation_id) ?? [];
            const creator = people.find((p) => p.user_id === l.created_by);
            return {
              $typeName: "chat.GroupInvite" as const,
              link: toInviteLink(l, now),
              preview: toInvitePreview(conv, l, {
                participantCount: people.length,
                requiresApproval: needsApproval(conv, l, creator?.role),
                alreadyParticipant: false,
              }),
            };
          }),
      };
    },
  };
}
