import { describe, expect, test } from "vitest";
import { decodeSearchToken, encodeSearchToken, messageQuery, nameQuery } from "./search.js";

describe("messageQuery", () => {
  test.each([
    ["hello", "hello:*"],
    ["Hello, World!", "hello & world:*"],
    ["it's  ok", "it & s & ok:*"],
    ["x & y | !z:* (a)", "x & y & z & a:*"],
    ["çay İyi", "çay & i̇yi:*"],
    ["日本語 テスト", "日本語 & テスト:*"],
  ])("%j → %j", (q, tsq) => {
    expect(messageQuery(q)).toEqual({ ok: true, value: tsq });
  });

  test("refuses no words, too many words and too long", () => {
    expect(messageQuery("  !?* ").ok).toBe(false);
    expect(messageQuery(Array.from({ length: 17 }, () => "w").join(" ")).ok).toBe(false);
    expect(messageQuery("a".repeat(257)).ok).toBe(false);
  });
});

describe("nameQuery", () => {
  test("phone-like text gives digits; names do not", () => {
    expect(nameQuery(" +1 (415) 555-01 ")).toEqual({ ok: true, value: { text: "+1 (415) 555-01", digits: "141555501" } });
    expect(nameQuery("Ann 2")).toEqual({ ok: true, value: { text: "Ann 2", digits: "" } });
    expect(nameQuery("   ").ok).toBe(false);
  });
});

describe("search page token", () => {
  test("round-trips for the same search only", () => {
    const p = { rank: "0.0607927", createdAt: "2026-01-01T00:00:00.000Z", id: "0190a0a0-0000-7000-8000-000000000001" };
    const t = encodeSearchToken(p, "a:*", "");
    expect(decodeSearchToken(t, "a:*", "")).toEqual(p);
    expect(decodeSearchToken(t, "b:*", "")).toBeUndefined();
    expect(decodeSearchToken("garbage", "a:*", "")).toBeUndefined();
    // A hand-made token with the right fingerprint but a rank that is no number.
    const forged = JSON.parse(Buffer.from(t, "base64url").toString()) as string[];
    forged[0] = "-";
    expect(decodeSearchToken(Buffer.from(JSON.stringify(forged)).toString("base64url"), "a:*", "")).toBeUndefined();
  });
});
