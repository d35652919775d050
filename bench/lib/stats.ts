/** Latency summary of samples in milliseconds. */
export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(samples: ArrayLike<number>): Summary {
  const n = samples.length;
  if (n === 0) return { n: 0, p50: NaN, p95: NaN, p99: NaN, max: NaN, mean: NaN };
  const s = Float64Array.from(samples).sort();
  const q = (p: number) => s[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i]!;
  return { n, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s[n - 1]!, mean: sum / n };
}

export function fmt(v: number, digits = 1): string {
  if (!Number.isFinite(v)) return "–";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(digits);
}

/** A plain-text table for the terminal and the same as markdown. */
export function table(headers: string[], rows: Array<Array<string | number>>): { text: string; markdown: string } {
  // null: a NaN that came through JSON (a load process that measured nothing).
  const cells = rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : (c ?? "–"))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i]!)).join("  ");
  const text = [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n");
  const markdown = [`| ${headers.join(" | ")} |`, `|${headers.map(() => "---").join("|")}|`, ...cells.map((r) => `| ${r.join(" | ")} |`)].join("\n");
  return { text, markdown };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs `fn` over items with at most `limit` at once. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}
