import { describe, expect, test } from "vitest";
import { ClientAddress } from "./client-address.js";

describe("ClientAddress", () => {
  test("no trusted proxies: the socket address, whatever the headers say", () => {
    const a = new ClientAddress([]);
    expect(a.of("198.51.100.7", { "x-forwarded-for": "203.0.113.1" })).toBe("198.51.100.7");
    expect(a.of("::ffff:198.51.100.7", {})).toBe("198.51.100.7");
    expect(a.of(undefined, {})).toBe("unknown");
  });

  test("a connection from outside the trusted ranges cannot name the client", () => {
    const a = new ClientAddress(["10.0.0.0/8"]);
    expect(a.of("198.51.100.7", { "x-forwarded-for": "203.0.113.1" })).toBe("198.51.100.7");
  });

  test("behind trusted proxies: the rightmost untrusted hop", () => {
    const a = new ClientAddress(["10.0.0.0/8", "fd00::/8"]);
    expect(a.of("10.1.2.3", { "x-forwarded-for": "203.0.113.1" })).toBe("203.0.113.1");
    // The client wrote the first entry itself; the load balancer appended what it saw.
    expect(a.of("10.1.2.3", { "x-forwarded-for": "192.0.2.99, 203.0.113.1" })).toBe("203.0.113.1");
    // Two proxies deep: the inner one is trusted and skipped.
    expect(a.of("10.1.2.3", { "x-forwarded-for": "192.0.2.99, 203.0.113.1, 10.9.9.9" })).toBe("203.0.113.1");
    expect(a.of("::ffff:10.1.2.3", { "x-forwarded-for": "203.0.113.1:4711" })).toBe("203.0.113.1");
    expect(a.of("fd00::1", { "x-forwarded-for": "[2001:db8::17]:4711" })).toBe("2001:db8::17");
    // Repeated header lines, as an array.
    expect(a.of("10.1.2.3", { "x-forwarded-for": ["192.0.2.99", "203.0.113.1"] })).toBe("203.0.113.1");
  });

  test("no header, only trusted hops, or a malformed hop: as far as the trusted chain reaches", () => {
    const a = new ClientAddress(["10.0.0.0/8"]);
    expect(a.of("10.1.2.3", {})).toBe("10.1.2.3");
    expect(a.of("10.1.2.3", { "x-forwarded-for": "10.7.7.7, 10.8.8.8" })).toBe("10.7.7.7");
    expect(a.of("10.1.2.3", { "x-forwarded-for": "203.0.113.1, not-an-address" })).toBe("10.1.2.3");
    expect(a.of("10.1.2.3", { "x-forwarded-for": "203.0.113.1, 10.8.8.8, unknown" })).toBe("10.1.2.3");
    expect(a.of("10.1.2.3", { "x-forwarded-for": "garbage, 10.8.8.8" })).toBe("10.8.8.8");
  });

  test("Forwarded (RFC 7239) when configured, and then X-Forwarded-For is ignored", () => {
    const a = new ClientAddress(["10.0.0.0/8"], "forwarded");
    expect(a.of("10.1.2.3", { forwarded: 'for=192.0.2.60;proto=http;by=10.1.2.3, For="[2001:db8:cafe::17]:4711"' })).toBe("2001:db8:cafe::17");
    expect(a.of("10.1.2.3", { forwarded: "for=203.0.113.1", "x-forwarded-for": "192.0.2.99" })).toBe("203.0.113.1");
    expect(a.of("10.1.2.3", { "x-forwarded-for": "192.0.2.99" })).toBe("10.1.2.3");
    expect(a.of("10.1.2.3", { forwarded: "for=_hidden" })).toBe("10.1.2.3");
  });
});
