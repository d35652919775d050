import type { Kysely, Transaction } from "kysely";
import type { Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

// Answers of mutating RPCs by request key (client_request_id, or a natural key
// such as a deleted status's id), kept REQUEST_ANSWER_TTL_MS so a retry after a
// lost answer gets the first answer and causes nothing twice.

/** How long an answer is kept: a client retries within this. */
const REQUEST_ANSWER_TTL_MS = 24 * 3600 * 1000;

export interface RequestKey {
  /** A user id, or a phone number before there is a user. */
  owner: string;
  /** e.g. "status.StatusService/CreateStatus". */
  rpc: string;
  key: string;
}

/** The kept answer of a request, if any (and not older than the TTL). */
export async function findAnswer(db: Db, k: RequestKey, now: Date): Promise<Uint8Array | undefined> {
  const row = await db
    .selectFrom("request_answers")
    .select("answer")
    .where("owner", "=", k.owner)
    .where("rpc", "=", k.rpc)
    .where("request_key", "=", k.key)
    .where("created_at", ">", new Date(now.getTime() - REQUEST_ANSWER_TTL_MS))
    .executeTakeFirst();
  return row?.answer;
}

/**
 * Claims the key inside the transaction that does the work: true when this
 * request is the first. A concurrent request with the same key waits on the
 * primary key until the first commits (then sees its answer with findAnswer)
 * or rolls back (then it is the first). A row older than the TTL is taken over.
 */
export async function claimKey(trx: Transaction<Database>, k: RequestKey, now: Date): Promise<boolean> {
  const cutoff = new Date(now.getTime() - REQUEST_ANSWER_TTL_MS);
  const row = await trx
    .insertInto("request_answers")
    .values({ owner: k.owner, rpc: k.rpc, request_key: k.key, answer: new Uint8Array(), created_at: now })
    .onConflict((oc) =>
      oc.columns(["owner", "rpc", "request_key"]).doUpdateSet({ answer: new Uint8Array(), created_at: now }).where("request_answers.created_at", "<=", cutoff),
    )
    .returning("owner")
    .executeTakeFirst();
  return row !== undefined;
}

/** Records the answer of a claimed key (same transaction as the claim). */
export async function saveAnswer(trx: Transaction<Database>, k: RequestKey, answer: Uint8Array): Promise<void> {
  await trx.updateTable("request_answers").set({ answer }).where("owner", "=", k.owner).where("rpc", "=", k.rpc).where("request_key", "=", k.key).execute();
}

/** Deletes answers past the TTL (the periodic prune). */
export async function pruneRequestAnswers(db: Db, now: Date): Promise<number> {
  const res = await db
    .deleteFrom("request_answers")
    .where("created_at", "<=", new Date(now.getTime() - REQUEST_ANSWER_TTL_MS))
    .executeTakeFirst();
  return Number(res.numDeletedRows);
}
