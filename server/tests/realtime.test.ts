import { createClient, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService, ParticipantRole } from "../../gen/chat/chat_pb.js";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { UserService, Visibility } from "../../gen/user/user_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { login, type LoggedIn } from "./helpers/login.js";
import { protocolTransport, Subscription, type Protocol } from "./helpers/realtime.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// Two instances of one deployment (same database; NATS between them in the
// production profile, the in-process bus in the embedded one).
let a: TestServer;
let b: TestServer;
let alice: LoggedIn;
let bob: LoggedIn;
let carol: LoggedIn;
let direct: string;
let group: string;
const open: Subscription[] = [];
/** Real time, movable forward (a second login of one number waits out the resend interval). */
const clock = { offsetMs: 0, now: () => new Date(Date.now() + clock.offsetMs) };

const chat = (server: TestServer, who: LoggedIn, protocol: Protocol = "connect") =>
  createClient(ChatService, protocolTransport(server.url, who.accessToken, protocol));
const subscribe = (server: TestServer, who: LoggedIn, protocol: Protocol, since?: bigint) => {
  const s = new Subscription(protocolTransport(server.url, who.accessToken, protocol), since);
  open.push(s);
  return s;
};
const texts = (s: Subscription, conversationId?: string) =>
  s
    .of("messageCreated")
    .map((m) => m.message!)
    .filter((m) => !conversationId || m.conversationId === conversationId)
    .map((m) => m.content);

beforeAll(async () => {
  a = await startTestServer({ REALTIME_TYPING_TTL_MS: "400" }, { clock });
  b = await startTestServer({ REALTIME_TYPING_TTL_MS: "400" }, { shareWith: a, clock });
  [alice, bob, carol] = (await Promise.all(["+14155550301", "+14155550302", "+14155550303"].map((p) => login(a.url, p)))) as [LoggedIn, LoggedIn, LoggedIn];
  direct = (await chat(a, alice).createConversation({ participantIds: [bob.id] })).conversation!.id;
  group = (await chat(a, alice).createConversation({ isGroup: true, groupName: "Trio", participantIds: [bob.id, carol.id] })).conversation!.id;
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((s) => s.close()));
  await b?.stop();
  await a?.stop();
});

