import { Code, ConnectError } from "@connectrpc/connect";

/** Exponential backoff with full jitter: a random delay in [base·2ⁿ/2, base·2ⁿ], capped. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(ConnectError.from(signal.reason ?? new Error("aborted"), Code.Canceled));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(ConnectError.from(signal!.reason ?? new Error("aborted"), Code.Canceled));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A random UUID (v4), also outside secure contexts where crypto.randomUUID is missing. */
export function randomId(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Socket errors of a connection that broke or could not be made: the request may be sent again. */
const NETWORK_ERRORS = new Set([
  "EPIPE",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_INVALID_SESSION",
]);

/**
 * Whether a failed call may succeed if made again later: the server said "not now"
 * (`Unavailable`, `DeadlineExceeded`, and with `alsoBusy` `ResourceExhausted`/`Aborted`), or the
 * connection broke before an answer came — Node reports a broken keep-alive socket as
 * `Internal: write EPIPE`, browsers a failed fetch as a `TypeError` — which is no answer at all.
 */
export function isTransient(err: ConnectError, alsoBusy = false): boolean {
  if (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded) return true;
  if (alsoBusy && (err.code === Code.ResourceExhausted || err.code === Code.Aborted)) return true;
  if (err.code !== Code.Internal && err.code !== Code.Unknown) return false;
  for (let c: unknown = err.cause, depth = 0; c && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    if (c instanceof TypeError) return true;
    const code = (c as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_ERRORS.has(code)) return true;
  }
  return false;
}
