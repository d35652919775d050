import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { blockedBy, blockersOf, directBlockState } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";
import { directBlockRule, firstBlocker, type BlockRefusal, type DirectBlockFacts } from "../domain/blocking.js";

type Db = Kysely<Database> | Transaction<Database>;

// The block rules (domain/blocking.ts) at the service edge, one call each from
// ChatService, RealtimeService (SendTyping) and StatusService.ReplyToStatus:
// PermissionDenied with a message that says which way the block goes and what
// to do about it.

/** The direct-conversation block rule as the error a refused call answers with (groups pass). */
export function directBlockRefusal(s: DirectBlockFacts): ConnectError | undefined {
  const refusal = directBlockRule(s);
  return refusal && blockError(refusal);
}

/** The refusal for messaging the other user: "mine" when I blocked them, "theirs" when they blocked me. */
function blockError({ otherId, whose }: BlockRefusal): ConnectError {
  return whose === "mine"
    ? new ConnectError(`you have blocked user ${otherId}; unblock them (UserService.UnblockUser) to message them`, Code.PermissionDenied)
    : new ConnectError(`user ${otherId} has blocked you; you cannot message them`, Code.PermissionDenied);
}

/** Opening (or writing to) a direct conversation between `me` and `other`. */
export async function requireNoBlockBetween(db: Db, me: string, other: string): Promise<void> {
  if (me === other) return;
  const [mine, theirs] = await Promise.all([blockedBy(db, me, [other]), blockersOf(db, me, [other])]);
  const refusal = directBlockRefusal({ otherId: other, iBlocked: mine.size > 0, blockedMe: theirs.size > 0 });
  if (refusal) throw refusal;
}

/** Adding users to a group: none of them may have blocked the one adding them. */
export async function requireNotBlockedByAny(db: Db, adder: string, userIds: readonly string[]): Promise<void> {
  const first = firstBlocker(
    userIds,
    await blockersOf(
      db,
      adder,
      userIds.filter((id) => id !== adder),
    ),
  );
  if (first) throw new ConnectError(`user ${first} has blocked you; you cannot add them to a group`, Code.PermissionDenied);
}

/** Writing to a conversation (typing, reacting): refused in a direct one while either side has blocked the other; groups pass. */
export async function requireDirectNotBlocked(db: Db, conversationId: string, userId: string): Promise<void> {
  const refusal = directBlockRefusal(await directBlockState(db, conversationId, userId));
  if (refusal) throw refusal;
}
