import type { ServiceImpl } from "@connectrpc/connect";
import type { ChatService } from "../../../gen/chat/chat_pb.js";
import type { AppContext } from "../../context.js";
import { chatRoom } from "./context.js";
import { conversationHandlers } from "./conversations.js";
import { disappearingHandlers } from "./disappearing.js";
import { forwardHandlers } from "./forwarding.js";
import { groupHandlers } from "./groups.js";
import { inviteHandlers } from "./invites.js";
import { messageHandlers } from "./messages.js";
import { pinStarHandlers } from "./pins-stars.js";
import { receiptHandlers } from "./receipts.js";
import { scheduledHandlers } from "./scheduled.js";
import { searchHandlers } from "./search.js";

/**
 * chat.ChatService: the original four RPCs (CreateConversation, SendMessage,
 * ListMessages, GetConversations) grown as chat.proto describes, plus
 * conversation reads, group management, receipts, edits, deletes,
 * reactions, mute and archive, forwards, pins and stars. Each room provides its handlers; the full
 * ServiceImpl type makes a missing one a compile error, not Unimplemented.
 */
export function createChatService(ctx: AppContext): ServiceImpl<typeof ChatService> {
  const room = chatRoom(ctx);
  return {
    ...conversationHandlers(room),
    ...groupHandlers(room),
    ...inviteHandlers(room),
    ...messageHandlers(room),
    ...receiptHandlers(room),
    ...scheduledHandlers(room),
    ...searchHandlers(room),
    ...disappearingHandlers(room),
    ...forwardHandlers(room),
    ...pinStarHandlers(room),
  };
}
