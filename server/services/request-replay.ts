import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Transaction } from "kysely";
import type { AppContext } from "../context.js";
import { claimKey, findAnswer, saveAnswer, type RequestKey } from "../db/request-store.js";
import type { Database } from "../db/schema.js";
import { bad } from "./rpc-input.js";

// The client_request_id mechanism for mutating RPCs that have no natural
// idempotency: the first request with a key does the work and its answer is
// kept (request_answers, 24 h); a retry with the key gets that answer and
// causes nothing, however the first one's answer was lost.

const MAX_REQUEST_ID = 64;

/** A client_request_id field, trimmed; undefined when empty. InvalidArgument when too long. */
export function requestIdField(value: string, field = "client_request_id"): string | undefined {
  const v = value.trim();
  if (v.length > MAX_REQUEST_ID) throw bad(`${field}: at most ${MAX_REQUEST_ID} characters`);
  return v === "" ? undefined : v;
}

/**
 * Runs `work` in a transaction once per key. `work` returns the answer and,
 * optionally, what to do after the commit (announcements); a retry gets the
 * kept answer and runs neither. Without a key, `work` simply runs.
 */
export async function oncePerKey<S extends DescMessage>(
  ctx: AppContext,
  key: RequestKey | undefined,
  schema: S,
  work: (trx: Transaction<Database>) => Promise<{ answer: MessageShape<S>; after?: () => Promise<void> | void }>,
): Promise<MessageShape<S>> {
  const db = ctx.database.db;
  const now = ctx.clock.now();
  if (key) {
    const kept = await findAnswer(db, key, now);
    if (kept) return fromBinary(schema, kept);
  }
  const done = await db.transaction().execute(async (trx) => {
    if (key && !(await claimKey(trx, key, now))) return undefined;
    const out = await work(trx);
    if (key) await saveAnswer(trx, key, toBinary(schema, out.answer));
    return out;
  });
  if (!done) {
    // A concurrent request with the same key committed first.
    const kept = await findAnswer(db, key!, now);
    if (kept) return fromBinary(schema, kept);
    throw new ConnectError("a request with this client_request_id is in progress; retry", Code.Aborted);
  }
  await done.after?.();
  return done.answer;
}
