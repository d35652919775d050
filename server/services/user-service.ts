import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  BlockedUserSchema,
  ContactSchema,
  PrivacySchema,
  ProfileSchema,
  SyncContactsResponseSchema,
  type UserService,
  Visibility,
  type Contact,
  type Privacy,
  type Profile,
} from "../../gen/user/user_pb.js";
import { InvalidPhoneNumberError, normalizePhoneNumber } from "../auth/phone.js";
import type { AppContext } from "../context.js";
import { bad, callerId, uuidField } from "./rpc-input.js";
import { oncePerKey, requestIdField } from "./request-replay.js";
import { userFields } from "../domain/user-view.js";
import { getMedia } from "../db/media-store.js";
import * as privacy from "../db/privacy-store.js";
import type { Database, User } from "../db/schema.js";
import * as users from "../db/user-store.js";
import { allows, type PrivacySettings, type Visibility as VisibilitySetting } from "../domain/privacy.js";
import { codePoints } from "../domain/text.js";

const MAX_DISPLAY_NAME = 64;
const MAX_ABOUT = 140;
const MAX_URL = 2048;
const MAX_GET_USERS = 100;
const MAX_SYNC_NUMBERS = 1000;
const CONTACTS_PAGE_DEFAULT = 100;
const CONTACTS_PAGE_MAX = 500;
const BUDGET_WINDOW_SECONDS = 24 * 3600;

const VISIBILITY_TO_PROTO: Record<VisibilitySetting, Visibility> = {
  everyone: Visibility.EVERYONE,
  contacts: Visibility.CONTACTS,
  nobody: Visibility.NOBODY,
};
const PROTO_TO_VISIBILITY: Partial<Record<Visibility, VisibilitySetting>> = {
  [Visibility.EVERYONE]: "everyone",
  [Visibility.CONTACTS]: "contacts",
  [Visibility.NOBODY]: "nobody",
};

/** The caller's own profile: nothing hidden. */
function ownProfile(u: User): Profile {
  return create(ProfileSchema, userFields(u));
}

/**
 * Profiles of `ids` as `viewerId` may see them, in the order of `ids`
 * (unknown ids left out): photo, about and last seen follow each user's
 * privacy settings, and a block either way hides all three.
 */
export async function profilesFor(db: Kysely<Database>, viewerId: string, ids: readonly string[]): Promise<Profile[]> {
  const unique = [...new Set(ids)];
  const [rows, settings, relations, myContacts, iBlocked] = await Promise.all([
    users.getUsers(db, unique),
    privacy.getPrivacyMany(db, unique),
    privacy.relationsTo(db, viewerId, unique),
    privacy.contactsAmong(db, viewerId, unique),
    privacy.blockedBy(db, viewerId, unique),
  ]);
  const byId = new Map(rows.map((u) => [u.id, u]));
  return unique.flatMap((id) => {
    const u = byId.get(id);
    if (!u) return [];
    if (id === viewerId) return [ownProfile(u)];
    const p = settings.get(id)!;
    const r = relations.get(id)!;
    return [
      create(ProfileSchema, {
        ...userFields(u),
        profilePictureUrl: allows(p.profilePhoto, r) ? u.profile_picture_url : "",
        aboutText: allows(p.about, r) ? u.about_text : "",
        lastSeenAt: allows(p.lastSeen, r) ? (u.last_seen_at?.toISOString() ?? "") : "",
        isContact: myContacts.has(id),
        blockedByMe: iBlocked.has(id),
      }),
    ];
  });
}

function toPrivacy(s: PrivacySettings): Privacy {
  return create(PrivacySchema, {
    lastSeen: VISIBILITY_TO_PROTO[s.lastSeen],
    profilePhoto: VISIBILITY_TO_PROTO[s.profilePhoto],
    about: VISIBILITY_TO_PROTO[s.about],
    status: VISIBILITY_TO_PROTO[s.status],
    readReceipts: s.readReceipts,
    groupAdd: VISIBILITY_TO_PROTO[s.groupAdd],
  });
}

