import type { User } from "../db/schema.js";

/**
 * A user row as the original `auth.User` fields 1–8 (which `user.Profile`
 * repeats under the same numbers): the caller's own view, nothing hidden.
 * Original timestamps are RFC 3339 strings; never seen is "".
 */
export function userFields(u: User) {
  // A deleted account (DeleteAccount): only its id and dates remain.
  if (u.deleted_at) {
    const blank = { phoneNumber: "", displayName: "", profilePictureUrl: "", aboutText: "", lastSeenAt: "" };
    return { id: u.id, ...blank, createdAt: u.created_at.toISOString(), updatedAt: u.updated_at.toISOString(), deleted: true };
  }
  return {
    id: u.id,
    phoneNumber: u.phone_number,
    displayName: u.display_name,
    profilePictureUrl: u.profile_picture_url,
    aboutText: u.about_text,
    lastSeenAt: u.last_seen_at?.toISOString() ?? "",
    createdAt: u.created_at.toISOString(),
    updatedAt: u.updated_at.toISOString(),
  };
}
