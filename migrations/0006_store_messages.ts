import { sql, type Kysely } from 'kysely';

// storeMessages (server/db/message-store.ts) in one round trip: a batch of
// user messages goes in as one jsonb array, in order; each comes back with
// what happened to it and, when stored, its recipients and their inbox
// positions. Same rules, same locks, same lock order as the statements it
// replaces: the batch's conversation rows (by id) are locked by the first
// statement, so the second one (a fresh snapshot in READ COMMITTED) sees every
// committed message and membership change; it then locks the recipients'
// inbox_positions rows in user id order.
//
// Input elements: { o: index, id, c: conversation id, s: sender id,
// k: client message id, t: content, u: media url, y: media type,
// r: reply-to message id or null, m: mention user ids (array), a: created_at }.
// r_status: stored | duplicate | conversation_not_found | sender_not_participant.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create function chatwire_store_messages(p_batch jsonb, p_now timestamptz)
    returns table (
      r_ord int, r_status text, r_id uuid, r_conversation_id uuid, r_seq bigint, r_created_at timestamptz,
      r_recipients jsonb, r_positions jsonb
    )
    language plpgsql as $fn$
    begin
      perform 1 from conversations c
      where c.id in (select (x->>'c')::uuid from jsonb_array_elements(p_batch) x)
      order by c.id
      for no key update;

      return query
      with input as (
        select t.* from jsonb_to_recordset(p_batch) as t(
          o int, id uuid, c uuid, s uuid, k text, t text, u text, y text, r uuid, m jsonb, a timestamptz)
      ),
      existing as (
        select m.id, m.conversation_id, m.seq, m.created_at, m.sender_id, m.client_message_id
        from messages m
        where (m.sender_id, m.client_message_id) in (select i.s, i.k from input i)
      ),
      checked as (
        select i.*,
          e.id as e_id, e.conversation_id as e_conversation_id, e.seq as e_seq, e.created_at as e_created_at,
          cv.id is not null as conversation_exists,
          cv.last_seq,
          exists (
            select 1 from conversation_participants p
            where p.conversation_id = i.c and p.user_id = i.s and p.left_at is null
          ) as sender_in
        from input i
        left join existing e on e.sender_id = i.s and e.client_message_id = i.k
        left join conversations cv on cv.id = i.c
      ),
      -- Stored: the first storable occurrence of its (sender, client message id).
      fresh as (
        select f.*, f.last_seq + row_number() over (partition by f.c order by f.o) as new_seq
        from (
          select k.*, row_number() over (partition by k.s, k.k order by k.o) as occurrence
          from checked k
          where k.e_id is null and k.conversation_exists and k.sender_in
        ) f
        where f.occurrence = 1
      ),
      inserted as (
        insert into messages (id, conversation_id, seq, kind, sender_id, client_message_id, content, media_url, media_type,
                              reply_to_message_id, mention_user_ids, created_at)
        select f.id, f.c, f.new_seq, 'user', f.s, f.k, f.t, f.u, f.y, f.r, f.m, f.a
        from fresh f
        order by f.o
        returning 1
      ),
      advanced as (
        update conversations cv
        set last_seq = a.last_seq, last_activity_at = greatest(cv.last_activity_at, p_now)
        from (select f.c, max(f.new_seq) as last_seq from fresh f group by f.c) a
        where cv.id = a.c
        returning 1
      ),
      events as (
        select f.o, f.id, f.c, f.s, f.new_seq, p.user_id
        from fresh f
        join conversation_participants p on p.conversation_id = f.c and p.left_at is null
      ),
      counts as (
        select e.user_id, count(*) as n from events e group by e.user_id
      ),
      bumped as (
        insert into inbox_positions as ip (user_id, last_position)
        select n.user_id, n.n from counts n order by n.user_id
        on conflict (user_id) do update set last_position = ip.last_position + excluded.last_position
        returning ip.user_id, ip.last_position
      ),
      positioned as (
        select e.*, b.last_position - n.n + row_number() over (partition by e.user_id order by e.o) as position
        from events e
        join bumped b on b.user_id = e.user_id
        join counts n on n.user_id = e.user_id
      ),
      appended as (
        insert into inbox (user_id, position, event_type, conversation_id, message_id, payload, created_at)
        select x.user_id, x.position, 'message_created', x.c, x.id,
               jsonb_build_object('seq', x.new_seq::text, 'sender_id', x.s), p_now
        from positioned x
        order by x.user_id, x.position
        returning 1
      ),
      delivered as (
        select x.o,
               jsonb_agg(x.user_id order by x.user_id) as recipients,
               jsonb_agg(x.position::text order by x.user_id) as positions
        from positioned x
        group by x.o
      )
      select k.o,
        case
          when k.e_id is not null then 'duplicate'
          when d.o < k.o then 'duplicate'
          when d.o = k.o then 'stored'
          when not k.conversation_exists then 'conversation_not_found'
          when not k.sender_in then 'sender_not_participant'
          else 'stored'
        end,
        coalesce(k.e_id, d.id),
        coalesce(k.e_conversation_id, d.c),
        coalesce(k.e_seq, d.new_seq),
        coalesce(k.e_created_at, d.a),
        coalesce(dl.recipients, '[]'::jsonb),
        coalesce(dl.positions, '[]'::jsonb)
      from checked k
      left join fresh d on d.s = k.s and d.k = k.k
      left join delivered dl on dl.o = k.o and d.o = k.o
      order by k.o;
    end
    $fn$
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function chatwire_store_messages(jsonb, timestamptz)`.execute(db);
}
