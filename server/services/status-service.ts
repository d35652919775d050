import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AuthorStatusesSchema,
  CreateStatusResponseSchema,
  DeleteStatusResponseSchema,
  StatusAudience,
  StatusContentType,
  StatusFont,
  StatusSchema,
  type StatusService,
  StatusViewerSchema,
  type Status,
} from "../../gen/status/status_pb.js";
import type { AppContext } from "../context.js";
import * as convs from "../db/conversation-store.js";
import * as history from "../db/history-store.js";
import * as privacy from "../db/privacy-store.js";
import * as statuses from "../db/status-store.js";
import type { StatusRow } from "../db/status-store.js";
import { requireNoBlockBetween } from "./blocking.js";
import { statusVisible, type AudienceKind } from "../domain/privacy.js";
import { codePoints } from "../domain/text.js";
import { MessageRejectedError, QueueUnavailableError, messageIdFor } from "../messaging/message-queue.js";
import type { OutgoingMessage } from "../messaging/types.js";
import { messageFromOutgoing } from "../realtime/events.js";
import { storedMessageView } from "./message-views.js";
import { isHttpUrl, profilesFor } from "./user-service.js";
import { bad, callerId, uuidField } from "./rpc-input.js";
import { oncePerKey, requestIdField } from "./request-replay.js";
import { findAnswer } from "../db/request-store.js";
import { openDirectConversation } from "./direct-conversations.js";
import { addReference } from "../db/media-store.js";
import { attachableMedia, mediaPath, mediaView, withMedia } from "../media/attach.js";

/** A status is invisible this long after posting, and purged after. */
const STATUS_TTL_MS = 24 * 3600 * 1000;
const MAX_TEXT = 700;
const MAX_URL = 2048;
const MAX_AUDIENCE = 1024;

const TYPE_TO_PROTO: Record<string, StatusContentType> = {
  text: StatusContentType.TEXT,
  image: StatusContentType.IMAGE,
  video: StatusContentType.VIDEO,
};
const PROTO_TO_TYPE: Partial<Record<StatusContentType, statuses.NewStatus["contentType"]>> = {
  [StatusContentType.UNSPECIFIED]: "text",
  [StatusContentType.TEXT]: "text",
  [StatusContentType.IMAGE]: "image",
  [StatusContentType.VIDEO]: "video",
};
const AUDIENCE_TO_PROTO: Record<string, StatusAudience> = {
  contacts: StatusAudience.CONTACTS,
  except: StatusAudience.CONTACTS_EXCEPT,
  only: StatusAudience.ONLY_SHARE_WITH,
};
const PROTO_TO_AUDIENCE: Partial<Record<StatusAudience, AudienceKind>> = {
  [StatusAudience.UNSPECIFIED]: "contacts",
  [StatusAudience.CONTACTS]: "contacts",
  [StatusAudience.CONTACTS_EXCEPT]: "except",
  [StatusAudience.ONLY_SHARE_WITH]: "only",
};

/** A status's content type for media of `kind`: image or video, matching content_type unless that is unset. */
function mediaContentType(kind: string, asked: StatusContentType): "image" | "video" {
  if (kind !== "image" && kind !== "video") throw bad(`media_id: a status shows an image or a video, not ${kind} media`);
  if (asked !== StatusContentType.UNSPECIFIED && PROTO_TO_TYPE[asked] !== kind)
    throw bad(`content_type: the media is ${kind}; leave content_type unset or match it`);
  return kind;
}

const notFound = (id: string) => new ConnectError(`status ${id} not found`, Code.NotFound);

/** What everyone who may see a status sees; author-only fields are added by the caller. */
function toStatus(r: StatusRow, viewed: boolean): Status {
  return create(StatusSchema, {
    id: r.id,
    content: r.content_type === "text" ? r.content : r.media_url,
    createdAt: r.created_at.toISOString(),
    userId: r.user_id,
    contentType: TYPE_TO_PROTO[r.content_type] ?? StatusContentType.TEXT,
    backgroundColor: r.background_color,
    font: r.font as StatusFont,
    mediaUrl: r.media_url,
    caption: r.caption,
    expiresAt: timestampFromDate(r.expires_at),
    viewed,
  });
}

/**
 * status.StatusService: the original CreateStatus and GetStatuses, grown with
 * media, audiences, the feed, views, viewers, deletion and replies.
 */
