import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { UserDeletedSchema } from "../../gen/realtime/realtime_pb.js";
import type { AuthService } from "../../gen/auth/auth_pb.js";
import { create } from "@bufbuild/protobuf";
import type { TokenClaims } from "../auth/tokens.js";
import type { AppContext } from "../context.js";
import * as account from "../db/account-store.js";
import * as store from "../db/auth-store.js";
import { appendInboxEvents } from "../db/message-store.js";
import { getPrivacy, listBlocked } from "../db/privacy-store.js";
import { listScheduled } from "../db/scheduled-store.js";
import { publishNotices } from "../messaging/message-queue.js";
import { storedEvent } from "../realtime/events.js";
import { bad, callerOf } from "./rpc-input.js";

type AccountHandlers = Pick<ServiceImpl<typeof AuthService>, "deleteAccount" | "exportAccountData">;

/** What the auth service lends: its token check, its SMS-provider call and its revocation. */
export interface AccountDeps {
  verifyAccess(token: string): Promise<TokenClaims>;
  providerCall<T>(fn: () => Promise<T>): Promise<T>;
  revoked(userId: string, sessionIds: string[]): Promise<void>;
}

const EXPORT_PAGE_DEFAULT = 1000;
const EXPORT_PAGE_MAX = 5000;
const EXPORT_SCHEDULED_MAX = 1000;

