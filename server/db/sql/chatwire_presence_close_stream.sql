-- Unregisters a Subscribe stream in one round trip (presence-store closeStream);
-- when it was the user's last live one, stores last_seen_at and returns
-- went_offline (with who may hear it). A stream already removed (evicted: that
-- eviction's caller accounted for it) does not take the user offline.
create or replace function chatwire_presence_close_stream(p_stream_id uuid, p_user_id uuid, p_now timestamptz)
returns table (went_offline boolean, audience jsonb)
language plpgsql as $$
begin
  went_offline := false;
  perform 1 from users where id = p_user_id for update;
  delete from presence_streams where stream_id = p_stream_id;
  if found and not exists (select 1 from presence_streams where user_id = p_user_id and expires_at > p_now) then
    update users set last_seen_at = p_now where id = p_user_id;
    went_offline := true;
    select coalesce(jsonb_agg(to_jsonb(a)), '[]') into audience from chatwire_presence_audience(p_user_id) a;
  end if;
  return next;
end
$$;
