import { JetStreamApiError } from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  TimeoutError,
  connect,
  type NatsConnection,
} from "@nats-io/transport-node";
import type { Logger } from "pino";

/**
 * A NATS connection that keeps reconnecting forever (a NATS restart must not
 * take the API down, only make /readyz answer 503 until it is back) and knows
 * whether it is connected right now: the client keeps its last server selected
 * while it reconnects, so getServer() alone cannot tell.
 */
export class NatsLink {
  private disconnected = false;

  private constructor(readonly nc: NatsConnection) {}

  static async connect(servers: string, name: string, logger: Logger): Promise<NatsLink> {
    const nc = await connect({
      servers: servers.split(",").map((s) => s.trim()),
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      // No Error (with its stack) captured up front for every request: a
      // JetStream publish is one request per SendMessage. Failures still say
      // what failed; they only lack the caller's stack.
      noAsyncTraces: true,
      // This instance's own bus notices reach its subscribers directly (NatsBus), not back through NATS.
      noEcho: true,
    });
    logger.info({ server: nc.getServer() }, "connected to NATS");
    const link = new NatsLink(nc);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") link.disconnected = true;
        else if (s.type === "reconnect") link.disconnected = false;
        if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") {
          logger.warn({ nats: s.type, server: "server" in s ? s.server : undefined }, "NATS connection status");
        }
      }
    })().catch(() => undefined);
    return link;
  }

  /** Connected now (not closed, not draining, not between reconnects). */
  connected(): boolean {
    return !this.disconnected && natsConnected(this.nc);
  }
}

/** What a bare connection can tell of itself: not closed or draining, a server selected. */
export function natsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && !nc.isDraining() && nc.getServer() !== "";
}

/**
 * A NATS client failure that means NATS, or a JetStream leader, cannot answer
 * right now (a lost connection, no responder, a timeout as during a leader
 * election, JetStream's 503), so the caller should retry later: Unavailable,
 * never Internal. JetStreamQueue already wraps its publishes as
 * QueueUnavailableError; this covers any other NATS call on a request path.
 */
export function isNatsUnavailableError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; depth++) {
    if (
      e instanceof TimeoutError ||
      e instanceof NoRespondersError ||
      e instanceof ClosedConnectionError ||
      e instanceof DrainingConnectionError ||
      e instanceof ConnectionError ||
      (e instanceof JetStreamApiError && e.status === 503)
    ) {
      return true;
    }
    // A RequestError (and our own wrappers) carry what went wrong as the cause.
    e = e.cause;
  }
  return false;
}
