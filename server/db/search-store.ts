import { sql, type Kysely, type Transaction } from "kysely";
import type { ConversationListRow, ParticipantRow } from "./conversation-store.js";
import type { MessageRow } from "./history-store.js";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Search (issue 17 item 6). Messages: full-text search over the GIN index
// messages_search_idx (0021), whose expression `to_tsvector('simple', content)`
// every query here repeats exactly (otherwise the index is not used).
// Conversations and contacts: substring matches over the caller's own rows.

/** Where a page of message hits ended: rank (as PostgreSQL printed the real), then created_at and id. */
export interface SearchCursor {
  rank: string;
  createdAt: string;
  id: string;
}

export interface SearchHit extends MessageRow {
  /** ts_rank as text: it goes back into the next page's keyset unchanged. */
  rank: string;
}

/**
 * A page of the user messages matching `tsquery` (to_tsquery syntax, 'simple'
 * configuration) that `userId` may see: in a conversation they are or were in,
 * inside their window of it (joined_seq, left_seq], not deleted for everyone,
 * not hidden for them, not expired at `now`. Best rank first, then newest.
 */
export async function searchMessages(
  db: Db,
  q: { userId: string; conversationId?: string; tsquery: string; now: Date; after?: SearchCursor; limit: number },
): Promise<SearchHit[]> {
  const onlyConversation = q.conversationId === undefined ? sql`` : sql`and p.conversation_id = ${q.conversationId}`;
  const after =
    q.after === undefined
      ? sql``
      : sql`where s.rank_real < ${q.after.rank}::real
          or (s.rank_real = ${q.after.rank}::real and (s.created_at, s.id) < (${q.after.createdAt}::timestamptz, ${q.after.id}::uuid))`;
  const { rows } = await sql<SearchHit & { rank_real: number }>`
    select s.* from (
      select m.*, r.rank as rank_real, r.rank::text as rank
      from conversation_participants p
      join messages m on m.conversation_id = p.conversation_id
        and m.seq > p.joined_seq and (p.left_seq is null or m.seq <= p.left_seq)
      cross join lateral (select to_tsquery('simple'::regconfig, ${q.tsquery}) as tq) t
      cross join lateral (select ts_rank(to_tsvector('simple'::regconfig, m.content), t.tq) as rank) r
      where p.user_id = ${q.userId} ${onlyConversation}
        and m.kind = 'user'
        and to_tsvector('simple'::regconfig, m.content) @@ t.tq
        and m.deleted_at is null
        and (m.expires_at is null or m.expires_at > ${q.now})
        and not exists (select 1 from hidden_messages h where h.user_id = ${q.userId} and h.message_id = m.id)
    ) s
    ${after}
    order by s.rank_real desc, s.created_at desc, s.id desc
    limit ${q.limit}
  `.execute(db);
  return rows.map(({ rank_real: _, ...hit }) => hit);
}

/** A row of searchConversations' query: the participation's columns and the conversation's. */
interface ConversationHitRow extends Omit<ParticipantRow, "left_view"> {
  is_group: boolean;
  group_name: string;
  group_description: string;
  group_avatar_url: string;
  last_seq: string;
  c_created_at: Date;
  last_activity_at: Date;
  disappearing_seconds: number;
  send_policy: string;
  edit_info_policy: string;
  add_policy: string;
  approve_new_members: boolean;
}

/** `%text%` for ILIKE, with the pattern characters of `text` taken literally. */
function containing(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * The user's current conversations matching `text`: groups by name, direct
 * conversations by the other person's display name, the user's contact name
 * for them, or (when `digits` is not empty) their phone number's digits.
 * By last activity, newest first.
 */
export async function searchConversations(db: Db, userId: string, text: string, digits: string, limit: number): Promise<ConversationListRow[]> {
  const like = containing(text);
  const phone = digits === "" ? sql`false` : sql`u.phone_number like ${containing(digits)}`;
  const { rows } = await sql<ConversationHitRow>`
    select p.*, c.is_group, c.group_name, c.group_description, c.group_avatar_url, c.last_seq, c.created_at as c_created_at,
           c.last_activity_at, c.disappearing_seconds, c.send_policy, c.edit_info_policy, c.add_policy, c.approve_new_members
    from conversation_participants p
    join conversations c on c.id = p.conversation_id
    where p.user_id = ${userId} and p.left_at is null
      and (
        (c.is_group and c.group_name ilike ${like})
        or (not c.is_group and exists (
          select 1 from conversation_participants o
          join users u on u.id = o.user_id
          left join contacts k on k.user_id = ${userId} and k.contact_user_id = o.user_id
          where o.conversation_id = c.id and o.user_id <> ${userId}
            and (u.display_name ilike ${like} or k.display_name_override ilike ${like} or ${phone})
        ))
      )
    order by c.last_activity_at desc, c.id desc
    limit ${limit}
  `.execute(db);
  return rows.map((r) => ({
    id: r.conversation_id,
    is_group: r.is_group,
    group_name: r.group_name,
    group_description: r.group_description,
    group_avatar_url: r.group_avatar_url,
    last_seq: String(r.last_seq),
    created_at: r.c_created_at,
    last_activity_at: r.last_activity_at,
    disappearing_seconds: r.disappearing_seconds,
    send_policy: r.send_policy,
    edit_info_policy: r.edit_info_policy,
    add_policy: r.add_policy,
    approve_new_members: r.approve_new_members,
    my: {
      conversation_id: r.conversation_id,
      user_id: r.user_id,
      role: r.role,
      joined_at: r.joined_at,
      joined_seq: String(r.joined_seq),
      left_at: r.left_at,
      left_seq: r.left_seq === null ? null : String(r.left_seq),
      last_delivered_seq: String(r.last_delivered_seq),
      last_read_seq: String(r.last_read_seq),
      muted_until: r.muted_until,
      archived: r.archived,
    },
  }));
}

export interface ContactHit {
  user_id: string;
  phone_number: string;
  display_name: string;
  contact_name: string;
  /** The direct conversation with them, or null. */
  conversation_id: string | null;
}

/** The user's contacts matching `text` by profile name, contact name or (digits) phone number, by name. */
export async function searchContacts(db: Db, userId: string, text: string, digits: string, limit: number): Promise<ContactHit[]> {
  const like = containing(text);
  const phone = digits === "" ? sql`false` : sql`u.phone_number like ${containing(digits)}`;
  const { rows } = await sql<ContactHit>`
    select u.id as user_id, u.phone_number, u.display_name, k.display_name_override as contact_name, d.id as conversation_id
    from contacts k
    join users u on u.id = k.contact_user_id
    left join conversations d
      on d.direct_key = least(${userId}::text, k.contact_user_id::text) || ':' || greatest(${userId}::text, k.contact_user_id::text)
    where k.user_id = ${userId}
      and (u.display_name ilike ${like} or k.display_name_override ilike ${like} or ${phone})
    order by lower(coalesce(nullif(k.display_name_override, ''), u.display_name)), u.phone_number
    limit ${limit}
  `.execute(db);
  return rows;
}
