-- Registers a Subscribe stream in one round trip (presence-store openStream);
-- returns whether the user just came online (and then who may hear it, as
-- chatwire_presence_audience rows in JSON), the streams beyond p_max_streams
-- (oldest first; their rows are already deleted), and the user's inbox bounds
-- read after the registration. Under the user's row lock; each statement with
-- a fresh snapshot (READ COMMITTED), so what another instance committed while
-- this one waited for the lock is seen.
create or replace function chatwire_presence_open_stream(
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
    select coalesce(jsonb_agg(to_jsonb(a)), '[]') into audience from chatwire_presence_audience(p_user_id) a;
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
$$;
