import { sql, type Kysely } from "kysely";
import { applySqlFunctions, readSqlFunction } from "../server/db/sql-functions.js";

// The database functions' definitions moved to server/db/sql/ (one file each;
// README.md there). This brings existing databases to them: the presence
// functions take the chatwire_ prefix every other function has (dropped under
// their old names, created under the new), and every file is applied.
const RENAMED = [
  ["presence_close_stream", "(uuid, uuid, timestamptz)"],
  ["presence_open_stream", "(uuid, uuid, uuid, text, timestamptz, timestamptz, int)"],
  ["presence_audience", "(uuid)"],
] as const;

export async function up(db: Kysely<any>): Promise<void> {
  // A database created from the current migrations never had the old names.
  for (const [name, args] of RENAMED) await sql.raw(`drop function if exists ${name}${args}`).execute(db);
  await applySqlFunctions(db);
}

// Back to the old names, same bodies.
export async function down(db: Kysely<any>): Promise<void> {
  for (const [name] of [...RENAMED].reverse()) {
    const text = await readSqlFunction(`chatwire_${name}`);
    await sql.raw(text.replaceAll("chatwire_presence_", "presence_")).execute(db);
  }
  for (const [name, args] of RENAMED) await sql.raw(`drop function chatwire_${name}${args}`).execute(db);
}
