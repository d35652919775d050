import { randomBytes } from "node:crypto";

// Invite links' rules that are not SQL (issue 17): codes, limits, and why a
// link cannot be used (invite-store.ts `usable` is the same rule in SQL).

/** 365 days. */
const INVITE_EXPIRY_MAX_SECONDS = 365 * 24 * 3600;
const INVITE_MAX_USES_MAX = 100_000;
/** How long a personal invite (a refused add) stays usable. */
export const PERSONAL_INVITE_TTL_MS = 3 * 24 * 3600 * 1000;
/** Longest code a client could hold (ours are 22 characters). */
export const INVITE_CODE_MAX = 64;

/** 128 random bits, URL-safe: 22 characters. */
export function newInviteCode(): string {
  return randomBytes(16).toString("base64url");
}

export interface LinkState {
  revoked_at: Date | null;
  expires_at: Date | null;
  max_uses: number;
  use_count: number;
}

/** Why the link cannot be used now (for FailedPrecondition), or undefined when it can. */
export function linkProblem(l: LinkState, now: Date): string | undefined {
  if (l.revoked_at) return "this invite link was revoked; ask an admin for a new one";
  if (l.expires_at && l.expires_at <= now) return "this invite link has expired; ask an admin for a new one";
  if (l.max_uses > 0 && l.use_count >= l.max_uses) return `this invite link has been used its ${l.max_uses} times; ask an admin for a new one`;
  return undefined;
}

export type LinkSettingsCheck = { ok: true; expiresAt: Date | null; maxUses: number } | { ok: false; problem: string };

/** CreateInviteLink's and ResetInviteLinks' settings; the problem names the field. */
export function checkLinkSettings(expiresInSeconds: bigint, maxUses: number, now: Date): LinkSettingsCheck {
  if (expiresInSeconds < 0n || expiresInSeconds > BigInt(INVITE_EXPIRY_MAX_SECONDS)) {
    return { ok: false, problem: `expires_in_seconds: 0 (never) or 1 to ${INVITE_EXPIRY_MAX_SECONDS} (365 days)` };
  }
  if (maxUses < 0 || maxUses > INVITE_MAX_USES_MAX) return { ok: false, problem: `max_uses: 0 (no limit) or 1 to ${INVITE_MAX_USES_MAX}` };
  const expiresAt = expiresInSeconds === 0n ? null : new Date(now.getTime() + Number(expiresInSeconds) * 1000);
  return { ok: true, expiresAt, maxUses };
}
