import { type Kysely, sql, type Transaction } from "kysely";
import type { Watermarks } from "../domain/receipts.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** A receipt_updated event chatwire_mark_receipts appended: whose inbox, where, and its content. */
export interface ReceiptUpdateRow {
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
 * seq again changes nothing and appends nothing.
 */
export async function markReceipts(db: Db, conversationId: string, userId: string, upToSeq: bigint, read: boolean, now: Date): Promise<MarkOutcome> {
  const { rows } = await sql<{
    r_status: string;
    r_last_seq: string | null;
    r_delivered: string | null;
    r_read: string | null;
    r_read_shared: boolean | null;
    r_updates: Array<{ viewer: string; position: string; delivered_all: string; read_all: string; read_seq: string }> | null;
  }>`select * from chatwire_mark_receipts(${conversationId}::uuid, ${userId}::uuid, ${upToSeq.toString()}::bigint, ${read}, ${now}::timestamptz)`.execute(db);
  const r = rows[0]!;
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
