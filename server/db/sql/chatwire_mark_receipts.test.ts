import { randomUUID } from "node:crypto";
import { type Kysely, sql } from "kysely";
import { pino } from "pino";
import { beforeAll, describe, expect, test } from "vitest";
import { receiptUpdates, watermarksMoved } from "../../domain/receipts.js";
import { storedEvent } from "../../realtime/events.js";
import { insertConversation, insertUsers } from "../../tests/helpers/fixtures.js";
import { migratedDatabase } from "../../tests/helpers/test-database.js";
import { updatePrivacy } from "../privacy-store.js";
import { markReceipts, type MarkOutcome } from "../receipt-store.js";
import type { Database } from "../schema.js";

// chatwire_mark_receipts.sql through its caller, markReceipts (receipt-store.ts),
// held to the canonical rule: every event it appends is the one
// domain/receipts.ts receiptUpdates owes, stored as storedEvent stores it.
// PostgreSQL when DATABASE_URL is set, else PGlite.
const logger = pino({ level: "silent" });

const migrated = migratedDatabase(logger);
let db: Kysely<Database>;
beforeAll(() => {
  db = migrated.db;
});

async function conversationWith(members: string[], lastSeq: number, isGroup = true): Promise<string> {
  const conv = await insertConversation(db, members, { isGroup });
  await db
    .updateTable("conversations")
    .set({ last_seq: String(lastSeq) })
    .where("id", "=", conv)
    .execute();
  return conv;
}

const inboxCount = async () =>
  Number(
    (
      await db
        .selectFrom("inbox")
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .executeTakeFirstOrThrow()
    ).n,
  );

/** Marks, then checks the returned and appended events against receiptUpdates and storedEvent; returns the outcome. */
async function markAndCheck(conv: string, me: string, upTo: number, read: boolean, now: Date) {
  // Everyone's watermarks before, ordered as conversation-store.ts participantsOf.
  const before = await db
    .selectFrom("conversation_participants")
    .select(["user_id", "last_delivered_seq", "last_read_seq"])
    .where("conversation_id", "=", conv)
    .where("left_at", "is", null)
    .orderBy("joined_at")
    .orderBy("user_id")
    .execute();
  const r = await markReceipts(db, conv, me, BigInt(upTo), read, now);
  if (r.status !== "marked") throw new Error(`not marked: ${r.status}`);
  const expected = watermarksMoved(before, me, r.watermarks) ? receiptUpdates(before, me, r.watermarks, r.readShared!) : [];
  const byViewer = <T extends { viewer: string }>(xs: T[]) => [...xs].sort((x, y) => x.viewer.localeCompare(y.viewer));
  expect(byViewer(r.updates).map(({ position: _, ...u }) => u)).toEqual(
    byViewer(expected).map(({ viewer, lastReadSeq, deliveredToAllSeq, readByAllSeq }) => ({ viewer, lastReadSeq, deliveredToAllSeq, readByAllSeq })),
  );
  for (const { viewer, ...receipt } of expected) {
    const row = await db
      .selectFrom("inbox")
      .selectAll()
      .where("user_id", "=", viewer)
      .where("position", "=", r.updates.find((u) => u.viewer === viewer)!.position)
      .executeTakeFirstOrThrow();
    const want = storedEvent(
      viewer,
      { case: "receiptUpdated", value: { $typeName: "realtime.ReceiptUpdated", conversationId: conv, userId: me, ...receipt } },
      now,
      { conversationId: conv },
    );
    expect({ type: row.event_type, conversation: row.conversation_id, message: row.message_id, payload: row.payload, at: row.created_at }).toEqual({
      type: want.eventType,
      conversation: conv,
      message: null,
      payload: want.payload,
      at: now,
    });
  }
  return r;
}

const watermarksOf = (r: MarkOutcome) => (r.status === "marked" ? r.watermarks : undefined);

