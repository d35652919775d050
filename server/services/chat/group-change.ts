import { Code, ConnectError } from "@connectrpc/connect";
import type { Transaction } from "kysely";
import * as convs from "../../db/conversation-store.js";
import { decideRequests, type InviteLinkRow, type JoinRequestRow } from "../../db/invite-store.js";
import { appendInboxEvents } from "../../db/message-store.js";
import type { Database } from "../../db/schema.js";
import { toInviteLink, toInvitePreview, toJoinRequest } from "../../domain/invite-view.js";
import { insertSystemMessage } from "../../messaging/store.js";
import type { InboxNotice, NewInboxEvent } from "../../messaging/types.js";
import { publishNotices } from "../../messaging/message-queue.js";
import { storedEvent } from "../../realtime/events.js";
import { conversationCreatedEvents } from "../direct-conversations.js";
import { uuidField } from "../rpc-input.js";
import { notFound, type ChatRoom } from "./context.js";

// What group management (groups.ts) and invites (invites.ts) share: a change
// under the conversation's row lock written into the timeline, letting users
// in, and the join request and invite events.

export interface GroupChange {
  /** The system message's event; absent: no system message, only `events` (with seq ""). */
  event?: string;
  /** A system message written before `event`'s (a call that changes two things). */
  before?: string;
  userIds?: string[];
  /** Who sees the system message; default: the current participants. */
  recipients?: string[];
  /** Runs after the system message has its seq (e.g. mark a participant left at it). */
  after?: (seq: string) => Promise<void>;
  /** The change's structured realtime events (participant added, conversation updated ...). */
  events?: (seq: string) => NewInboxEvent[];
}

export interface Locked {
  conv: convs.ConversationRow;
  people: convs.ParticipantRow[];
}

export function groupRoom(room: ChatRoom) {
  const { ctx, db, clock } = room;
  const MAX_PARTICIPANTS = ctx.config.chat.maxParticipants;

  /** Writes the change (system message(s), events) in `trx`; the notices to publish after the commit. */
  async function writeChange(trx: Transaction<Database>, me: string, { conv, people }: Locked, change: GroupChange): Promise<InboxNotice[]> {
    if (!change.event) return await appendInboxEvents(trx, change.events?.("") ?? [], clock.now());
    const recipients = change.recipients ?? people.map((p) => p.user_id);
    const first = change.before
      ? await insertSystemMessage(trx, { conversationId: conv.id, actorId: me, event: change.before, userIds: [], recipients }, clock.now())
      : undefined;
    const sys = await insertSystemMessage(
      trx,
      { conversationId: conv.id, actorId: me, event: change.event, userIds: change.userIds ?? [], recipients, extraEvents: change.events },
      clock.now(),
    );
    await change.after?.(sys.seq);
    return [...(first?.notices ?? []), ...sys.notices];
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
    apply: (trx: Transaction<Database>, c: Locked & { my: convs.ParticipantRow }) => Promise<GroupChange | null>,
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
      return await writeChange(trx, me, { conv, people }, change);
    });
    publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
  }

  /**
   * Lets `fresh` (not current participants) into the locked group: they see
   * the timeline from the system message that adds them; their pending join
   * requests become approved. The events: conversation_created for them,
   * participant_added for everyone, join_request_updated for what was decided.
   */
  async function admit(
    trx: Transaction<Database>,
    me: string,
    { conv, people }: Locked,
    fresh: string[],
  ): Promise<{ recipients: string[]; events: () => NewInboxEvent[] }> {
    if (people.length + fresh.length > MAX_PARTICIPANTS) {
      throw new ConnectError(`a group has at most ${MAX_PARTICIPANTS} participants (${people.length} now)`, Code.FailedPrecondition);
    }
    const current = people.map((p) => p.user_id);
    await convs.addParticipants(trx, conv.id, fresh, conv.last_seq, clock.now());
    const created = await conversationCreatedEvents(trx, conv.id, fresh, clock.now(), BigInt(conv.last_seq) + 1n);
    const decided = await decideRequests(trx, conv.id, fresh, "approved", me, clock.now());
    const everyone = [...current, ...fresh];
    return {
      recipients: everyone,
      events: () => [
        ...created,
        ...everyone.map((userId) =>
          storedEvent(
            userId,
            { case: "participantAdded", value: { $typeName: "realtime.ParticipantAdded", conversationId: conv.id, userIds: fresh, actorId: me } },
            clock.now(),
            { conversationId: conv.id },
          ),
        ),
        ...decided.flatMap((r) => requestEvents(r, people, me)),
      ],
    };
  }

  /** join_request_updated to the group's admins, the requester and whoever added them. */
  function requestEvents(r: JoinRequestRow, people: convs.ParticipantRow[], actorId: string): NewInboxEvent[] {
    const admins = people.filter((p) => p.role === "admin" || p.role === "owner").map((p) => p.user_id);
    const to = new Set([...admins, r.user_id, ...(r.added_by ? [r.added_by] : [])]);
    const request = toJoinRequest(r);
    return [...to].map((userId) =>
      storedEvent(userId, { case: "joinRequestUpdated", value: { $typeName: "realtime.JoinRequestUpdated", request, actorId } }, clock.now(), {
        conversationId: r.conversation_id,
      }),
    );
  }

  /** group_invite_received to the invitee of a personal invite. */
  function inviteEvent(link: InviteLinkRow, { conv, people }: Locked, requiresApproval: boolean): NewInboxEvent {
    const invite = {
      $typeName: "chat.GroupInvite" as const,
      link: toInviteLink(link, clock.now()),
      preview: toInvitePreview(conv, link, { participantCount: people.length, requiresApproval, alreadyParticipant: false }),
    };
    return storedEvent(link.invitee_id!, { case: "groupInviteReceived", value: { $typeName: "realtime.GroupInviteReceived", invite } }, clock.now(), {
      conversationId: null,
    });
  }

  return { changeGroup, writeChange, admit, requestEvents, inviteEvent };
}
