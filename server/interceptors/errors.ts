import { Code, ConnectError } from "@connectrpc/connect";
import { isConnectionError } from "../db/connection-errors.js";
import { QueueUnavailableError } from "../messaging/message-queue.js";
import { isNatsUnavailableError } from "../messaging/nats.js";

/**
 * The one place a throw that is not a ConnectError gets its code, for
 * connect-node (through the observability interceptor) and the fast path alike:
 * a dependency that cannot be reached (PostgreSQL, NATS) is Unavailable (retry later), a
 * cancelled call Canceled, a transaction PostgreSQL rolled back in a deadlock Aborted (retry
 * now), anything else a bug (Internal, without our internals).
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof Error && err.name === "AbortError") return new ConnectError("request canceled", Code.Canceled);
  if (isConnectionError(err)) {
    // pg-pool says the same "timeout exceeded when trying to connect" whether PostgreSQL is down or every pooled
    // connection stayed busy for the connect timeout (an overloaded server): the message names both.
    const busy = err instanceof Error && err.message.startsWith("timeout exceeded when trying to connect");
    const what = busy ? "the database is unreachable or too busy right now (no connection within the timeout)" : "the database cannot be reached right now";
    return new ConnectError(
      `${what}; retry shortly (a retry of SendMessage with the same client_message_id is safe)`,
      Code.Unavailable,
      undefined,
      undefined,
      err,
    );
  }
  if (err instanceof QueueUnavailableError || isNatsUnavailableError(err)) {
    return new ConnectError(
      "messaging (NATS) cannot be reached right now; retry shortly (a retry of SendMessage with the same client_message_id is safe)",
      Code.Unavailable,
      undefined,
      undefined,
      err,
    );
  }
  if (isConcurrencyConflict(err)) {
    return new ConnectError(
      "a concurrent change to the same data conflicted with this call and it was rolled back; retry it (every mutating call is safe to retry)",
      Code.Aborted,
      undefined,
      undefined,
      err,
    );
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** PostgreSQL rolled the transaction back for another's sake (deadlock_detected, serialization_failure): the same call can succeed now. */
function isConcurrencyConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "40P01" || code === "40001";
}
