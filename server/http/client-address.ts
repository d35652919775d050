import net from "node:net";

type HeaderValue = string | string[] | undefined;

const CACHE_MAX = 10_000;

/**
 * The client's address for per-IP limits. Without trusted proxies it is the
 * socket's peer: any X-Forwarded-For a client sends is its own claim and is
 * ignored. With TRUSTED_PROXIES, a connection from one of those ranges may
 * name the client in one header (X-Forwarded-For, or Forwarded when so
 * configured): the hops are read from the right, past every trusted proxy, and
 * the first untrusted one is the client. Hops left of it are whatever the
 * client wrote, so they never count. A malformed hop ends the walk at the last
 * proxy, so a header cannot make up keys.
 */
export class ClientAddress {
  private readonly trusted: net.BlockList | undefined;
  private readonly seen = new Map<string, boolean>();

  constructor(
    trustedProxies: readonly string[],
    private readonly header: "x-forwarded-for" | "forwarded" = "x-forwarded-for",
  ) {
    if (trustedProxies.length === 0) return;
    this.trusted = new net.BlockList();
    for (const cidr of trustedProxies) {
      const [address, prefix] = cidr.split("/") as [string, string];
      const type = net.isIP(address) === 4 ? "ipv4" : "ipv6";
      this.trusted.addSubnet(address, Number(prefix), type);
    }
  }

  /** The client address of a request from `peer` (the socket's remote address) with these headers. */
  of(peer: string | undefined, headers: Record<string, HeaderValue>): string {
    const socket = unmap(peer ?? "") || "unknown";
    if (this.trusted === undefined || !this.isTrusted(socket)) return socket;
    const raw = headers[this.header];
    if (raw === undefined) return socket;
    const hops = this.header === "forwarded" ? forwardedFor(joined(raw)) : joined(raw).split(",");
    let client = socket;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hopAddress(hops[i]!);
      if (hop === undefined) return client;
      client = hop;
      if (!this.isTrusted(hop)) return hop;
    }
    // Every hop is a trusted proxy: the leftmost is as far as anyone can tell.
    return client;
  }

  /**
   * BlockList.check costs microseconds (a native call per address); the
   * proxies' addresses and returning clients repeat, so answers are kept
   * (up to CACHE_MAX addresses, then forgotten at once).
   */
  private isTrusted(address: string): boolean {
    let trusted = this.seen.get(address);
    if (trusted === undefined) {
      const family = net.isIP(address);
      trusted = family !== 0 && this.trusted!.check(address, family === 4 ? "ipv4" : "ipv6");
      if (this.seen.size >= CACHE_MAX) this.seen.clear();
      this.seen.set(address, trusted);
    }
    return trusted;
  }
}

function joined(v: string | string[]): string {
  return typeof v === "string" ? v : v.join(",");
}

/** The `for=` of each element of an RFC 7239 Forwarded header, in order (an element without one is ""). */
function forwardedFor(value: string): string[] {
  return value.split(",").map((element) => {
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=");
      if (eq > 0 && pair.slice(0, eq).trim().toLowerCase() === "for")
        return pair
          .slice(eq + 1)
          .trim()
          .replace(/^"(.*)"$/, "$1");
    }
    return "";
  });
}

/** An address from one hop (`1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]:567`), or undefined. */
function hopAddress(raw: string): string | undefined {
  let s = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracketed) s = bracketed[1]!;
  else if (/^[\d.]+:\d+$/.test(s)) s = s.slice(0, s.lastIndexOf(":"));
  s = unmap(s);
  return net.isIP(s) === 0 ? undefined : s;
}

const MAPPED = /^::ffff:/i;

/** `::ffff:1.2.3.4` (IPv4 on a dual-stack socket) is 1.2.3.4, so one client has one key. */
function unmap(address: string): string {
  return MAPPED.test(address) && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}
