import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";
import { isTransient } from "./retry.js";

describe("isTransient", () => {
  test("the server's 'not now' answers are transient; busy ones only when asked", () => {
    expect(isTransient(new ConnectError("down", Code.Unavailable))).toBe(true);
    expect(isTransient(new ConnectError("slow", Code.DeadlineExceeded))).toBe(true);
    expect(isTransient(new ConnectError("limit", Code.ResourceExhausted))).toBe(false);
    expect(isTransient(new ConnectError("limit", Code.ResourceExhausted), true)).toBe(true);
    expect(isTransient(new ConnectError("no", Code.NotFound), true)).toBe(false);
  });

  test("a broken connection reported as Internal/Unknown is transient; a server's own Internal is not", () => {
    const epipe = Object.assign(new Error("write EPIPE"), { code: "EPIPE" });
    expect(isTransient(new ConnectError("write EPIPE", Code.Internal, undefined, undefined, epipe))).toBe(true);
    expect(isTransient(new ConnectError("Failed to fetch", Code.Unknown, undefined, undefined, new TypeError("Failed to fetch")))).toBe(true);
    expect(isTransient(new ConnectError("bug", Code.Internal))).toBe(false);
    expect(isTransient(new ConnectError("bug", Code.Internal, undefined, undefined, new Error("boom")))).toBe(false);
  });
});