describe("Subscribe", () => {
  it("delivers each message once and in order to B's streams on gRPC, gRPC-Web and Connect, on both instances", async () => {
    const streams = [subscribe(a, bob, "grpc"), subscribe(b, bob, "grpc-web"), subscribe(b, bob, "connect")];
    await Promise.all(streams.map((s) => s.untilKind("caughtUp")));
    for (const s of streams) {
      expect(s.events[0]!.kind.case).toBe("ready");
      expect(s.of("ready")[0]!.heartbeatSeconds).toBe(15);
    }
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      for (const conversationId of [direct, group]) {
        const content = `live ${i} in ${conversationId === direct ? "direct" : "group"}`;
        sent.push(content);
        await chat(a, alice).sendMessage({ conversationId, content });
      }
    }
    await Promise.all(streams.map((s) => s.until((x) => texts(x).length >= sent.length, 10_000, "10 messages")));
    for (const s of streams) {
      // In send order per conversation (two workers may interleave the two conversations).
      expect(texts(s, direct)).toEqual(sent.filter((t) => t.endsWith("direct")));
      expect(texts(s, group)).toEqual(sent.filter((t) => t.endsWith("group")));
      expect(texts(s).length).toBe(sent.length);
      const positions = s.stored().map((e) => e.position);
      expect(positions.every((p, i) => i === 0 || p === positions[i - 1]! + 1n)).toBe(true);
      // Every message carries its seq as ListMessages would show it.
      expect(
        s
          .of("messageCreated")
          .filter((m) => m.message!.conversationId === direct)
          .map((m) => m.message!.seq),
      ).toEqual([1n, 2n, 3n, 4n, 5n]);
    }
    await Promise.all(streams.map((s) => s.close()));
  });

  it("resumes from the last position on the other instance: exactly the 50 missed events, then caught_up", async () => {
    const first = subscribe(a, bob, "connect", 0n);
    await first.untilKind("caughtUp");
    const resumeFrom = first.lastPosition;
    await first.close();
    const sent: string[] = [];
    for (let i = 0; i < 50; i++) {
      sent.push(`missed ${i}`);
      await chat(a, alice).sendMessage({ conversationId: i % 2 ? direct : group, content: `missed ${i}` });
    }
    // All stored while bob is away (SendMessage returns once queued; the worker stores them): only then are they
    // all among what bob missed rather than live events after a quick replay.
    for (const [conversationId, last] of [
      [direct, "missed 49"],
      [group, "missed 48"],
    ] as const) {
      await expect
        .poll(async () => (await chat(b, bob).listMessages({ conversationId, limit: 5 })).messages.map((m) => m.content), { timeout: 10_000 })
        .toContain(last);
    }
    const again = subscribe(b, bob, "grpc", resumeFrom);
    await again.untilKind("caughtUp", 1, 15_000);
    const caught = again.of("caughtUp")[0]!;
    expect(caught.replayed).toBe(50);
    const stored = again.stored();
    expect(stored.map((e) => e.position)).toEqual(Array.from({ length: 50 }, (_, i) => resumeFrom + 1n + BigInt(i)));
    // Per conversation in send order (two workers may interleave the two conversations differently).
    expect(texts(again, direct)).toEqual(sent.filter((_, i) => i % 2 === 1));
    expect(texts(again, group)).toEqual(sent.filter((_, i) => i % 2 === 0));
    expect(caught.position).toBe(resumeFrom + 50n);
    // And live again after the replay, without a repeat.
    await chat(b, alice).sendMessage({ conversationId: direct, content: "after resume" });
    await again.until((s) => texts(s).includes("after resume"), 10_000, "the live message");
    expect(again.stored().length).toBe(51);
    await again.close();
  });

  it("a device that reconnects to the same instance (the user's subscription there still in place) gets live events once, alongside a stream that stayed", async () => {
    const stays = subscribe(a, bob, "grpc");
    const first = subscribe(a, bob, "connect");
    await Promise.all([stays.untilKind("caughtUp"), first.untilKind("caughtUp")]);
    await first.close();
    const again = subscribe(a, bob, "connect", first.lastPosition);
    await again.untilKind("caughtUp");
    await chat(b, alice).sendMessage({ conversationId: direct, content: "after reconnect" });
    await Promise.all([stays, again].map((s) => s.until((x) => texts(x).includes("after reconnect"), 10_000, "the live message")));
    expect(texts(again).filter((t) => t === "after reconnect")).toHaveLength(1);
    expect(texts(stays).filter((t) => t === "after reconnect")).toHaveLength(1);
    await Promise.all([stays.close(), again.close()]);
  });

  it("edits, reactions, deletes, receipts and group changes reach every participant's stream as typed events", async () => {
    const bobStream = subscribe(b, bob, "grpc");
    const aliceStream = subscribe(a, alice, "connect");
    await Promise.all([bobStream.untilKind("caughtUp"), aliceStream.untilKind("caughtUp")]);
    const sent = (await chat(a, alice).sendMessage({ conversationId: direct, content: "to be edited" })).message!;
    await bobStream.until((s) => texts(s).includes("to be edited"), 10_000, "the message");
    const stored = bobStream.of("messageCreated").find((m) => m.message!.content === "to be edited")!.message!;

    await chat(a, alice).editMessage({ messageId: stored.id, content: "edited!" });
    await chat(b, bob).reactToMessage({ messageId: stored.id, emoji: "👍" });
    await chat(b, bob).markRead({ conversationId: direct, upToSeq: stored.seq });
    await chat(a, alice).deleteMessage({ messageId: stored.id, forEveryone: true });

    await bobStream.untilKind("messageDeleted");
    expect(bobStream.of("messageEdited")[0]!.message!.content).toBe("edited!");
    expect(bobStream.of("reactionChanged")[0]).toMatchObject({ messageId: stored.id, userId: bob.id, emoji: "👍" });
    expect(bobStream.of("reactionChanged")[0]!.reactions[0]).toMatchObject({ emoji: "👍", count: 1, userIds: [bob.id] });
    expect(bobStream.of("messageDeleted")[0]).toMatchObject({ messageId: stored.id, forEveryone: true, seq: stored.seq });
    // Alice learns that everything she sent up to that seq is delivered and read.
    await aliceStream.untilKind("receiptUpdated");
    expect(aliceStream.of("receiptUpdated")[0]).toMatchObject({
      conversationId: direct,
      userId: bob.id,
      lastReadSeq: stored.seq,
      lastDeliveredSeq: stored.seq,
      deliveredToAllSeq: stored.seq,
      readByAllSeq: stored.seq,
    });
    expect(sent.id).toBe(stored.id);

    // Group changes: created, renamed, added, role changed, removed.
    const dave = await login(a.url, "+14155550304");
    const created = (await chat(a, alice).createConversation({ isGroup: true, groupName: "Plans", participantIds: [bob.id] })).conversation!;
    await bobStream.until((s) => s.of("conversationCreated").some((c) => c.conversation!.id === created.id), 10_000, "conversation_created");
    const seen = bobStream.of("conversationCreated").find((c) => c.conversation!.id === created.id)!.conversation!;
    expect(seen).toMatchObject({ isGroup: true, groupName: "Plans", myRole: ParticipantRole.MEMBER });
    expect([...seen.participantIds].sort()).toEqual([alice.id, bob.id].sort());
    await chat(a, alice).updateGroup({ conversationId: created.id, groupName: "Plans 2" });
    await chat(a, alice).addParticipants({ conversationId: created.id, userIds: [dave.id] });
    await chat(a, alice).setParticipantRole({ conversationId: created.id, userId: bob.id, role: ParticipantRole.ADMIN });
    await chat(b, bob).removeParticipant({ conversationId: created.id, userId: dave.id });
    await bobStream.untilKind("participantRemoved");
    expect(bobStream.of("conversationUpdated").at(-1)!.conversation!.groupName).toBe("Plans 2");
    expect(bobStream.of("participantAdded").at(-1)).toMatchObject({ conversationId: created.id, userIds: [dave.id], actorId: alice.id });
    expect(bobStream.of("participantRoleChanged").at(-1)).toMatchObject({ userId: bob.id, role: ParticipantRole.ADMIN, actorId: alice.id });
    expect(bobStream.of("participantRemoved").at(-1)).toMatchObject({ userId: dave.id, actorId: bob.id });
    // The same changes are system messages in the timeline, also on the stream.
    const systemEvents = bobStream
      .of("messageCreated")
      .filter((m) => m.message!.conversationId === created.id)
      .map((m) => m.message!.systemEvent);
    expect(systemEvents).toEqual(["group_created", "group_updated", "participants_added", "role_changed", "participant_removed"]);

    // A replay from before all this sends the same typed events (message ones as the messages are now).
    const replay = subscribe(a, bob, "grpc-web", bobStream.of("caughtUp")[0]!.position);
    await replay.untilKind("caughtUp");
    const live = bobStream.stored().map((e) => `${e.position}:${e.kind.case}`);
    expect(replay.stored().map((e) => `${e.position}:${e.kind.case}`)).toEqual(live);
    const replayedCreate = replay.of("messageCreated").find((m) => m.message!.id === stored.id)!.message!;
    expect(replayedCreate.deletedAt).toBeDefined();
    expect(replayedCreate.content).toBe("");
    await Promise.all([bobStream.close(), aliceStream.close(), replay.close()]);
  });

  it("typing reaches the conversation's other online participants and expires unless repeated", async () => {
    const bobStream = subscribe(b, bob, "grpc");
    const carolStream = subscribe(a, carol, "connect");
    await Promise.all([bobStream.untilKind("caughtUp"), carolStream.untilKind("caughtUp")]);
    const res = await createClient(RealtimeService, protocolTransport(a.url, alice.accessToken, "connect")).sendTyping({ conversationId: group, active: true });
    expect(res.deliveredTo).toBe(2);
    await Promise.all([bobStream.untilKind("typing", 2), carolStream.untilKind("typing", 2)]);
    for (const s of [bobStream, carolStream]) {
      const [start, stop] = s.of("typing");
      expect(start).toMatchObject({ conversationId: group, userId: alice.id, active: true });
      expect(start!.expiresAt).toBeDefined();
      // REALTIME_TYPING_TTL_MS=400 on these servers: no repeat, so it ended.
      expect(stop).toMatchObject({ conversationId: group, userId: alice.id, active: false });
      expect(s.events.filter((e) => e.kind.case === "typing").every((e) => e.position === 0n)).toBe(true);
    }
    // Only participants: a typing indicator in the direct chat does not reach carol.
    await createClient(RealtimeService, protocolTransport(a.url, alice.accessToken, "grpc")).sendTyping({ conversationId: direct, active: true });
    await bobStream.untilKind("typing", 3);
    expect(carolStream.of("typing").length).toBe(2);
    await Promise.all([bobStream.close(), carolStream.close()]);
  });

  it("presence: online while a device is subscribed, offline with last_seen when the last one closes", async () => {
    const realtime = createClient(RealtimeService, protocolTransport(a.url, alice.accessToken, "connect"));
    // Sharing only a group is not enough (group members do not get each other's presence).
    expect((await realtime.getPresence({ userIds: [carol.id] })).users).toEqual([]);
    await chat(a, alice).createConversation({ participantIds: [carol.id] });
    const watcher = subscribe(a, alice, "connect");
    await watcher.untilKind("caughtUp");
    const phone = subscribe(b, carol, "grpc");
    const laptop = subscribe(a, carol, "connect");
    await Promise.all([phone.untilKind("caughtUp"), laptop.untilKind("caughtUp")]);
    await watcher.until((s) => s.of("presence").some((p) => p.userId === carol.id && p.online), 10_000, "carol online");
    expect((await realtime.getPresence({ userIds: [carol.id] })).users[0]).toMatchObject({ userId: carol.id, online: true });
    await phone.close();
    // Still online on the laptop: no offline event yet.
    expect((await realtime.getPresence({ userIds: [carol.id] })).users[0]!.online).toBe(true);
    await laptop.close();
    // (An offline notice from an earlier test's streams may arrive first: look after "online".)
    const carolFlips = () => {
      const all = watcher.of("presence").filter((p) => p.userId === carol.id);
      return all.slice(all.findIndex((p) => p.online));
    };
    await watcher.until(() => carolFlips().some((p) => !p.online), 10_000, "carol offline");
    const offline = carolFlips().find((p) => !p.online)!;
    expect(offline.lastSeenAt).toBeDefined();
    expect(carolFlips().map((p) => p.online)).toEqual([true, false]);
    const later = (await realtime.getPresence({ userIds: [carol.id] })).users[0]!;
    expect(later.online).toBe(false);
    expect(later.lastSeenAt?.seconds).toBe(offline.lastSeenAt!.seconds);
    // Someone who shares no conversation with alice is left out.
    const stranger = await login(a.url, "+14155550399");
    expect((await realtime.getPresence({ userIds: [stranger.id, carol.id] })).users.map((u) => u.userId)).toEqual([carol.id]);
    await expect(realtime.getPresence({ userIds: ["nope"] })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await watcher.close();
  });

  it("revoking a session ends its stream on the other instance within a second with Unauthenticated; the user's other devices hear of it", async () => {
    // Bob's second device, past the number's SendOTP resend interval.
    clock.offsetMs += 31_000;
    const device = await login(a.url, bob.phone);
    const doomed = subscribe(b, device, "grpc");
    const other = subscribe(a, bob, "connect");
    await Promise.all([doomed.untilKind("caughtUp"), other.untilKind("caughtUp")]);
    const auth = createClient(AuthService, protocolTransport(a.url, bob.accessToken, "connect"));
    const sessions = (await auth.listSessions({})).sessions;
    expect(sessions.length).toBe(2);
    const deviceSession = sessions.find((s) => !s.current)!;
    const started = Date.now();
    await auth.revokeSession({ sessionId: deviceSession.sessionId });
    await doomed.until((s) => s.ended !== undefined, 1000, "the stream to end");
    expect(Date.now() - started).toBeLessThan(1000);
    expect(doomed.ended!.error?.code).toBe(Code.Unauthenticated);
    await other.untilKind("sessionRevoked");
    expect(other.of("sessionRevoked")[0]!.sessionId).toBe(deviceSession.sessionId);
    await other.close();
  });

  it("presence honours blocks and last-seen privacy", async () => {
    const users = (who: LoggedIn) => createClient(UserService, protocolTransport(a.url, who.accessToken, "connect"));
    const presenceOf = async (viewer: LoggedIn, subject: LoggedIn) =>
      (await createClient(RealtimeService, protocolTransport(a.url, viewer.accessToken, "grpc")).getPresence({ userIds: [subject.id] })).users;
    // Carol hides her last seen from everyone; alice blocks bob.
    await users(carol).updatePrivacy({ lastSeen: Visibility.NOBODY });
    expect(await presenceOf(alice, carol)).toEqual([]);
    await users(alice).blockUser({ userId: bob.id });
    const aliceWatch = subscribe(a, alice, "connect");
    const bobWatch = subscribe(b, bob, "grpc");
    await Promise.all([aliceWatch.untilKind("caughtUp"), bobWatch.untilKind("caughtUp")]);
    const carolStream = subscribe(a, carol, "connect");
    await carolStream.untilKind("caughtUp");
    await carolStream.close();
    // Neither sees the other's presence across the block.
    expect(await presenceOf(bob, alice)).toEqual([]);
    expect(await presenceOf(alice, bob)).toEqual([]);
    const aliceDevice = subscribe(a, alice, "grpc-web");
    await aliceDevice.untilKind("caughtUp");
    await aliceDevice.close();
    // A user everyone may see, for a marker that presence still flows.
    const dave = await login(a.url, "+14155550305");
    await chat(a, dave).createConversation({ participantIds: [bob.id] });
    await chat(a, dave).createConversation({ participantIds: [alice.id] });
    const daveStream = subscribe(a, dave, "connect");
    await daveStream.untilKind("caughtUp");
    await Promise.all([
      aliceWatch.until((s) => s.of("presence").some((p) => p.userId === dave.id), 10_000, "dave online (alice)"),
      bobWatch.until((s) => s.of("presence").some((p) => p.userId === dave.id), 10_000, "dave online (bob)"),
    ]);
    expect(aliceWatch.of("presence").filter((p) => p.userId === carol.id || p.userId === bob.id)).toEqual([]);
    expect(bobWatch.of("presence").filter((p) => p.userId === carol.id || p.userId === alice.id)).toEqual([]);
    await users(alice).unblockUser({ userId: bob.id });
    await users(carol).updatePrivacy({ lastSeen: Visibility.EVERYONE });
    expect((await presenceOf(alice, carol)).map((u) => u.userId)).toEqual([carol.id]);
    await Promise.all([aliceWatch.close(), bobWatch.close(), daveStream.close()]);
  });

  it("bad input: no token, a stranger's conversation, a bad id, too many typing indicators", async () => {
    const anonymous = new Subscription(protocolTransport(a.url, "", "grpc"));
    await anonymous.done;
    expect(anonymous.ended?.error?.code).toBe(Code.Unauthenticated);
    const stranger = await login(a.url, "+14155550398");
    const typing = (who: LoggedIn, conversationId: string) =>
      createClient(RealtimeService, protocolTransport(a.url, who.accessToken, "connect")).sendTyping({ conversationId, active: true });
    await expect(typing(stranger, direct)).rejects.toMatchObject({ code: Code.NotFound });
    await expect(typing(alice, "not-a-uuid")).rejects.toMatchObject({ code: Code.InvalidArgument });
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => typing(carol, group)));
    const refused = results.filter((r) => r.status === "rejected");
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(10);
    expect(refused.map((r) => (r as PromiseRejectedResult).reason.code)).toEqual([Code.ResourceExhausted, Code.ResourceExhausted]);
    expect((refused[0] as PromiseRejectedResult).reason.message).toMatch(/at most 10 per 5 s/);
  });
});
