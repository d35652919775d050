-- MarkDelivered and MarkRead (server/services/chat/receipts.ts, through
-- conversation-store.ts markReceipts) in one round trip and one transaction:
-- the caller's participation, the conversation and the up_to_seq range are
-- checked in the order the RPC answers them; under the conversation's shared
-- lock the caller's watermarks are raised (and the mark recorded for
-- GetMessageReceipts); when they moved, the receipt_updated inbox events are
-- appended, locking the viewers' inbox_positions rows in user id order (the
-- lock order of README.md). The receipt rule is domain/receipts.ts
-- receiptUpdates (canonical; chatwire_mark_receipts.test.ts holds this copy
-- to it), the read-state rule domain/privacy.ts readStateShared.
--
-- r_status: marked | not_participant | conversation_not_found | negative | beyond (r_last_seq tells the end).
-- r_updates (0026): the receipt_updated events appended, [{viewer, position, delivered_all, read_all,
-- read_seq}] (seqs as text) in viewer order, empty when the watermarks did not move; the caller publishes
-- them as they are.
--
-- Cost (0026): in a big group most marks move nobody else's "delivered to all" / "read by all": when at
-- least two other participants are still at or below the caller's old watermark, no other viewer's minimum
-- can change, and at most the caller's own event is written (only when their read watermark moved: a
-- delivery alone tells their own devices nothing). The full computation over every participant's
-- watermarks runs only when someone else's minimum may move.
create or replace function chatwire_mark_receipts(
  p_conversation_id uuid, p_user_id uuid, p_up_to_seq bigint, p_read boolean, p_now timestamptz
)
returns table (
  r_status text, r_last_seq bigint, r_delivered bigint, r_read bigint, r_read_shared boolean, r_updates jsonb
)
language plpgsql as $fn$
declare
  v_last_seq bigint;
  v_before jsonb;
  v_old_delivered bigint;
  v_old_read bigint;
  v_delivered bigint;
  v_read bigint;
  v_shared boolean;
  v_at text;
  v_updates jsonb;
  v_low_delivered int;
  v_low_read int;
