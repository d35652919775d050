-- Who may hear p_subject_id's presence changes, before privacy: the users with a
-- direct conversation with them (group members are not peers for presence) or who
-- have them as a contact, each with what the last-seen rule decides on (the server
-- applies it: privacy-store allowedAudience, domain/privacy.ts allows()).
create or replace function chatwire_presence_audience(p_subject_id uuid)
returns table (viewer uuid, is_contact boolean, blocked boolean, last_seen text)
language sql stable as $$
  with candidates as (
    select other.user_id as viewer
    from conversation_participants mine
    join conversation_participants other on other.conversation_id = mine.conversation_id
    join conversations c on c.id = mine.conversation_id
    where c.is_group = false and mine.user_id = p_subject_id and mine.left_at is null
      and other.left_at is null and other.user_id <> p_subject_id
    union
    select user_id from contacts where contact_user_id = p_subject_id
  )
  select c.viewer,
    exists (select 1 from contacts k where k.user_id = p_subject_id and k.contact_user_id = c.viewer),
    exists (
      select 1 from blocked_users b
      where (b.blocker_id = p_subject_id and b.blocked_id = c.viewer) or (b.blocker_id = c.viewer and b.blocked_id = p_subject_id)
    ),
    (select p.last_seen from privacy_settings p where p.user_id = p_subject_id)
  from candidates c
$$;
