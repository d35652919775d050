import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { EventSchema, StatusPostedSchema } from "../../gen/realtime/realtime_pb.js";
import type { Clock } from "../context.js";
import type { EventBus } from "../messaging/bus.js";
import { userSubject } from "../messaging/message-queue.js";
import { encodeEventBody, eventFrame } from "./wire.js";

export interface RealtimeHubOptions {
  bus: EventBus;
  subjectPrefix: string;
  clock: Clock;
  logger: Logger;
}

/**
 * The realtime side other services talk to: ephemeral fan-out to users'
 * subjects (only their open streams hear it; nothing is stored).
 */
export class RealtimeHub {
  constructor(private readonly opts: RealtimeHubOptions) {}

  /** Tells the audience's online devices that a status was posted (ephemeral). */
  statusPosted(status: { statusId: string; authorId: string; expiresAt: Date }, audienceUserIds: readonly string[]): void {
    const body = encodeEventBody(
      create(EventSchema, {
        at: timestampFromDate(this.opts.clock.now()),
        kind: {
          case: "statusPosted",
          value: create(StatusPostedSchema, {
            statusId: status.statusId,
            authorId: status.authorId,
            expiresAt: timestampFromDate(status.expiresAt),
          }),
        },
      }),
    );
    this.publishEphemeral(audienceUserIds, body);
  }

  /** Publishes an encoded ephemeral event (position 0) to each user's subject. */
  publishEphemeral(userIds: Iterable<string>, body: Uint8Array): void {
    const frame = eventFrame(body);
    for (const id of new Set(userIds)) this.opts.bus.publish(userSubject(this.opts.subjectPrefix, id), frame);
  }
}
