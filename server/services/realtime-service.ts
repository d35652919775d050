import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  CaughtUpSchema,
  EventSchema,
  HeartbeatSchema,
  ReadySchema,
  type RealtimeService,
  ResyncRequiredSchema,
  TypingSchema,
  UserPresenceSchema,
  type Event,
} from "../../gen/realtime/realtime_pb.js";
import type { AppContext } from "../context.js";
import * as convs from "../db/conversation-store.js";
import * as presence from "../db/presence-store.js";
import { contactsAmong, getPrivacyMany, relationsTo } from "../db/privacy-store.js";
import { requireDirectNotBlocked } from "./blocking.js";
import { allows } from "../domain/privacy.js";
import { bad, callerOf, uuidField } from "./rpc-input.js";
import { eventBody } from "../realtime/events.js";
import type { LocalStream } from "../realtime/local-stream.js";
import { readReplay } from "../realtime/replay.js";
import { resetTransportKey } from "../realtime/transport-key.js";

const REPLAY_PAGE = 500;
const MAX_PRESENCE_IDS = 256;
/** SendTyping per user and conversation: this many per window. */
const TYPING_BURST = 10;
const TYPING_WINDOW_MS = 5000;

/**
 * realtime.RealtimeService: Subscribe (replay from the inbox, then live
 * events from the user's bus subject, with no gap or duplicate at the seam),
 * SendTyping and GetPresence.
 */
