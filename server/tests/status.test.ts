import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../gen/chat/chat_pb.js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StatusAudience, StatusContentType, StatusFont } from "../../gen/status/status_pb.js";
import { Visibility } from "../../gen/user/user_pb.js";
import { grpcJsClient } from "./helpers/grpc-js.js";
import { codeOf, curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { protocolTransport, Subscription } from "./helpers/realtime.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";
import { createClient } from "@connectrpc/connect";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";

// status.StatusService over a real server: the original contract (curl JSON
// and a @grpc/grpc-js client speaking only the original fields), audiences
// with four users, the feed, views and viewers, deletion, replies and bad input.
// The clock is fake so that "newest first" does not depend on timing.

const clock = new FakeClock();
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({}, { clock });
});
afterAll(async () => {
  await s?.stop();
});

const nextPhone = phoneSequence("604");
const newUser = () => socialUser(s, nextPhone());
const tick = () => clock.advance(1000);

/** `owner` puts `others` in their contacts. */
async function addContacts(owner: SocialUser, ...others: SocialUser[]): Promise<void> {
  await owner.users.syncContacts({ phoneNumbers: others.map((o) => o.phone) });
}

describe("the original contract", () => {
  test("CreateStatus and GetStatuses with curl JSON, as in the README", async () => {
    const [a, b] = [await newUser(), await newUser()];
    await addContacts(a, b);
    const created = await curlJson(s, a.token, "status.StatusService", "CreateStatus", { user_id: a.id, content: "Good morning!" });
    expect(created.status).toBe(200);
    expect(created.body.status_id).toMatch(/^[0-9a-f-]{36}$/);
    const got = await curlJson(s, b.token, "status.StatusService", "GetStatuses", { user_id: a.id });
    expect(got.status).toBe(200);
    expect(got.body.statuses).toHaveLength(1);
    expect(got.body.statuses[0]).toMatchObject({ id: created.body.status_id, content: "Good morning!", user_id: a.id, viewed: false });
    expect(Date.parse(got.body.statuses[0].created_at)).toBe(clock.now().getTime());
    // Someone else's user_id: PermissionDenied for CreateStatus.
    const forged = await curlJson(s, b.token, "status.StatusService", "CreateStatus", { user_id: a.id, content: "not mine" });
    expect(forged.status).toBe(403);
    expect(forged.body.code).toBe("permission_denied");
  });

  test("a @grpc/grpc-js client that knows only the original fields", async () => {
    const [a, b] = [await newUser(), await newUser()];
    await addContacts(a, b);
    const client = grpcJsClient(s.url);
    try {
      const call = (method: string, req: Uint8Array, token: string) =>
        new Promise<Buffer>((resolve, reject) => {
          const md = new grpc.Metadata();
          md.set("authorization", `Bearer ${token}`);
          client.makeUnaryRequest(
            `/status.StatusService/${method}`,
            (x: Uint8Array) => Buffer.from(x),
            (x: Buffer) => x,
            req,
            md,
            (err, res) => (err ? reject(err) : resolve(res!)),
          );
        });
      tick();
      const createdBytes = await call("CreateStatus", message([1, a.id], [2, "over grpc"]), a.token);
      const created = strings(createdBytes);
      expect(created.get(1)).toHaveLength(1);
      const statusId = created.get(1)![0]!;
      const listBytes = await call("GetStatuses", message([1, a.id]), b.token);
      const statuses = subMessages(listBytes, 1).map(strings);
      expect(statuses).toHaveLength(1);
      expect(statuses[0]!.get(1)).toEqual([statusId]);
      expect(statuses[0]!.get(2)).toEqual(["over grpc"]);
      expect(new Date(statuses[0]!.get(3)![0]!).toISOString()).toBe(statuses[0]!.get(3)![0]!);
      // A forged author over gRPC: PERMISSION_DENIED.
      await expect(call("CreateStatus", message([1, a.id], [2, "x"]), b.token)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    } finally {
      client.close();
    }
  });
});

describe("audiences with four users", () => {
  let a: SocialUser, b: SocialUser, c: SocialUser, d: SocialUser, e: SocialUser;
  let everyone: string;
  const streams: Record<string, Subscription> = {};
  beforeAll(async () => {
    [a, b, c, d, e] = [await newUser(), await newUser(), await newUser(), await newUser(), await newUser()];
    await addContacts(a, b, c, d); // e is not a contact of a
    // Their devices are online: the status_posted event is what they see live.
    for (const [name, u] of Object.entries({ b, c, d, e })) streams[name] = new Subscription(protocolTransport(s.url, u.token, "grpc"));
    await Promise.all(Object.values(streams).map((x) => x.untilKind("caughtUp")));
    // A group of all five: a typing indicator there reaches every stream after
    // anything published before it, so it marks "nothing more is coming".
    everyone = (await a.chat.createConversation({ isGroup: true, groupName: "all", participantIds: [b.id, c.id, d.id, e.id] })).conversation!.id;
  });
  afterAll(async () => {
    await Promise.all(Object.values(streams).map((x) => x.close()));
  });
  const seers = async (statusId: string) => {
    const out: string[] = [];
    for (const [name, u] of Object.entries({ b, c, d, e })) {
      const { statuses } = await u.statuses.getStatuses({ userId: a.id });
      if (statuses.some((x) => x.id === statusId)) out.push(name);
    }
    return out;
  };

  test.each([
    ["contacts", StatusAudience.CONTACTS, () => [], ["b", "c", "d"]],
    ["contacts except c", StatusAudience.CONTACTS_EXCEPT, () => [c.id], ["b", "d"]],
    ["only d", StatusAudience.ONLY_SHARE_WITH, () => [d.id], ["d"]],
    // The default status privacy (CONTACTS) bounds the list: a stranger on it sees nothing.
    ["only e (not a contact)", StatusAudience.ONLY_SHARE_WITH, () => [e.id], []],
  ] as const)("%s", async (_name, audience, list, expected) => {
    tick();
    const { statusId, status } = await a.statuses.createStatus({ content: `for ${_name}`, audience, audienceUserIds: list() });
    expect(status!.audience).toBe(audience);
    expect(await seers(statusId)).toEqual(expected);
    // The realtime event reached exactly that audience's open streams.
    const typingBefore = Object.fromEntries(Object.entries(streams).map(([n, x]) => [n, x.of("typing").length]));
    await createClient(RealtimeService, protocolTransport(s.url, a.token, "connect")).sendTyping({ conversationId: everyone, active: false });
    await Promise.all(Object.entries(streams).map(([n, x]) => x.untilKind("typing", typingBefore[n]! + 1)));
    const heard = Object.entries(streams)
      .filter(([, x]) => x.of("statusPosted").some((p) => p.statusId === statusId && p.authorId === a.id))
      .map(([n]) => n);
    expect(heard).toEqual(expected);
    expect(await codeOf(e.statuses.viewStatus({ statusId }))).toBe(Code.NotFound);
  });

  test("the author's status privacy bounds every audience: CONTACTS drops an only-listed stranger, EVERYONE admits them, NOBODY pauses", async () => {
    tick();
    const { statusId } = await a.statuses.createStatus({ content: "paused", audience: StatusAudience.ONLY_SHARE_WITH, audienceUserIds: [b.id, e.id] });
    expect(await seers(statusId)).toEqual(["b"]);
    await a.users.updatePrivacy({ status: Visibility.EVERYONE });
    expect(await seers(statusId)).toEqual(["b", "e"]);
    expect((await e.statuses.viewStatus({ statusId })).firstView).toBe(true);
    await a.users.updatePrivacy({ status: Visibility.NOBODY });
    expect(await seers(statusId)).toEqual([]);
    expect((await a.statuses.listMyStatuses({})).statuses.map((x) => x.id)).toContain(statusId);
    await a.users.updatePrivacy({ status: Visibility.EVERYONE });
    expect(await seers(statusId)).toEqual(["b", "e"]);
  });
});

describe("feed, views and viewers", () => {
  test("grouped by author, newest first, with viewed flags", async () => {
    const [me, x, y, z] = [await newUser(), await newUser(), await newUser(), await newUser()];
    await addContacts(x, me);
    await addContacts(y, me);
    // z has me? no: z's statuses never reach my feed even if I have z as a contact.
    await addContacts(me, z);
    tick();
    const x1 = (await x.statuses.createStatus({ content: "x1" })).statusId;
    tick();
    const y1 = (await y.statuses.createStatus({ content: "y1", backgroundColor: "#25d366", font: StatusFont.SERIF })).statusId;
    tick();
    const x2 = (await x.statuses.createStatus({ contentType: StatusContentType.IMAGE, mediaUrl: "https://cdn.example.com/p.jpg", caption: "pic" })).statusId;
    tick();
    await z.statuses.createStatus({ content: "z1" });
    await me.statuses.viewStatus({ statusId: y1 });

    const feed = await curlJson(s, me.token, "status.StatusService", "ListStatusFeed", {});
    expect(feed.status).toBe(200);
    const authors = feed.body.authors as any[];
    expect(authors.map((g) => g.author.id)).toEqual([x.id, y.id]);
    expect(authors[0].statuses.map((st: any) => [st.id, st.viewed])).toEqual([
      [x2, false],
      [x1, false],
    ]);
    expect(authors[0].statuses[0]).toMatchObject({
      content_type: "STATUS_CONTENT_TYPE_IMAGE",
      media_url: "https://cdn.example.com/p.jpg",
      content: "https://cdn.example.com/p.jpg",
      caption: "pic",
    });
    expect(authors[0].all_viewed).toBe(false);
    expect(authors[1]).toMatchObject({ all_viewed: true });
    expect(authors[1].statuses[0]).toMatchObject({ id: y1, viewed: true, background_color: "#25D366", font: "STATUS_FONT_SERIF" });
    // Author-only fields stay empty for viewers.
    expect(authors[1].statuses[0].view_count).toBe(0);
  });

  test("views are recorded once; viewers only for the author; read receipts off hides a viewer", async () => {
    const [a, v1, v2, v3] = [await newUser(), await newUser(), await newUser(), await newUser()];
    await addContacts(a, v1, v2, v3);
    tick();
    const { statusId } = await a.statuses.createStatus({ content: "who sees this?" });
    tick();
    const first = await v1.statuses.viewStatus({ statusId });
    expect(first.firstView).toBe(true);
    tick();
    const again = await v1.statuses.viewStatus({ statusId });
    expect(again.firstView).toBe(false);
    expect(again.viewedAt).toEqual(first.viewedAt);
    await v2.users.updatePrivacy({ readReceipts: false });
    await v2.statuses.viewStatus({ statusId });
    tick();
    await v3.statuses.viewStatus({ statusId });
    // The author's own view is not recorded.
    expect((await a.statuses.viewStatus({ statusId })).firstView).toBe(false);

    const viewers = await curlJson(s, a.token, "status.StatusService", "GetStatusViewers", { status_id: statusId });
    expect(viewers.body.viewers.map((x: any) => x.user_id)).toEqual([v3.id, v1.id]);
    const mine = await a.statuses.listMyStatuses({});
    expect(mine.statuses.find((x) => x.id === statusId)!.viewCount).toBe(2);

    const denied = await errorOf(v1.statuses.getStatusViewers({ statusId }));
    expect(denied.code).toBe(Code.PermissionDenied);
    // With the author's own read receipts off, the author sees no viewers.
    await a.users.updatePrivacy({ readReceipts: false });
    expect((await a.statuses.getStatusViewers({ statusId })).viewers).toHaveLength(0);
  });

  test("DeleteStatus: only the author; the status and its views are gone", async () => {
    const [a, b] = [await newUser(), await newUser()];
    await addContacts(a, b);
    tick();
    const { statusId } = await a.statuses.createStatus({ content: "oops" });
    await b.statuses.viewStatus({ statusId });
    expect(await codeOf(b.statuses.deleteStatus({ statusId }))).toBe(Code.PermissionDenied);
    await a.statuses.deleteStatus({ statusId });
    expect((await b.statuses.getStatuses({ userId: a.id })).statuses).toHaveLength(0);
    // Deleting it again (a retry) succeeds and does nothing.
    await a.statuses.deleteStatus({ statusId });
    const views = await s.server.ctx.database.db.selectFrom("status_views").select("viewer_id").where("status_id", "=", statusId).execute();
    expect(views).toHaveLength(0);
  });

  test("ReplyToStatus sends a direct message to the author and records the quote", async () => {
    const [a, b] = [await newUser(), await newUser()];
    await addContacts(a, b);
    tick();
    const { statusId } = await a.statuses.createStatus({ content: "Guess where I am" });
    const reply = await curlJson(s, b.token, "status.StatusService", "ReplyToStatus", { status_id: statusId, content: "Paris?", client_message_id: "r-1" });
    expect(reply.status).toBe(200);
    expect(reply.body.status).toMatchObject({ id: statusId, content: "Guess where I am" });
    const conversationId = reply.body.conversation_id;
    // A retry returns the same message.
    const retry = await b.statuses.replyToStatus({ statusId, content: "Paris?", clientMessageId: "r-1" });
    expect(retry.message!.id).toBe(reply.body.message.id);
    let messages: Message[] = [];
    for (let i = 0; i < 100 && messages.length === 0; i++) {
      messages = (await a.chat.listMessages({ conversationId })).messages;
      if (messages.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(messages.map((m) => [m.content, m.senderId])).toEqual([["Paris?", b.id]]);
    // The chat shows which status it answers, as quoted.
    expect(messages[0]!.replyToStatus).toMatchObject({ statusId, authorId: a.id, contentType: "text", content: "Guess where I am" });
    const quote = await s.server.ctx.database.db.selectFrom("status_replies").selectAll().where("message_id", "=", reply.body.message.id).executeTakeFirst();
    expect(quote).toMatchObject({ status_id: statusId, status_author_id: a.id, replier_id: b.id, status_content: "Guess where I am" });
    expect(await codeOf(a.statuses.replyToStatus({ statusId, content: "me" }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(b.statuses.replyToStatus({ statusId, content: "  " }))).toBe(Code.InvalidArgument);
  });
});

describe("bad input", () => {
  let a: SocialUser;
  beforeAll(async () => {
    a = await newUser();
  });
  test.each([
    ["an empty text status", () => ({ content: "   " }), Code.InvalidArgument],
    ["text over 700 characters", () => ({ content: "x".repeat(701) }), Code.InvalidArgument],
    ["an image without media_url", () => ({ contentType: StatusContentType.IMAGE }), Code.InvalidArgument],
    ["a media_url that is not http(s)", () => ({ contentType: StatusContentType.VIDEO, mediaUrl: "file:///etc/passwd" }), Code.InvalidArgument],
    ["a bad colour", () => ({ content: "hi", backgroundColor: "green" }), Code.InvalidArgument],
    ["an unknown content type", () => ({ content: "hi", contentType: 7 as StatusContentType }), Code.InvalidArgument],
    ["ONLY_SHARE_WITH nobody", () => ({ content: "hi", audience: StatusAudience.ONLY_SHARE_WITH }), Code.InvalidArgument],
    ["a list with CONTACTS", () => ({ content: "hi", audience: StatusAudience.CONTACTS, audienceUserIds: [`${a.id}x`] }), Code.InvalidArgument],
    [
      "an unknown audience user",
      () => ({ content: "hi", audience: StatusAudience.CONTACTS_EXCEPT, audienceUserIds: ["00000000-0000-4000-8000-000000000000"] }),
      Code.NotFound,
    ],
    ["a malformed user_id", () => ({ userId: "me", content: "hi" }), Code.InvalidArgument],
  ])("CreateStatus with %s", async (_name, req, code) => {
    expect(await codeOf(a.statuses.createStatus(req()))).toBe(code);
    expect((await a.statuses.listMyStatuses({})).statuses).toHaveLength(0);
  });

  test("unknown and malformed status ids", async () => {
    const unknown = "00000000-0000-4000-8000-000000000000";
    expect(await codeOf(a.statuses.viewStatus({ statusId: unknown }))).toBe(Code.NotFound);
    expect(await codeOf(a.statuses.getStatusViewers({ statusId: unknown }))).toBe(Code.NotFound);
    expect(await codeOf(a.statuses.deleteStatus({ statusId: "nope" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.statuses.getStatuses({ userId: "nope" }))).toBe(Code.InvalidArgument);
  });
});

// --- a protobuf wire codec for the original messages (strings and sub-messages only)

type Field = [number, string];
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
function message(...fields: Field[]): Uint8Array {
  const bytes: number[] = [];
  for (const [n, v] of fields) {
    const b = new TextEncoder().encode(v);
    bytes.push(...varint((n << 3) | 2), ...varint(b.length), ...b);
  }
  return Uint8Array.from(bytes);
}
/** Every field as [number, wireType, bytes (LEN) | undefined]; varints and fixed fields skipped over. */
function fields(buf: Uint8Array): Array<[number, Uint8Array | undefined]> {
  const out: Array<[number, Uint8Array | undefined]> = [];
  let i = 0;
  const read = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = buf[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = read();
    const wt = key & 7;
    if (wt === 0) read();
    else if (wt === 2) {
      const len = read();
      out.push([Math.floor(key / 8), buf.subarray(i, i + len)]);
      i += len;
      continue;
    } else if (wt === 1) i += 8;
    else if (wt === 5) i += 4;
    else throw new Error(`wire type ${wt}`);
    out.push([Math.floor(key / 8), undefined]);
  }
  return out;
}
function strings(buf: Uint8Array): Map<number, string[]> {
  const m = new Map<number, string[]>();
  for (const [n, b] of fields(buf)) if (b && [1, 2, 3].includes(n)) m.set(n, [...(m.get(n) ?? []), new TextDecoder().decode(b)]);
  return m;
}
function subMessages(buf: Uint8Array, field: number): Uint8Array[] {
  return fields(buf).flatMap(([n, b]) => (n === field && b ? [b] : []));
}
