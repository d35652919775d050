import { randomUUID } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, test } from "vitest";
import type { ChatwireServer } from "../server.js";
import { streamName } from "../messaging/jetstream-queue.js";
import { decodeNotice, messageIdFor, userSubject, type InboxNoticeWire } from "../messaging/message-queue.js";
import type { OutgoingMessage } from "../messaging/types.js";
import { waitForConsumer } from "./helpers/queue-state.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// The JetStream wiring is always tested: NATS_URL, else the NATS every machine runs on 127.0.0.1.
const NATS = process.env.NATS_URL || "nats://127.0.0.1:4222";

const running: TestServer[] = [];
afterEach(async () => {
  // Newest first: instances that share another's database stop before its owner drops it.
  for (const s of running.splice(0).reverse()) await s.stop();
});

async function start(env: Record<string, string | undefined> = {}, shareWith?: TestServer): Promise<TestServer> {
  const s = await startTestServer(env, { shareWith });
  running.push(s);
  return s;
}

let phone = 14155570000 + Math.floor(Math.random() * 1000) * 1000;
async function seedConversation(server: ChatwireServer, n: number): Promise<{ conv: string; members: string[] }> {
  const db = server.ctx.database.db;
  const members = (
    await db
      .insertInto("users")
      .values(Array.from({ length: n }, () => ({ phone_number: `+${++phone}` })))
      .returning("id")
      .execute()
  ).map((r) => r.id);
  const { id } = await db
    .insertInto("conversations")
    .values({ is_group: n > 2 })
    .returning("id")
    .executeTakeFirstOrThrow();
  await db
    .insertInto("conversation_participants")
    .values(members.map((user_id) => ({ conversation_id: id, user_id })))
    .execute();
  return { conv: id, members };
}

function outgoing(conversationId: string, senderId: string): OutgoingMessage {
  const clientMessageId = randomUUID();
  return {
    id: messageIdFor(senderId, clientMessageId),
    conversationId,
    senderId,
    clientMessageId,
    content: "hi",
    mediaUrl: "",
    mediaType: "",
    replyToMessageId: null,
    mentionUserIds: [],
    sentAt: new Date().toISOString(),
  };
}

async function waitForRow(server: ChatwireServer, id: string, timeoutMs = 15_000): Promise<{ seq: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await server.ctx.database.db.selectFrom("messages").select("seq").where("id", "=", id).executeTakeFirst();
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`message ${id} not stored within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function readiness(s: TestServer): Promise<{ status: number; checks: Record<string, string> }> {
  const res = await fetch(`${s.url}/readyz`);
  return { status: res.status, checks: ((await res.json()) as { checks: Record<string, string> }).checks };
}

describe("the message queue inside a running server", () => {
  test("this environment's profile: SendMessage's queue stores the message and the participants hear of it", async () => {
    const s = await start();
    const { ctx } = s.server;
    expect(ctx.messages.kind).toBe(process.env.NATS_URL ? "jetstream" : "inline");
    const ready = await readiness(s);
    expect(ready.status).toBe(200);
    expect(ready.checks.queue).toBe(`${ctx.messages.kind}: ok`);
    if (ctx.messages.kind === "jetstream") expect(ready.checks.worker).toBe("running");

    const { conv, members } = await seedConversation(s.server, 2);
    const heard: InboxNoticeWire[] = [];
    for (const u of members) ctx.bus.subscribe(userSubject(ctx.config.natsSubjectPrefix, u), (p) => heard.push(decodeNotice(p)));
    await ctx.nats?.nc.flush();
    const msg = outgoing(conv, members[0]!);
    const { stored } = await ctx.messages.publish(msg);
    if (ctx.messages.kind === "inline") expect(stored).toMatchObject({ id: msg.id, seq: "1", duplicate: false });
    else expect(stored).toBeUndefined();
    expect(await waitForRow(s.server, msg.id)).toEqual({ seq: "1" });
    await expect.poll(() => heard.length).toBe(2);
    expect(heard.every((n) => n.message_id === msg.id && n.seq === "1" && n.position === "1")).toBe(true);
  });

  test("JetStream with split roles: an API-only instance queues, a worker-only instance stores, even after a worker restart", async () => {
    const api = await start({ NATS_URL: NATS, CHATWIRE_ROLES: "api" });
    expect(api.server.ctx.messages.kind).toBe("jetstream");
    expect((await readiness(api)).checks.worker).toBeUndefined();
    const { conv, members } = await seedConversation(api.server, 3);

    const worker = await start({ NATS_URL: NATS, CHATWIRE_ROLES: "worker" }, api);
    expect(worker.config.natsSubjectPrefix).toBe(api.config.natsSubjectPrefix);
    expect((await readiness(worker)).checks.worker).toBe("running");
    const first = outgoing(conv, members[0]!);
    await api.server.ctx.messages.publish(first);
    expect(await waitForRow(api.server, first.id)).toEqual({ seq: "1" });

    // The worker goes away; the API keeps accepting; a new worker catches up.
    const t0 = Date.now();
    await worker.stop();
    running.splice(running.indexOf(worker), 1);
    expect(Date.now() - t0).toBeLessThan(5000);
    const later = [outgoing(conv, members[1]!), outgoing(conv, members[2]!)];
    for (const m of later) await api.server.ctx.messages.publish(m);
    // Both wait in the stream and no pull asks for them: nothing can store them now.
    await waitForConsumer(api.server, "idle with both waiting", (c) => c.num_pending === 2 && c.num_ack_pending === 0 && c.num_waiting === 0);
    const none = await api.server.ctx.database.db
      .selectFrom("messages")
      .select("id")
      .where(
        "id",
        "in",
        later.map((m) => m.id),
      )
      .execute();
    expect(none).toEqual([]);
    await start({ NATS_URL: NATS, CHATWIRE_ROLES: "worker" }, api);
    expect(await waitForRow(api.server, later[0]!.id)).toEqual({ seq: "2" });
    expect(await waitForRow(api.server, later[1]!.id)).toEqual({ seq: "3" });
  });

  test("a test server's stream is removed when it stops", async () => {
    const s = await start({ NATS_URL: NATS });
    const stream = streamName(s.config.natsSubjectPrefix);
    const nc = await connect({ servers: NATS.split(",") });
    try {
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(stream)).config.name).toBe(stream);
      await s.stop();
      running.splice(running.indexOf(s), 1);
      await expect(jsm.streams.info(stream)).rejects.toThrow(/not found/i);
    } finally {
      await nc.close();
    }
  });
});
