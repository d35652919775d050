import { describe, expect, test } from "vitest";
import { checkLinkSettings, linkProblem, newInviteCode } from "./invites.js";

const now = new Date("2026-01-01T00:00:00Z");
const fine = { revoked_at: null, expires_at: null, max_uses: 0, use_count: 0 };

describe("invite links", () => {
  test("codes are 22 URL-safe characters", () => {
    expect(newInviteCode()).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  test("revoked, expired, used up; fine otherwise", () => {
    expect(linkProblem(fine, now)).toBeUndefined();
    expect(linkProblem({ ...fine, revoked_at: now }, now)).toMatch(/revoked/);
    expect(linkProblem({ ...fine, expires_at: now }, now)).toMatch(/expired/);
    expect(linkProblem({ ...fine, expires_at: new Date(now.getTime() + 1) }, now)).toBeUndefined();
    expect(linkProblem({ ...fine, max_uses: 2, use_count: 2 }, now)).toMatch(/used its 2 times/);
    expect(linkProblem({ ...fine, max_uses: 2, use_count: 1 }, now)).toBeUndefined();
  });

  test("settings: bounds named by field", () => {
    expect(checkLinkSettings(0n, 0, now)).toEqual({ ok: true, expiresAt: null, maxUses: 0 });
    expect(checkLinkSettings(60n, 5, now)).toEqual({ ok: true, expiresAt: new Date(now.getTime() + 60_000), maxUses: 5 });
    expect(checkLinkSettings(-1n, 0, now)).toMatchObject({ ok: false, problem: expect.stringMatching(/^expires_in_seconds: /) });
    expect(checkLinkSettings(0n, 100_001, now)).toMatchObject({ ok: false, problem: expect.stringMatching(/^max_uses: /) });
  });
});
