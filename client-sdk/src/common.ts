// Everything both entry points (Node and browser) export.
export { ChatwireClient } from "./client.js";
export type {
  AuthClient,
  ChatwireClientOptions,
  ClientEvents,
  DeviceInfo,
  TransportFactory,
  TransportKind,
  TransportSettings,
} from "./client.js";
export { LocalStorageOutboxStore, MemoryOutboxStore, Outbox } from "./outbox.js";
export type { OutboxEntry, OutboxEvents, OutboxExtra, OutboxOptions, OutboxRecord, OutboxState, OutboxStore } from "./outbox.js";
export { Subscription } from "./subscription.js";
export type { SubscribeOptions, SubscriptionEvents } from "./subscription.js";
export { LocalStorageTokenStore, MemoryTokenStore } from "./tokens.js";
export type { KeyValueStorage, TokenStore, Tokens } from "./tokens.js";
export { Code, ConnectError } from "@connectrpc/connect";
export * from "../../gen/auth/auth_pb.js";
export * from "../../gen/chat/chat_pb.js";
export * from "../../gen/realtime/realtime_pb.js";
// realtime.Event under a name that does not hide the DOM's global `Event` where both are in scope.
export type { Event as ChatwireEvent } from "../../gen/realtime/realtime_pb.js";
export { EventSchema as ChatwireEventSchema } from "../../gen/realtime/realtime_pb.js";
/** @deprecated Use `ChatwireEvent`: this name hides the DOM's global `Event` type wherever it is imported. */
export type { Event } from "../../gen/realtime/realtime_pb.js";
export * from "../../gen/user/user_pb.js";
export * from "../../gen/status/status_pb.js";
export * from "../../gen/push/push_pb.js";
export * from "../../gen/media/media_pb.js";
