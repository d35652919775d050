import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Transaction } from "kysely";
import { InvalidPhoneNumberError, normalizePhoneNumber } from "../../auth/phone.js";
import * as convs from "../../db/conversation-store.js";
import { insertSystemMessage } from "../../messaging/store.js";
import type { NewInboxEvent } from "../../messaging/types.js";
import type { Database } from "../../db/schema.js";
import { requireNoBlockBetween, requireNotBlockedByAny } from "../blocking.js";
import { checkGroupFields } from "../../domain/group-fields.js";
import { DEFAULT_POLICIES, policyChanges } from "../../domain/group-policies.js";
import { isUuid } from "../../domain/ids.js";
import { CLIENT_ID_MAX } from "../../domain/limits.js";
import { publishNotices } from "../../messaging/message-queue.js";
import { storedEvent } from "../../realtime/events.js";
import { conversationCreatedEvents, openDirectConversation } from "../direct-conversations.js";
import { requireGroupAddAllowed } from "../group-add-privacy.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { pageSize, type ChatHandlers, type ChatRoom } from "./context.js";

/** Opening conversations (direct and group), listing and reading them, and the caller's own mute and archive settings. */
export function conversationHandlers(
  room: ChatRoom,
): ChatHandlers<"createConversation" | "getConversations" | "getConversation" | "muteConversation" | "archiveConversation"> {
  const { ctx, db, clock, participation, conversationFor, toConversations, withEvents, snapshotFor } = room;
  const { maxParticipants: MAX_PARTICIPANTS } = ctx.config.chat;

  async function resolveParticipants(callerId: string, ids: string[], phones: string[]): Promise<string[]> {
    const wanted = new Set<string>();
    ids.forEach((id, i) => wanted.add(uuidField(`participant_ids[${i}]`, id)));
    const normalized = phones.map((raw, i) => {
      try {
        return normalizePhoneNumber(raw);
      } catch (err) {
        if (err instanceof InvalidPhoneNumberError) throw bad(`participant_phone_numbers[${i}]: ${err.message}`);
        throw err;
      }
    });
    const existing = await convs.existingUserIds(db, [...wanted]);
    for (const id of wanted) if (!existing.has(id)) throw new ConnectError(`participant_ids: no user with id ${id}`, Code.NotFound);
    const byPhone = await convs.userIdsByPhone(db, normalized);
    for (const phone of normalized) {
      const id = byPhone.get(phone);
      if (!id) throw new ConnectError(`participant_phone_numbers: no Chatwire user has the number ${phone}`, Code.NotFound);
      wanted.add(id);
    }
    wanted.delete(callerId);
    return [...wanted];
  }

  /** conversation_updated for the caller's own devices (their mute/archive settings). */
  async function selfUpdated(trx: Transaction<Database>, conversationId: string, me: string): Promise<NewInboxEvent> {
    const row = (await convs.getConversationRow(trx, conversationId))!;
    const people = await convs.participantsOf(trx, conversationId);
    return storedEvent(
      me,
      { case: "conversationUpdated", value: { $typeName: "realtime.ConversationUpdated", conversation: snapshotFor(row, people, me), actorId: me } },
      clock.now(),
      { conversationId },
    );
  }

  return {
    async createConversation(req, hc) {
      const me = callerOf(hc).userId;
      const now = clock.now();
      const others = await resolveParticipants(me, req.participantIds, req.participantPhoneNumbers);

      if (!req.isGroup) {
        if (others.length !== 1) {
          throw bad(`participant_ids: a direct conversation has exactly one other participant (got ${others.length}); set is_group for more`);
        }
        await requireNoBlockBetween(db, me, others[0]!);
        const { id, created } = await openDirectConversation(ctx, me, others[0]!);
        return { conversation: await conversationFor(me, id), created };
      }

      const checked = checkGroupFields({ name: req.groupName, description: req.groupDescription, avatarUrl: req.groupAvatarUrl });
      if (!checked.ok) throw bad(checked.problem);
      const { fields } = checked;
      const policies = policyChanges({
        send: req.policies?.sendMessages,
        editInfo: req.policies?.editInfo,
        add: req.policies?.addParticipants,
        approve: req.policies?.approveNewMembers,
        names: { send: "policies.send_messages", editInfo: "policies.edit_info", add: "policies.add_participants" },
      });
      if (!policies.ok) throw bad(policies.problem);
      if (others.length + 1 > MAX_PARTICIPANTS) throw bad(`participant_ids: a group has at most ${MAX_PARTICIPANTS} participants`);
      await requireNotBlockedByAny(db, me, others);
      await requireGroupAddAllowed(db, me, others);
      const requestId = req.clientRequestId.trim();
      if (requestId.length > CLIENT_ID_MAX) throw bad(`client_request_id: at most ${CLIENT_ID_MAX} characters`);
      if (requestId) {
        const existing = await convs.findGroupByRequest(db, me, requestId);
        if (existing) return { conversation: await conversationFor(me, existing.id), created: false };
      }
      const { inserted, notices } = await db.transaction().execute(async (trx) => {
        const inserted = await convs.insertConversation(trx, {
          isGroup: true,
          groupName: fields.group_name!,
          groupDescription: fields.group_description!,
          groupAvatarUrl: fields.group_avatar_url!,
          directKey: null,
          createdBy: me,
          clientRequestId: requestId || null,
          now,
          participants: [{ userId: me, role: "owner" }, ...others.map((userId) => ({ userId, role: "member" as const }))],
          policies: { ...DEFAULT_POLICIES, ...policies.changes },
        });
        if (!inserted) return { inserted, notices: [] };
        const created = await conversationCreatedEvents(trx, inserted.id, [me, ...others], now, 1n);
        const sys = await insertSystemMessage(
          trx,
          {
            conversationId: inserted.id,
            actorId: me,
            event: "group_created",
            userIds: others,
            recipients: [me, ...others],
            extraEvents: () => created,
          },
          now,
        );
        return { inserted, notices: sys.notices };
      });
      publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
      const id = inserted?.id ?? (await convs.findGroupByRequest(db, me, requestId))!.id;
      return { conversation: await conversationFor(me, id), created: inserted !== undefined };
    },

    async getConversations(req, hc) {
      const me = callerOf(hc).userId;
      const limit = pageSize(req.limit);
      let after: { at: Date; id: string; pinnedAt?: Date | null } | undefined;
      if (req.pageToken !== "") after = decodePageToken(req.pageToken);
      // One snapshot for the list and the inbox position, so a Subscribe from
      // that position neither misses nor repeats what the list shows.
      const { rows, position } = await db
        .transaction()
        .setIsolationLevel("repeatable read")
        .execute(async (trx) => {
          const position = await convs.inboxPosition(trx, me);
          const rows = await convs.listConversations(trx, me, { limit: limit + 1, after, includeArchived: req.includeArchived });
          return { rows, position };
        });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        conversations: await toConversations(me, page),
        nextPageToken: rows.length > limit && last ? encodePageToken(last.last_activity_at, last.id, last.my.pinned_at ?? null) : "",
        inboxPosition: BigInt(position),
      };
    },

    async getConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me, true);
      return { conversation: await conversationFor(me, conversationId) };
    },

    async muteConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me);
      const until = req.mutedUntil ? timestampDate(req.mutedUntil) : null;
      if (until && until <= clock.now()) throw bad("muted_until: must be in the future (leave it unset to unmute)");
      await withEvents(async (trx, emit) => {
        if (await convs.setMuted(trx, conversationId, me, until)) emit([await selfUpdated(trx, conversationId, me)]);
      });
      return {};
    },

    async archiveConversation(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      await participation(conversationId, me);
      await withEvents(async (trx, emit) => {
        if (await convs.setArchived(trx, conversationId, me, req.archived)) emit([await selfUpdated(trx, conversationId, me)]);
      });
      return {};
    },
  };
}

function encodePageToken(at: Date, id: string, pinnedAt: Date | null): string {
  return Buffer.from(JSON.stringify({ at: at.toISOString(), id, ...(pinnedAt ? { p: pinnedAt.toISOString() } : {}) })).toString("base64url");
}

function decodePageToken(token: string): { at: Date; id: string; pinnedAt: Date | null } {
  try {
    const { at, id, p } = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { at: string; id: string; p?: string };
    const date = new Date(at);
    const pinnedAt = p === undefined ? null : new Date(p);
    if (Number.isNaN(date.getTime()) || typeof id !== "string" || !isUuid(id) || (pinnedAt && Number.isNaN(pinnedAt.getTime()))) throw new Error("bad token");
    return { at: date, id, pinnedAt };
  } catch {
    throw bad("page_token: not a token from a previous GetConversations page");
  }
}
