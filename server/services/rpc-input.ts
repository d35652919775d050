import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { callerKey, type Caller } from "../auth/auth-context.js";
import { isUuid } from "../domain/ids.js";

// What every service does with a request before its own logic: who calls,
// and the InvalidArgument answers for malformed fields.

/** InvalidArgument with a message naming the field. */
export const bad = (message: string): ConnectError => new ConnectError(message, Code.InvalidArgument);

/** The authenticated caller (set by the auth interceptor), or Unauthenticated. */
export function callerOf(hc: HandlerContext): Caller {
  const caller = hc.values.get(callerKey);
  if (!caller) throw new ConnectError("this call needs `Authorization: Bearer <access token>`", Code.Unauthenticated);
  return caller;
}

export function callerId(hc: HandlerContext): string {
  return callerOf(hc).userId;
}

/** A UUID field, trimmed and lower-cased, or InvalidArgument. */
export function uuidField(field: string, value: string): string {
  const v = value.trim();
  if (!isUuid(v)) throw bad(`${field}: "${value}" is not a valid id (a UUID)`);
  return v.toLowerCase();
}
