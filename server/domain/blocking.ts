import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { blockedBy, blockersOf, directBlockState, type DirectBlockState } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// The chat rules of blocking, one call each from ChatService, RealtimeService
// (SendTyping) and StatusService.ReplyToStatus: PermissionDenied with a
// message that says which way the block goes and what to do about it.

/**
 * The block rule of direct conversations: while either side has blocked the
 * other, neither opens, messages, types in or reacts in their direct
 * conversation. Groups pass (otherId null).
 */
export function directBlockRefusal(s: DirectBlockState): ConnectError | undefined {
  if (s.otherId === null) return undefined;
  if (s.iBlocked) return blockError(s.otherId, "mine");
  if (s.blockedMe) return blockError(s.otherId, "theirs");
  return undefined;
}

/** Opening (or writing to) a direct conversation between `me` and `other`. */
export async function requireNoBlockBetween(db: Db, me: string, other: string): Promise<void> {
  if (me === other) return;
  const [mine, theirs] = await Promise.all([blockedBy(db, me, [other]), blockersOf(db, me, [other])]);
  const refusal = directBlockRefusal({ otherId: other, iBlocked: mine.size > 0, blockedMe: theirs.size > 0 });
  if (refusal) throw refusal;
}

/** The refusal for messaging `other`: "mine" when I blocked them, "theirs" when they blocked me. */
function blockError(other: string, whose: "mine" | "theirs"): ConnectError {
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

/** Writing to a conversation (typing, reacting): refused in a direct one while either side has blocked the other; groups pass. */
export async function requireDirectNotBlocked(db: Db, conversationId: string, userId: string): Promise<void> {
  const refusal = directBlockRefusal(await directBlockState(db, conversationId, userId));
  if (refusal) throw refusal;
}
