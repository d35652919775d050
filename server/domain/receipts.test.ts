import { describe, expect, test } from "vitest";
import { othersMin, receiptUpdates, watermarksMoved, type Watermarks } from "./receipts.js";

const p = (user_id: string, delivered: number, read: number): Watermarks => ({
  user_id,
  last_delivered_seq: String(delivered),
  last_read_seq: String(read),
});
const w = (delivered: number, read: number) => ({ last_delivered_seq: String(delivered), last_read_seq: String(read) });

describe("othersMin", () => {
  test("is the lowest watermark among everyone but the viewer, 0 when alone", () => {
    const people = [p("a", 9, 2), p("b", 5, 5), p("c", 7, 1)];
    expect(othersMin(people, "a", "last_delivered_seq")).toBe(5n);
    expect(othersMin(people, "b", "last_delivered_seq")).toBe(7n);
    expect(othersMin(people, "b", "last_read_seq")).toBe(1n);
    expect(othersMin([p("a", 3, 3)], "a", "last_read_seq")).toBe(0n);
  });
});

describe("watermarksMoved", () => {
  test("only when the caller is a participant and a watermark changed", () => {
    const before = [p("a", 3, 1), p("b", 3, 3)];
    expect(watermarksMoved(before, "a", w(3, 1))).toBe(false);
    expect(watermarksMoved(before, "a", w(3, 2))).toBe(true);
    expect(watermarksMoved(before, "a", w(4, 1))).toBe(true);
    expect(watermarksMoved(before, "z", w(9, 9))).toBe(false);
  });
});

describe("receiptUpdates", () => {
  test("a direct chat: the reader's devices and the sender both hear of a read", () => {
    const updates = receiptUpdates([p("a", 4, 4), p("b", 4, 1)], "b", w(4, 4), true);
    expect(updates).toEqual([
      { viewer: "a", lastDeliveredSeq: 4n, lastReadSeq: 4n, deliveredToAllSeq: 4n, readByAllSeq: 4n },
      { viewer: "b", lastDeliveredSeq: 4n, lastReadSeq: 4n, deliveredToAllSeq: 4n, readByAllSeq: 4n },
    ]);
  });

  test("a group: others hear only when their aggregate moves", () => {
    // c is still behind, so a's "read by all" stays at 1: a is not told; c's (a and b) moves.
    const before = [p("a", 5, 5), p("b", 5, 1), p("c", 5, 1)];
    expect(receiptUpdates(before, "b", w(5, 5), true).map((u) => u.viewer)).toEqual(["b", "c"]);
    // c catching up moves a's aggregate (and b's) to 5.
    const updates = receiptUpdates([p("a", 5, 5), p("b", 5, 5), p("c", 5, 1)], "c", w(5, 5), true);
    expect(updates.map((u) => [u.viewer, u.readByAllSeq])).toEqual([
      ["a", 5n],
      ["b", 5n],
      ["c", 5n],
    ]);
  });

  test("read state not shared: others see no read watermark and no read-by-all, and a read alone tells them nothing", () => {
    expect(receiptUpdates([p("a", 4, 4), p("b", 4, 1)], "b", w(4, 4), false)).toEqual([
      { viewer: "b", lastDeliveredSeq: 4n, lastReadSeq: 4n, deliveredToAllSeq: 4n, readByAllSeq: 0n },
    ]);
    const delivered = receiptUpdates([p("a", 4, 4), p("b", 2, 1)], "b", w(4, 1), false);
    expect(delivered).toEqual([{ viewer: "a", lastDeliveredSeq: 4n, lastReadSeq: 0n, deliveredToAllSeq: 4n, readByAllSeq: 0n }]);
  });

  test("the caller's own devices hear only of a read: a delivery alone changes nothing they show", () => {
    // b's delivery moves a's "delivered to all": a is told, b is not.
    expect(receiptUpdates([p("a", 4, 4), p("b", 2, 1)], "b", w(4, 1), true).map((u) => u.viewer)).toEqual(["a"]);
    // In a group where c and d are behind, b's delivery moves nobody's aggregate: nobody is told.
    const group = [p("a", 4, 4), p("b", 2, 1), p("c", 1, 1), p("d", 1, 1)];
    expect(receiptUpdates(group, "b", w(4, 1), true)).toEqual([]);
    // A read that also raises delivery: b's devices are told.
    expect(receiptUpdates(group, "b", w(4, 3), true).map((u) => u.viewer)).toEqual(["b"]);
  });
});

describe("receiptUpdates, linear", () => {
  // The rule as first written (quadratic: othersMin per viewer over everyone), kept as the reference.
  function reference(before: Watermarks[], me: string, w: ReturnType<typeof wm>, canSeeRead: boolean) {
    const after = before.map((x) => (x.user_id === me ? { ...x, ...w } : x));
    return after.flatMap((x) => {
      const viewer = x.user_id;
      const delivered = othersMin(after, viewer, "last_delivered_seq");
      const readAll = canSeeRead ? othersMin(after, viewer, "last_read_seq") : 0n;
      const changed = delivered !== othersMin(before, viewer, "last_delivered_seq") || (canSeeRead && readAll !== othersMin(before, viewer, "last_read_seq"));
      const mine = before.find((b) => b.user_id === me)!;
      if (viewer === me ? mine.last_read_seq === w.last_read_seq : !changed) return [];
      const lastReadSeq = viewer === me || canSeeRead ? BigInt(w.last_read_seq) : 0n;
      return [{ viewer, lastDeliveredSeq: BigInt(w.last_delivered_seq), lastReadSeq, deliveredToAllSeq: delivered, readByAllSeq: readAll }];
    });
  }
  const wm = (delivered: number, read: number) => w(delivered, read);

  test("agrees with the quadratic rule on random groups, ties and lone participants included", () => {
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 2000; round++) {
      const size = 1 + rand(8);
      const people = Array.from({ length: size }, (_, i) => {
        const delivered = rand(6);
        return p(`u${i}`, delivered, rand(delivered + 1));
      });
      const me = people[rand(size)]!;
      const delivered = Math.max(Number(me.last_delivered_seq), rand(8));
      const read = Math.max(Number(me.last_read_seq), rand(delivered + 1));
      const canSeeRead = rand(2) === 0;
      expect(receiptUpdates(people, me.user_id, wm(delivered, read), canSeeRead)).toEqual(reference(people, me.user_id, wm(delivered, read), canSeeRead));
    }
  });
});
