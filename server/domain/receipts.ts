// Receipt aggregation, pure: the receipt_updated each participant is owed
// when one participant's delivered/read watermarks move. The database work
// (locking, raising the watermarks, whether read state is shared) stays in
// services/chat/receipts.ts.

/** A participant's watermarks (seqs as decimal strings, as the store returns them). */
export interface Watermarks {
  user_id: string;
  last_delivered_seq: string;
  last_read_seq: string;
}

export type WatermarkKey = "last_delivered_seq" | "last_read_seq";

/** The lowest `key` among everyone but `viewer` ("delivered to all" / "read by all" as the viewer sees it); 0 if alone. */
export function othersMin(people: readonly Watermarks[], viewer: string, key: WatermarkKey): bigint {
  let min: bigint | undefined;
  for (const p of people) {
    if (p.user_id === viewer) continue;
    const v = BigInt(p[key]);
    if (min === undefined || v < min) min = v;
  }
  return min ?? 0n;
}

/** Whether `me`'s watermarks moved: false when `me` is not among `before` or nothing changed (e.g. a retry). */
export function watermarksMoved(before: readonly Watermarks[], me: string, w: Omit<Watermarks, "user_id">): boolean {
  const mine = before.find((p) => p.user_id === me);
  return mine !== undefined && (mine.last_delivered_seq !== w.last_delivered_seq || mine.last_read_seq !== w.last_read_seq);
}

/** One viewer's receipt_updated after `me`'s watermarks moved. */
export interface ReceiptUpdate {
  viewer: string;
  lastDeliveredSeq: bigint;
  /** `me`'s read watermark; 0 for others when read state is not shared. */
  lastReadSeq: bigint;
  deliveredToAllSeq: bigint;
  readByAllSeq: bigint;
}

/**
 * The lowest values of one watermark over a conversation's participants, so
 * that every viewer's "everyone but me" minimum (othersMin) is O(1): the
 * smallest value, how many hold it, and the next larger value. Built in one
 * pass; the same rule as chatwire_mark_receipts.sql's stats.
 */
class LowestTwo {
  private readonly n: number;
  private min: bigint | undefined;
  private minCount = 0;
  private next: bigint | undefined;

  constructor(people: readonly Watermarks[], key: WatermarkKey) {
    this.n = people.length;
    for (const p of people) {
      const v = BigInt(p[key]);
      if (this.min === undefined || v < this.min) {
        if (this.min !== undefined) this.next = this.min;
        this.min = v;
        this.minCount = 1;
      } else if (v === this.min) {
        this.minCount++;
      } else if (this.next === undefined || v < this.next) {
        this.next = v;
      }
    }
  }

  /** othersMin for a participant whose own value is `own`. */
  othersMin(own: bigint): bigint {
    if (this.n <= 1 || this.min === undefined) return 0n;
    if (own === this.min && this.minCount === 1) return this.next ?? 0n;
    return this.min;
  }
}

/**
 * Who is told that `me`'s watermarks became `w`, and what: `me` (their other
 * devices) when their read watermark moved, so those devices clear what was
 * read; every other participant only when their aggregate (delivered to all /
 * read by all) changed. A move of `me`'s delivered watermark alone tells `me`
 * nothing: each of their devices receives the messages itself, and the
 * event's aggregates are the others' (issue 15: in a big group every member's
 * delivery of every message was an event to themselves). Read state is
 * hidden when `canSeeRead` is false (a direct chat where someone turned read
 * receipts off).
 * Linear in the conversation's size (every MarkDelivered of a 1,024-member
 * group runs it; it used to be quadratic: issue 15).
 */
export function receiptUpdates(before: readonly Watermarks[], me: string, w: Omit<Watermarks, "user_id">, canSeeRead: boolean): ReceiptUpdate[] {
  const after = before.map((p) => (p.user_id === me ? { ...p, ...w } : p));
  const deliveredBefore = new LowestTwo(before, "last_delivered_seq");
  const deliveredAfter = new LowestTwo(after, "last_delivered_seq");
  const readBefore = canSeeRead ? new LowestTwo(before, "last_read_seq") : undefined;
  const readAfter = canSeeRead ? new LowestTwo(after, "last_read_seq") : undefined;
  const updates: ReceiptUpdate[] = [];
  for (let i = 0; i < after.length; i++) {
    const p = after[i]!;
    const q = before[i]!;
    const viewer = p.user_id;
    const delivered = deliveredAfter.othersMin(BigInt(p.last_delivered_seq));
    const readAll = readAfter ? readAfter.othersMin(BigInt(p.last_read_seq)) : 0n;
    if (viewer === me) {
      if (q.last_read_seq === w.last_read_seq) continue;
    } else {
      const changed =
        delivered !== deliveredBefore.othersMin(BigInt(q.last_delivered_seq)) ||
        (readBefore !== undefined && readAll !== readBefore.othersMin(BigInt(q.last_read_seq)));
      if (!changed) continue;
    }
    updates.push({
      viewer,
      lastDeliveredSeq: BigInt(w.last_delivered_seq),
      lastReadSeq: viewer === me || canSeeRead ? BigInt(w.last_read_seq) : 0n,
      deliveredToAllSeq: delivered,
      readByAllSeq: readAll,
    });
  }
  return updates;
}
