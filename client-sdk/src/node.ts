import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ChatwireClient, type ChatwireClientOptions, type Platform, type TransportKind, type TransportSettings } from "./client.js";
import { MemoryOutboxStore } from "./outbox.js";
import { MemoryTokenStore } from "./tokens.js";

export * from "./common.js";

/**
 * Creates a Chatwire client for Node. Connect and gRPC-Web use HTTP/1.1;
 * gRPC uses HTTP/2 (cleartext with prior knowledge for `http://`).
 * Tokens live in memory unless you pass a `tokenStore`.
 *
 * @example
 * const client = createChatwireClient({ baseUrl: "http://localhost:8080", transport: "grpc" });
 * await client.auth.sendCode("+905551234567");
 * await client.auth.verify("+905551234567", "123456");
 */
export function createChatwireClient(options: ChatwireClientOptions): ChatwireClient {
  const sessions: Http2SessionManager[] = [];
  const platform: Platform = {
    transport(kind: TransportKind, s: TransportSettings): Transport {
      switch (kind) {
        case "grpc": {
          const sessionManager = new Http2SessionManager(s.baseUrl);
          sessions.push(sessionManager);
          return createGrpcTransport({ baseUrl: s.baseUrl, interceptors: s.interceptors, useBinaryFormat: s.useBinaryFormat, sessionManager });
        }
        case "grpc-web":
          return createGrpcWebTransport({ baseUrl: s.baseUrl, httpVersion: "1.1", interceptors: s.interceptors, useBinaryFormat: s.useBinaryFormat });
        case "connect":
          return createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1", interceptors: s.interceptors, useBinaryFormat: s.useBinaryFormat });
        default:
          throw new Error(`unknown transport ${String(kind)}: use "connect", "grpc-web" or "grpc"`);
      }
    },
    defaultTokenStore: () => new MemoryTokenStore(),
    defaultOutboxStore: () => new MemoryOutboxStore(),
    defaultDevice: () => ({ id: randomUUID(), type: "node", name: `node on ${hostname()}` }),
    close() {
      for (const s of sessions) s.abort();
    },
  };
  return new ChatwireClient(options, platform);
}
