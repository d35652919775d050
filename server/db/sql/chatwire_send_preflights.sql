-- Several SendMessage preflights in one round trip (server/db/conversation-store.ts
-- sendPreflight, when calls arrive while others run: server/db/call-coalescer.ts).
-- Input elements: { o: index, c: conversation id, s: sender id, k: client message id };
-- each comes back as chatwire_send_preflight answers it, with its index, in order.
-- Reads only, so one snapshot for all of them changes nothing a caller can tell.
create or replace function chatwire_send_preflights(p_items jsonb)
returns table (
  o int, participant boolean, left_at timestamptz, other_id uuid, i_blocked boolean, blocked_me boolean,
  existing_conversation_id uuid, admins_only boolean
)
language plpgsql stable
set plan_cache_mode = force_generic_plan
as $fn$
#variable_conflict use_column
begin
  return query
  select x.o, p.*
  from jsonb_to_recordset(p_items) as x(o int, c uuid, s uuid, k text)
  cross join lateral chatwire_send_preflight(x.c, x.s, x.k) p
  order by x.o;
end
$fn$;
