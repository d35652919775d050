import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { insertConversation, insertUsers, outgoing } from "../../tests/helpers/fixtures.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import { storeMessages } from "../../messaging/store.js";
import { closeStream, directPeers, openStream } from "../presence-store.js";
import { block, filterPresenceViewers, presenceAudience, updatePrivacy, usersWithContact } from "../privacy-store.js";
import type { Database } from "../schema.js";

// chatwire_presence_audience.sql, chatwire_presence_open_stream.sql and
// chatwire_presence_close_stream.sql through their callers (privacy-store.ts
// presenceAudience, presence-store.ts openStream and closeStream).
// PostgreSQL when DATABASE_URL is set, else PGlite.
const logger = pino({ level: "silent" });

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

const directConversation = (a: string, b: string) => insertConversation(db, [a, b], { isGroup: false });

async function addContact(owner: string, contact: string): Promise<void> {
  const { phone_number } = await db.selectFrom("users").select("phone_number").where("id", "=", contact).executeTakeFirstOrThrow();
  await db.insertInto("contacts").values({ user_id: owner, contact_user_id: contact, contact_phone_number: phone_number }).execute();
}

/** The TypeScript reference: filterPresenceViewers over directPeers ∪ usersWithContact. */
async function reference(subject: string): Promise<string[]> {
  const candidates = [...(await directPeers(db, subject)), ...(await usersWithContact(db, subject))];
  return [...(await filterPresenceViewers(db, subject, candidates))].sort();
}

const sorted = (ids: readonly (string | undefined)[]) => [...ids].map(String).sort();

describe("chatwire_presence_audience, through presenceAudience", () => {
  test("direct peers and users who have the subject as a contact, minus blocks either way and leavers; not group members", async () => {
    const [subject, peer, holder, groupMate, leaver, blocked, blocker] = await insertUsers(db, 7);
    for (const u of [peer, blocked, blocker]) await directConversation(subject!, u!);
    const left = await directConversation(subject!, leaver!);
    await db.updateTable("conversation_participants").set({ left_at: new Date() }).where("conversation_id", "=", left).where("user_id", "=", leaver!).execute();
    await insertConversation(db, [subject!, groupMate!]);
    await addContact(holder!, subject!);
    await block(db, subject!, blocked!, new Date());
    await block(db, blocker!, subject!, new Date());

    const audience = sorted(await presenceAudience(db, subject!));
    expect(audience).toEqual(sorted([peer, holder]));
    expect(audience).toEqual(await reference(subject!));
  });

  test("the subject's last-seen setting: contacts are those in the subject's contacts; nobody is no one", async () => {
    const [subject, peer, contact, holder] = await insertUsers(db, 4);
    await directConversation(subject!, peer!);
    await directConversation(subject!, contact!);
    await addContact(subject!, contact!);
    await addContact(holder!, subject!);
    await addContact(subject!, holder!);

    await updatePrivacy(db, subject!, { lastSeen: "contacts" }, new Date());
    expect(sorted(await presenceAudience(db, subject!))).toEqual(sorted([contact, holder]));
    expect(sorted(await presenceAudience(db, subject!))).toEqual(await reference(subject!));
    await updatePrivacy(db, subject!, { lastSeen: "nobody" }, new Date());
    expect(await presenceAudience(db, subject!)).toEqual([]);
    expect(await reference(subject!)).toEqual([]);
  });
});

function stream(userId: string, now: Date, opts: { maxStreams?: number; ttlMs?: number } = {}) {
  return {
    streamId: randomUUID(),
    userId,
    sessionId: randomUUID(),
    instanceId: "test-instance",
    now,
    expiresAt: new Date(now.getTime() + (opts.ttlMs ?? 60_000)),
    maxStreams: opts.maxStreams ?? 5,
  };
}

const streamsOf = async (userId: string) =>
  (await db.selectFrom("presence_streams").select("stream_id").where("user_id", "=", userId).orderBy("serial").execute()).map((r) => r.stream_id);