describe("chatwire_mark_receipts, through markReceipts", () => {
  test("refusals in the RPC's order: not a participant (or left, or no such conversation), then the range", async () => {
    const [a, b, stranger] = await insertUsers(db, 3);
    const conv = await conversationWith([a!, b!], 3);
    await db.updateTable("conversation_participants").set({ left_at: new Date() }).where("conversation_id", "=", conv).where("user_id", "=", b!).execute();
    const now = new Date();
    expect(await markReceipts(db, conv, stranger!, -1n, false, now)).toEqual({ status: "not_participant" });
    expect(await markReceipts(db, conv, b!, 1n, true, now)).toEqual({ status: "not_participant" });
    expect(await markReceipts(db, randomUUID(), a!, 1n, false, now)).toEqual({ status: "not_participant" });
    expect(await markReceipts(db, conv, a!, -1n, false, now)).toEqual({ status: "negative" });
    expect(await markReceipts(db, conv, a!, 4n, true, now)).toEqual({ status: "beyond", lastSeq: "3" });
    const marks = await db.selectFrom("receipt_marks").select("user_id").where("conversation_id", "=", conv).execute();
    expect(marks).toEqual([]);
  });

  test("a direct chat: delivered then read, each viewer's event as receiptUpdates says; a repeat changes nothing", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await conversationWith([a!, b!], 5, false);
    const r1 = await markAndCheck(conv, b!, 3, false, new Date("2026-01-02T03:04:05.000Z"));
    expect(r1).toMatchObject({ watermarks: { last_delivered_seq: "3", last_read_seq: "0" }, readShared: true });
    // Delivered alone: the sender hears of it, b's own devices do not.
    expect(r1.updates.map((u) => u.viewer)).toEqual([a]);
    const r2 = await markAndCheck(conv, b!, 5, true, new Date("2026-01-02T03:04:05.123Z"));
    expect(watermarksOf(r2)).toEqual({ last_delivered_seq: "5", last_read_seq: "5" });
    // A read: both, b's other devices to clear what was read.
    expect((r2.status === "marked" ? r2.updates.map((u) => u.viewer) : []).sort()).toEqual([a, b].sort());
    const before = await inboxCount();
    const again = await markAndCheck(conv, b!, 5, true, new Date());
    expect(again).toMatchObject({ watermarks: { last_delivered_seq: "5", last_read_seq: "5" }, updates: [] });
    // A lower seq never lowers a watermark.
    expect(watermarksOf(await markAndCheck(conv, b!, 2, true, new Date()))).toEqual({ last_delivered_seq: "5", last_read_seq: "5" });
    expect(await inboxCount()).toBe(before);
    // Each mark recorded once per kind and seq (GetMessageReceipts' first-mark times).
    const marks = await db
      .selectFrom("receipt_marks")
      .select(["kind", "up_to_seq"])
      .where("conversation_id", "=", conv)
      .orderBy("up_to_seq")
      .orderBy("kind")
      .execute();
    expect(marks).toEqual([
      { kind: "delivered", up_to_seq: "2" },
      { kind: "read", up_to_seq: "2" },
      { kind: "delivered", up_to_seq: "3" },
      { kind: "delivered", up_to_seq: "5" },
      { kind: "read", up_to_seq: "5" },
    ]);
  });

  test("read state hidden in a direct chat where one side turned read receipts off, shown in a group", async () => {
    const [a, b, c] = await insertUsers(db, 3);
    await updatePrivacy(db, a!, { readReceipts: false }, new Date());
    const direct = await conversationWith([a!, b!], 4, false);
    expect(await markAndCheck(direct, b!, 4, true, new Date())).toMatchObject({ readShared: false });
    const group = await conversationWith([a!, b!, c!], 4);
    expect(await markAndCheck(group, b!, 4, true, new Date())).toMatchObject({ readShared: true });
  });

  test("a group: random marks, ties and all, append exactly what receiptUpdates owes", async () => {
    const people = await insertUsers(db, 5);
    const conv = await conversationWith(people, 12);
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let i = 0; i < 40; i++) {
      await markAndCheck(conv, people[next(5)]!, next(13), next(2) === 0, new Date(Date.UTC(2026, 0, 1, 0, 0, i, next(2) * 250)));
    }
    const alone = await conversationWith([people[0]!], 2);
    const r = await markAndCheck(alone, people[0]!, 2, true, new Date());
    expect(r.updates.map((u) => u.viewer)).toEqual([people[0]]);
  });

  test("a big group: while two others are behind a delivery tells nobody; the last two tell whose minimum moved", async () => {
    const members = await insertUsers(db, 30);
    const conv = await conversationWith(members as string[], 1);
    const told: string[][] = [];
    for (const [i, m] of members.entries()) {
      const r = await markAndCheck(conv, m!, 1, false, new Date(Date.UTC(2026, 0, 2, 0, 0, i)));
      told.push(r.updates.map((u) => u.viewer));
    }
    // The first 28 move nobody's "delivered to all", and a delivery tells the caller's own devices nothing.
    expect(told.slice(0, 28)).toEqual(members.slice(0, 28).map(() => []));
    // The 29th: the one still behind, whose "delivered to all" moved.
    expect(told[28]).toEqual([members[29]]);
    // The 30th: everyone else's "delivered to all" reached 1.
    expect([...told[29]!].sort()).toEqual(members.slice(0, 29).sort());
    // Reads tell the reader's own devices too.
    const read = await markAndCheck(conv, members[0]!, 1, true, new Date());
    expect(read.updates.map((u) => u.viewer)).toEqual([members[0]]);
  });

  test("calls that arrive together go as one chatwire_mark_receipts_many call, each answered as alone", async () => {
    const members = await insertUsers(db, 30);
    const conv = await conversationWith(members as string[], 1);
    const stranger = (await insertUsers(db, 1))[0]!;
    const now = new Date("2026-01-03T00:00:00.000Z");
    const [outsider, beyond, ...outcomes] = await Promise.all([
      markReceipts(db, conv, stranger, 1n, false, now),
      markReceipts(db, conv, members[0]!, 5n, false, now),
      ...members.map((m) => markReceipts(db, conv, m!, 1n, false, now)),
    ]);
    expect(outsider).toEqual({ status: "not_participant" });
    expect(beyond).toEqual({ status: "beyond", lastSeq: "1" });
    expect(outcomes.map((o) => o.status === "marked" && o.watermarks)).toEqual(members.map(() => ({ last_delivered_seq: "1", last_read_seq: "0" })));
    // Whatever the order: the second to last tells the last one, the last tells the 29 others.
    const told = outcomes.flatMap((o) => (o.status === "marked" ? o.updates : []));
    expect(told).toHaveLength(30);
    const rows = await db.selectFrom("inbox").select(["user_id", "position"]).where("conversation_id", "=", conv).execute();
    expect(rows.map((r) => `${r.user_id}@${r.position}`).sort()).toEqual(told.map((u) => `${u.viewer}@${u.position}`).sort());
    // The function itself, in one call: each item as chatwire_mark_receipts answers it, by index.
    const items = [
      { o: 0, c: conv, u: members[1], s: "1", r: true, n: now.toISOString() },
      { o: 1, c: conv, u: stranger, s: "1", r: true, n: now.toISOString() },
    ];
    const { rows: many } = await sql<{ o: number; r_status: string; r_read: string | null }>`
      select * from chatwire_mark_receipts_many(${JSON.stringify(items)}::jsonb)`.execute(db);
    expect(many.map((r) => [r.o, r.r_status, r.r_read])).toEqual(
      expect.arrayContaining([
        [0, "marked", "1"],
        [1, "not_participant", null],
      ]),
    );
  });

  test("on PostgreSQL its call is a named prepared statement (database.ts PreparingClient), one per connection", async () => {
    const [a, b] = await insertUsers(db, 2);
    const conv = await conversationWith([a!, b!], 3, false);
    const { statements, last } = await db.connection().execute(async (c) => {
      await markReceipts(c, conv, a!, 1n, false, new Date());
      const last = await markReceipts(c, conv, a!, 2n, false, new Date());
      const statements =
        migrated.kind === "postgres"
          ? (await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(c)).rows.map((r) => r.statement)
          : [];
      return { statements, last };
    });
    expect(watermarksOf(last)).toEqual({ last_delivered_seq: "2", last_read_seq: "0" });
    expect(statements.filter((s) => s.includes("chatwire_mark_receipts(")).length).toBe(migrated.kind === "postgres" ? 1 : 0);
  });
});
