-- Trigger function of inbox_cascade on messages (statement level, after delete):
-- deletes the inbox rows of the deleted messages, as ON DELETE CASCADE on
-- inbox.message_id did (migrations/0008_inbox_cascade_triggers.ts).
create or replace function chatwire_inbox_cascade_messages() returns trigger language plpgsql as $fn$
begin
  delete from inbox i using gone g where i.message_id = g.id;
  return null;
end
$fn$;
