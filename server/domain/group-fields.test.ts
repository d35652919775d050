import { describe, expect, test } from "vitest";
import { checkGroupFields } from "./group-fields.js";

const problem = (input: Parameters<typeof checkGroupFields>[0]) => {
  const r = checkGroupFields(input);
  return r.ok ? undefined : r.problem;
};

describe("checkGroupFields", () => {
  test("stores trimmed values and leaves out what was not given", () => {
    expect(checkGroupFields({ name: "  Team ", avatarUrl: " https://x.example/a.png " })).toEqual({
      ok: true,
      fields: { group_name: "Team", group_avatar_url: "https://x.example/a.png" },
    });
    expect(checkGroupFields({ description: " we ship " })).toEqual({ ok: true, fields: { group_description: "we ship" } });
    expect(checkGroupFields({})).toEqual({ ok: true, fields: {} });
  });

  test("a name is 1 to 100 code points", () => {
    expect(problem({ name: "   " })).toBe("group_name: a group needs a name");
    expect(problem({ name: "😀".repeat(100) })).toBeUndefined();
    expect(problem({ name: "😀".repeat(101) })).toBe("group_name: at most 100 characters");
  });

  test("a description is at most 512 code points, and may be empty", () => {
    expect(problem({ description: "" })).toBeUndefined();
    expect(problem({ description: "😀".repeat(512) })).toBeUndefined();
    expect(problem({ description: "😀".repeat(513) })).toBe("group_description: at most 512 characters");
  });

  test("an avatar is empty or an http(s) URL of at most 2048 characters", () => {
    expect(problem({ avatarUrl: "" })).toBeUndefined();
    expect(problem({ avatarUrl: `https://x.example/${"a".repeat(2048 - 18)}` })).toBeUndefined();
    expect(problem({ avatarUrl: `https://x.example/${"a".repeat(2048 - 17)}` })).toBe("group_avatar_url: at most 2048 characters");
    expect(problem({ avatarUrl: "ftp://x.example/a.png" })).toBe("group_avatar_url: must be an http(s) URL");
    expect(problem({ avatarUrl: "https://x.example/a b" })).toBe("group_avatar_url: must be an http(s) URL");
  });

  test("the first problem is the name's", () => {
    expect(problem({ name: "", description: "😀".repeat(513), avatarUrl: "nope" })).toBe("group_name: a group needs a name");
  });
});
