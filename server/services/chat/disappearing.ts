import * as convs from "../../db/conversation-store.js";
import { setDisappearingSeconds } from "../../db/disappearing-store.js";
import { DISAPPEARING_TIMERS } from "../../domain/disappearing.js";
import { insertSystemMessage } from "../../messaging/store.js";
import { publishNotices } from "../../messaging/message-queue.js";
import { storedEvent } from "../../realtime/events.js";
import { requireDirectNotBlocked } from "../blocking.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { notFound, type ChatHandlers, type ChatRoom } from "./context.js";

/**
 * SetDisappearingTimer. Who may set it: any current participant, in direct
 * conversations and groups (WhatsApp's default; a group policy restricting it
 * to admins would go with "edit group info", which Chatwire's groups do not
 * have here). Naturally idempotent: setting the timer the conversation has
 * writes and sends nothing.
 */
export function disappearingHandlers(room: ChatRoom): ChatHandlers<"setDisappearingTimer"> {
  const { ctx, db, clock, conversationFor, snapshotFor } = room;
  return {
    async setDisappearingTimer(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      const seconds = req.seconds;
      if (!DISAPPEARING_TIMERS.includes(seconds)) {
        throw bad(`seconds: one of 0 (off), 86400 (24 hours), 604800 (7 days) or 7776000 (90 days) (got ${seconds})`);
      }
      const notices = await db.transaction().execute(async (trx) => {
        const conv = await convs.lockConversation(trx, conversationId);
        const my = conv ? await convs.getParticipation(trx, conversationId, me) : undefined;
        if (!conv || !my || my.left_at !== null) throw notFound(conversationId);
        await requireDirectNotBlocked(trx, conversationId, me);
        if (!(await setDisappearingSeconds(trx, conversationId, seconds))) return [];
        const people = await convs.participantsOf(trx, conversationId);
        const after = { ...conv, disappearing_seconds: seconds };
        const sys = await insertSystemMessage(
          trx,
          {
            conversationId,
            actorId: me,
            event: "disappearing_timer_changed",
            userIds: [me],
            content: String(seconds),
            recipients: people.map((p) => p.user_id),
            extraEvents: (seq) =>
              people.map((p) =>
                storedEvent(
                  p.user_id,
                  {
                    case: "conversationUpdated",
                    value: {
                      $typeName: "realtime.ConversationUpdated",
                      conversation: snapshotFor({ ...after, last_seq: seq, last_activity_at: clock.now() }, people, p.user_id),
                      actorId: me,
                    },
                  },
                  clock.now(),
                  { conversationId },
                ),
              ),
          },
          clock.now(),
        );
        return sys.notices;
      });
      publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
      return { conversation: await conversationFor(me, conversationId) };
    },
  };
}
