import { jetstreamManager } from "@nats-io/jetstream";
import { JetStreamQueue } from "../../messaging/jetstream-queue.js";
import type { ChatwireServer } from "../../server.js";

/** The deployment's JetStream consumers (every partition's), summed. */
export interface QueueState {
  num_pending: number;
  num_ack_pending: number;
  /** Open pull requests. */
  num_waiting: number;
}

/** The deployment's partition consumers, summed, as NATS reports them; undefined for the inline queue (embedded profile). */
async function queueConsumer(server: ChatwireServer): Promise<QueueState | undefined> {
  const queue = server.ctx.messages;
  if (!(queue instanceof JetStreamQueue)) return undefined;
  const jsm = await jetstreamManager(queue.nc);
  const sum: QueueState = { num_pending: 0, num_ack_pending: 0, num_waiting: 0 };
  for (const name of queue.names.consumers) {
    const c = await jsm.consumers.info(queue.names.stream, name);
    sum.num_pending += c.num_pending;
    sum.num_ack_pending += c.num_ack_pending;
    sum.num_waiting += c.num_waiting;
  }
  return sum;
}

/** Polls (bounded) until `done` holds for the deployment's consumers. */
export async function waitForConsumer(server: ChatwireServer, what: string, done: (c: QueueState) => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await queueConsumer(server);
    if (c === undefined || done(c)) return;
    if (Date.now() > deadline) {
      throw new Error(
        `queue consumers not ${what} within ${timeoutMs} ms (pending ${c.num_pending}, ack pending ${c.num_ack_pending}, waiting pulls ${c.num_waiting})`,
      );
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