/** A contact-sync refusal: the daily budget would be exceeded. */
class ContactBudgetExceeded extends Error {
  constructor(
    readonly left: number,
    readonly retryAfterSeconds: number,
  ) {
    super("contact sync budget exceeded");
  }
}

/** user.UserService: the caller's profile, contacts, blocks and privacy; others' profiles as far as visible. */
export function createUserService(ctx: AppContext): ServiceImpl<typeof UserService> {
  const db = ctx.database.db;
  const { clock } = ctx;
  const budget = ctx.config.users.contactSyncDailyBudget;

  async function me(id: string): Promise<Profile> {
    const [u] = await users.getUsers(db, [id]);
    if (!u) throw new ConnectError("your account no longer exists", Code.NotFound);
    return ownProfile(u);
  }

  async function contactsOf(me: string, rows: users.ContactRow[], via: Kysely<Database> = db): Promise<Contact[]> {
    const profiles = new Map(
      (
        await profilesFor(
          via,
          me,
          rows.map((r) => r.contact_user_id),
        )
      ).map((p) => [p.id, p]),
    );
    return rows.flatMap((r) => {
      const user = profiles.get(r.contact_user_id);
      return user ? [create(ContactSchema, { phoneNumber: r.contact_phone_number, user, addedAt: timestampFromDate(r.created_at) })] : [];
    });
  }

  async function existingUser(field: string, raw: string): Promise<string> {
    const id = uuidField(field, raw);
    const [u] = await users.getUsers(db, [id]);
    if (!u) throw new ConnectError(`${field}: no user with id ${id}`, Code.NotFound);
    return id;
  }

  return {
    async getMe(_req, hc) {
      return { user: await me(callerId(hc)) };
    },

    async updateProfile(req, hc) {
      const id = callerId(hc);
      const fields: { display_name?: string; about_text?: string; profile_picture_url?: string } = {};
      if (req.displayName !== undefined) {
        const name = req.displayName.trim();
        if (name === "") throw bad("display_name: must not be empty");
        if (codePoints(name) > MAX_DISPLAY_NAME) throw bad(`display_name: at most ${MAX_DISPLAY_NAME} characters (got ${codePoints(name)})`);
        if (/[\p{Cc}]/u.test(name)) throw bad("display_name: must not contain control characters");
        fields.display_name = name;
      }
      if (req.aboutText !== undefined) {
        const about = req.aboutText.trim();
        if (codePoints(about) > MAX_ABOUT) throw bad(`about_text: at most ${MAX_ABOUT} characters (got ${codePoints(about)})`);
        fields.about_text = about;
      }
      if (req.profilePictureUrl !== undefined) {
        const url = req.profilePictureUrl.trim();
        if (url.length > MAX_URL) throw bad(`profile_picture_url: at most ${MAX_URL} characters`);
        if (url.startsWith("/media/")) await requireOwnPhoto(db, id, url);
        else if (url !== "" && !isHttpUrl(url)) throw bad(`profile_picture_url: "${url}" is not an http(s) URL or "/media/<id>" of a photo you uploaded`);
        fields.profile_picture_url = url;
      }
      if (Object.keys(fields).length === 0) throw bad("set at least one of display_name, about_text, profile_picture_url");
      const u = await users.updateProfile(db, id, fields, clock.now());
      if (!u) throw new ConnectError("your account no longer exists", Code.NotFound);
      return { user: ownProfile(u) };
    },

    async getUsers(req, hc) {
      const id = callerId(hc);
      if (req.userIds.length === 0) throw bad("user_ids: name at least one user");
      if (req.userIds.length > MAX_GET_USERS) throw bad(`user_ids: at most ${MAX_GET_USERS} per call (got ${req.userIds.length})`);
      const ids = req.userIds.map((v, i) => uuidField(`user_ids[${i}]`, v));
      return { users: await profilesFor(db, id, ids) };
    },

    async syncContacts(req, hc) {
      const id = callerId(hc);
      if (req.phoneNumbers.length > MAX_SYNC_NUMBERS) throw bad(`phone_numbers: at most ${MAX_SYNC_NUMBERS} per call (got ${req.phoneNumbers.length})`);
      if (req.removePhoneNumbers.length > MAX_SYNC_NUMBERS) {
        throw bad(`remove_phone_numbers: at most ${MAX_SYNC_NUMBERS} per call (got ${req.removePhoneNumbers.length})`);
      }
      const invalid: string[] = [];
      const wanted = new Set<string>();
      for (const raw of req.phoneNumbers) {
        try {
          wanted.add(normalizePhoneNumber(raw));
        } catch (err) {
          if (!(err instanceof InvalidPhoneNumberError)) throw err;
          invalid.push(raw);
        }
      }
      const removals = req.removePhoneNumbers.map((raw, i) => {
        try {
          return normalizePhoneNumber(raw);
        } catch (err) {
          if (err instanceof InvalidPhoneNumberError) throw bad(`remove_phone_numbers[${i}]: ${err.message}`);
          throw err;
        }
      });
      const now = clock.now();
      const requestId = requestIdField(req.clientRequestId);
      // With a client_request_id a retry gets this answer back and spends no budget.
      const key = requestId ? { owner: id, rpc: "user.UserService/SyncContacts", key: requestId } : undefined;
      try {
        return await oncePerKey(ctx, key, SyncContactsResponseSchema, async (trx) => {
          await users.removeContactsByPhone(trx, id, removals);
          const phones = [...wanted];
          // Numbers already among my contacts reveal nothing new: they are free.
          const known = await users.knownContactPhones(trx, id, phones);
          const fresh = phones.filter((p) => !known.has(p));
          const spent = await users.spendContactBudget(trx, id, fresh.length, BUDGET_WINDOW_SECONDS, now);
          if (spent.count > budget) {
            const left = Math.max(0, budget - (spent.count - fresh.length));
            const wait = Math.max(1, Math.ceil((spent.windowEndsAt.getTime() - now.getTime()) / 1000));
            throw new ContactBudgetExceeded(left, wait);
          }
          const found = (await users.usersByPhone(trx, phones)).filter((u) => u.id !== id);
          await users.addContacts(
            trx,
            id,
            found.map((u) => ({ userId: u.id, phone: u.phone_number })),
            now,
          );
          const rows = await users.contactsByUserIds(
            trx,
            id,
            found.map((u) => u.id),
          );
          return {
            answer: create(SyncContactsResponseSchema, {
              contacts: await contactsOf(id, rows, trx),
              invalidPhoneNumbers: invalid,
              budgetRemaining: Math.max(0, budget - spent.count),
              budgetResetsAt: timestampFromDate(spent.windowEndsAt),
            }),
          };
        });
      } catch (err) {
        if (err instanceof ContactBudgetExceeded) {
          throw new ConnectError(
            `contact sync budget: ${budget} new numbers per 24 h, ${err.left} left and this call checks more; try again in ${err.retryAfterSeconds} s`,
            Code.ResourceExhausted,
            { "retry-after": String(err.retryAfterSeconds) },
          );
        }
        throw err;
      }
    },

    async listContacts(req, hc) {
      const id = callerId(hc);
      if (req.limit < 0) throw bad("limit: must not be negative");
      const limit = req.limit === 0 ? CONTACTS_PAGE_DEFAULT : Math.min(req.limit, CONTACTS_PAGE_MAX);
      let after: string | undefined;
      if (req.pageToken !== "") {
        after = Buffer.from(req.pageToken, "base64url").toString("utf8");
        if (!/^\+\d{4,20}$/.test(after)) throw bad("page_token: not a token from a previous ListContacts page");
      }
      const rows = await users.listContacts(db, id, limit + 1, after);
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        contacts: await contactsOf(id, page),
        nextPageToken: rows.length > limit && last ? Buffer.from(last.contact_phone_number).toString("base64url") : "",
      };
    },

    async blockUser(req, hc) {
      const id = callerId(hc);
      const target = uuidField("user_id", req.userId);
      if (target === id) throw new ConnectError("user_id: you cannot block yourself", Code.FailedPrecondition);
      await existingUser("user_id", target);
      const at = await privacy.block(db, id, target, clock.now());
      return { blockedAt: timestampFromDate(at) };
    },

    async unblockUser(req, hc) {
      const id = callerId(hc);
      const target = uuidField("user_id", req.userId);
      if (target === id) throw new ConnectError("user_id: you cannot block or unblock yourself", Code.FailedPrecondition);
      await existingUser("user_id", target);
      return { wasBlocked: await privacy.unblock(db, id, target) };
    },

    async listBlocked(_req, hc) {
      const id = callerId(hc);
      const rows = await privacy.listBlocked(db, id);
      const profiles = new Map(
        (
          await profilesFor(
            db,
            id,
            rows.map((r) => r.blocked_id),
          )
        ).map((p) => [p.id, p]),
      );
      return {
        blocked: rows.flatMap((r) => {
          const user = profiles.get(r.blocked_id);
          return user ? [create(BlockedUserSchema, { user, blockedAt: timestampFromDate(r.created_at) })] : [];
        }),
      };
    },

    async getPrivacy(_req, hc) {
      return { privacy: toPrivacy(await privacy.getPrivacy(db, callerId(hc))) };
    },

    async updatePrivacy(req, hc) {
      const id = callerId(hc);
      const pick = (field: string, v: Visibility): VisibilitySetting | undefined => {
        if (v === Visibility.UNSPECIFIED) return undefined;
        const s = PROTO_TO_VISIBILITY[v];
        if (!s) throw bad(`${field}: one of VISIBILITY_EVERYONE, VISIBILITY_CONTACTS, VISIBILITY_NOBODY`);
        return s;
      };
      const patch: Partial<PrivacySettings> = {};
      const lastSeen = pick("last_seen", req.lastSeen);
      const profilePhoto = pick("profile_photo", req.profilePhoto);
      const about = pick("about", req.about);
      const status = pick("status", req.status);
      if (lastSeen) patch.lastSeen = lastSeen;
      if (profilePhoto) patch.profilePhoto = profilePhoto;
      if (about) patch.about = about;
      if (status) patch.status = status;
      const groupAdd = pick("group_add", req.groupAdd);
      if (groupAdd) patch.groupAdd = groupAdd;
      if (req.readReceipts !== undefined) patch.readReceipts = req.readReceipts;
      if (Object.keys(patch).length === 0) throw bad("set at least one of last_seen, profile_photo, about, status, read_receipts, group_add");
      return { privacy: toPrivacy(await privacy.updatePrivacy(db, id, patch, clock.now())) };
    },
  };
}

export function isHttpUrl(s: string): boolean {
  if (!/^https?:\/\/\S+$/i.test(s)) return false;
  try {
    const u = new URL(s);
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
  } catch {
    return false;
  }
}

/**
 * A profile photo from MediaService: "/media/<id>" of a ready image the caller uploaded. Who may then download
 * it (GetMedia) follows the caller's "profile photo" privacy setting, as the URL itself does.
 */
async function requireOwnPhoto(db: Kysely<Database>, me: string, url: string): Promise<void> {
  const raw = url.slice("/media/".length);
  const mediaId = uuidField("profile_picture_url", raw);
  const row = await getMedia(db, mediaId);
  if (!row || row.uploader_id !== me) throw new ConnectError(`profile_picture_url: media ${mediaId} not found among your uploads`, Code.NotFound);
  if (row.kind !== "image") throw bad(`profile_picture_url: media ${mediaId} is ${row.kind === "audio" ? "an" : "a"} ${row.kind}, not an image`);
  if (row.state !== "ready") throw new ConnectError(`profile_picture_url: the upload of media ${mediaId} is not finished`, Code.FailedPrecondition);
}
