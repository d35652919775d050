import { createChatwireClient, type Conversation, type Message, type Subscription } from "@chatwire/client";

// What the page knows: the client, the conversations, names, and helpers that read them.

export const client = createChatwireClient({ baseUrl: location.origin });

export interface ConvState {
  conv: Conversation;
  messages: Map<string, Message>; // by id; only filled once opened
  loaded: boolean;
  /** My messages with seq ≤ these are delivered to / read by everyone else. */
  deliveredAll: bigint;
  readAll: bigint;
  typing: Map<string, number>; // user id → expiry (ms)
  /** Older messages exist beyond the loaded ones. */
  hasMore: boolean;
}

export const state = {
  me: "",
  myPhone: localStorage.getItem("chatwire.phone") ?? "",
  convs: new Map<string, ConvState>(),
  open: undefined as string | undefined,
  names: new Map<string, string>(JSON.parse(localStorage.getItem("chatwire.names") ?? "[]") as Array<[string, string]>),
  sub: undefined as Subscription | undefined,
  presence: new Map<string, { online: boolean; lastSeen?: number }>(),
  online: false,
  /** The message whose menu is open, the one being replied to, the one being edited. */
  menuFor: undefined as string | undefined,
  replyTo: undefined as string | undefined,
  editing: undefined as string | undefined,
  /** The list shows archived conversations instead of the others. */
  showArchived: false,
  /** The sidebar shows the chats or the status updates. */
  tab: "chats" as "chats" | "status",
  /** Groups left in this session: their late events (the "left" message, updates) do not bring them back. */
  left: new Set<string>(),
  /** Profile photo URLs by user id, as GetUsers shows them to me ("/media/<id>" or http(s)). */
  photos: new Map<string, string>(),
};

export function remember(id: string, name: string): void {
  if (!id || !name || state.names.get(id) === name) return;
  state.names.set(id, name);
  localStorage.setItem("chatwire.names", JSON.stringify([...state.names]));
}

export function nameOf(id: string): string {
  if (id === state.me) return "You";
  return state.names.get(id) ?? `User ${id.slice(0, 6)}`;
}

export function titleOf(c: Conversation): string {
  if (c.isGroup) return c.groupName || "Group";
  const other = c.participantIds.find((p) => p !== state.me);
  return other ? nameOf(other) : "Just you";
}

/** A conversation event's snapshot may lack the last message and counters this page keeps: keep the newer. */
export function merged(old: Conversation, now: Conversation): Conversation {
  const keepLast = old.lastMessage && (!now.lastMessage || old.lastMessage.seq > now.lastMessage.seq);
  return {
    ...now,
    lastMessage: keepLast ? old.lastMessage : now.lastMessage,
    lastSeq: maxSeq(old.lastSeq, now.lastSeq),
    myLastReadSeq: maxSeq(old.myLastReadSeq, now.myLastReadSeq),
    unreadCount: now.lastMessage && !keepLast ? now.unreadCount : old.unreadCount,
  };
}

/** The larger of two seqs (bigint: Math.max does not take them). */
function maxSeq(a: bigint, b: bigint): bigint {
  return a < b ? b : a;
}

export function blank(conv: Conversation): ConvState {
  return { conv, messages: new Map(), loaded: false, deliveredAll: 0n, readAll: 0n, typing: new Map(), hasMore: false };
}

export function isMuted(c: Conversation): boolean {
  return c.mutedUntil !== undefined && Number(c.mutedUntil.seconds) * 1000 > Date.now();
}

export function timestamp(ms: number): NonNullable<Message["deletedAt"]> {
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(Math.floor(ms / 1000)), nanos: 0 };
}

export function activity(cs: ConvState): bigint {
  const t = cs.conv.lastActivityAt;
  const last = cs.conv.lastMessage?.createdAt ? BigInt(Date.parse(cs.conv.lastMessage.createdAt) || 0) : 0n;
  const at = t ? t.seconds * 1000n : 0n;
  return last > at ? last : at;
}

export function systemText(m: Message): string {
  const who = m.systemUserIds.map(nameOf).join(", ");
  const by = m.senderId ? nameOf(m.senderId) : "";
  switch (m.systemEvent) {
    case "group_created":
      return `${by || "Someone"} created the group`;
    case "participants_added":
      return `${who} joined`;
    case "disappearing_timer_changed": {
      const seconds = Number(m.content);
      const label = seconds >= 7_776_000 ? "90 days" : seconds >= 604_800 ? "7 days" : seconds >= 86_400 ? "24 hours" : "";
      return label ? `${by || "Someone"} turned on disappearing messages (${label})` : `${by || "Someone"} turned off disappearing messages`;
    }
    case "message_pinned":
      return `${by || "Someone"} pinned a message`;
    case "message_unpinned":
      return `${by || "Someone"} unpinned a message`;
    case "participant_joined":
      return `${who} joined using an invite link`;
    case "group_policies_updated":
      return `${by || "An admin"} changed the group's settings`;
    case "participant_removed":
      return by ? `${by} removed ${who}` : `${who} left`;
    case "participant_left":
      return `${who} left`;
    case "role_changed":
      return `${by || "An admin"} changed ${who}'s role`;
    case "owner_changed":
      return `${who} is now the group owner`;
    case "group_updated":
      return `${by || "An admin"} changed the group info`;
    default:
      return m.systemEvent.replace(/_/g, " ");
  }
}