export function createRealtimeService(ctx: AppContext): ServiceImpl<typeof RealtimeService> {
  const db = ctx.database.db;
  const { clock, realtime: hub } = ctx;
  const cfg = ctx.config.realtime;
  const typingBudget = new Map<string, { windowStart: number; count: number }>();

  const control = (kind: Event["kind"]): Event => create(EventSchema, { at: timestampFromDate(clock.now()), kind });

  return {
    async *subscribe(req, hc) {
      const me = callerOf(hc);
      const since = req.sincePosition;
      if (since !== undefined && since < 0n) throw bad("since_position: must not be negative");
      // The inbox bounds come with the registration (read after it, in the same round trip).
      const { stream, inbox: bounds } = await hub.open(me.userId, me.sessionId, hc.values.get(resetTransportKey));
      // Made on the first typing indicator: most streams never see one.
      let typingTimers: Map<string, NodeJS.Timeout> | undefined;
      try {
        let current = BigInt(bounds.last);
        let last = since ?? current;
        let resync: string | undefined;
        if (since !== undefined && since < BigInt(bounds.prunedThrough)) {
          resync = `events up to position ${bounds.prunedThrough} are past the ${cfg.inboxRetentionDays}-day retention`;
        } else if (since !== undefined && since > current) {
          resync = `position ${since} is ahead of this account's last position ${current} (was the server's data reset?)`;
        }
        yield control({ case: "ready", value: create(ReadySchema, { position: last, heartbeatSeconds: cfg.heartbeatSeconds }) });
        if (resync) {
          last = current;
          yield control({ case: "resyncRequired", value: create(ResyncRequiredSchema, { position: current, reason: resync }) });
        }
        stream.lastDelivered = last;

        // Replay from the database. Live stored events are only noted meanwhile
        // (maxNotified); the switch to live happens in the same synchronous step
        // as the check that nothing noted is left unread, so every later notice
        // is buffered, and a gap in them is read below. (The user's subject was
        // subscribed before the inbox bounds were read, so a position past
        // `current` always comes as a notice.) A device that missed nothing
        // (since_position = current) goes live without reading the inbox.
        let replayed = 0;
        const replayFrom = async function* (upTo?: bigint) {
          for (;;) {
            const page = await readReplay(db, me.userId, { after: last, limit: REPLAY_PAGE, upTo }, clock, ctx.logger);
            for (const event of page.events) {
              stream.lastDelivered = event.position;
              yield event;
            }
            if (page.lastPosition !== undefined) last = page.lastPosition;
            stream.lastDelivered = last;
            if (page.rows < REPLAY_PAGE) return;
          }
        };
        // (A fresh stream, or one told to resync, starts at `current`: it reads only what was noted meanwhile.)
        if (resync || since === undefined) current = last;
        while (last < current || stream.maxNotified > last) {
          for await (const e of replayFrom()) {
            replayed++;
            yield e;
          }
          current = last;
        }
        stream.live = true;
        yield control({ case: "caughtUp", value: create(CaughtUpSchema, { position: last, replayed }) });

        const heartbeatMs = cfg.heartbeatSeconds * 1000;
        for (;;) {
          const item = await stream.queue.next(heartbeatMs, hc.signal);
          if (item === "timeout") {
            yield control({ case: "heartbeat", value: create(HeartbeatSchema, {}) });
            continue;
          }
          if (item.position === 0n) {
            if (item.kind.case === "typing") trackTyping(stream, item, (typingTimers ??= new Map()));
            yield item;
            continue;
          }
          if (item.position <= last) continue; // already sent (replay overlap, or a redelivered notice)
          if (item.position > last + 1n) {
            // Notices from different publishers can arrive out of order; every
            // position below one announced is committed, so read the gap.
            for await (const e of replayFrom(item.position - 1n)) yield e;
            if (item.position <= last) continue;
          }
          last = item.position;
          stream.lastDelivered = last;
          yield item;
        }
      } catch (err) {
        if (hc.signal.aborted && ctx.shutdownSignal.aborted) hub.countEnd("shutdown");
        // Ended by the server (slow, evicted, revoked), possibly through a transport
        // reset that surfaces here as a write error: report why.
        if (stream.queue.failed) throw stream.ending();
        throw err;
      } finally {
        if (typingTimers) for (const t of typingTimers.values()) clearTimeout(t);
        await hub.close(stream);
      }
    },

    async sendTyping(req, hc) {
      const me = callerOf(hc).userId;
      const conversationId = uuidField("conversation_id", req.conversationId);
      const my = await convs.getParticipation(db, conversationId, me);
      if (!my || my.left_at !== null) throw new ConnectError(`conversation ${conversationId} not found`, Code.NotFound);
      await requireDirectNotBlocked(db, conversationId, me);
      const key = `${me}:${conversationId}`;
      const nowMs = Date.now();
      const budget = typingBudget.get(key);
      if (!budget || nowMs - budget.windowStart >= TYPING_WINDOW_MS) {
        if (typingBudget.size > 100_000) typingBudget.clear();
        typingBudget.set(key, { windowStart: nowMs, count: 1 });
      } else if (++budget.count > TYPING_BURST) {
        const wait = Math.ceil((budget.windowStart + TYPING_WINDOW_MS - nowMs) / 1000);
        throw new ConnectError(
          `typing indicators: at most ${TYPING_BURST} per ${TYPING_WINDOW_MS / 1000} s per conversation; retry in ${wait} s`,
          Code.ResourceExhausted,
        );
      }
      const people = await convs.participantsOf(db, conversationId);
      const others = people.map((p) => p.user_id).filter((id) => id !== me);
      const online = [...(await hub.online(others))];
      const now = clock.now();
      const body = eventBody(
        {
          case: "typing",
          value: create(TypingSchema, {
            conversationId,
            userId: me,
            active: req.active,
            expiresAt: req.active ? timestampFromDate(new Date(now.getTime() + cfg.typingTtlMs)) : undefined,
          }),
        },
        now,
      );
      hub.publishEphemeral(online, body);
      return { deliveredTo: online.length };
    },

    async getPresence(req, hc) {
      const me = callerOf(hc).userId;
      if (req.userIds.length > MAX_PRESENCE_IDS) throw bad(`user_ids: at most ${MAX_PRESENCE_IDS} per call`);
      const ids = req.userIds.map((id, i) => uuidField(`user_ids[${i}]`, id));
      // People I have a direct conversation with or have as contacts, as far as their
      // last-seen privacy and blocks (either way) allow.
      const [peers, contacts] = await Promise.all([presence.directPeers(db, me), contactsAmong(db, me, ids)]);
      const candidates = [...new Set(ids)].filter((id) => id === me || peers.includes(id) || contacts.has(id));
      // Each candidate's last-seen setting against how I stand to them: two batched reads.
      const [settings, relations] = await Promise.all([getPrivacyMany(db, candidates), relationsTo(db, me, candidates)]);
      const allowed = candidates.filter((id) => allows(settings.get(id)!.lastSeen, relations.get(id)!));
      const [online, seen] = await Promise.all([hub.online(allowed), presence.lastSeen(db, allowed)]);
      return {
        users: allowed.map((userId) => {
          const isOnline = online.has(userId);
          const at = seen.get(userId);
          return create(UserPresenceSchema, {
            userId,
            online: isOnline,
            lastSeenAt: !isOnline && at ? timestampFromDate(at) : undefined,
          });
        }),
      };
    },
  };

  /** A typing indicator ends on this stream after the TTL unless renewed. */
  function trackTyping(stream: LocalStream, event: Event, timers: Map<string, NodeJS.Timeout>): void {
    if (event.kind.case !== "typing") return;
    const t = event.kind.value;
    const key = `${t.conversationId}:${t.userId}`;
    clearTimeout(timers.get(key));
    timers.delete(key);
    if (!t.active) return;
    const timer = setTimeout(() => {
      timers.delete(key);
      stream.inject(
        create(EventSchema, {
          at: timestampFromDate(clock.now()),
          kind: { case: "typing", value: create(TypingSchema, { conversationId: t.conversationId, userId: t.userId, active: false }) },
        }),
      );
    }, cfg.typingTtlMs);
    timer.unref();
    timers.set(key, timer);
  }
}
