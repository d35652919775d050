import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { firstRefusingGroupAdd } from "../db/privacy-store.js";
import type { Database } from "../db/schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/**
 * Putting users into a group (creating it with them, or AddParticipants):
 * each one's "who may add me to groups" setting must let the adder.
 * PermissionDenied names the first who refuses, not why (whether the adder is
 * in their contacts stays theirs).
 */
export async function requireGroupAddAllowed(db: Db, adder: string, userIds: readonly string[]): Promise<void> {
  const refused = await firstRefusingGroupAdd(db, adder, userIds);
  if (refused) {
    throw new ConnectError(`user ${refused}'s privacy settings do not let you add them to groups; message them instead`, Code.PermissionDenied);
  }
}
