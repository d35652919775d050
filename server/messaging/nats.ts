import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";

/**
 * Connections made by connectNats() that lost their server and have not
 * reconnected yet. The client keeps its last server selected while it
 * reconnects, so getServer() alone cannot tell.
 */
const disconnected = new WeakSet<NatsConnection>();

/**
 * Connects to NATS and keeps reconnecting forever: a NATS restart must not
 * take the API down, only make /readyz answer 503 until it is back.
 */
export async function connectNats(servers: string, name: string, logger: Logger): Promise<NatsConnection> {
  const nc = await connect({
    servers: servers.split(",").map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  logger.info({ server: nc.getServer() }, "connected to NATS");
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") disconnected.add(nc);
      else if (s.type === "reconnect") disconnected.delete(nc);
      if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") {
        logger.warn({ nats: s.type, server: "server" in s ? s.server : undefined }, "NATS connection status");
      }
    }
  })().catch(() => undefined);
  return nc;
}

/** Connected now (not closed, not between reconnects). */
export function natsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && !nc.isDraining() && !disconnected.has(nc) && nc.getServer() !== "";
}
