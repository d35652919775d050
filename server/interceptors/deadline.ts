import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Gives unary RPCs without a client deadline a server-side one, so a stuck
 * dependency cannot hold a request open forever. Streams are long-lived by
 * design and are bounded by their own heartbeats instead.
 */
export function deadlineInterceptor(defaultMs: number): Interceptor {
  return (next) => async (req) => {
    if (req.method.methodKind !== "unary" || req.header.has("grpc-timeout") || req.header.has("connect-timeout-ms")) {
      return next(req);
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ConnectError(`the server's ${defaultMs} ms deadline passed`, Code.DeadlineExceeded)),
        defaultMs,
      );
    });
    try {
      return await Promise.race([next(req), deadline]);
    } finally {
      clearTimeout(timer);
    }
  };
}
