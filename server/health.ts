import { EventEmitter } from "node:events";

export type ServingState = "SERVING" | "NOT_SERVING";

/**
 * Serving state per service name ("" is the whole server), the source of
 * grpc.health.v1 answers. Watchers hear every change.
 */
export class HealthState {
  private readonly states = new Map<string, ServingState>();
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

  set(service: string, state: ServingState): void {
    if (this.states.get(service) === state) return;
    this.states.set(service, state);
    this.events.emit("change", service, state);
  }

  /** Sets every known service (and the server) at once, e.g. on shutdown. */
  setAll(state: ServingState): void {
    for (const service of [...this.states.keys()]) this.set(service, state);
  }

  get(service: string): ServingState | undefined {
    return this.states.get(service);
  }

  all(): ReadonlyMap<string, ServingState> {
    return this.states;
  }

  /** Calls `listener` on each change of `service` until the returned function is called. */
  watch(service: string, listener: (state: ServingState) => void): () => void {
    const onChange = (name: string, state: ServingState): void => {
      if (name === service) listener(state);
    };
    this.events.on("change", onChange);
    return () => this.events.off("change", onChange);
  }
}
