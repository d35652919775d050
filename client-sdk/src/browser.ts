import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatwireClient, type ChatwireClientOptions, type Platform, type TransportKind, type TransportSettings } from "./client.js";
import { randomId } from "./retry.js";
import { LocalStorageOutboxStore, MemoryOutboxStore } from "./outbox.js";
import { LocalStorageTokenStore, MemoryTokenStore } from "./tokens.js";

export * from "./common.js";

const DEVICE_KEY = "chatwire.device";

function hasLocalStorage(): boolean {
  try {
    return typeof globalThis.localStorage !== "undefined" && globalThis.localStorage !== null;
  } catch {
    return false; // storage disabled: access throws
  }
}

/**
 * Creates a Chatwire client for browsers (fetch: Connect or gRPC-Web; gRPC
 * needs HTTP/2 trailers that browsers do not expose). Tokens and a stable
 * device id live in localStorage unless you pass a `tokenStore`.
 *
 * @example
 * const client = createChatwireClient({ baseUrl: location.origin });
 * await client.auth.sendCode("+905551234567");
 * await client.auth.verify("+905551234567", "123456");
 */
export function createChatwireClient(options: ChatwireClientOptions): ChatwireClient {
  const platform: Platform = {
    transport(kind: TransportKind, s: TransportSettings): Transport {
      switch (kind) {
        case "connect":
          return createConnectTransport({ baseUrl: s.baseUrl, interceptors: s.interceptors, useBinaryFormat: s.useBinaryFormat });
        case "grpc-web":
          return createGrpcWebTransport({ baseUrl: s.baseUrl, interceptors: s.interceptors, useBinaryFormat: s.useBinaryFormat });
        case "grpc":
          throw new Error('transport "grpc" needs Node (HTTP/2 trailers); in browsers use "connect" or "grpc-web"');
        default:
          throw new Error(`unknown transport ${String(kind)}: use "connect" or "grpc-web"`);
      }
    },
    defaultTokenStore: () => (hasLocalStorage() ? new LocalStorageTokenStore() : new MemoryTokenStore()),
    defaultOutboxStore: () => (hasLocalStorage() ? new LocalStorageOutboxStore() : new MemoryOutboxStore()),
    onOnline(fn) {
      if (typeof globalThis.addEventListener !== "function") return () => undefined;
      globalThis.addEventListener("online", fn);
      return () => globalThis.removeEventListener("online", fn);
    },
    defaultDevice() {
      let id = hasLocalStorage() ? localStorage.getItem(DEVICE_KEY) : null;
      if (!id) {
        id = randomId();
        if (hasLocalStorage()) localStorage.setItem(DEVICE_KEY, id);
      }
      const ua = typeof navigator !== "undefined" ? navigator.userAgent : "";
      const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom/.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
      return { id, type: "web", name: browser };
    },
  };
  return new ChatwireClient(options, platform);
}
