// Who may see what of whom: pure rules over settings and relations, so the
// stores fetch rows and these decide.

export type Visibility = "everyone" | "contacts" | "nobody";

export interface PrivacySettings {
  lastSeen: Visibility;
  profilePhoto: Visibility;
  about: Visibility;
  /** Upper bound on every status's audience; nobody pauses sharing. */
  status: Visibility;
  /** Off: sends and sees no read receipts in direct chats, not listed among (and sees no) status viewers. */
  readReceipts: boolean;
  /** Who may add the user to groups (contacts: users in the user's contacts). */
  groupAdd: Visibility;
}

export const DEFAULT_PRIVACY: Readonly<PrivacySettings> = Object.freeze({
  lastSeen: "everyone",
  profilePhoto: "everyone",
  about: "everyone",
  status: "contacts",
  readReceipts: true,
  groupAdd: "everyone",
});

/** How a viewer stands to a subject. */
export interface Relation {
  self: boolean;
  /** The viewer is in the subject's contacts. */
  viewerIsContact: boolean;
  /** Either has blocked the other. */
  blocked: boolean;
}

/** Whether a setting lets the viewer see that piece of the subject's information. */
export function allows(setting: Visibility, r: Relation): boolean {
  if (r.self) return true;
  if (r.blocked) return false;
  if (setting === "everyone") return true;
  if (setting === "contacts") return r.viewerIsContact;
  return false;
}

/**
 * Whether a user's group-add setting lets `adderIsContact` (the adder is in
 * the user's contacts) put them into a group. Blocks are decided apart
 * (domain/blocking.ts): a block refuses whatever the setting says.
 */
export function allowsGroupAdd(setting: Visibility, adderIsContact: boolean): boolean {
  return setting === "everyone" || (setting === "contacts" && adderIsContact);
}

export type AudienceKind = "contacts" | "except" | "only";

export interface StatusAudience {
  kind: AudienceKind;
  /** The except / only list. */
  userIds: ReadonlySet<string>;
}

/**
 * Whether a viewer sees a status: the author's status privacy bounds it, the
 * audience narrows it. contacts and except reach only the author's contacts;
 * only reaches exactly its list.
 */
export function statusVisible(statusSetting: Visibility, audience: StatusAudience, viewerId: string, r: Relation): boolean {
  if (r.self) return true;
  if (!allows(statusSetting, r)) return false;
  switch (audience.kind) {
    case "contacts":
      return r.viewerIsContact;
    case "except":
      return r.viewerIsContact && !audience.userIds.has(viewerId);
    case "only":
      return audience.userIds.has(viewerId);
  }
}

/**
 * Whether the participants of a conversation see each other's read state
 * (read receipts, "read" ticks, read times): always in groups; in a direct
 * chat only while both have read receipts on, so turning them off neither
 * sends nor shows them (README, Privacy). Delivery is always shown.
 */
export function readStateShared(isGroup: boolean, readReceiptsOn: Iterable<boolean>): boolean {
  if (isGroup) return true;
  for (const on of readReceiptsOn) if (!on) return false;
  return true;
}
