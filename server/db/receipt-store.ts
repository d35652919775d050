import { type Kysely, sql, type Transaction } from "kysely";
import type { Watermarks } from "../domain/receipts.js";
import { CallCoalescer } from "./call-coalescer.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A receipt_updated event chatwire_mark_receipts appended: whose inbox, where, and its content. */
interface ReceiptUpdateRow {
  viewer: string;
  /** The event's inbox position (int8 as a decimal string). */
  position: string;
  /** The viewer's "delivered to all" / "read by all" after the mark. */
  deliveredToAllSeq: bigint;
  readByAllSeq: bigint;
  /** The caller's read watermark as this viewer sees it (0 when read state is hidden from them). */
  lastReadSeq: bigint;
}

/** What markReceipts did: refused (in the order MarkDelivered answers), or marked. */
export type MarkOutcome =
  | { status: "not_participant" | "conversation_not_found" | "negative" }
  | { status: "beyond"; lastSeq: string }
  | {
      status: "marked";
      /** The caller's watermarks now. */
      watermarks: Omit<Watermarks, "user_id">;
      /** Whether read state is shared (null when the watermarks did not move: not read). */
      readShared: boolean | null;
      /** The receipt_updated events appended, by viewer (empty when nothing moved): domain/receipts.ts receiptUpdates' rule. */
      updates: ReceiptUpdateRow[];
    };

/**
 * Raises `userId`'s delivered (and with `read` read) watermark to `upToSeq`
 * and appends the receipt_updated inbox events it owes, in one round trip and
 * one transaction: the database function chatwire_mark_receipts
 * (server/db/sql/chatwire_mark_receipts.sql), which also checks the
 * participation, the conversation and the range first, and works out who is
 * owed which event (domain/receipts.ts receiptUpdates is the rule). Marking a
 * seq again changes nothing and appends nothing. Outside a transaction, calls
 * for a conversation that arrive while one of its calls runs go together
 * (chatwire_mark_receipts_many: one round trip and one commit for many; every
 * member of a big group acknowledges every message at about the same time).
 */
export async function markReceipts(db: Db, conversationId: string, userId: string, upToSeq: bigint, read: boolean, now: Date): Promise<MarkOutcome> {
  const item: MarkItem = { c: conversationId, u: userId, s: upToSeq.toString(), r: read, now };
  if (db.isTransaction) return markOne(db, item);
  let byConversation = markCoalescers.get(db);
  if (!byConversation) {
    byConversation = new Map();
    markCoalescers.set(db, byConversation);
  }
  let coalescer = byConversation.get(conversationId);
  if (!coalescer) {
    const conversations = byConversation;
    coalescer = new CallCoalescer<MarkItem, MarkOutcome>({
      what: "receipt marks",
      one: (i) => markOne(db, i),
      many: (items) => markMany(db, items),
      concurrency: 1,
      onIdle: () => conversations.delete(conversationId),
    });
    byConversation.set(conversationId, coalescer);
  }
  return coalescer.call(item);
}

interface MarkItem {
  c: string;
  u: string;
  s: string;
  r: boolean;
  now: Date;
}

interface MarkRow {
  r_status: string;
  r_last_seq: string | null;
  r_delivered: string | null;
  r_read: string | null;
  r_read_shared: boolean | null;
  r_updates: Array<{ viewer: string; position: string; delivered_all: string; read_all: string; read_seq: string }> | null;
}

/**
 * Per Kysely instance (each server instance and test database has its own),
 * per conversation while it has marks running: one call at a time per
 * conversation, what arrives meanwhile goes next as one batch. Only one
 * conversation's marks share a transaction, so a batch takes the locks a
 * single call takes, in the same order (conversation, then inbox positions),
 * and different conversations never wait for each other.
 */
const markCoalescers = new WeakMap<object, Map<string, CallCoalescer<MarkItem, MarkOutcome>>>();

async function markOne(db: Db, i: MarkItem): Promise<MarkOutcome> {
  const { rows } = await sql<MarkRow>`select * from chatwire_mark_receipts(${i.c}::uuid, ${i.u}::uuid, ${i.s}::bigint, ${i.r}, ${i.now}::timestamptz)`.execute(
    db,
  );
  return outcomeOf(rows[0]!);
}

async function markMany(db: Db, items: MarkItem[]): Promise<MarkOutcome[]> {
  // Each with its own clock, as its lone call would have been.
  const batch = JSON.stringify(items.map((i, o) => ({ o, c: i.c, u: i.u, s: i.s, r: i.r, n: i.now.toISOString() })));
  const { rows } = await sql<MarkRow & { o: number }>`select * from chatwire_mark_receipts_many(${batch}::jsonb)`.execute(db);
  if (rows.length !== items.length) throw new Error(`chatwire_mark_receipts_many answered ${rows.length} rows for ${items.length} calls`);
  const out: MarkOutcome[] = [];
  for (const r of rows) out[r.o] = outcomeOf(r);
  return out;
}

function outcomeOf(r: MarkRow): MarkOutcome {
  switch (r.r_status) {
    case "not_participant":
    case "conversation_not_found":
    case "negative":
      return { status: r.r_status };
    case "beyond":
      return { status: "beyond", lastSeq: r.r_last_seq! };
    case "marked":
      return {
        status: "marked",
        watermarks: { last_delivered_seq: r.r_delivered!, last_read_seq: r.r_read! },
        readShared: r.r_read_shared,
        updates: (r.r_updates ?? []).map((u) => ({
          viewer: u.viewer,
          position: u.position,
          deliveredToAllSeq: BigInt(u.delivered_all),
          readByAllSeq: BigInt(u.read_all),
          lastReadSeq: BigInt(u.read_seq),
        })),
      };
    default:
      throw new Error(`chatwire_mark_receipts answered an unknown status ${r.r_status}`);
  }
}
