-- Trigger function of inbox_cascade on users (statement level, after delete):
-- deletes the inbox rows of the deleted users, as ON DELETE CASCADE on
-- inbox.user_id did (migrations/0008_inbox_cascade_triggers.ts).
create or replace function chatwire_inbox_cascade_users() returns trigger language plpgsql as $fn$
begin
  delete from inbox i using gone g where i.user_id = g.id;
  return null;
end
$fn$;
