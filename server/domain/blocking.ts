import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { blockedBy, blockersOf } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// The chat rules of blocking, one call each from ChatService (and
// StatusService.ReplyToStatus): PermissionDenied with a message that says
// which way the block goes and what to do about it.

/** Opening (or writing to) a direct conversation between `me` and `other`. */
export async function requireNoBlockBetween(db: Db, me: string, other: string): Promise<void> {
  if (me === other) return;
  if ((await blockedBy(db, me, [other])).size > 0) throw blockError(other, "mine");
  if ((await blockersOf(db, me, [other])).size > 0) throw blockError(other, "theirs");
}

/** The refusal for messaging `other`: "mine" when I blocked them, "theirs" when they blocked me. */
export function blockError(other: string, whose: "mine" | "theirs"): ConnectError {
  return whose === "mine"
    ? new ConnectError(`you have blocked user ${other}; unblock them (UserService.UnblockUser) to message them`, Code.PermissionDenied)
    : new ConnectError(`user ${other} has blocked you; you cannot message them`, Code.PermissionDenied);
}

/** Adding users to a group: none of them may have blocked the one adding them. */
export async function requireNotBlockedByAny(db: Db, adder: string, userIds: readonly string[]): Promise<void> {
  const blockers = await blockersOf(db, adder, userIds.filter((id) => id !== adder));
  const first = userIds.find((id) => blockers.has(id));
  if (first) throw new ConnectError(`user ${first} has blocked you; you cannot add them to a group`, Code.PermissionDenied);
}

/** Sending in a conversation: refused in a direct one when either side has blocked the other; groups pass. */
export async function requireDirectNotBlocked(db: Db, conversationId: string, senderId: string): Promise<void> {
  const conv = await db.selectFrom("conversations").select("is_group").where("id", "=", conversationId).executeTakeFirst();
  if (!conv || conv.is_group) return;
  const other = await db
    .selectFrom("conversation_participants")
    .select("user_id")
    .where("conversation_id", "=", conversationId)
    .where("user_id", "!=", senderId)
    .executeTakeFirst();
  if (other) await requireNoBlockBetween(db, senderId, other.user_id);
}
