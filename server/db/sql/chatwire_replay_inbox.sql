-- One page of a user's stored events for Subscribe's replay (server/realtime/replay.ts, through
-- inbox-store.ts readReplayPage) in one round trip: the inbox rows after p_after (up to p_up_to when given),
-- oldest first, at most p_limit, each message event (event_type in p_message_events, realtime/events.ts
-- MESSAGE_EVENTS) with the message as it is now and what its wire form needs. What is shown and how stays in
-- TypeScript (domain/message-view.ts toMessage, domain/privacy.ts readStateShared, the expiry against the
-- caller's clock); this function only reads, in one snapshot, what those read with six statements before.
--
-- m_*: the message (all null when it is gone, or the row is not a message event). r_reactions: the message's
-- reactions, [{emoji, user_id}] ordered as history-store.ts reactionsOf orders them (null when none). q_*: the
-- status it quotes (status_replies). c_*: per conversation, only on the page's first row of each (c_first):
-- c_left whether the user left it (then c_left_view, their participation's left_view, and c_people is null),
-- else c_people, the current participants [{user_id, joined_seq, last_delivered_seq, last_read_seq}] (seqs as
-- text) ordered as conversation-store.ts currentParticipants; c_is_group, and for a direct conversation
-- c_read_receipts, every participant's read_receipts setting (null when unset), as privacy-store.ts
-- readStateSharedIn reads them.
create or replace function chatwire_replay_inbox(
  p_user_id uuid, p_after bigint, p_up_to bigint, p_limit integer, p_message_events text[]
)
returns table (
  r_position bigint, r_event_type text, r_payload jsonb, r_created_at timestamptz,
  m_id uuid, m_conversation_id uuid, m_seq bigint, m_kind text, m_sender_id uuid, m_client_message_id text,
  m_content text, m_media_url text, m_media_type text, m_reply_to_message_id uuid, m_mention_user_ids jsonb,
  m_system_event text, m_system_user_ids jsonb, m_created_at timestamptz, m_edited_at timestamptz,
  m_deleted_at timestamptz, m_expires_at timestamptz, m_forward_count integer, m_pinned_at timestamptz,
  m_pinned_by uuid,
  r_reactions jsonb, q_status_id uuid, q_author_id uuid, q_content_type text, q_content text,
  c_first boolean, c_left boolean, c_left_view jsonb, c_people jsonb, c_is_group boolean, c_read_receipts jsonb
)
language plpgsql stable
-- One generic plan per connection: the parameters never change the best plan (the inbox's primary key range).
set plan_cache_mode = force_generic_plan
as $fn$
begin
  return query
  with page as materialized (
    select i.position, i.event_type, i.message_id, i.payload, i.created_at
    from inbox i
    where i.user_id = p_user_id and i.position > p_after and (p_up_to is null or i.position <= p_up_to)
    order by i.position
    limit p_limit
  ), shown as (
    select pg.position, pg.event_type, pg.payload, pg.created_at as at,
      m.id, m.conversation_id, m.seq, m.kind, m.sender_id, m.client_message_id,
      m.content, m.media_url, m.media_type, m.reply_to_message_id, m.mention_user_ids,
      m.system_event, m.system_user_ids, m.created_at, m.edited_at,
      m.deleted_at, m.expires_at, m.forward_count, m.pinned_at, m.pinned_by,
      m.id is not null and row_number() over (partition by m.conversation_id order by pg.position) = 1 as is_first
    from page pg
    left join messages m on m.id = pg.message_id and pg.event_type = any (p_message_events)
  )
  select s.position, s.event_type, s.payload, s.at,
    s.id, s.conversation_id, s.seq, s.kind, s.sender_id, s.client_message_id,
    s.content, s.media_url, s.media_type, s.reply_to_message_id, s.mention_user_ids,
    s.system_event, s.system_user_ids, s.created_at, s.edited_at,
    s.deleted_at, s.expires_at, s.forward_count, s.pinned_at,
    s.pinned_by,
    case when s.id is not null then (
      select jsonb_agg(jsonb_build_object('emoji', r.emoji, 'user_id', r.user_id) order by r.created_at, r.user_id)
      from message_reactions r where r.message_id = s.id
    ) end,
    q.status_id, q.status_author_id, q.status_content_type, q.status_content,
    s.is_first, cv.left_it, cv.left_view, case when not cv.left_it then cv.people end,
    c.is_group,
    case when s.is_first and not c.is_group then (
      select jsonb_agg(ps.read_receipts)
      from conversation_participants p left join privacy_settings ps on ps.user_id = p.user_id
      where p.conversation_id = s.conversation_id
    ) end
  from shown s
  left join status_replies q on q.message_id = s.id
  -- Per conversation, one scan of its participants (the primary key's prefix, whatever the statistics say: a
  -- join on (conversation_id, user_id) was planned as a filter after the user_id index, every participation of a
  -- user in thousands of conversations read again for each conversation).
  left join lateral (
    select
      coalesce(bool_or(p.user_id = p_user_id and p.left_at is not null), false) as left_it,
      (array_agg(p.left_view) filter (where p.user_id = p_user_id and p.left_at is not null))[1] as left_view,
      jsonb_agg(jsonb_build_object(
        'user_id', p.user_id, 'joined_seq', p.joined_seq::text,
        'last_delivered_seq', p.last_delivered_seq::text, 'last_read_seq', p.last_read_seq::text
      ) order by p.joined_at, p.user_id) filter (where p.left_at is null) as people
    from conversation_participants p
    where s.is_first and p.conversation_id = s.conversation_id
  ) cv on true
  left join conversations c on s.is_first and c.id = s.conversation_id
  order by s.position;
end
$fn$;
