import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/**
 * A small `Headers` over a Map, for the unary fast path: building undici's
 * Headers for every call (request, response, trailer) showed in CPU profiles.
 * Names are lower-cased; `get` joins repeated values with ", " as Headers does.
 */
export class LeanHeaders implements Headers {
  private readonly map = new Map<string, string>();

  /** Request headers of node:http/node:http2, without HTTP/2 pseudo-headers. */
  static fromNode(src: IncomingHttpHeaders): LeanHeaders {
    const h = new LeanHeaders();
    for (const key in src) {
      if (key.charCodeAt(0) === 58 /* ":" */) continue;
      const v = src[key];
      if (v === undefined) continue;
      h.map.set(key, typeof v === "string" ? v : v.join(", "));
    }
    return h;
  }

  static of(name: string, value: string): LeanHeaders {
    const h = new LeanHeaders();
    h.map.set(name, value);
    return h;
  }

  append(name: string, value: string): void {
    const k = name.toLowerCase();
    const prev = this.map.get(k);
    this.map.set(k, prev === undefined ? String(value) : `${prev}, ${value}`);
  }

  delete(name: string): void {
    this.map.delete(name.toLowerCase());
  }

  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }

  getSetCookie(): string[] {
    const v = this.map.get("set-cookie");
    return v === undefined ? [] : [v];
  }

  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }

  set(name: string, value: string): void {
    this.map.set(name.toLowerCase(), String(value));
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [k, v] of this.sorted()) callback.call(thisArg, v, k, this);
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.sorted()[Symbol.iterator]();
  }

  get [Symbol.toStringTag](): string {
    return "Headers";
  }

  get size(): number {
    return this.map.size;
  }

  /** Copies into a node:http header object (`prefix` for Connect's `trailer-` headers). */
  copyTo(target: OutgoingHttpHeaders, prefix = ""): OutgoingHttpHeaders {
    for (const [k, v] of this.map) target[prefix + k] = v;
    return target;
  }

  /** Headers iterate in name order. */
  private sorted(): Array<[string, string]> {
    return [...this.map].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}
