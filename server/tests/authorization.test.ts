import { createECDH } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createConnectRouter, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AuthService } from "../../gen/auth/auth_pb.js";
import { ChatService, ParticipantRole } from "../../gen/chat/chat_pb.js";
import { StatusAudience, StatusService } from "../../gen/status/status_pb.js";
import { UserService } from "../../gen/user/user_pb.js";
import { PushPlatform, PushService } from "../../gen/push/push_pb.js";
import { MediaKind } from "../../gen/media/media_pb.js";
import { registerRoutes } from "../routes.js";
import { bearerTransport, login } from "./helpers/login.js";
import { fakeJpeg, mediaClient, sha256, tusUpload } from "./helpers/media.js";
import { phoneSequence } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// The authorization table (issue 13): every RPC the server serves whose
// request names a resource by id (a field named *_id or *_ids, at any depth)
// is called by six callers, and what each gets is written once below. The
// RPCs come from the routes the server registers, so a new RPC that takes an
// id and has no row here fails the test until its row is written.
//
// The callers, and what "the resource" is for each kind of id:
// - anonymous: no token.
// - stranger:  a user with no tie to the resource.
// - member:    a participant of group G (and a contact of O who sees O's status).
// - owner:     O, the group's owner, the status's author, the user named, the session's owner.
// - removed:   a participant O removed from G (and left out of the status's audience).
// - blocked:   X, whom O blocked; X addresses their direct conversation D with O,
//              O's message there, O's status and O's user id.

type Role = "anonymous" | "stranger" | "member" | "owner" | "removed" | "blocked";
const ROLES: Role[] = ["anonymous", "stranger", "member", "removed", "blocked", "owner"];
type Outcome = Code | "ok";
type Expect = Record<Role, Outcome>;

/** Fields that name something the client chose itself, not a resource of someone's. */
const CLIENT_CHOSEN = new Set(["client_message_id", "client_request_id", "device_id"]);

function idFields(m: DescMessage, seen = new Set<string>()): string[] {
  if (seen.has(m.typeName)) return [];
  seen.add(m.typeName);
  return m.fields.flatMap((f) => [
    ...(/_ids?$/.test(f.name) && !CLIENT_CHOSEN.has(f.name) ? [f.name] : []),
    ...(f.message ? idFields(f.message, seen).map((n) => `${f.name}.${n}`) : []),
  ]);
}

interface World {
  O: string;
  M: string;
  R: string;
  X: string;
  /** A member of G only RemoveParticipant removes. */
  T: string;
  G: string;
  /** O's message in G, before R's removal. */
  g1: string;
  D: string;
  /** O's message in D, before the block. */
  d1: string;
  /** O's status: contacts except R. */
  st: string;
  /** O's other session (RevokeSession). */
  oSession: string;
  /** O's photo, sent in G before R's removal. */
  media: string;
  /** O's message scheduled in G (an hour ahead). */
  sched: string;
  /** J, who asked to join G by O's approval link (code), pending. */
  J: string;
  link: string;
}

/** The conversation and message each caller addresses. */
const convOf = (w: World, r: Role) => (r === "blocked" ? w.D : w.G);
const msgOf = (w: World, r: Role) => (r === "blocked" ? w.d1 : w.g1);
const future = () => timestampFromDate(new Date(Date.now() + 3_600_000));

interface Row {
  request: (w: World, r: Role) => Record<string, unknown>;
  expect: Expect;
  /** Callers whose ok call changes what later cells see (the world is made anew for them). */
  fresh?: Role[];
  /** Puts back what an ok call changed. */
  undo?: (w: World, r: Role, clients: Record<Role, Clients>) => Promise<unknown>;
}

const U = Code.Unauthenticated;
const NF = Code.NotFound;
const PD = Code.PermissionDenied;
const FP = Code.FailedPrecondition;
const IA = Code.InvalidArgument;

