import { create, toBinary } from "@bufbuild/protobuf";
import type http2 from "node:http2";
import { SendMessageRequestSchema } from "../../gen/chat/chat_pb.js";
import { connectH2, grpcFrame, grpcHeaders, unary } from "../lib/h2.js";
import { serve } from "../lib/ipc.js";
import { nowMs, sleep, summarize } from "../lib/stats.js";

// Sends SendMessage over gRPC at a fixed rate (open loop, bounded in flight):
// each message's content carries its tag and send time for the receivers.

interface SenderSpec {
  token: string;
  conversationId: string;
}

let sessions: http2.ClientHttp2Session[] = [];
let senders: SenderSpec[] = [];
let url = "";
let counter = 0;

async function ensureSessions(n: number): Promise<void> {
  sessions = sessions.filter((s) => !s.closed && !s.destroyed);
  while (sessions.length < n) sessions.push(await connectH2(url));
}

serve({
  async setup(arg: { url: string; senders: SenderSpec[]; connections: number }) {
    url = arg.url;
    senders = arg.senders;
    await ensureSessions(arg.connections);
    return { senders: senders.length, connections: sessions.length };
  },

  /**
   * Sends `rate` messages a second for `seconds` (at most `maxInFlight`
   * unanswered; a tick with none free skips, and is counted as behind).
   */
  async run(arg: { rate: number; seconds: number; tag: string; maxInFlight?: number; connections?: number }) {
    await ensureSessions(arg.connections ?? sessions.length);
    const maxInFlight = arg.maxInFlight ?? 2000;
    const ack: number[] = [];
    let sent = 0;
    let ok = 0;
    let failed = 0;
    let skipped = 0;
    let inFlight = 0;
    const errors = new Map<string, number>();
    const started = nowMs();
    const endAt = started + arg.seconds * 1000;
    const total = Math.round(arg.rate * arg.seconds);
    let next = 0;
    const sendOne = (): void => {
      const s = senders[counter % senders.length]!;
      const session = sessions[counter % sessions.length]!;
      counter++;
      const t0 = nowMs();
      const body = grpcFrame(
        toBinary(
          SendMessageRequestSchema,
          create(SendMessageRequestSchema, {
            conversationId: s.conversationId,
            content: `bench:${arg.tag}:${t0.toFixed(3)}`,
            clientMessageId: `${arg.tag}-${counter}-${process.pid}`,
          }),
        ),
      );
      inFlight++;
      sent++;
      void unary(session, grpcHeaders("/chat.ChatService/SendMessage", s.token), body, true).then((r) => {
        inFlight--;
        if (r.status === 0) {
          ok++;
          ack.push(nowMs() - t0);
        } else {
          failed++;
          const key = `${r.status} ${r.message ?? ""}`.slice(0, 120);
          errors.set(key, (errors.get(key) ?? 0) + 1);
        }
      });
    };
    while (next < total) {
      const now = nowMs();
      if (now > endAt + 1000) break;
      const due = Math.min(total, Math.floor(((now - started) / 1000) * arg.rate) + 1);
      while (next < due) {
        if (inFlight >= maxInFlight) {
          skipped += due - next;
          next = due;
          break;
        }
        sendOne();
        next++;
      }
      await sleep(1);
    }
    const sendSeconds = (nowMs() - started) / 1000;
    const drainUntil = nowMs() + 30_000;
    while (inFlight > 0 && nowMs() < drainUntil) await sleep(5);
    return {
      sent,
      ok,
      failed,
      skipped,
      sendSeconds,
      achievedRate: ok / Math.max(sendSeconds, arg.seconds),
      ack: summarize(ack),
      errors: Object.fromEntries([...errors].slice(0, 5)),
    };
  },

  async close() {
    for (const s of sessions) s.destroy();
    sessions = [];
    return true;
  },
});
