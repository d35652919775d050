import { sql, type Kysely } from 'kysely';

// Opening and closing a Subscribe stream in one round trip each. The steps
// are those the server used to send one by one inside a transaction (lock
// the user's row, drop expired rows, insert / delete the stream's row, count
// what is left); as one function call they run in the call's own transaction,
// each statement with a fresh snapshot (READ COMMITTED), so what another
// instance committed while this one waited for the row lock is seen, as before.
export async function up(db: Kysely<any>): Promise<void> {
  // Registers a stream; returns whether the user just came online, the streams
  // beyond p_max_streams (oldest first; their rows are already deleted), and
  // the user's inbox bounds read after the registration.
  await sql`
    create function presence_open_stream(
      p_stream_id uuid, p_user_id uuid, p_session_id uuid, p_instance_id text,
      p_now timestamptz, p_expires_at timestamptz, p_max_streams int
    ) returns table (came_online boolean, evicted uuid[], last_position bigint, pruned_through bigint)
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
  // last_seen_at and returns true (went offline). A stream already removed
  // (evicted: that eviction's caller accounted for it) returns false.
  await sql`
    create function presence_close_stream(p_stream_id uuid, p_user_id uuid, p_now timestamptz)
    returns boolean
    language plpgsql as $$
    begin
      perform 1 from users where id = p_user_id for update;
      delete from presence_streams where stream_id = p_stream_id;
      if not found then
        return false;
      end if;
      if exists (select 1 from presence_streams where user_id = p_user_id and expires_at > p_now) then
        return false;
      end if;
      update users set last_seen_at = p_now where id = p_user_id;
      return true;
    end
    $$
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function presence_close_stream(uuid, uuid, timestamptz)`.execute(db);
  await sql`drop function presence_open_stream(uuid, uuid, uuid, text, timestamptz, timestamptz, int)`.execute(db);
}
