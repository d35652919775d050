import { create } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { MessagesExpiredSchema } from "../../gen/realtime/realtime_pb.js";
import { dueMessages, lockConversationsShared, purgeMessages, seersOf } from "../db/disappearing-store.js";
import { appendInboxEvents } from "../db/message-store.js";
import type { Database } from "../db/schema.js";
import { PURGE_BATCH, PURGE_BATCHES_PER_RUN } from "../domain/disappearing.js";
import { storedEvent } from "../realtime/events.js";
import type { EventBus } from "./bus.js";
import { publishNotices } from "./message-queue.js";
import type { NewInboxEvent } from "./types.js";

/**
 * The disappearing-messages purge (a periodic job, server/jobs.ts): messages
 * past their expires_at lose their content, reactions, media references and
 * search index entries, and each current participant who saw them gets one
 * `messages_expired` event per conversation. Reads hide expired messages
 * already (ListMessages, search, replay), so a late run shows nothing early.
 * Bounded: at most PURGE_BATCHES_PER_RUN transactions of PURGE_BATCH
 * messages; a bigger backlog goes on at the next run. Returns how many were purged.
 */
export async function purgeExpiredMessages(db: Kysely<Database>, bus: EventBus, subjectPrefix: string, now: Date, batch = PURGE_BATCH): Promise<number> {
  let total = 0;
  for (let i = 0; i < PURGE_BATCHES_PER_RUN; i++) {
    const due = await dueMessages(db, now, batch);
    if (due.length === 0) break;
    const { purged, notices } = await db.transaction().execute(async (trx) => {
      await lockConversationsShared(trx, [...new Set(due.map((m) => m.conversation_id))].sort());
      const purged = await purgeMessages(
        trx,
        due.map((m) => m.id),
      );
      const seers = await seersOf(trx, [...new Set(purged.map((m) => m.conversation_id))]);
      const events: NewInboxEvent[] = [];
      for (const p of seers) {
        // Only what the participant's window holds (not what was sent before they joined).
        const theirs = purged.filter((m) => m.conversation_id === p.conversation_id && BigInt(m.seq) > BigInt(p.joined_seq));
        if (theirs.length === 0) continue;
        const value = create(MessagesExpiredSchema, {
          conversationId: p.conversation_id,
          messageIds: theirs.map((m) => m.id),
          seqs: theirs.map((m) => BigInt(m.seq)),
        });
        events.push(storedEvent(p.user_id, { case: "messagesExpired", value }, now, { conversationId: p.conversation_id }));
      }
      return { purged, notices: await appendInboxEvents(trx, events, now) };
    });
    publishNotices(bus, subjectPrefix, notices);
    total += purged.length;
    if (due.length < batch) break;
  }
  return total;
}
