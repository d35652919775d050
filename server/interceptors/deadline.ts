import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Gives unary RPCs without a client deadline a server-side one, so a stuck
 * dependency cannot hold a request open forever. Streams are long-lived by
 * design and are bounded by their own heartbeats instead.
 */
export function deadlineInterceptor(defaultMs: number): Interceptor {
  return (next) => (req) => {
    if (req.method.methodKind !== "unary" || req.header.has("grpc-timeout") || req.header.has("connect-timeout-ms")) {
      return next(req);
    }
    return withDeadline(next(req), defaultMs, `the server's ${defaultMs} ms deadline passed`);
  };
}

/** `call`, or DeadlineExceeded with `message` once `ms` have passed (at once when none are left). */
export function withDeadline<T>(call: Promise<T>, ms: number, message: string): Promise<T> {
  if (ms <= 0) return Promise.reject(new ConnectError(message, Code.DeadlineExceeded));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConnectError(message, Code.DeadlineExceeded)), ms);
  });
  return Promise.race([call, deadline]).finally(() => clearTimeout(timer));
}
