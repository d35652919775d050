import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
  type HealthCheckResponse,
} from "../../gen/health/v1/health_pb.js";
import type { HealthState, ServingState } from "../health.js";

const toStatus = (s: ServingState | undefined): Status => (s === undefined ? Status.SERVICE_UNKNOWN : s === "SERVING" ? Status.SERVING : Status.NOT_SERVING);

/** grpc.health.v1.Health: Check, Watch and List over the server's HealthState. */
export function createHealthService(health: HealthState): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const state = health.get(req.service);
      if (state === undefined) {
        throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      }
      return { status: toStatus(state) };
    },

    async *watch(req, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
      // Per the health protocol, an unknown service is reported (SERVICE_UNKNOWN), not an error,
      // and the stream keeps going in case the service appears.
      const pending: Status[] = [toStatus(health.get(req.service))];
      let wake: (() => void) | undefined;
      const unwatch = health.watch(req.service, (state) => {
        pending.push(toStatus(state));
        wake?.();
      });
      const onAbort = (): void => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        let last: Status | undefined;
        while (!ctx.signal.aborted) {
          const next = pending.shift();
          if (next === undefined) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
            continue;
          }
          if (next !== last) {
            last = next;
            yield create(HealthCheckResponseSchema, { status: next });
          }
        }
        // A change that raced the end (NOT_SERVING at shutdown) is still told before the stream ends.
        const final = pending.at(-1);
        if (final !== undefined && final !== last) yield create(HealthCheckResponseSchema, { status: final });
        // The shutdown signal's reason (Unavailable) ends the stream for the client.
        throw ctx.signal.reason ?? new ConnectError("stream closed", Code.Canceled);
      } finally {
        unwatch();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },

    list() {
      const statuses: Record<string, HealthCheckResponse> = {};
      for (const [name, state] of health.all()) {
        statuses[name] = create(HealthCheckResponseSchema, { status: toStatus(state) });
      }
      return { statuses };
    },
  };
}