/** AuthService.DeleteAccount and ExportAccountData (issue 17, item 9). */
export function accountHandlers(ctx: AppContext, deps: AccountDeps): AccountHandlers {
  const { clock, logger } = ctx;
  const { guard, otp } = ctx.auth;
  const db = ctx.database.db;

  /** After the tombstone committed: sessions end everywhere, then their rows, the inbox and the media go. */
  async function finish(userId: string): Promise<void> {
    const sessions = await db.selectFrom("user_devices").select("id").where("user_id", "=", userId).execute();
    await deps.revoked(
      userId,
      sessions.map((s) => s.id),
    );
    await account.removeSessionsAndInbox(db, userId);
    for (const id of await account.mediaOf(db, userId)) await ctx.media.remove(id);
  }

  return {
    async deleteAccount(req) {
      const claims = await deps.verifyAccess(req.accessToken);
      const user = await store.getUser(db, claims.userId);
      if (!user) throw new ConnectError("access_token: unknown user", Code.Unauthenticated);
      if (user.deleted_at) {
        // A retry (its answer was lost): done; finish what a crash may have left.
        await finish(user.id);
        return { success: true, deletedAt: timestampFromDate(user.deleted_at) };
      }
      if (!(await guard.isLive(claims.sessionId, claims.userId))) throw new ConnectError("access_token: the session has been revoked", Code.Unauthenticated);
      const code = req.otpCode.trim();
      if (!/^\d{4,10}$/.test(code)) throw bad("otp_code: must be the digits of the code SendOTP sent to the account's number");
      const phone = user.phone_number;
      const now = clock.now();
      const attempt = await store.claimOtpAttempt(db, phone, now);
      if (!attempt) {
        const pending = await store.getOtp(db, phone);
        if (pending && pending.expires_at > now)
          throw new ConnectError("too many wrong codes: this code is dead; request a new one with SendOTP", Code.ResourceExhausted);
        throw new ConnectError(
          pending ? "the code has expired; request a new one with SendOTP" : "no code is pending for the account's number; call SendOTP first",
          Code.FailedPrecondition,
        );
      }
      // A code that already opened a session is not fresh.
      if (attempt.session_id !== null) throw new ConnectError("this code has already been used; request a new one with SendOTP", Code.FailedPrecondition);
      if (!(await deps.providerCall(() => otp.check(phone, code)))) {
        const left = attempt.max_attempts - attempt.attempts;
        throw new ConnectError(
          left > 0 ? `wrong code; ${left} attempt(s) left` : "wrong code; no attempts left, request a new code with SendOTP",
          Code.Unauthenticated,
          {
            "attempts-left": String(left),
          },
        );
      }
      const { erased, notices } = await db.transaction().execute(async (trx) => {
        await trx.deleteFrom("otp_codes").where("phone_number", "=", phone).execute();
        const peers = await account.conversationPeers(trx, user.id);
        const erased = await account.eraseAccount(trx, user.id, now);
        const events = erased
          ? peers.map((to) => storedEvent(to, { case: "userDeleted", value: create(UserDeletedSchema, { userId: user.id }) }, now, { conversationId: null }))
          : [];
        return { erased, notices: await appendInboxEvents(trx, events, now) };
      });
      publishNotices(ctx.bus, ctx.config.natsSubjectPrefix, notices);
      await finish(user.id);
      if (erased) logger.info({ userId: user.id }, "account deleted");
      const row = await store.getUser(db, user.id);
      return { success: true, deletedAt: timestampFromDate(row?.deleted_at ?? now) };
    },

    async exportAccountData(req, hc) {
      const me = callerOf(hc).userId;
      if (req.messageLimit < 0) throw bad("message_limit: must not be negative");
      const limit = req.messageLimit === 0 ? EXPORT_PAGE_DEFAULT : Math.min(req.messageLimit, EXPORT_PAGE_MAX);
      let after: { conversationId: string; seq: string } | undefined;
      if (req.messagesPageToken !== "") {
        const m = /^([0-9a-f-]{36}):(\d{1,19})$/.exec(Buffer.from(req.messagesPageToken, "base64url").toString("utf8"));
        if (!m) throw bad("messages_page_token: not a token from a previous ExportAccountData answer");
        after = { conversationId: m[1]!, seq: m[2]! };
      }
      const now = clock.now();
      const [user, privacy, contacts, blocked, conversations, statuses, push, sessions, scheduled, messages] = await Promise.all([
        store.getUser(db, me),
        getPrivacy(db, me),
        db
          .selectFrom("contacts")
          .select(["contact_user_id", "contact_phone_number", "display_name_override", "created_at"])
          .where("user_id", "=", me)
          .orderBy("contact_phone_number")
          .execute(),
        listBlocked(db, me),
        account.conversationsOf(db, me),
        db.selectFrom("status_updates").selectAll().where("user_id", "=", me).orderBy("created_at").execute(),
        db.selectFrom("push_tokens").select(["session_id", "platform", "updated_at"]).where("user_id", "=", me).execute(),
        store.listLiveSessions(db, me, now),
        listScheduled(db, me, { includeFinished: true, limit: EXPORT_SCHEDULED_MAX }),
        account.messagesSentBy(db, me, limit + 1, after),
      ]);
      if (!user) throw new ConnectError("the account no longer exists", Code.Unauthenticated);
      const page = messages.slice(0, limit);
      const last = page[page.length - 1];
      const data = {
        format: "chatwire-export-1",
        exported_at: now.toISOString(),
        profile: {
          id: user.id,
          phone_number: user.phone_number,
          display_name: user.display_name,
          profile_picture_url: user.profile_picture_url,
          about_text: user.about_text,
          last_seen_at: user.last_seen_at,
          created_at: user.created_at,
          updated_at: user.updated_at,
        },
        privacy,
        contacts: contacts.map((c) => ({
          user_id: c.contact_user_id,
          phone_number: c.contact_phone_number,
          name: c.display_name_override,
          added_at: c.created_at,
        })),
        blocked: blocked.map((b) => ({ user_id: b.blocked_id, blocked_at: b.created_at })),
        conversations: conversations.map((c) => ({
          id: c.id,
          is_group: c.is_group,
          group_name: c.group_name,
          created_at: c.created_at,
          role: c.role,
          joined_at: c.joined_at,
          left_at: c.left_at,
        })),
        statuses,
        push_registrations: push.map((p) => ({ session_id: p.session_id, platform: p.platform, token: "[redacted]", updated_at: p.updated_at })),
        sessions: sessions.map((s) => ({
          session_id: s.id,
          device_name: s.device_name,
          device_type: s.device_type,
          created_at: s.created_at,
          last_active_at: s.last_active_at,
        })),
        scheduled_messages: scheduled.map((s) => ({
          id: s.id,
          conversation_id: s.conversation_id,
          content: s.content,
          media_url: s.media_url,
          send_at: s.send_at,
          state: s.state,
          message_id: s.message_id,
        })),
        messages: page,
      };
      return {
        dataJson: JSON.stringify(data),
        nextMessagesPageToken: messages.length > limit && last ? Buffer.from(`${last.conversation_id}:${last.seq}`, "utf8").toString("base64url") : "",
      };
    },
  };
}
