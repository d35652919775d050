import { describe, expect, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { directBlockRefusal } from "./blocking.js";

describe("directBlockRefusal", () => {
  test("either way in a direct conversation, saying which way; groups pass", () => {
    expect(directBlockRefusal({ otherId: null, iBlocked: true, blockedMe: true })).toBeUndefined();
    expect(directBlockRefusal({ otherId: "x", iBlocked: false, blockedMe: false })).toBeUndefined();
    expect(directBlockRefusal({ otherId: "x", iBlocked: true, blockedMe: false })).toMatchObject({ code: Code.PermissionDenied });
    expect(directBlockRefusal({ otherId: "x", iBlocked: true, blockedMe: false })!.rawMessage).toMatch(/you have blocked user x/);
    expect(directBlockRefusal({ otherId: "x", iBlocked: false, blockedMe: true })!.rawMessage).toMatch(/user x has blocked you/);
  });
});
