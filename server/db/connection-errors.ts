/** Socket errors that mean the peer is unreachable or went away (not that the request was wrong). */
const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * SQLSTATEs outside class 08 (connection exception) that also mean "the
 * server cannot serve you now": shut down by an admin or a crash, starting up,
 * out of connection slots.
 */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300"]);

/** What pg and pg-pool say (without a code) when a connection ends or cannot be had in time. */
const CONNECTION_MESSAGES =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Cannot use a pool after calling end on the pool)/;

/**
 * True when `err` (or an error in its cause chain) says PostgreSQL could not
 * be reached or dropped the connection, so the same request can succeed once
 * it is back: the RPC answers Unavailable rather than Internal, the worker
 * holds its batch, and the start-up wait retries. A statement PostgreSQL
 * refused (syntax, constraint, data) is not one of these.
 */
export function isConnectionError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (typeof e !== "object") return false;
    const { code, message, errors, cause } = e as { code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
    if (typeof code === "string") {
      if (SOCKET_CODES.has(code) || code.startsWith("08") || UNAVAILABLE_SQLSTATES.has(code)) return true;
    }
    if (typeof message === "string" && CONNECTION_MESSAGES.test(message)) return true;
    // Node's happy-eyeballs connect fails with an AggregateError of one error per address.
    if (Array.isArray(errors) && errors.length > 0 && errors.every((x) => isConnectionError(x))) return true;
    e = cause;
  }
  return false;
}