/** What each caller gets. Write the row of a new RPC here. */
const TABLE: Record<string, Row> = {
  "auth.AuthService/RevokeSession": {
    request: (w) => ({ sessionId: w.oSession }),
    // Someone else's session is as good as none.
    expect: { anonymous: U, stranger: NF, member: NF, removed: NF, blocked: NF, owner: "ok" },
  },
  "chat.ChatService/CreateConversation": {
    request: (w) => ({ participantIds: [w.O] }),
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: PD, owner: IA },
  },
  "chat.ChatService/SendMessage": {
    request: (w, r) => ({ conversationId: convOf(w, r), content: "hi" }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: PD, owner: "ok" },
  },
  "chat.ChatService/ListMessages": {
    request: (w, r) => ({ conversationId: convOf(w, r), beforeMessageId: msgOf(w, r) }),
    // A removed participant reads history up to the removal; a block hides nothing already shared.
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/GetConversation": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/UpdateGroup": {
    request: (w, r) => ({ conversationId: convOf(w, r), groupDescription: "d" }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/AddParticipants": {
    // Already a participant: nothing changes when allowed.
    request: (w, r) => ({ conversationId: convOf(w, r), userIds: [w.M] }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/RemoveParticipant": {
    request: (w, r) => ({ conversationId: convOf(w, r), userId: w.T }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/SetParticipantRole": {
    // M stays a member: nothing changes when allowed.
    request: (w, r) => ({ conversationId: convOf(w, r), userId: w.M, role: ParticipantRole.MEMBER }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/LeaveConversation": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    // A removed member is already out: leaving again succeeds and changes nothing (safe to retry).
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: FP, owner: "ok" },
    fresh: ["member", "owner"],
  },
  "chat.ChatService/EditMessage": {
    // O's message: only O edits it.
    request: (w, r) => ({ messageId: msgOf(w, r), content: "edited" }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: PD, blocked: PD, owner: "ok" },
  },
  "chat.ChatService/DeleteMessage": {
    request: (w, r) => ({ messageId: msgOf(w, r), forEveryone: true }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: PD, blocked: PD, owner: "ok" },
    fresh: ["owner"],
  },
  "chat.ChatService/ReactToMessage": {
    request: (w, r) => ({ messageId: msgOf(w, r), emoji: "👍" }),
    // Blocked either way: no reactions in the direct conversation, as no messages.
    expect: { anonymous: U, stranger: NF, member: "ok", removed: PD, blocked: PD, owner: "ok" },
  },
  "chat.ChatService/MarkDelivered": {
    request: (w, r) => ({ conversationId: convOf(w, r), upToSeq: 1n }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/MarkRead": {
    request: (w, r) => ({ conversationId: convOf(w, r), upToSeq: 1n }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/GetMessageReceipts": {
    request: (w, r) => ({ messageId: msgOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/MuteConversation": {
    request: (w, r) => ({ conversationId: convOf(w, r), mutedUntil: future() }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/ArchiveConversation": {
    request: (w, r) => ({ conversationId: convOf(w, r), archived: false }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/ScheduleMessage": {
    request: (w, r) => ({ conversationId: convOf(w, r), content: "later", sendAt: future() }),
    // Checked again when it is sent; a block refuses it at once, as SendMessage would.
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: PD, owner: "ok" },
  },
  "chat.ChatService/ListScheduledMessages": {
    // Lists only the caller's own scheduled messages (none for the others).
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/CancelScheduledMessage": {
    // Someone else's scheduled message is as good as none.
    request: (w) => ({ scheduledMessageId: w.sched }),
    expect: { anonymous: U, stranger: NF, member: NF, removed: NF, blocked: NF, owner: "ok" },
  },
  "chat.ChatService/CreateInviteLink": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/ListInviteLinks": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/RevokeInviteLink": {
    request: (w, r) => ({ conversationId: convOf(w, r), code: w.link }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/ResetInviteLinks": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/ListJoinRequests": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
  },
  "chat.ChatService/ApproveJoinRequest": {
    request: (w, r) => ({ conversationId: convOf(w, r), userId: w.J }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
    fresh: ["owner"],
  },
  "chat.ChatService/RejectJoinRequest": {
    request: (w, r) => ({ conversationId: convOf(w, r), userId: w.J }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: FP, owner: "ok" },
    fresh: ["owner"],
  },
  "chat.ChatService/SetDisappearingTimer": {
    request: (w, r) => ({ conversationId: convOf(w, r), seconds: 86_400 }),
    // Any current participant may set it (blocked: the direct conversation is frozen, as for messages).
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: PD, owner: "ok" },
    undo: (w, r, c) => c[r].chat.setDisappearingTimer({ conversationId: convOf(w, r), seconds: 0 }),
  },
  "chat.ChatService/SearchMessages": {
    request: (w, r) => ({ conversationId: convOf(w, r), query: "hello" }),
    // A removed participant searches what they saw while in.
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/ForwardMessages": {
    // Into the conversation the message is in: a removed participant still sees g1 but may not send to G.
    request: (w, r) => ({ messageIds: [msgOf(w, r)], conversationIds: [convOf(w, r)] }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: PD, owner: "ok" },
  },
  "chat.ChatService/PinConversation": {
    // The caller's own chat list: a block does not stop it.
    request: (w, r) => ({ conversationId: convOf(w, r), pinned: true }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/PinMessage": {
    // Group admins pin; in a direct conversation either side, unless blocked.
    request: (w, r) => ({ messageId: msgOf(w, r), pinned: true }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: PD, blocked: PD, owner: "ok" },
  },
  "chat.ChatService/StarMessages": {
    // Stars are the caller's own: anything they can see.
    request: (w, r) => ({ messageIds: [msgOf(w, r)], starred: true }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "chat.ChatService/ListStarredMessages": {
    request: (w, r) => ({ conversationId: convOf(w, r) }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "realtime.RealtimeService/SendTyping": {
    request: (w, r) => ({ conversationId: convOf(w, r), active: true }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: PD, owner: "ok" },
  },
  "realtime.RealtimeService/GetPresence": {
    // Answers only what the caller may see (checked in realtime.test.ts).
    request: (w) => ({ userIds: [w.O] }),
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "status.StatusService/CreateStatus": {
    request: (w) => ({ userId: w.O, content: "as O" }),
    expect: { anonymous: U, stranger: PD, member: PD, removed: PD, blocked: PD, owner: "ok" },
  },
  "status.StatusService/GetStatuses": {
    // Answers only the statuses the caller may see (checked in status.test.ts).
    request: (w) => ({ userId: w.O }),
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "status.StatusService/GetStatusViewers": {
    request: (w) => ({ statusId: w.st }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: NF, owner: "ok" },
  },
  "status.StatusService/ViewStatus": {
    request: (w) => ({ statusId: w.st }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: NF, owner: "ok" },
  },
  "status.StatusService/DeleteStatus": {
    request: (w) => ({ statusId: w.st }),
    expect: { anonymous: U, stranger: NF, member: PD, removed: NF, blocked: NF, owner: "ok" },
    fresh: ["owner"],
  },
  "status.StatusService/ReplyToStatus": {
    request: (w) => ({ statusId: w.st, content: "nice" }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: NF, blocked: NF, owner: FP },
  },
  "media.MediaService/GetMedia": {
    // Sent in G before R left: in R's history too. X shares only D with O, where it was not sent.
    request: (w) => ({ mediaId: w.media }),
    expect: { anonymous: U, stranger: NF, member: "ok", removed: "ok", blocked: NF, owner: "ok" },
  },
  "media.MediaService/DeleteMedia": {
    request: (w) => ({ mediaId: w.media }),
    expect: { anonymous: U, stranger: NF, member: NF, removed: NF, blocked: NF, owner: "ok" },
    fresh: ["owner"],
  },
  "user.UserService/GetUsers": {
    // Profiles come back within each owner's privacy settings (checked in user.test.ts).
    request: (w) => ({ userIds: [w.O] }),
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: "ok", owner: "ok" },
  },
  "user.UserService/BlockUser": {
    request: (w) => ({ userId: w.O }),
    // Blocking oneself: FailedPrecondition (UserService's own rule).
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: "ok", owner: FP },
    undo: (w, r, c) => c[r].user.unblockUser({ userId: w.O }),
  },
  "user.UserService/UnblockUser": {
    request: (w) => ({ userId: w.O }),
    expect: { anonymous: U, stranger: "ok", member: "ok", removed: "ok", blocked: "ok", owner: FP },
  },
};

let s: TestServer;
// Moved past the OTP resend limit for O's second login.
const clock = new FakeClock();
beforeAll(async () => {
  s = await startTestServer({}, { clock });
});
afterAll(async () => {
  await s?.stop();
});

const nextPhone = phoneSequence("613");

interface Clients {
  transport: Transport;
  chat: Client<typeof ChatService>;
  user: Client<typeof UserService>;
  status: Client<typeof StatusService>;
}

/** The RPCs the server serves whose requests name something by id. */
function rpcsTakingIds(): Map<string, { method: DescMethod; ids: string[] }> {
  const router = createConnectRouter();
  registerRoutes(router, s.server.ctx);
  const out = new Map<string, { method: DescMethod; ids: string[] }>();
  for (const h of router.handlers) {
    const ids = idFields(h.method.input);
    if (ids.length > 0) out.set(`${h.service.typeName}/${h.method.name}`, { method: h.method, ids });
  }
  return out;
}

async function outcome(p: Promise<unknown>): Promise<Outcome> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("authorization table", () => {
  let people: Record<Exclude<Role, "anonymous">, { id: string; token: string }> & { T: { id: string; token: string }; J: { id: string; token: string } };
  let clients: Record<Role, Clients>;
  /** What stays the same in every world: D and O's message there (written before the block), O's second session. */
  let base: { D: string; d1: string; oSession: string };

  const clientsOf = (transport: Transport): Clients => ({
    transport,
    chat: createClient(ChatService, transport),
    user: createClient(UserService, transport),
    status: createClient(StatusService, transport),
  });

  beforeAll(async () => {
    const log = async () => {
      const u = await login(s.url, nextPhone());
      return { id: u.id, token: u.accessToken };
    };
    people = { stranger: await log(), member: await log(), removed: await log(), blocked: await log(), owner: await log(), T: await log(), J: await log() };
    clients = {
      anonymous: clientsOf(createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" })),
      ...(Object.fromEntries(
        (["stranger", "member", "removed", "blocked", "owner"] as const).map((r) => [r, clientsOf(bearerTransport(s.url, people[r].token))]),
      ) as Record<Exclude<Role, "anonymous">, Clients>),
    };
    // O has M, R and X as contacts (so they may see O's statuses).
    const phones = await Promise.all((["member", "removed", "blocked"] as const).map(async (r) => (await clients[r].user.getMe({})).user!.phoneNumber));
    await clients.owner.user.syncContacts({ phoneNumbers: phones });
    const O = clients.owner;
    const D = (await O.chat.createConversation({ participantIds: [people.blocked.id] })).conversation!.id;
    const d1 = (await O.chat.sendMessage({ conversationId: D, content: "hello X" })).message!.id;
    await O.user.blockUser({ userId: people.blocked.id });
    clock.advance(31_000);
    const second = await login(s.url, (await O.user.getMe({})).user!.phoneNumber);
    const sessions = (await createClient(AuthService, bearerTransport(s.url, second.accessToken)).listSessions({})).sessions;
    base = { D, d1, oSession: sessions.find((x) => x.current)!.sessionId };
    await stored(D, d1);
  });

  /** Messages are stored by the worker in production: wait until the conversation shows it. */
  async function stored(conversationId: string, id: string): Promise<void> {
    for (let i = 0; ; i++) {
      const { messages } = await clients.owner.chat.listMessages({ conversationId });
      if (messages.some((m) => m.id === id && m.seq > 0n)) return;
      if (i > 200) throw new Error(`message ${id} was not stored`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** A fresh group G (R removed after O's message g1) and status of O (contacts except R), with the callers in their places. */
  async function world(): Promise<World> {
    const O = clients.owner;
    const [M, R, X, T] = [people.member.id, people.removed.id, people.blocked.id, people.T.id];
    const G = (await O.chat.createConversation({ isGroup: true, groupName: "Auth", participantIds: [M, R, T] })).conversation!.id;
    const g1 = (await O.chat.sendMessage({ conversationId: G, content: "hello group" })).message!.id;
    await stored(G, g1);
    const photo = fakeJpeg(2000);
    const media = (
      await mediaClient(s, people.owner.token).createUpload({
        kind: MediaKind.IMAGE,
        mimeType: "image/jpeg",
        sizeBytes: BigInt(photo.length),
        sha256: sha256(photo),
      })
    ).mediaId;
    await tusUpload(s, people.owner.token, media, photo, { chunk: photo.length });
    await stored(G, (await O.chat.sendMessage({ conversationId: G, mediaId: media })).message!.id);
    await O.chat.removeParticipant({ conversationId: G, userId: R });
    const st = (await O.status.createStatus({ content: "O's status", audience: StatusAudience.CONTACTS_EXCEPT, audienceUserIds: [R] })).statusId;
    const sched = (await O.chat.scheduleMessage({ conversationId: G, content: "in an hour", sendAt: future() })).scheduledMessage!.id;
    const link = (await O.chat.createInviteLink({ conversationId: G, requiresApproval: true })).link!.code;
    await createClient(ChatService, bearerTransport(s.url, people.J.token)).joinByInvite({ code: link });
    return { O: people.owner.id, M, R, X, T, G, g1, ...base, st, media, sched, J: people.J.id, link };
  }

  test("every RPC that takes an id has a row, and each caller gets what the row says", async () => {
    const served = rpcsTakingIds();
    const missing = [...served.keys()].filter((k) => !(k in TABLE));
    expect(missing, "RPCs that take an id but have no row in TABLE").toEqual([]);
    const stale = Object.keys(TABLE).filter((k) => !served.has(k));
    expect(stale, "rows for RPCs that are not served or take no id").toEqual([]);

    let shared: World | undefined;
    // Compared by code name, so a failure reads "NotFound", not 5.
    const named = (o: Outcome) => (o === "ok" ? o : Code[o]);
    const seen: Record<string, Record<Role, string>> = {};
    const expected: Record<string, Record<Role, string>> = {};
    let cells = 0;
    for (const [rpc, { method }] of served) {
      const row = TABLE[rpc]!;
      expected[rpc] = Object.fromEntries(ROLES.map((r) => [r, named(row.expect[r])])) as Record<Role, string>;
      seen[rpc] = {} as Record<Role, string>;
      for (const role of ROLES) {
        const w = row.fresh?.includes(role) ? await world() : (shared ??= await world());
        const client = createClient(served.get(rpc)!.method.parent, clients[role].transport) as unknown as Record<
          string,
          (req: Record<string, unknown>) => Promise<unknown>
        >;
        const got = await outcome(client[method.localName]!(row.request(w, role)));
        seen[rpc]![role] = named(got);
        if (got === "ok" && row.undo) await row.undo(w, role, clients);
        cells++;
      }
    }
    expect(seen).toEqual(expected);
    // The matrix size, for the record (issue 13's closing note).
    console.log(`authorization table: ${served.size} RPCs × ${ROLES.length} callers = ${cells} cells`);
    expect(cells).toBe(served.size * ROLES.length);
    // Over 150 calls in a row: past vitest's default 30 s on a loaded machine.
  }, 120_000);
});

// RPCs that name no resource act on the caller's own session or account: the
// push registration of the calling session, the caller's push settings. Their
// rows: no token is Unauthenticated; another user's call neither sees nor
// removes the owner's registration or setting. Every push.PushService RPC has
// a row (a new one fails the test until its row is written).
describe("caller-scoped RPCs (push.PushService)", () => {
  const SELF: Record<string, { request: Record<string, unknown>; anonymous: Outcome }> = {
    RegisterPushToken: { request: { platform: PushPlatform.WEB_PUSH }, anonymous: U },
    UnregisterPushToken: { request: {}, anonymous: U },
    GetPushToken: { request: {}, anonymous: U },
    GetWebPushKey: { request: {}, anonymous: U },
    GetPushSettings: { request: {}, anonymous: U },
    UpdatePushSettings: { request: { showPreviews: true }, anonymous: U },
  };

  test("each answers Unauthenticated without a token and touches only the caller's own session and settings", async () => {
    const router = createConnectRouter();
    registerRoutes(router, s.server.ctx);
    const served = router.handlers.filter((h) => h.service.typeName === "push.PushService").map((h) => h.method.name);
    expect(served.sort()).toEqual(Object.keys(SELF).sort());

    const anonymous = createClient(PushService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" })) as unknown as Record<
      string,
      (req: Record<string, unknown>) => Promise<unknown>
    >;
    for (const [name, row] of Object.entries(SELF)) {
      const method = name.charAt(0).toLowerCase() + name.slice(1);
      expect(await outcome(anonymous[method]!(row.request)), name).toBe(row.anonymous);
    }

    const [owner, other] = [await login(s.url, nextPhone()), await login(s.url, nextPhone())];
    const mine = createClient(PushService, bearerTransport(s.url, owner.accessToken));
    const theirs = createClient(PushService, bearerTransport(s.url, other.accessToken));
    // Web Push: the one platform a development server has keys for (generated VAPID keys).
    const browserKey = createECDH("prime256v1");
    browserKey.generateKeys();
    const webPush = {
      endpoint: "https://updates.push.services.mozilla.com/wpush/v2/owner",
      p256dh: browserKey.getPublicKey().toString("base64url"),
      auth: "AAAAAAAAAAAAAAAAAAAAAA",
    };
    await mine.registerPushToken({ platform: PushPlatform.WEB_PUSH, webPush });
    await mine.updatePushSettings({ showPreviews: true });
    expect((await theirs.getPushToken({})).registration).toBeUndefined();
    expect((await theirs.unregisterPushToken({})).wasRegistered).toBe(false);
    expect((await theirs.getPushSettings({})).settings?.showPreviews).toBe(false);
    await theirs.updatePushSettings({ showPreviews: false });
    expect((await mine.getPushToken({})).registration?.webPush?.endpoint).toBe(webPush.endpoint);
    expect((await mine.getPushSettings({})).settings?.showPreviews).toBe(true);
  });
});
