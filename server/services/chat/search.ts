import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ContactMatchSchema } from "../../../gen/chat/chat_pb.js";
import * as convs from "../../db/conversation-store.js";
import { readStateSharedIn } from "../../db/privacy-store.js";
import * as history from "../../db/history-store.js";
import { searchContacts, searchConversations, searchMessages } from "../../db/search-store.js";
import { formerParticipants } from "../../domain/conversation-view.js";
import { toMessage } from "../../domain/message-view.js";
import { decodeSearchToken, encodeSearchToken, messageQuery, nameQuery } from "../../domain/search.js";
import { withMedia } from "../../media/attach.js";
import { bad, callerOf, uuidField } from "../rpc-input.js";
import { pageSize, type ChatHandlers, type ChatRoom } from "./context.js";

const NAME_RESULTS_DEFAULT = 20;

/** SearchMessages (full text over what the caller may read) and SearchConversations (names and numbers). */
export function searchHandlers(room: ChatRoom): ChatHandlers<"searchMessages" | "searchConversations"> {
  const { db, clock, toConversations } = room;
  return {
    async searchMessages(req, hc) {
      const me = callerOf(hc).userId;
      const parsed = messageQuery(req.query);
      if (!parsed.ok) throw bad(parsed.problem);
      const tsquery = parsed.value;
      const conversationId = req.conversationId.trim() === "" ? undefined : uuidField("conversation_id", req.conversationId);
      if (conversationId && !(await convs.getParticipation(db, conversationId, me))) {
        throw new ConnectError(`conversation ${conversationId} not found`, Code.NotFound);
      }
      const limit = pageSize(req.limit);
      const after = req.pageToken === "" ? undefined : decodeSearchToken(req.pageToken, tsquery, conversationId ?? "");
      if (req.pageToken !== "" && !after) throw bad("page_token: not a token from a previous page of this search (same query and conversation_id)");
      const hits = await searchMessages(db, { userId: me, conversationId, tsquery, now: clock.now(), after, limit: limit + 1 });
      const page = hits.slice(0, limit);
      const last = page.at(-1);

      // Each message as ListMessages shows it to the caller: receipts among the people of their window.
      const convIds = [...new Set(page.map((m) => m.conversation_id))];
      const ids = page.map((m) => m.id);
      const [current, former, reactions, quotes, readShared] = await Promise.all([
        convs.currentParticipants(db, convIds),
        convs.formerParticipations(db, me, convIds),
        history.reactionsOf(db, ids),
        history.statusQuotesOf(db, ids),
        readStateSharedIn(db, convIds),
      ]);
      const messages = page.map((m) => {
        const mine = former.get(m.conversation_id);
        const people = mine ? formerParticipants(mine) : (current.get(m.conversation_id) ?? []);
        return toMessage(m, people, reactions, quotes, readShared.get(m.conversation_id));
      });
      return {
        messages: await withMedia(db, messages),
        nextPageToken:
          hits.length > limit && last
            ? encodeSearchToken({ rank: last.rank, createdAt: last.created_at.toISOString(), id: last.id }, tsquery, conversationId ?? "")
            : "",
      };
    },

    async searchConversations(req, hc) {
      const me = callerOf(hc).userId;
      const parsed = nameQuery(req.query);
      if (!parsed.ok) throw bad(parsed.problem);
      const { text, digits } = parsed.value;
      const limit = req.limit === 0 ? NAME_RESULTS_DEFAULT : pageSize(req.limit);
      const [rows, contacts] = await Promise.all([searchConversations(db, me, text, digits, limit), searchContacts(db, me, text, digits, limit)]);
      return {
        conversations: await toConversations(me, rows),
        contacts: contacts.map((c) =>
          create(ContactMatchSchema, {
            userId: c.user_id,
            phoneNumber: c.phone_number,
            displayName: c.display_name,
            contactName: c.contact_name,
            conversationId: c.conversation_id ?? "",
          }),
        ),
      };
    },
  };
}
