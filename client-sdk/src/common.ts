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
export { Subscription } from "./subscription.js";
export type { SubscribeOptions, SubscriptionEvents } from "./subscription.js";
export { LocalStorageTokenStore, MemoryTokenStore } from "./tokens.js";
export type { KeyValueStorage, TokenStore, Tokens } from "./tokens.js";
export { Code, ConnectError } from "@connectrpc/connect";
export * from "../../gen/auth/auth_pb.js";
export * from "../../gen/chat/chat_pb.js";
export * from "../../gen/realtime/realtime_pb.js";
export * from "../../gen/user/user_pb.js";
export * from "../../gen/status/status_pb.js";
export * from "../../gen/push/push_pb.js";
