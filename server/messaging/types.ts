// The message path's data, shared by every layer it crosses (services, the
// queues and the worker, realtime, db). A leaf: it imports nothing of ours,
// so db/ can use these types without reaching up into messaging/ or realtime/.

/** A user message accepted by SendMessage, on its way to being stored. */
export interface OutgoingMessage {
  /** messageIdFor(senderId, clientMessageId). */
  id: string;
  conversationId: string;
  senderId: string;
  clientMessageId: string;
  content: string;
  mediaUrl: string;
  mediaType: string;
  replyToMessageId: string | null;
  mentionUserIds: string[];
  /** ISO 8601; becomes the message's created_at (what SendMessage already told the sender). */
  sentAt: string;
  /** ForwardMessages: the copy's forward count (the original's + 1); absent for a new message. */
  forwardCount?: number;
  /**
   * The conversation's disappearing timer in seconds when the message was sent (0: off). The message is stored
   * under it whenever it is stored; absent (a queued message of an earlier release), the timer at store time.
   */
  disappearingSeconds?: number;
  /** ReplyToStatus: the status quoted (stored separately in status_replies; carried for the live event). */
  replyToStatus?: StatusQuote;
}

/** A status as a reply quotes it. */
export interface StatusQuote {
  statusId: string;
  authorId: string;
  contentType: string;
  content: string;
}

export interface StoredMessage {
  id: string;
  conversationId: string;
  /** Per-conversation sequence number (int8 as a decimal string). */
  seq: string;
  createdAt: Date;
  /** The (sender, client message id) was stored before; nothing new was written. */
  duplicate: boolean;
  /** When it disappears (the conversation's timer when it was sent); null when off or for a duplicate. */
  expiresAt?: Date | null;
  /**
   * Whether a push could be owed (chatwire_store_messages r_push): some
   * recipient but the sender, not muting the conversation, has a push token.
   * False for a duplicate. Absent where it was not worked out: treated as true.
   */
  push?: boolean;
}

/** Why a message can never be stored (the conversation is gone, or the sender left). */
export type RejectReason = "conversation_not_found" | "sender_not_participant";

/** One inbox row written for a stored message: whose inbox, and at which position. */
export interface InboxRecipient {
  userId: string;
  /** The event's inbox position for this user (int8 as a decimal string). */
  position: string;
}

/** An event for a user's inbox (ARCHITECTURE.md, "The message path", step 3). */
export interface NewInboxEvent {
  userId: string;
  eventType: string;
  conversationId: string | null;
  messageId: string | null;
  /** Carried into the live notice when set (message events). */
  seq?: string;
  /** Stored as the event's jsonb payload. */
  payload: Record<string, unknown>;
  /** The realtime.Event without position, sent live (server/realtime/events.ts). */
  body: Uint8Array;
}

/** One event appended to a user's inbox, announced live after commit. */
export interface InboxNotice {
  userId: string;
  /** The event's inbox position for this user (int8 as a decimal string). */
  position: string;
  eventType: string;
  conversationId: string | null;
  messageId: string | null;
  /** Present for message events (int8 as a decimal string). */
  seq?: string;
  /** The realtime.Event, encoded without its position (shared by all recipients of one change). */
  body: Uint8Array;
}
