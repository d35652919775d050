import { sql, type Kysely } from "kysely";

// A former group participant sees the group as it was when they left
// (issue 13): who was in it, with their roles and receipt watermarks, and its
// name, description and avatar. markLeft (server/db/conversation-store.ts)
// writes this snapshot in the statement that ends the participation.
//
// Participations that ended before this migration get the closest snapshot
// the rows still allow: everyone whose current participation began before the
// leave and had not ended by then (someone who left and came back since is
// missing), watermarks capped at the leave, the group fields as they are now.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("conversation_participants").addColumn("left_view", "jsonb").execute();
  await backfillFormerViews(db);
}

/** The snapshot of every ended participation that has none (exported for its test). */
export async function backfillFormerViews(db: Kysely<any>): Promise<void> {
  await sql`
    update conversation_participants f
    set left_view = jsonb_build_object(
      'group_name', c.group_name,
      'group_description', c.group_description,
      'group_avatar_url', c.group_avatar_url,
      'participants', coalesce((
        select jsonb_agg(jsonb_build_object(
          'user_id', p.user_id,
          'role', p.role,
          'joined_at', p.joined_at,
          'joined_seq', p.joined_seq::text,
          'last_delivered_seq', least(p.last_delivered_seq, f.left_seq)::text,
          'last_read_seq', least(p.last_read_seq, f.left_seq)::text
        ) order by p.joined_at, p.user_id)
        from conversation_participants p
        where p.conversation_id = f.conversation_id
          and p.user_id <> f.user_id
          and p.joined_seq < f.left_seq
          and (p.left_seq is null or p.left_seq > f.left_seq)
      ), '[]'::jsonb)
    )
    from conversations c
    where c.id = f.conversation_id and f.left_at is not null and f.left_view is null
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("conversation_participants").dropColumn("left_view").execute();
}
