import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Visibility } from "../../gen/user/user_pb.js";
import { codeOf, curlJson, errorOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { startTestServer, type TestServer } from "./helpers/test-server.js";

// "Who may add me to groups" (user.Privacy.group_add): everyone, my contacts
// or nobody; others get permission_denied from CreateConversation (group),
// and from AddParticipants a personal invite for them instead (invites.test.ts).

const phone = phoneSequence("711");
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const newUser = () => socialUser(s, phone());
const group = (by: SocialUser, members: SocialUser[], name = "g") =>
  by.chat.createConversation({ participantIds: members.map((m) => m.id), isGroup: true, groupName: name });

describe("group_add", () => {
  test("GetPrivacy and UpdatePrivacy carry it; EVERYONE by default; setting it alone works", async () => {
    const a = await newUser();
    expect((await a.users.getPrivacy({})).privacy!.groupAdd).toBe(Visibility.EVERYONE);
    const up = await curlJson(s, a.token, "user.UserService", "UpdatePrivacy", { group_add: "VISIBILITY_CONTACTS" });
    expect(up.status).toBe(200);
    expect(up.body.privacy).toMatchObject({ group_add: "VISIBILITY_CONTACTS", last_seen: "VISIBILITY_EVERYONE", read_receipts: true });
    expect((await a.users.getPrivacy({})).privacy!.groupAdd).toBe(Visibility.CONTACTS);
    // Another setting leaves it as it was.
    await a.users.updatePrivacy({ about: Visibility.NOBODY });
    expect((await a.users.getPrivacy({})).privacy!.groupAdd).toBe(Visibility.CONTACTS);
    const bad = await errorOf(a.users.updatePrivacy({ groupAdd: 7 as Visibility }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toMatch(/^group_add: /);
  });

  test("NOBODY: nobody can create a group with them (permission_denied naming them) or add them (an invite instead); direct chats still open", async () => {
    const [adder, shy, other] = [await newUser(), await newUser(), await newUser()];
    await shy.users.syncContacts({ phoneNumbers: [adder.phone] });
    await shy.users.updatePrivacy({ groupAdd: Visibility.NOBODY });

    const created = await errorOf(group(adder, [other, shy]));
    expect(created.code).toBe(Code.PermissionDenied);
    expect(created.rawMessage).toContain(`user ${shy.id}'s privacy settings do not let you add them to groups`);
    // Nothing was created.
    expect((await adder.chat.getConversations({})).conversations.filter((c) => c.isGroup)).toHaveLength(0);

    const g = (await group(adder, [other])).conversation!.id;
    expect((await adder.chat.addParticipants({ conversationId: g, userIds: [shy.id] })).invitedUserIds).toEqual([shy.id]);
    expect((await adder.chat.getConversation({ conversationId: g })).conversation!.participantIds).not.toContain(shy.id);

    const direct = await adder.chat.createConversation({ participantIds: [shy.id] });
    expect(direct.conversation!.isGroup).toBe(false);
  });

  test("CONTACTS: only users in their contacts may add them", async () => {
    const [owner, friend, stranger, picky] = [await newUser(), await newUser(), await newUser(), await newUser()];
    await picky.users.syncContacts({ phoneNumbers: [friend.phone] });
    await picky.users.updatePrivacy({ groupAdd: Visibility.CONTACTS });

    expect(await codeOf(group(stranger, [picky]))).toBe(Code.PermissionDenied);
    const g = (await group(friend, [picky, owner])).conversation!;
    expect(g.participantIds).toContain(picky.id);

    // The stranger is an admin of a group of their own, and still may not add them.
    const h = (await group(stranger, [owner])).conversation!.id;
    const refused = await stranger.chat.addParticipants({ conversationId: h, userIds: [picky.id] });
    expect(refused.invitedUserIds).toEqual([picky.id]);
    expect(refused.conversation!.participantIds).not.toContain(picky.id);
    // Once in the picky user's contacts, they may.
    await picky.users.syncContacts({ phoneNumbers: [stranger.phone] });
    const added = await stranger.chat.addParticipants({ conversationId: h, userIds: [picky.id] });
    expect(added.conversation!.participantIds).toContain(picky.id);
  });

  test("EVERYONE lets anyone add them; re-adding a current member is not a new add", async () => {
    const [adder, open, member] = [await newUser(), await newUser(), await newUser()];
    const g = (await group(adder, [open, member])).conversation!.id;
    // Turning it to NOBODY later does not refuse a no-op AddParticipants of someone already in.
    await open.users.updatePrivacy({ groupAdd: Visibility.NOBODY });
    const again = await adder.chat.addParticipants({ conversationId: g, userIds: [open.id] });
    expect(again.conversation!.participantIds).toContain(open.id);
  });
});
