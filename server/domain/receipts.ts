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
 * Who is told that `me`'s watermarks became `w`, and what: `me` always (their
 * other devices), every other participant only when their aggregate
 * (delivered to all / read by all) changed. Read state is hidden when
 * `canSeeRead` is false (a direct chat where someone turned read receipts off).
 */
export function receiptUpdates(before: readonly Watermarks[], me: string, w: Omit<Watermarks, "user_id">, canSeeRead: boolean): ReceiptUpdate[] {
  const after = before.map((p) => (p.user_id === me ? { ...p, ...w } : p));
  const updates: ReceiptUpdate[] = [];
  for (const p of after) {
    const viewer = p.user_id;
    const delivered = othersMin(after, viewer, "last_delivered_seq");
    const readAll = canSeeRead ? othersMin(after, viewer, "last_read_seq") : 0n;
    if (viewer !== me) {
      const changed = delivered !== othersMin(before, viewer, "last_delivered_seq") || (canSeeRead && readAll !== othersMin(before, viewer, "last_read_seq"));
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
