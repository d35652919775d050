-- storeMessageRows (server/db/message-store.ts) in one round trip: a batch of
-- user messages goes in as one jsonb array, in order; each comes back with
-- what happened to it and, when stored, its recipients and their inbox
-- positions. The batch's conversation rows (by id) are locked by the first
-- statement, so the second one (a fresh snapshot in READ COMMITTED) sees every
-- committed message and membership change; it then locks the recipients'
-- inbox_positions rows in user id order (the lock order of README.md).
--
-- Input elements: { o: index, id, c: conversation id, s: sender id,
-- k: client message id, t: content, u: media url, y: media type,
-- r: reply-to message id or null, m: mention user ids (array), a: created_at,
-- f: forward count (absent: 0), d: the conversation's disappearing timer in
-- seconds when the message was sent (absent: the timer at store time) }.
-- r_status: stored | duplicate | conversation_not_found | sender_not_participant.
-- Disappearing messages (0021): a message sent while its conversation has a
-- timer gets expires_at = created_at + timer (r_expires_at; null when off).
-- The timer is the one SendMessage read as it accepted the message (d, 0027),
-- not the one in force when the worker stores it: a message acknowledged
-- before the timer was turned on never disappears, one acknowledged before it
-- was turned off still does.
-- A mentioned recipient (not the sender) also gets a mention_added event right
-- after its message_created (r_mentions: { user id: its position }).
-- r_push (0025): whether a push could be owed for a stored message, i.e. some
-- recipient other than the sender who has not muted the conversation has a
-- push token. The push role works out who exactly (chatwire_push_targets, at
-- the end of its collapse window); a message with r_push false does not go to
-- it at all (issue 15: the push stream, its consumer and that query were
-- about a tenth of a message's server-side CPU when nobody could be pushed).
create or replace function chatwire_store_messages(p_batch jsonb, p_now timestamptz)
returns table (
  r_ord int, r_status text, r_id uuid, r_conversation_id uuid, r_seq bigint, r_created_at timestamptz,
  r_recipients jsonb, r_positions jsonb, r_expires_at timestamptz, r_mentions jsonb, r_push boolean
)
language plpgsql
-- Planned once per connection (0023). Left to choose, PostgreSQL planned the
-- big statement below afresh on every call (a custom plan, about 2.3 ms of
-- its CPU per call under load, more than executing it).
set plan_cache_mode = force_generic_plan
as $fn$
begin
  -- = any(array(...)): an index scan of the primary key whatever the batch
  -- size, so the one generic plan serves every call.
  perform 1 from conversations c
  where c.id = any (array(select (x->>'c')::uuid from jsonb_array_elements(p_batch) x))
  order by c.id
  for no key update;

  -- No joins between the statement's own intermediate results: without
  -- statistics (a fresh table) the planner takes each of them for one row
  -- and nests loops over them, quadratic in a group's size. Window functions
  -- over one row set, and arrays indexed by position, instead.
  return query
  with input as (
    select t.* from jsonb_to_recordset(p_batch) as t(
      o int, id uuid, c uuid, s uuid, k text, t text, u text, y text, r uuid, m jsonb, a timestamptz, f int, d int)
    limit jsonb_array_length(p_batch)
  ),
  -- One index probe per message for each fact (lateral ... limit 1 is not
  -- pulled up into a join the planner could hash over a whole table).
  checked as materialized (
    select i.*,
      e.id as e_id, e.conversation_id as e_conversation_id, e.seq as e_seq, e.created_at as e_created_at,
      cv.last_seq is not null as conversation_exists,
      cv.last_seq, cv.ds,
      sp.sender_in is not null as sender_in
    from input i
    left join lateral (
      select m.id, m.conversation_id, m.seq, m.created_at from messages m
      where m.sender_id = i.s and m.client_message_id = i.k limit 1
    ) e on true
    left join lateral (select c.last_seq, c.disappearing_seconds as ds from conversations c where c.id = i.c limit 1) cv on true
    left join lateral (
      select true as sender_in from conversation_participants p
      where p.conversation_id = i.c and p.user_id = i.s and p.left_at is null limit 1
    ) sp on true
  ),
  -- Stored: the first storable occurrence of its (sender, client message id).
  firsts as (
    select k.*,
      k.e_id is null and k.conversation_exists and k.sender_in as storable,
      min(k.o) filter (where k.e_id is null and k.conversation_exists and k.sender_in)
        over (partition by k.s, k.k) as first_o
    from checked k
  ),
  numbered as (
    select f.*, f.storable and f.o = f.first_o as stored,
      f.last_seq + count(*) filter (where f.storable and f.o = f.first_o)
        over (partition by f.c order by f.o rows between unbounded preceding and current row) as new_seq
    from firsts f
  ),
  -- A later repeat in the batch answers with the stored occurrence's coordinates.
  judged as (
    select n.*,
      (array_agg(n.new_seq) filter (where n.stored) over (partition by n.s, n.k))[1] as d_seq,
      (array_agg(n.c) filter (where n.stored) over (partition by n.s, n.k))[1] as d_c,
      (array_agg(n.a) filter (where n.stored) over (partition by n.s, n.k))[1] as d_a,
      (array_agg(n.id) filter (where n.stored) over (partition by n.s, n.k))[1] as d_id,
      case when coalesce(n.d, n.ds) > 0 then n.a + make_interval(secs => coalesce(n.d, n.ds)) end as x
    from numbered n
  ),
  inserted as (
    insert into messages (id, conversation_id, seq, kind, sender_id, client_message_id, content, media_url, media_type,
                          reply_to_message_id, mention_user_ids, created_at, expires_at, forward_count)
    select j.id, j.c, j.new_seq, 'user', j.s, j.k, j.t, j.u, j.y, j.r, j.m, j.a, j.x, coalesce(j.f, 0)
    from judged j
    where j.stored
    order by j.o
    returning 1
  ),
  advanced as (
    update conversations cv
    set last_seq = a.last_seq, last_activity_at = greatest(cv.last_activity_at, p_now)
    from (select j.c, max(j.new_seq) as last_seq from judged j where j.stored group by j.c) a
    where cv.id = a.c
    returning 1
  ),
  events as (
    select j.o, j.id, j.c, j.s, j.new_seq, p.user_id, x.mention,
      -- One index probe per recipient (push_tokens_user_id_idx), on its message_created row only.
      not x.mention and p.user_id <> j.s and (p.muted_until is null or p.muted_until <= p_now)
        and exists (select 1 from push_tokens t where t.user_id = p.user_id) as push,
      dense_rank() over (order by p.user_id) as ui,
      row_number() over (partition by p.user_id order by j.o, x.mention) as nth
    from judged j
    join conversation_participants p on p.conversation_id = j.c and p.left_at is null
    -- The mention event: payload is the realtime.Event as proto JSON (storedEvent's form).
    cross join lateral (select false as mention union all
      select true where j.m ? p.user_id::text and p.user_id <> j.s) x
    where j.stored
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
  -- Per recipient, by user id (= events.ui): the position before this batch's events.
  bases as materialized (
    select array_agg(b.last_position order by b.user_id) as last,
           (select array_agg(n.n order by n.user_id) from counts n) as n
    from bumped b
  ),
  positioned as (
    select e.*, x.last[e.ui] - x.n[e.ui] + e.nth as position
    from events e, bases x
  ),
  appended as (
    insert into inbox (user_id, position, event_type, conversation_id, message_id, payload, created_at)
    select x.user_id, x.position, case when x.mention then 'mention_added' else 'message_created' end, x.c, x.id,
           case when x.mention then jsonb_build_object('event', jsonb_build_object(
             'at', to_char(p_now at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'mentionAdded', jsonb_build_object(
               'conversationId', x.c, 'messageId', x.id, 'seq', x.new_seq::text, 'senderId', x.s)))
           else jsonb_build_object('seq', x.new_seq::text, 'sender_id', x.s) end, p_now
    from positioned x
    order by x.user_id, x.position
    returning 1
  ),
  delivered as materialized (
    select jsonb_object_agg(d.o::text, jsonb_build_array(d.recipients, d.positions, d.mentions, d.push)) as by_o
    from (
      select x.o,
             jsonb_agg(x.user_id order by x.user_id) filter (where not x.mention) as recipients,
             jsonb_agg(x.position::text order by x.user_id) filter (where not x.mention) as positions,
             coalesce(jsonb_object_agg(x.user_id, x.position::text) filter (where x.mention), '{}'::jsonb) as mentions,
             bool_or(x.push) as push
      from positioned x
      group by x.o
    ) d
  )
  select j.o,
    case
      when j.e_id is not null then 'duplicate'
      when j.stored then 'stored'
      when j.first_o < j.o then 'duplicate'
      when not j.conversation_exists then 'conversation_not_found'
      when not j.sender_in then 'sender_not_participant'
      else 'stored'
    end,
    coalesce(j.e_id, j.d_id),
    coalesce(j.e_conversation_id, j.d_c),
    coalesce(j.e_seq, j.d_seq),
    coalesce(j.e_created_at, j.d_a),
    case when j.stored then coalesce(dl.by_o -> j.o::text -> 0, '[]'::jsonb) else '[]'::jsonb end,
    case when j.stored then coalesce(dl.by_o -> j.o::text -> 1, '[]'::jsonb) else '[]'::jsonb end,
    case when j.stored then j.x end,
    case when j.stored then coalesce(dl.by_o -> j.o::text -> 2, '{}'::jsonb) else '{}'::jsonb end,
    j.stored and coalesce((dl.by_o -> j.o::text ->> 3)::boolean, false)
  from judged j, delivered dl
  order by j.o;
end
$fn$;
