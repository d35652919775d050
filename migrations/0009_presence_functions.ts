import { sql, type Kysely } from 'kysely';

// Opening and closing a Subscribe stream in one round trip each. The steps
// are those the server used to send one by one inside a transaction (lock
// the user's row, drop expired rows, insert / delete the stream's row, count
// what is left); as one function call they run in the call's own transaction,
// each statement with a fresh snapshot (READ COMMITTED), so what another
// instance committed while this one waited for the row lock is seen, as before.
export async function up(db: Kysely<any>): Promise<void> {
  // Who may hear p_subject_id's presence changes, before privacy: the users with a
  // direct conversation with them (group members are not peers for presence) or who
  // have them as a contact, each with what the last-seen rule decides on (the server
  // applies it: domain/privacy.ts allows()).
  await sql`
    create function presence_audience(p_subject_id uuid)
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
    $$
  `.execute(db);

  // Registers a stream; returns whether the user just came online (and then who
  // may hear it, as presence_audience rows in JSON), the streams beyond
  // p_max_streams (oldest first; their rows are already deleted), and the
  // user's inbox bounds read after the registration.
  await sql`
    create function presence_open_stream(
      p_stream_id uuid, p_user_id uuid, p_session_id uuid, p_instance_id text,
      p_now timestamptz, p_expires_at timestamptz, p_max_streams int
    ) returns table (came_online boolean, audience jsonb, evicted uuid[], last_position bigint, pruned_through bigint)
    language plpgsql as $$
    declare
      live int;
    begin
      perform 1 from users where id = p_user_id for update;
      delete from presence_streams where user_id = p_user_id and expires_at <= p_now;
      insert into presence_streams (stream_id, user_id, session_id, instance_id, opened_at, expires_at)
        values (p_stream_id, p_user_id, p_session_id, p_instance_id, p_now, p_expires_at);
      select count(*) into live from presence_streams where user_id = p_user_id;
      came_online := live = 1;
      if came_online then
        select coalesce(jsonb_agg(to_jsonb(a)), '[]') into audience from presence_audience(p_user_id) a;
      end if;
      -- The new stream stays; the oldest of the others make room.
      select coalesce(array_agg(o.stream_id order by o.serial), '{}') into evicted from (
        select stream_id, serial from presence_streams
        where user_id = p_user_id and stream_id <> p_stream_id
        order by serial limit greatest(0, live - p_max_streams)
      ) o;
      if cardinality(evicted) > 0 then
        delete from presence_streams where stream_id = any(evicted);
      end if;
      select coalesce(max(p.last_position), 0), coalesce(max(p.pruned_through), 0) into last_position, pruned_through
        from inbox_positions p where p.user_id = p_user_id;
      return next;
    end
    $$
  `.execute(db);

  // Unregisters a stream; when it was the user's last live one, stores
  // last_seen_at and returns went_offline (with who may hear it). A stream
  // already removed (evicted: that eviction's caller accounted for it) does not
  // take the user offline.
  await sql`
    create function presence_close_stream(p_stream_id uuid, p_user_id uuid, p_now timestamptz)
    returns table (went_offline boolean, audience jsonb)
    language plpgsql as $$
    begin
      went_offline := false;
      perform 1 from users where id = p_user_id for update;
      delete from presence_streams where stream_id = p_stream_id;
      if found and not exists (select 1 from presence_streams where user_id = p_user_id and expires_at > p_now) then
        update users set last_seen_at = p_now where id = p_user_id;
        went_offline := true;
        select coalesce(jsonb_agg(to_jsonb(a)), '[]') into audience from presence_audience(p_user_id) a;
      end if;
      return next;
    end
    $$
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function presence_close_stream(uuid, uuid, timestamptz)`.execute(db);
  await sql`drop function presence_open_stream(uuid, uuid, uuid, text, timestamptz, timestamptz, int)`.execute(db);
  await sql`drop function presence_audience(uuid)`.execute(db);
}
