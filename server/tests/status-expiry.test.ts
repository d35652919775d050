import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { purgeExpiredStatuses } from "../db/status-store.js";
import { codeOf, phoneSequence, socialUser, type SocialUser } from "./helpers/social.js";
import { FakeClock, startTestServer, type TestServer } from "./helpers/test-server.js";

// A status is invisible 24 h after posting (read-time check with the injected
// clock), and the purge job deletes its rows and views. Access tokens live 15
// minutes of the fake clock too, so users log in again after each jump.

const HOUR = 3600_000;

describe("expiry and purge", () => {
  const clock = new FakeClock();
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({}, { clock });
  });
  afterAll(async () => {
    await s?.stop();
  });
  const nextPhone = phoneSequence("605");
  const relogin = (u: SocialUser) => socialUser(s, u.phone);

  test("visible until 24 h, then gone from every RPC, then from the database after the purge", async () => {
    let a = await socialUser(s, nextPhone());
    let b = await socialUser(s, nextPhone());
    await a.users.syncContacts({ phoneNumbers: [b.phone] });
    const { statusId } = await a.statuses.createStatus({ content: "for a day" });
    await b.statuses.viewStatus({ statusId });
    clock.advance(HOUR);
    [a, b] = [await relogin(a), await relogin(b)];
    const { statusId: later } = await a.statuses.createStatus({ content: "an hour later" });

    clock.advance(23 * HOUR - 60_000);
    [a, b] = [await relogin(a), await relogin(b)];
    expect((await b.statuses.getStatuses({ userId: a.id })).statuses.map((x) => x.id)).toEqual([later, statusId]);

    clock.advance(60_000); // exactly 24 h after the first
    [a, b] = [await relogin(a), await relogin(b)];
    expect((await b.statuses.getStatuses({ userId: a.id })).statuses.map((x) => x.id)).toEqual([later]);
    expect((await b.statuses.getStatuses({})).statuses.map((x) => x.id)).toEqual([later]);
    expect((await b.statuses.listStatusFeed({})).authors[0]!.statuses.map((x) => x.id)).toEqual([later]);
    expect((await a.statuses.listMyStatuses({})).statuses.map((x) => x.id)).toEqual([later]);
    expect(await codeOf(b.statuses.viewStatus({ statusId }))).toBe(Code.NotFound);
    expect(await codeOf(a.statuses.getStatusViewers({ statusId }))).toBe(Code.NotFound);
    expect(await codeOf(a.statuses.deleteStatus({ statusId }))).toBe(Code.NotFound);
    expect(await codeOf(b.statuses.replyToStatus({ statusId, content: "too late" }))).toBe(Code.NotFound);

    // Still in the database until the purge runs.
    const db = s.server.ctx.database.db;
    expect(await db.selectFrom("status_views").select("viewer_id").where("status_id", "=", statusId).execute()).toHaveLength(1);
    expect(await purgeExpiredStatuses(db, clock.now())).toBe(1);
    expect(await db.selectFrom("status_updates").select("id").where("id", "=", statusId).execute()).toHaveLength(0);
    expect(await db.selectFrom("status_views").select("viewer_id").where("status_id", "=", statusId).execute()).toHaveLength(0);
    expect(await db.selectFrom("status_updates").select("id").where("id", "=", later).execute()).toHaveLength(1);
    expect(await purgeExpiredStatuses(db, clock.now())).toBe(0);
  });
});

describe("the scheduled purge job", () => {
  const clock = new FakeClock();
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ STATUS_PURGE_INTERVAL_SECONDS: "1" }, { clock });
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("runs on its interval and removes what expired by the server's clock", async () => {
    const a = await socialUser(s, "+14156069999");
    const { statusId } = await a.statuses.createStatus({ content: "soon gone" });
    const db = s.server.ctx.database.db;
    const rows = () => db.selectFrom("status_updates").select("id").where("id", "=", statusId).execute();
    // A run of the job is seen by a marker status already expired by the server's clock disappearing.
    const { id: marker } = await db
      .insertInto("status_updates")
      .values({ user_id: a.id, content_type: "text", content: "marker", created_at: new Date(clock.now().getTime() - 25 * 3600_000), expires_at: clock.now() })
      .returning("id")
      .executeTakeFirstOrThrow();
    for (let i = 0; (await db.selectFrom("status_updates").select("id").where("id", "=", marker).executeTakeFirst()) !== undefined; i++) {
      if (i === 200) throw new Error("the purge job did not run within 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await rows()).toHaveLength(1);
    clock.advance(24 * 3600_000);
    let left = 1;
    for (let i = 0; i < 40 && left > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = (await rows()).length;
    }
    expect(left).toBe(0);
  });
});
