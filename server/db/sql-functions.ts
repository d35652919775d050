import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { sql, type Kysely } from "kysely";

/**
 * A database function whose definition is the file server/db/sql/<name>.sql
 * (how they are shipped: server/db/sql/README.md).
 */
export interface SqlFunction {
  name: string;
  /** sha256 of the definition as last shipped (definitionHash); the drift test fails when the file no longer matches. */
  sha256: string;
  /** The migration that last applied the file to existing databases. */
  shippedBy: string;
}

/** Every function, in the order they are created: one before those that call it. */
export const SQL_FUNCTIONS: readonly SqlFunction[] = [
  { name: "chatwire_store_messages", sha256: "16f63b0651fab5bc0b9036c8900ab59b7f9b6f928f35045255560c6574bdaeb7", shippedBy: "0027_timer_at_send" },
  { name: "chatwire_send_preflight", sha256: "c3b88fc3b11dafa58af1e88e63d8360b42caa352db0eb3b1a1b8c2f069323450", shippedBy: "0027_timer_at_send" },
  { name: "chatwire_inbox_cascade_users", sha256: "15e7133cfd9f579542dac80e658668f2859c0cb94ea49d17fbebcee52faefc74", shippedBy: "0013_sql_functions" },
  { name: "chatwire_inbox_cascade_conversations", sha256: "601b322f544a9a867ed126e5b0866c8f31a22762d9844282efb9862b5eff6523", shippedBy: "0013_sql_functions" },
  { name: "chatwire_inbox_cascade_messages", sha256: "ff6f310dae57042cee908e93393894595739801b95951fe5e4f41d52c4c4af15", shippedBy: "0013_sql_functions" },
  { name: "chatwire_presence_audience", sha256: "f247892ddda5328f97bb257014da4f6433358054853a30d58eba51434c3c6075", shippedBy: "0013_sql_functions" },
  { name: "chatwire_presence_open_stream", sha256: "89a4c872ae034ba3304311325e4faf27fe04731b178d30823d562c7d8f150af2", shippedBy: "0013_sql_functions" },
  { name: "chatwire_presence_close_stream", sha256: "c6dc52c39392c674d292d98514be2d6e2342439844ae0122513cb77ac95d11be", shippedBy: "0013_sql_functions" },
  { name: "chatwire_mark_receipts", sha256: "4cfee3866edc82dad3f24e299f44fb9d0ba714bc2df79b36b36bfb76ed17e6cc", shippedBy: "0026_mark_receipts_cost" },
  { name: "chatwire_mark_receipts_many", sha256: "9d40cebe06fe5fa81fe2cc6891ea481d9825c0da909e2407159d79e0cd2ff8b2", shippedBy: "0026_mark_receipts_cost" },
  { name: "chatwire_push_targets", sha256: "0488cdbae35b95fa1c6d99edd664fc47304e5ad8e824f9d1767d0200b1e37739", shippedBy: "0023_generic_plans" },
  { name: "chatwire_replay_inbox", sha256: "257b984231ea3a9a79cd5ab368f840b6c398451b5273d80011cabcee865fd8f2", shippedBy: "0024_replay_inbox" },
];

// Beside this module: server/db/sql/ under tsx and vitest, dist/server/db/sql/
// when compiled (`npm run build` copies the .sql files there).
const SQL_DIR = new URL("./sql/", import.meta.url);

/** The text of server/db/sql/<name>.sql. */
export async function readSqlFunction(name: string): Promise<string> {
  if (!SQL_FUNCTIONS.some((f) => f.name === name)) throw new Error(`unknown SQL function ${name}: list it in SQL_FUNCTIONS (server/db/sql-functions.ts)`);
  const url = new URL(`${name}.sql`, SQL_DIR);
  try {
    return await readFile(url, "utf8");
  } catch (err) {
    throw new Error(`cannot read the definition of ${name} at ${fileURLToPath(url)} (npm run build copies server/db/sql/*.sql into dist/)`, {
      cause: err,
    });
  }
}

/** sha256 of a file's definition: its text from the first line that is not a `--` comment, with LF line ends. */
export function definitionHash(text: string): string {
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  const first = lines.findIndex((l) => !l.startsWith("--"));
  return createHash("sha256").update(lines.slice(first).join("\n")).digest("hex");
}

/**
 * Creates or replaces the named functions (default: all, in SQL_FUNCTIONS
 * order) from their files, in the caller's migration transaction. Bodies are
 * not checked against the schema at creation (as pg_dump restores them): an
 * early migration applies the current definition, which may refer to tables
 * a later migration creates.
 */
export async function applySqlFunctions(db: Kysely<any>, names: readonly string[] = SQL_FUNCTIONS.map((f) => f.name)): Promise<void> {
  await sql`set local check_function_bodies = off`.execute(db);
  for (const name of names) {
    await sql.raw(await readSqlFunction(name)).execute(db);
  }
}
