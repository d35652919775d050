import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Visibility } from "../../gen/user/user_pb.js";
import { filterPresenceViewers, presenceAudience, readReceiptsEnabled, usersWithContact } from "../db/privacy-store.js";
import { codeOf, curlJson, errorOf, phoneSequence, socialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// user.UserService over a real server: profiles, contact sync and its budget,
// privacy settings against contacts, strangers and blocks, and the presence
// helpers realtime uses.

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ CONTACT_SYNC_DAILY_BUDGET: "8" });
});
afterAll(async () => {
  await s?.stop();
});

const nextPhone = phoneSequence("601");
const newUser = (protocol: "grpc" | "connect" = "connect") => socialUser(s, nextPhone(), protocol);

describe("profile", () => {
  test("GetMe and UpdateProfile with curl JSON", async () => {
    const a = await newUser();
    const me = await curlJson(s, a.token, "user.UserService", "GetMe", {});
    expect(me.status).toBe(200);
    expect(me.body.user).toMatchObject({ id: a.id, phone_number: a.phone });

    const updated = await curlJson(s, a.token, "user.UserService", "UpdateProfile", {
      display_name: "  Ayşe  ",
      about_text: "Hey there! I am using Chatwire.",
      profile_picture_url: "https://cdn.example.com/a.jpg",
    });
    expect(updated.status).toBe(200);
    expect(updated.body.user).toMatchObject({
      display_name: "Ayşe",
      about_text: "Hey there! I am using Chatwire.",
      profile_picture_url: "https://cdn.example.com/a.jpg",
    });
    // Unset fields stay as they are.
    const again = await a.users.updateProfile({ aboutText: "" });
    expect(again.user).toMatchObject({ displayName: "Ayşe", aboutText: "", profilePictureUrl: "https://cdn.example.com/a.jpg" });
  });

  test("validation: lengths count characters, URLs must be http(s), something must change", async () => {
    const a = await newUser("grpc");
    expect(await codeOf(a.users.updateProfile({ displayName: "x".repeat(65) }))).toBe(Code.InvalidArgument);
    expect((await a.users.updateProfile({ displayName: "ş".repeat(64) })).user!.displayName).toHaveLength(64);
    expect(await codeOf(a.users.updateProfile({ displayName: "   " }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.users.updateProfile({ aboutText: "a".repeat(141) }))).toBe(Code.InvalidArgument);
    expect((await a.users.updateProfile({ aboutText: "🙂".repeat(140) })).user!.aboutText).toBe("🙂".repeat(140));
    const e = await errorOf(a.users.updateProfile({ profilePictureUrl: "javascript:alert(1)" }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toContain("profile_picture_url");
    expect(await codeOf(a.users.updateProfile({ profilePictureUrl: "ftp://x.example/a.png" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.users.updateProfile({}))).toBe(Code.InvalidArgument);
    expect((await a.users.getMe({})).user!.displayName).toBe("ş".repeat(64));
  });

  test("GetUsers: request order, unknown ids left out, malformed ids and too many refused", async () => {
    const [a, b, c] = [await newUser(), await newUser(), await newUser()];
    const unknown = "00000000-0000-4000-8000-000000000000";
    const { users } = await a.users.getUsers({ userIds: [c.id, unknown, b.id] });
    expect(users.map((u) => u.id)).toEqual([c.id, b.id]);
    expect(users[0]!.phoneNumber).toBe(c.phone);
    expect(await codeOf(a.users.getUsers({ userIds: ["nope"] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.users.getUsers({ userIds: [] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.users.getUsers({ userIds: Array.from({ length: 101 }, () => b.id) }))).toBe(Code.InvalidArgument);
  });
});

describe("contacts", () => {
  test("sync matches registered numbers in any format, skips invalid ones and the caller, and lists them", async () => {
    const [a, b, c] = [await newUser(), await newUser(), await newUser()];
    const bFormatted = `${b.phone.slice(0, 2)} (${b.phone.slice(2, 5)}) ${b.phone.slice(5, 8)}-${b.phone.slice(8)}`;
    const res = await curlJson(s, a.token, "user.UserService", "SyncContacts", {
      phone_numbers: [bFormatted, c.phone, "+14155550000", "not a number", a.phone],
    });
    expect(res.status).toBe(200);
    expect(res.body.contacts.map((x: any) => x.user.id).sort()).toEqual([b.id, c.id].sort());
    expect(res.body.invalid_phone_numbers).toEqual(["not a number"]);
    expect(res.body.budget_remaining).toBe(8 - 4);
    const listed = await a.users.listContacts({ limit: 1 });
    expect(listed.contacts).toHaveLength(1);
    expect(listed.contacts[0]!.user!.isContact).toBe(true);
    const rest = await a.users.listContacts({ limit: 1, pageToken: listed.nextPageToken });
    expect(rest.contacts).toHaveLength(1);
    expect(rest.nextPageToken).toBe("");
    expect([listed.contacts[0]!.phoneNumber, rest.contacts[0]!.phoneNumber].sort()).toEqual([b.phone, c.phone].sort());
    expect(await codeOf(a.users.listContacts({ pageToken: "garbage!" }))).toBe(Code.InvalidArgument);

    // Removal, and a re-sync of a known number costs nothing.
    const removed = await a.users.syncContacts({ phoneNumbers: [b.phone], removePhoneNumbers: [c.phone] });
    expect(removed.budgetRemaining).toBe(4);
    expect((await a.users.listContacts({})).contacts.map((x) => x.user!.id)).toEqual([b.id]);
    expect(await usersWithContact(s.server.ctx.database.db, b.id)).toEqual([a.id]);
  });

  test("the daily budget refuses a crawl with ResourceExhausted and the wait, and stores nothing of it", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const strangers = Array.from({ length: 7 }, (_, i) => `+1415602${String(9000 + i)}`);
    await a.users.syncContacts({ phoneNumbers: strangers });
    const e = await errorOf(a.users.syncContacts({ phoneNumbers: [b.phone, "+14156029100", "+14156029101"] }));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toMatch(/1 left.*try again in \d+ s/);
    expect((await a.users.listContacts({})).contacts).toHaveLength(0);
    // One more fits.
    const ok = await a.users.syncContacts({ phoneNumbers: [b.phone] });
    expect(ok.contacts.map((x) => x.user!.id)).toEqual([b.id]);
    expect(ok.budgetRemaining).toBe(0);
    expect(await codeOf(a.users.syncContacts({ phoneNumbers: Array.from({ length: 1001 }, () => b.phone) }))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.users.syncContacts({ removePhoneNumbers: ["12"] }))).toBe(Code.InvalidArgument);
  });
});

describe("privacy", () => {
  test("defaults, partial updates and bad values", async () => {
    const a = await newUser();
    const def = await curlJson(s, a.token, "user.UserService", "GetPrivacy", {});
    expect(def.body.privacy).toEqual({
      last_seen: "VISIBILITY_EVERYONE",
      profile_photo: "VISIBILITY_EVERYONE",
      about: "VISIBILITY_EVERYONE",
      status: "VISIBILITY_CONTACTS",
      read_receipts: true,
      group_add: "VISIBILITY_EVERYONE",
    });
    const up = await curlJson(s, a.token, "user.UserService", "UpdatePrivacy", { about: "VISIBILITY_NOBODY", read_receipts: false });
    expect(up.body.privacy).toMatchObject({ about: "VISIBILITY_NOBODY", last_seen: "VISIBILITY_EVERYONE", read_receipts: false });
    expect(await codeOf(a.users.updatePrivacy({}))).toBe(Code.InvalidArgument);
    expect(await codeOf(a.users.updatePrivacy({ lastSeen: 9 as Visibility }))).toBe(Code.InvalidArgument);
    expect((await readReceiptsEnabled(s.server.ctx.database.db, [a.id])).get(a.id)).toBe(false);
  });

  // Subject S with photo, about and a last-seen time; viewers: a contact of S,
  // a stranger, and a contact S has blocked / who blocked S.
  test.each([
    [Visibility.EVERYONE, { contact: true, stranger: true, blocked: false, blocker: false }],
    [Visibility.CONTACTS, { contact: true, stranger: false, blocked: false, blocker: false }],
    [Visibility.NOBODY, { contact: false, stranger: false, blocked: false, blocker: false }],
  ])("setting %s × (contact, non-contact, blocked either way)", async (setting, expected) => {
    const subject = await newUser();
    const [contact, stranger, blocked, blocker] = [await newUser(), await newUser(), await newUser(), await newUser()];
    await subject.users.updateProfile({ aboutText: "about me", profilePictureUrl: "https://cdn.example.com/s.png" });
    const db = s.server.ctx.database.db;
    await db
      .updateTable("users")
      .set({ last_seen_at: new Date("2026-01-02T03:04:05Z") })
      .where("id", "=", subject.id)
      .execute();
    await subject.users.syncContacts({ phoneNumbers: [contact.phone, blocked.phone, blocker.phone] });
    await subject.users.blockUser({ userId: blocked.id });
    await blocker.users.blockUser({ userId: subject.id });
    await subject.users.updatePrivacy({ lastSeen: setting, profilePhoto: setting, about: setting });

    const viewers = { contact, stranger, blocked, blocker };
    for (const [name, viewer] of Object.entries(viewers)) {
      const [p] = (await viewer.users.getUsers({ userIds: [subject.id] })).users;
      const sees = expected[name as keyof typeof expected];
      expect({ name, photo: p!.profilePictureUrl, about: p!.aboutText, lastSeen: p!.lastSeenAt }).toEqual({
        name,
        photo: sees ? "https://cdn.example.com/s.png" : "",
        about: sees ? "about me" : "",
        lastSeen: sees ? "2026-01-02T03:04:05.000Z" : "",
      });
      // Number and name are never hidden: chats need them.
      expect(p!.phoneNumber).toBe(subject.phone);
    }
    const allowed = await filterPresenceViewers(db, subject.id, [contact.id, stranger.id, blocked.id, blocker.id, subject.id]);
    expect([...allowed].sort()).toEqual(
      [
        subject.id,
        ...Object.entries(viewers)
          .filter(([n]) => expected[n as keyof typeof expected])
          .map(([, v]) => v.id),
      ].sort(),
    );
    // Realtime's announcement audience (one query) decides the same: once every viewer
    // has the subject as a contact, it is exactly the allowed ones.
    for (const v of Object.values(viewers)) await v.users.syncContacts({ phoneNumbers: [subject.phone] });
    expect((await presenceAudience(db, subject.id)).sort()).toEqual([...allowed].filter((id) => id !== subject.id).sort());
    // The subject always sees everything of their own.
    expect((await subject.users.getMe({})).user!.aboutText).toBe("about me");
  });
});

describe("blocking in UserService", () => {
  test("block, list, unblock; self-block and unknown users refused", async () => {
    const [a, b] = [await newUser(), await newUser()];
    const first = await curlJson(s, a.token, "user.UserService", "BlockUser", { user_id: b.id });
    expect(first.status).toBe(200);
    const again = await a.users.blockUser({ userId: b.id });
    expect(again.blockedAt!.seconds).toBe(BigInt(Math.floor(Date.parse(first.body.blocked_at) / 1000)));
    const { blocked } = await a.users.listBlocked({});
    expect(blocked.map((x) => x.user!.id)).toEqual([b.id]);
    expect(blocked[0]!.user!.blockedByMe).toBe(true);
    expect((await a.users.getUsers({ userIds: [b.id] })).users[0]!.blockedByMe).toBe(true);

    expect(await codeOf(a.users.blockUser({ userId: a.id }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(a.users.blockUser({ userId: "00000000-0000-4000-8000-000000000000" }))).toBe(Code.NotFound);
    expect(await codeOf(a.users.blockUser({ userId: "x" }))).toBe(Code.InvalidArgument);

    expect((await a.users.unblockUser({ userId: b.id })).wasBlocked).toBe(true);
    expect((await a.users.unblockUser({ userId: b.id })).wasBlocked).toBe(false);
    expect((await a.users.listBlocked({})).blocked).toHaveLength(0);
  });

  test("every UserService call needs a bearer token", async () => {
    const res = await curlJson(s, undefined, "user.UserService", "GetMe", {});
    expect(res.status).toBe(401);
    expect(res.body.code).toBe("unauthenticated");
  });
});
