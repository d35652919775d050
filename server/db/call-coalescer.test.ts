import { describe, expect, test } from "vitest";
import { CallCoalescer } from "./call-coalescer.js";

/** A fake database call whose answers the test releases by hand. */
function harness(opts: { concurrency?: number; maxSize?: number; failMany?: (items: number[]) => boolean; onIdle?: () => void } = {}) {
  const calls: number[][] = [];
  const pending: Array<() => void> = [];
  const answer = (items: number[]) =>
    new Promise<number[]>((resolve, reject) => {
      calls.push(items);
      pending.push(() => (items.length > 1 && opts.failMany?.(items) ? reject(new Error("combined call refused")) : resolve(items.map((i) => i * 10))));
    });
  const c = new CallCoalescer<number, number>({
    what: "test",
    one: async (i) => (await answer([i]))[0]!,
    many: answer,
    ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    ...(opts.maxSize ? { maxSize: opts.maxSize } : {}),
    ...(opts.onIdle ? { onIdle: opts.onIdle } : {}),
  });
  const releaseAll = async () => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { c, calls, releaseAll, pending };
}

describe("CallCoalescer", () => {
  test("an idle coalescer calls at once; what arrives while calls run goes together, in order", async () => {
    const { c, calls, releaseAll } = harness();
    const first = c.call(1);
    const second = c.call(2);
    // Two calls run at once (the default), each alone.
    expect(calls).toEqual([[1], [2]]);
    const rest = [3, 4, 5, 6].map((i) => c.call(i));
    expect(calls).toHaveLength(2);
    await releaseAll();
    expect(await Promise.all([first, second, ...rest])).toEqual([10, 20, 30, 40, 50, 60]);
    expect(calls.slice(2)).toEqual([[3, 4, 5, 6]]);
  });

  test("maxSize bounds a combined call; one at a time with concurrency 1", async () => {
    const { c, calls, releaseAll } = harness({ concurrency: 1, maxSize: 2 });
    const all = [1, 2, 3, 4, 5].map((i) => c.call(i));
    await releaseAll();
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40, 50]);
    expect(calls).toEqual([[1], [2, 3], [4, 5]]);
  });

  test("a combined call that fails is retried item by item, each caller getting its own outcome", async () => {
    const { c, calls, releaseAll } = harness({ concurrency: 1, failMany: () => true });
    const all = [1, 2, 3].map((i) => c.call(i));
    await releaseAll();
    expect(await Promise.all(all)).toEqual([10, 20, 30]);
    expect(calls).toEqual([[1], [2, 3], [2], [3]]);
  });

  test("onIdle once the last call has ended and nothing waits, not before", async () => {
    let idle = 0;
    const { c, releaseAll, pending } = harness({ concurrency: 1, onIdle: () => idle++ });
    const all = [1, 2, 3].map((i) => c.call(i));
    pending.shift()!();
    await new Promise((r) => setImmediate(r));
    // The first call ended, the other two went as one and are still running.
    expect(idle).toBe(0);
    await releaseAll();
    await Promise.all(all);
    expect(idle).toBe(1);
  });
});
