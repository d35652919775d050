import pg from "pg";

/** How long taking a lock may wait for a connection before the attempt counts as failed. */
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * A dedicated connection for session-level advisory locks (the legacy leader lock, the partition locks),
 * outside the pool: the locks live exactly as long as it does, so a holder that dies (even kill -9, its
 * socket closes) frees them at once. Every error and the end of the connection, also those emitted while
 * a query is in flight, go to `lost` (unheard, pg's 'error' would kill the process); a silently dead peer
 * (network cut) is noticed through TCP keep-alive in bounded time. Not yet connected: call connect().
 */
export function lockSession(databaseUrl: string, lost: (client: pg.Client, err: Error | undefined) => void): pg.Client {
  const client = new pg.Client({
    connectionString: databaseUrl,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  client.on("error", (err) => lost(client, err));
  client.on("end", () => lost(client, undefined));
  return client;
}