export function createStatusService(ctx: AppContext): ServiceImpl<typeof StatusService> {
  const db = ctx.database.db;
  const { clock } = ctx;
  const MAX_REPLY = ctx.config.chat.maxTextLength;

  /** Of `rows` (unexpired), those `viewerId` may see, in the same order. */
  async function visibleTo(viewerId: string, rows: StatusRow[]): Promise<StatusRow[]> {
    const authors = [...new Set(rows.map((r) => r.user_id))];
    const [settings, relations, lists] = await Promise.all([
      privacy.getPrivacyMany(db, authors),
      privacy.relationsTo(db, viewerId, authors),
      statuses.audienceLists(
        db,
        rows.filter((r) => r.audience !== "contacts").map((r) => r.id),
      ),
    ]);
    return rows.filter((r) =>
      statusVisible(
        settings.get(r.user_id)!.status,
        { kind: r.audience as AudienceKind, userIds: lists.get(r.id) ?? new Set() },
        viewerId,
        relations.get(r.user_id)!,
      ),
    );
  }

  /** An unexpired status the caller may see, or NotFound. */
  async function visibleStatus(viewerId: string, rawId: string): Promise<StatusRow> {
    const id = uuidField("status_id", rawId);
    const row = await statuses.getLiveStatus(db, id, clock.now());
    if (!row || (await visibleTo(viewerId, [row])).length === 0) throw notFound(id);
    return row;
  }

  /** An unexpired status of the caller: NotFound if invisible, PermissionDenied if someone else's. */
  async function ownStatus(me: string, rawId: string, what: string): Promise<StatusRow> {
    const row = await visibleStatus(me, rawId);
    if (row.user_id !== me) throw new ConnectError(`only the status's author can ${what}`, Code.PermissionDenied);
    return row;
  }

  /** Everyone the status reaches now: the author's contacts and only-list, as the rules admit. */
  async function audienceOf(row: StatusRow, list: readonly string[]): Promise<string[]> {
    const contacts = await privacy.contactsOf(db, row.user_id);
    const candidates = [...new Set([...contacts, ...list])].filter((id) => id !== row.user_id);
    if (candidates.length === 0) return [];
    const [setting, blocked] = await Promise.all([privacy.getPrivacy(db, row.user_id), privacy.blockedEitherWay(db, row.user_id, candidates)]);
    const contactSet = new Set(contacts);
    const audience = { kind: row.audience as AudienceKind, userIds: new Set(list) };
    return candidates.filter((v) => statusVisible(setting.status, audience, v, { self: false, viewerIsContact: contactSet.has(v), blocked: blocked.has(v) }));
  }

  async function withViewed(me: string, rows: StatusRow[]): Promise<Status[]> {
    const views = await statuses.viewsBy(
      db,
      me,
      rows.map((r) => r.id),
    );
    return withMedia(
      db,
      rows.map((r) => toStatus(r, r.user_id === me || views.has(r.id))),
    );
  }

  async function mine(rows: StatusRow[]): Promise<Status[]> {
    const ids = rows.map((r) => r.id);
    const [lists, counts] = await Promise.all([statuses.audienceLists(db, ids), statuses.viewCounts(db, ids)]);
    return withMedia(
      db,
      rows.map((r) => {
        const s = toStatus(r, true);
        s.audience = AUDIENCE_TO_PROTO[r.audience] ?? StatusAudience.CONTACTS;
        s.audienceUserIds = [...(lists.get(r.id) ?? [])].sort();
        s.viewCount = counts.get(r.id) ?? 0;
        return s;
      }),
    );
  }

  return {
    async createStatus(req, hc) {
      const me = callerId(hc);
      if (req.userId.trim() !== "" && uuidField("user_id", req.userId) !== me) {
        throw new ConnectError("user_id: you can only post statuses as yourself (leave it empty)", Code.PermissionDenied);
      }
      // Media uploaded here (media.MediaService): its kind decides the content type.
      const media = req.mediaId.trim() === "" ? undefined : await attachableMedia(db, me, req.mediaId, req.mediaUrl);
      const contentType = media ? mediaContentType(media.kind, req.contentType) : PROTO_TO_TYPE[req.contentType];
      if (!contentType) throw bad("content_type: one of STATUS_CONTENT_TYPE_TEXT, _IMAGE, _VIDEO");
      const content = req.content.trim();
      const mediaUrl = media ? mediaPath(media.id) : req.mediaUrl.trim();
      const caption = req.caption.trim();
      const color = req.backgroundColor.trim();
      if (contentType === "text") {
        if (content === "") throw bad("content: a text status needs text");
        if (codePoints(content) > MAX_TEXT) throw bad(`content: at most ${MAX_TEXT} characters (got ${codePoints(content)})`);
        if (mediaUrl !== "" || caption !== "") throw bad("media_url and caption are for image and video statuses; set content_type");
        if (color !== "" && !/^#[0-9a-fA-F]{6}$/.test(color)) throw bad(`background_color: "${color}" is not a colour such as #25D366`);
      } else {
        if (mediaUrl === "") throw bad(`media_url: an ${contentType} status needs the URL of its ${contentType}`);
        if (mediaUrl.length > MAX_URL) throw bad(`media_url: at most ${MAX_URL} characters`);
        if (!media && !isHttpUrl(mediaUrl)) throw bad(`media_url: "${mediaUrl}" is not an http(s) URL`);
        if (content !== "") throw bad("content: must be empty for an image or video status (use caption)");
        if (codePoints(caption) > MAX_TEXT) throw bad(`caption: at most ${MAX_TEXT} characters (got ${codePoints(caption)})`);
        if (color !== "" || req.font !== StatusFont.UNSPECIFIED) throw bad("background_color and font are for text statuses");
      }
      if (!Object.values(StatusFont).includes(req.font)) throw bad(`font: unknown font ${req.font}`);
      const audience = PROTO_TO_AUDIENCE[req.audience];
      if (!audience) throw bad("audience: one of STATUS_AUDIENCE_CONTACTS, _CONTACTS_EXCEPT, _ONLY_SHARE_WITH");
      const list = [...new Set(req.audienceUserIds.map((v, i) => uuidField(`audience_user_ids[${i}]`, v)))].filter((id) => id !== me);
      if (audience === "contacts" && list.length > 0) throw bad("audience_user_ids: only for CONTACTS_EXCEPT and ONLY_SHARE_WITH");
      if (audience === "only" && list.length === 0) throw bad("audience_user_ids: ONLY_SHARE_WITH needs at least one user");
      if (list.length > MAX_AUDIENCE) throw bad(`audience_user_ids: at most ${MAX_AUDIENCE}`);
      const requestId = requestIdField(req.clientRequestId);
      if (list.length > 0) {
        const known = await convs.existingUserIds(db, list);
        const unknown = list.find((id) => !known.has(id));
        if (unknown) throw new ConnectError(`audience_user_ids: no user with id ${unknown}`, Code.NotFound);
      }
      const now = clock.now();
      // With a client_request_id, a retry gets this answer back and posts nothing.
      const key = requestId ? { owner: me, rpc: "status.StatusService/CreateStatus", key: requestId } : undefined;
      return oncePerKey(ctx, key, CreateStatusResponseSchema, async (trx) => {
        const row = await statuses.insertStatus(trx, {
          userId: me,
          contentType,
          content: contentType === "text" ? content : "",
          mediaUrl,
          caption,
          backgroundColor: color.toUpperCase(),
          font: req.font,
          audience,
          audienceUserIds: list,
          createdAt: now,
          expiresAt: new Date(now.getTime() + STATUS_TTL_MS),
        });
        if (media) await addReference(trx, media.id, { statusId: row.id }, now);
        // What mine() reads back, known here: the audience as given, no views yet.
        const status = toStatus(row, true);
        status.media = media && mediaView(media);
        status.audience = AUDIENCE_TO_PROTO[row.audience] ?? StatusAudience.CONTACTS;
        status.audienceUserIds = [...list].sort();
        status.viewCount = 0;
        return {
          answer: create(CreateStatusResponseSchema, { statusId: row.id, status }),
          after: async () => {
            const reach = await audienceOf(row, list);
            ctx.realtime.statusPosted({ statusId: row.id, authorId: me, expiresAt: row.expires_at }, reach);
          },
        };
      });
    },

    async getStatuses(req, hc) {
      const me = callerId(hc);
      const author = req.userId.trim() === "" ? undefined : uuidField("user_id", req.userId);
      const rows = await statuses.candidateStatusesFor(db, me, clock.now(), author);
      return { statuses: await withViewed(me, await visibleTo(me, rows)) };
    },

    async listStatusFeed(_req, hc) {
      const me = callerId(hc);
      const candidates = (await statuses.candidateStatusesFor(db, me, clock.now())).filter((r) => r.user_id !== me);
      // The feed is people who have me as a contact (an only-list naming a stranger is not enough).
      const havingMe = await privacy.ownersHavingContact(db, me, [...new Set(candidates.map((r) => r.user_id))]);
      const visible = await withViewed(
        me,
        await visibleTo(
          me,
          candidates.filter((r) => havingMe.has(r.user_id)),
        ),
      );
      const byAuthor = new Map<string, Status[]>();
      // Rows come newest first, so each group is newest first and Map order is by newest status.
      for (const s of visible) byAuthor.set(s.userId, [...(byAuthor.get(s.userId) ?? []), s]);
      const profiles = new Map((await profilesFor(db, me, [...byAuthor.keys()])).map((p) => [p.id, p]));
      return {
        authors: [...byAuthor].map(([authorId, list]) =>
          create(AuthorStatusesSchema, {
            author: profiles.get(authorId),
            statuses: list,
            allViewed: list.every((s) => s.viewed),
            latestAt: timestampFromDate(new Date(list[0]!.createdAt)),
          }),
        ),
      };
    },

    async listMyStatuses(_req, hc) {
      const me = callerId(hc);
      return { statuses: await mine(await statuses.liveStatusesOf(db, [me], clock.now())) };
    },

    async getStatusViewers(req, hc) {
      const me = callerId(hc);
      const row = await ownStatus(me, req.statusId, "see its viewers");
      // Read receipts off: I see no one's views, as no one sees mine.
      if (!(await privacy.getPrivacy(db, me)).readReceipts) return { viewers: [] };
      const rows = await statuses.viewersWithReceipts(db, row.id);
      return { viewers: rows.map((v) => create(StatusViewerSchema, { userId: v.viewer_id, viewedAt: timestampFromDate(v.viewed_at) })) };
    },

    async viewStatus(req, hc) {
      const me = callerId(hc);
      const row = await visibleStatus(me, req.statusId);
      if (row.user_id === me) return { firstView: false };
      const { viewedAt, first } = await statuses.recordView(db, row.id, me, clock.now());
      return { viewedAt: timestampFromDate(viewedAt), firstView: first };
    },

    async deleteStatus(req, hc) {
      const me = callerId(hc);
      // The status's id is the request key: a retry finds the delete done although the row is gone.
      const key = { owner: me, rpc: "status.StatusService/DeleteStatus", key: uuidField("status_id", req.statusId) };
      if (await findAnswer(db, key, clock.now())) return {};
      const row = await ownStatus(me, req.statusId, "delete it");
      return oncePerKey(ctx, key, DeleteStatusResponseSchema, async (trx) => {
        await statuses.deleteStatus(trx, row.id);
        return { answer: create(DeleteStatusResponseSchema) };
      });
    },

    async replyToStatus(req, hc) {
      const me = callerId(hc);
      const row = await visibleStatus(me, req.statusId);
      if (row.user_id === me) throw new ConnectError("you cannot reply to your own status", Code.FailedPrecondition);
      const content = req.content;
      if (content.trim() === "") throw bad("content: a reply needs text");
      if (codePoints(content) > MAX_REPLY) throw bad(`content: at most ${MAX_REPLY} characters`);
      const clientMessageId = req.clientMessageId.trim() || randomUUID();
      if (clientMessageId.length > 64) throw bad("client_message_id: at most 64 characters");
      await requireNoBlockBetween(db, me, row.user_id);

      const now = clock.now();
      const conv = await openDirectConversation(ctx, me, row.user_id);
      const my = await convs.getParticipation(db, conv.id, me);
      if (!my || my.left_at !== null) throw new ConnectError("you are no longer in the direct conversation with the author", Code.FailedPrecondition);

      const id = messageIdFor(me, clientMessageId);
      const already = await history.getMessageBySenderClientId(db, me, clientMessageId);
      if (already && already.conversation_id !== conv.id) {
        throw bad("client_message_id: already used for a message in another conversation; use a new id per message");
      }
      // The quote is recorded before the message is queued, so no stored reply lacks it.
      await statuses.insertReply(db, { messageId: id, status: row, replierId: me, conversationId: conv.id, now });
      const outgoing: OutgoingMessage = {
        id,
        conversationId: conv.id,
        senderId: me,
        clientMessageId,
        content,
        mediaUrl: "",
        mediaType: "",
        replyToMessageId: null,
        mentionUserIds: [],
        sentAt: now.toISOString(),
        replyToStatus: {
          statusId: row.id,
          authorId: row.user_id,
          contentType: row.content_type,
          content: row.content_type === "text" ? row.content : row.media_url,
        },
      };
      let stored;
      if (!already) {
        try {
          ({ stored } = await ctx.messages.publish(outgoing));
        } catch (err) {
          if (err instanceof MessageRejectedError) throw new ConnectError("the direct conversation with the author is gone", Code.FailedPrecondition);
          if (err instanceof QueueUnavailableError) {
            throw new ConnectError("messaging is unavailable right now; retry with the same client_message_id", Code.Unavailable, undefined, undefined, err);
          }
          throw err;
        }
      }
      const saved = already ?? (stored ? await history.getMessage(db, stored.id) : undefined);
      return {
        conversationId: conv.id,
        // As ListMessages shows it, the quoted status included; queued but not
        // yet stored (production), as SendMessage answers then: seq 0.
        message: saved ? await storedMessageView(ctx, saved) : messageFromOutgoing(outgoing, "0", now),
        status: toStatus(row, true),
      };
    },
  };
}
