import { sql, type Kysely } from "kysely";
import { applySqlFunctions } from "../server/db/sql-functions.js";

// The inbox is the hottest insert of the message path: one row per recipient
// of every message (1,024 for a message to a full group). Its three foreign
// keys each cost a per-row check on insert (about 60 % of storing a group
// message), although the only writers insert rows for current participants of
// a conversation they hold locked and for a message they just inserted.
//
// What the keys did on delete stays: a statement-level trigger on each parent
// deletes its inbox rows (as ON DELETE CASCADE did), once per statement; the
// trigger functions are defined in server/db/sql/.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table inbox
    drop constraint inbox_user_id_fkey,
    drop constraint inbox_conversation_id_fkey,
    drop constraint inbox_message_id_fkey`.execute(db);
  for (const parent of ["users", "conversations", "messages"]) {
    await applySqlFunctions(db, [`chatwire_inbox_cascade_${parent}`]);
    await sql
      .raw(
        `create trigger inbox_cascade after delete on ${parent}
        referencing old table as gone for each statement execute function chatwire_inbox_cascade_${parent}()`,
      )
      .execute(db);
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const parent of ["users", "conversations", "messages"]) {
    await sql.raw(`drop trigger inbox_cascade on ${parent}`).execute(db);
    await sql.raw(`drop function chatwire_inbox_cascade_${parent}()`).execute(db);
  }
  await sql`alter table inbox
    add constraint inbox_user_id_fkey foreign key (user_id) references users (id) on delete cascade,
    add constraint inbox_conversation_id_fkey foreign key (conversation_id) references conversations (id) on delete cascade,
    add constraint inbox_message_id_fkey foreign key (message_id) references messages (id) on delete cascade`.execute(db);
}
