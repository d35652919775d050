import { jetstreamManager, type ConsumerInfo } from "@nats-io/jetstream";
import { JetStreamQueue } from "../../messaging/jetstream-queue.js";
import type { ChatwireServer } from "../../server.js";

/** The deployment's JetStream consumer, as NATS reports it; undefined for the inline queue (embedded profile). */
async function queueConsumer(server: ChatwireServer): Promise<ConsumerInfo | undefined> {
  const queue = server.ctx.messages;
  if (!(queue instanceof JetStreamQueue)) return undefined;
  const jsm = await jetstreamManager(queue.nc);
  return jsm.consumers.info(queue.names.stream, queue.names.consumer);
}

/** Polls (bounded) until `done` holds for the deployment's consumer. */
export async function waitForConsumer(server: ChatwireServer, what: string, done: (c: ConsumerInfo) => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await queueConsumer(server);
    if (c === undefined || done(c)) return;
    if (Date.now() > deadline) {
      throw new Error(`queue consumer not ${what} within ${timeoutMs} ms (pending ${c.num_pending}, ack pending ${c.num_ack_pending}, waiting pulls ${c.num_waiting})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Every message sent so far has been handled: nothing waits in JetStream and
 * nothing delivered is unacked (the worker acks after its commit). The inline
 * queue stores before SendMessage answers: nothing to wait for.
 */
export function queueDrained(server: ChatwireServer, timeoutMs?: number): Promise<void> {
  return waitForConsumer(server, "drained", (c) => c.num_pending === 0 && c.num_ack_pending === 0, timeoutMs);
}
