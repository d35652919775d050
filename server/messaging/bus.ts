import { EventEmitter } from "node:events";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";

/**
 * Fire-and-forget notices between server instances (revocations, live
 * events). Production: core NATS subjects, so any instance reaches any other.
 * Embedded: an in-process emitter.
 */
export interface EventBus {
  publish(subject: string, payload: Uint8Array): void;
  /** Calls `handler` for each notice on `subject` until the returned function is called. */
  subscribe(subject: string, handler: (payload: Uint8Array) => void): () => void;
}

export class InProcessBus implements EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish(subject: string, payload: Uint8Array): void {
    // Asynchronous like NATS, so publishers never run subscribers inside their own transaction.
    queueMicrotask(() => this.emitter.emit(subject, payload));
  }

  subscribe(subject: string, handler: (payload: Uint8Array) => void): () => void {
    this.emitter.on(subject, handler);
    return () => this.emitter.off(subject, handler);
  }
}

/**
 * Core NATS subjects. On a connection opened with `noEcho` (NatsLink's), NATS
 * never hands this instance its own notices back: they go to this instance's
 * subscribers directly (in a microtask, as InProcessBus) and through NATS to
 * every other instance. That saves, for each notice, NATS's delivery back
 * and this process's read and parse of it. On a connection that echoes
 * (tests' own), NATS alone delivers, as before.
 */
export class NatsBus implements EventBus {
  private readonly local: InProcessBus | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
  ) {
    if ((nc as { options?: { noEcho?: boolean } }).options?.noEcho === true) this.local = new InProcessBus();
  }

  publish(subject: string, payload: Uint8Array): void {
    this.local?.publish(subject, payload);
    try {
      this.nc.publish(subject, payload);
    } catch (err) {
      this.logger.warn({ err, subject }, "bus publish failed");
    }
  }

  subscribe(subject: string, handler: (payload: Uint8Array) => void): () => void {
    const guarded = (payload: Uint8Array): void => {
      try {
        handler(payload);
      } catch (e) {
        this.logger.error({ err: e, subject }, "bus handler failed");
      }
    };
    const offLocal = this.local?.subscribe(subject, guarded);
    const sub: Subscription = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          this.logger.warn({ err, subject }, "bus subscription error");
          return;
        }
        guarded(msg.data);
      },
    });
    return () => {
      offLocal?.();
      sub.unsubscribe();
    };
  }
}
