// The chat rules of blocking, as plain values: the service edge
// (services/blocking.ts) reads the blocks and turns a refusal into the
// PermissionDenied that ChatService, RealtimeService (SendTyping) and
// StatusService.ReplyToStatus answer with.

/** How a user stands to the other side of a direct conversation (otherId null: a group). */
export interface DirectBlockFacts {
  otherId: string | null;
  /** The user has blocked the other participant. */
  iBlocked: boolean;
  /** The other participant has blocked the user. */
  blockedMe: boolean;
}

/** A write refused by a block: "mine" when I blocked `otherId`, "theirs" when they blocked me. */
export interface BlockRefusal {
  otherId: string;
  whose: "mine" | "theirs";
}

/**
 * The block rule of direct conversations: while either side has blocked the
 * other, neither opens, messages, types in or reacts in their direct
 * conversation. Groups pass (otherId null).
 */
export function directBlockRule(s: DirectBlockFacts): BlockRefusal | undefined {
  if (s.otherId === null) return undefined;
  if (s.iBlocked) return { otherId: s.otherId, whose: "mine" };
  if (s.blockedMe) return { otherId: s.otherId, whose: "theirs" };
  return undefined;
}

/** Adding users to a group: none of them may have blocked the one adding them. The first of `userIds` who has, if any. */
export function firstBlocker(userIds: readonly string[], blockers: ReadonlySet<string>): string | undefined {
  return userIds.find((id) => blockers.has(id));
}
