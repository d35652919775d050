-- Trigger function of inbox_cascade on conversations (statement level, after delete):
-- deletes the inbox rows of the deleted conversations, as ON DELETE CASCADE on
-- inbox.conversation_id did (migrations/0008_inbox_cascade_triggers.ts).
create or replace function chatwire_inbox_cascade_conversations() returns trigger language plpgsql as $fn$
begin
  delete from inbox i using gone g where i.conversation_id = g.id;
  return null;
end
$fn$;
