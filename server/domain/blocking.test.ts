import { describe, expect, test } from "vitest";
import { directBlockRule, firstBlocker } from "./blocking.js";

describe("directBlockRule", () => {
  test("either way in a direct conversation, saying which way; groups pass", () => {
    expect(directBlockRule({ otherId: null, iBlocked: true, blockedMe: true })).toBeUndefined();
    expect(directBlockRule({ otherId: "x", iBlocked: false, blockedMe: false })).toBeUndefined();
    expect(directBlockRule({ otherId: "x", iBlocked: true, blockedMe: true })).toEqual({ otherId: "x", whose: "mine" });
    expect(directBlockRule({ otherId: "x", iBlocked: false, blockedMe: true })).toEqual({ otherId: "x", whose: "theirs" });
  });
});

describe("firstBlocker", () => {
  test("the first of the users, in their order, who blocked the adder", () => {
    expect(firstBlocker(["a", "b", "c"], new Set(["c", "b"]))).toBe("b");
    expect(firstBlocker(["a"], new Set())).toBeUndefined();
  });
});