describe("chatwire_presence_open_stream, through openStream", () => {
  test("the first stream brings the user online with the audience's rows; a second does not", async () => {
    const [user, peer] = await insertUsers(db, 2);
    await directConversation(user!, peer!);
    const now = new Date();
    const first = await openStream(db, stream(user!, now));
    expect(first.cameOnline).toBe(true);
    expect(first.audience).toEqual([{ viewer: peer, is_contact: false, blocked: false, last_seen: null }]);
    expect(first.evicted).toEqual([]);
    const second = await openStream(db, stream(user!, now));
    expect(second).toMatchObject({ cameOnline: false, audience: [], evicted: [] });
    expect(await streamsOf(user!)).toHaveLength(2);
  });

  test("beyond the limit the oldest other streams are removed and returned, oldest first; the new one stays", async () => {
    const [user] = await insertUsers(db, 1);
    const now = new Date();
    const opened = [];
    for (let i = 0; i < 3; i++) opened.push(stream(user!, now, { maxStreams: 3 }));
    for (const s of opened) await openStream(db, s);
    const fourth = stream(user!, now, { maxStreams: 2 });
    const r = await openStream(db, fourth);
    expect(r.evicted).toEqual([opened[0]!.streamId, opened[1]!.streamId]);
    expect(await streamsOf(user!)).toEqual([opened[2]!.streamId, fourth.streamId]);
  });

  test("expired rows (a dead instance's) are dropped first, so the user comes online again", async () => {
    const [user] = await insertUsers(db, 1);
    const t0 = new Date();
    const dead = stream(user!, t0, { ttlMs: 1000 });
    expect((await openStream(db, dead)).cameOnline).toBe(true);
    const later = stream(user!, new Date(t0.getTime() + 5000));
    expect((await openStream(db, later)).cameOnline).toBe(true);
    expect(await streamsOf(user!)).toEqual([later.streamId]);
  });

  test("returns the user's inbox bounds read after the registration", async () => {
    const [user, other] = await insertUsers(db, 2);
    expect((await openStream(db, stream(user!, new Date()))).inbox).toEqual({ last: "0", prunedThrough: "0" });
    const conv = await insertConversation(db, [user!, other!]);
    await db.transaction().execute((trx) => storeMessages(trx, [outgoing(conv, other!), outgoing(conv, other!), outgoing(conv, user!)], new Date()));
    await db.updateTable("inbox_positions").set({ pruned_through: "1" }).where("user_id", "=", user!).execute();
    expect((await openStream(db, stream(user!, new Date()))).inbox).toEqual({ last: "3", prunedThrough: "1" });
  });
});

describe("chatwire_presence_close_stream, through closeStream", () => {
  test("closing the last live stream takes the user offline, stores last_seen_at and returns the audience's rows", async () => {
    const [user, peer] = await insertUsers(db, 2);
    await directConversation(user!, peer!);
    const now = new Date();
    const a = stream(user!, now);
    const b = stream(user!, now);
    await openStream(db, a);
    await openStream(db, b);
    expect(await closeStream(db, { streamId: a.streamId, userId: user!, now })).toEqual({ wentOffline: false, audience: [] });
    const closedAt = new Date("2026-03-04T05:06:07.000Z");
    expect(await closeStream(db, { streamId: b.streamId, userId: user!, now: closedAt })).toEqual({
      wentOffline: true,
      audience: [{ viewer: peer, is_contact: false, blocked: false, last_seen: null }],
    });
    expect(await db.selectFrom("users").select("last_seen_at").where("id", "=", user!).executeTakeFirstOrThrow()).toEqual({ last_seen_at: closedAt });
  });

  test("a stream already removed (evicted) does not take the user offline", async () => {
    const [user] = await insertUsers(db, 1);
    const now = new Date();
    const old = stream(user!, now, { maxStreams: 1 });
    await openStream(db, old);
    const r = await openStream(db, stream(user!, now, { maxStreams: 1 }));
    expect(r.evicted).toEqual([old.streamId]);
    expect(await closeStream(db, { streamId: old.streamId, userId: user!, now })).toEqual({ wentOffline: false, audience: [] });
    expect(await db.selectFrom("users").select("last_seen_at").where("id", "=", user!).executeTakeFirstOrThrow()).toEqual({ last_seen_at: null });
  });

  test("only live streams keep the user online: an expired one left behind does not", async () => {
    const [user] = await insertUsers(db, 1);
    const t0 = new Date();
    const dead = stream(user!, t0, { ttlMs: 1000 });
    await openStream(db, dead);
    const live = stream(user!, t0);
    await openStream(db, live);
    const later = new Date(t0.getTime() + 5000);
    expect((await closeStream(db, { streamId: live.streamId, userId: user!, now: later })).wentOffline).toBe(true);
  });
});
