import { describe, expect, test } from "vitest";
import { codePoints } from "./text.js";

describe("codePoints", () => {
  test.each([
    ["", 0],
    ["hello", 5],
    ["çğışöü", 6],
    ["日本語", 3],
    ["😀", 1],
    ["a😀b", 3],
    ["😀".repeat(4096), 4096],
    ["👍🏽", 2], // thumbs up + skin tone modifier
    ["👨‍👩‍👧", 5], // three people joined by two zero-width joiners
    ["\u{10FFFF}", 1],
    ["\ud800", 1], // a lone high surrogate (possible through JSON escapes) is one
    ["\udc00\ud800", 2], // a low then a high surrogate are not a pair
    ["x\ud800", 2],
  ])("%j has %i", (s, n) => {
    expect(codePoints(s)).toBe(n);
    // The same count as iterating the string by code point.
    expect(codePoints(s)).toBe([...s].length);
  });
});