begin
  if not exists (
    select 1 from conversation_participants p
    where p.conversation_id = p_conversation_id and p.user_id = p_user_id and p.left_at is null
  ) then
    return query select 'not_participant', null::bigint, null::bigint, null::bigint, null::boolean, null::jsonb;
    return;
  end if;
  select c.last_seq into v_last_seq from conversations c where c.id = p_conversation_id for key share;
  if not found then
    return query select 'conversation_not_found', null::bigint, null::bigint, null::bigint, null::boolean, null::jsonb;
    return;
  end if;
  if p_up_to_seq < 0 or p_up_to_seq > v_last_seq then
    return query select case when p_up_to_seq < 0 then 'negative' else 'beyond' end, v_last_seq,
      null::bigint, null::bigint, null::boolean, null::jsonb;
    return;
  end if;

  -- The caller's row, locked until commit, so the old and new watermarks are this call's own.
  select p.last_delivered_seq, p.last_read_seq into v_old_delivered, v_old_read
  from conversation_participants p
  where p.conversation_id = p_conversation_id and p.user_id = p_user_id and p.left_at is null
  for no key update;

  update conversation_participants p
  set last_delivered_seq = greatest(p.last_delivered_seq, p_up_to_seq),
      last_read_seq = case when p_read then greatest(p.last_read_seq, p_up_to_seq) else p.last_read_seq end
  where p.conversation_id = p_conversation_id and p.user_id = p_user_id
  returning p.last_delivered_seq, p.last_read_seq into v_delivered, v_read;

  insert into receipt_marks (conversation_id, user_id, kind, up_to_seq, at)
  select p_conversation_id, p_user_id, k.kind, p_up_to_seq, p_now
  from unnest(case when p_read then array['delivered', 'read'] else array['delivered'] end) as k(kind)
  on conflict do nothing;

  if v_delivered = v_old_delivered and v_read = v_old_read then
    return query select 'marked', v_last_seq, v_delivered, v_read, null::boolean, '[]'::jsonb;
    return;
  end if;

  -- Shared in groups; in a direct chat only while every participant has read receipts on (default on).
  select coalesce(bool_and(coalesce(ps.read_receipts, true)), true) into v_shared
  from conversations c
  join conversation_participants p on p.conversation_id = c.id
  left join privacy_settings ps on ps.user_id = p.user_id
  where c.id = p_conversation_id and not c.is_group;

  -- As protobuf-es toJson writes a Timestamp: fractional digits only when not zero, 3 or 6 of them.
  v_at := to_char(p_now at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || case
         when extract(microseconds from p_now)::bigint % 1000000 = 0 then ''
         when extract(microseconds from p_now)::bigint % 1000 = 0 then to_char(p_now at time zone 'UTC', '.MS')
         else to_char(p_now at time zone 'UTC', '.US')
       end
    || 'Z';

  -- Another viewer's minimum (the lowest watermark among everyone but them) can move only if the caller was
  -- at it: with two other participants at or below the caller's old watermark, every other viewer still
  -- sees one of them. Up to two rows read (a full read only while fewer exist).
  -- Each only when that watermark moved (and read state is shared, for reads).
  if v_delivered <> v_old_delivered then
    select count(*) into v_low_delivered from (
      select 1 from conversation_participants p
      where p.conversation_id = p_conversation_id and p.left_at is null and p.user_id <> p_user_id
        and p.last_delivered_seq <= v_old_delivered
      limit 2
    ) t;
  end if;
  if v_shared and v_read <> v_old_read then
    select count(*) into v_low_read from (
      select 1 from conversation_participants p
      where p.conversation_id = p_conversation_id and p.left_at is null and p.user_id <> p_user_id
        and p.last_read_seq <= v_old_read
      limit 2
    ) t;
  end if;

  if (v_delivered = v_old_delivered or v_low_delivered >= 2) and (not v_shared or v_read = v_old_read or v_low_read >= 2) then
    -- Nobody else is told. The caller's own devices are, when the caller's read watermark moved (0026): with
    -- the others' minimums, which the caller's move does not change.
    select case when v_read <> v_old_read then jsonb_build_array(jsonb_build_object(
             'viewer', p_user_id,
             'delivered_all', coalesce(min(p.last_delivered_seq), 0),
             'read_all', case when v_shared then coalesce(min(p.last_read_seq), 0) else 0 end,
             'read_seq', v_read)) else '[]'::jsonb end
      into v_updates
    from conversation_participants p
    where p.conversation_id = p_conversation_id and p.left_at is null and p.user_id <> p_user_id;
  else
    -- Everyone's watermarks before this mark (the caller's row is already raised: its old values).
    select jsonb_agg(jsonb_build_object(
             'user_id', p.user_id,
             'last_delivered_seq', (case when p.user_id = p_user_id then v_old_delivered else p.last_delivered_seq end)::text,
             'last_read_seq', (case when p.user_id = p_user_id then v_old_read else p.last_read_seq end)::text
           ) order by p.joined_at, p.user_id)
      into v_before
    from conversation_participants p
    where p.conversation_id = p_conversation_id and p.left_at is null;

    -- Each viewer's "everyone else" minimum from the two smallest values and how often the smallest occurs
    -- (linear in the group's size): the viewer's own value is excluded only when it alone is the smallest.
    with people as (
      select (x->>'user_id')::uuid as user_id,
             (x->>'last_delivered_seq')::bigint as d0, (x->>'last_read_seq')::bigint as r0,
             case when (x->>'user_id')::uuid = p_user_id then v_delivered else (x->>'last_delivered_seq')::bigint end as d1,
             case when (x->>'user_id')::uuid = p_user_id then v_read else (x->>'last_read_seq')::bigint end as r1
      from jsonb_array_elements(v_before) x
    ),
    stats as (
      select count(*) as n,
        min(d0) as d0m, min(r0) as r0m, min(d1) as d1m, min(r1) as r1m
      from people
    ),
    stats2 as (
      select s.*,
        (select count(*) from people q where q.d0 = s.d0m) as d0c, (select min(q.d0) from people q where q.d0 > s.d0m) as d0n,
        (select count(*) from people q where q.r0 = s.r0m) as r0c, (select min(q.r0) from people q where q.r0 > s.r0m) as r0n,
        (select count(*) from people q where q.d1 = s.d1m) as d1c, (select min(q.d1) from people q where q.d1 > s.d1m) as d1n,
        (select count(*) from people q where q.r1 = s.r1m) as r1c, (select min(q.r1) from people q where q.r1 > s.r1m) as r1n
      from stats s
    ),
    mins as (
      select q.user_id,
        case when s.n = 1 then 0 when q.d0 = s.d0m and s.d0c = 1 then s.d0n else s.d0m end as d_before,
        case when s.n = 1 then 0 when q.r0 = s.r0m and s.r0c = 1 then s.r0n else s.r0m end as r_before,
        case when s.n = 1 then 0 when q.d1 = s.d1m and s.d1c = 1 then s.d1n else s.d1m end as d_after,
        case when s.n = 1 then 0 when q.r1 = s.r1m and s.r1c = 1 then s.r1n else s.r1m end as r_after
      from people q, stats2 s
    ),
    updates as (
      select m.user_id as viewer,
        m.d_after as delivered_all,
        case when v_shared then m.r_after else 0 end as read_all,
        case when m.user_id = p_user_id or v_shared then v_read else 0 end as read_seq
      from mins m
      where (m.user_id = p_user_id and v_read <> v_old_read)
         or (m.user_id <> p_user_id and (m.d_after <> m.d_before or (v_shared and m.r_after <> m.r_before)))
    )
    select jsonb_agg(jsonb_build_object('viewer', u.viewer, 'delivered_all', u.delivered_all, 'read_all', u.read_all,
                                        'read_seq', u.read_seq))
      into v_updates
    from updates u;
  end if;

  with updates as (
    select u.viewer, u.delivered_all, u.read_all, u.read_seq
    from jsonb_to_recordset(v_updates) as u(viewer uuid, delivered_all bigint, read_all bigint, read_seq bigint)
  ),
  bumped as (
    insert into inbox_positions as ip (user_id, last_position)
    select u.viewer, 1 from updates u order by u.viewer
    on conflict (user_id) do update set last_position = ip.last_position + 1
    returning ip.user_id, ip.last_position
  ),
  appended as (
    insert into inbox (user_id, position, event_type, conversation_id, message_id, payload, created_at)
    select b.user_id, b.last_position, 'receipt_updated', p_conversation_id, null,
      jsonb_build_object('event', jsonb_build_object('at', v_at, 'receiptUpdated', jsonb_strip_nulls(jsonb_build_object(
        'conversationId', p_conversation_id::text,
        'userId', p_user_id::text,
        'lastDeliveredSeq', nullif(v_delivered, 0)::text,
        'lastReadSeq', nullif(u.read_seq, 0)::text,
        'deliveredToAllSeq', nullif(u.delivered_all, 0)::text,
        'readByAllSeq', nullif(u.read_all, 0)::text
      )))),
      p_now
    from bumped b join updates u on u.viewer = b.user_id
    order by b.user_id
    returning user_id, position
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'viewer', a.user_id, 'position', a.position::text, 'delivered_all', u.delivered_all::text,
           'read_all', u.read_all::text, 'read_seq', u.read_seq::text) order by a.user_id), '[]'::jsonb)
    into v_updates
  from appended a join updates u on u.viewer = a.user_id;

  return query select 'marked', v_last_seq, v_delivered, v_read, v_shared, v_updates;
end
$fn$;
