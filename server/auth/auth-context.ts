import { createContextKey } from "@connectrpc/connect";

/** Who is calling: set by the auth interceptor, read by handlers. */
export interface Caller {
  userId: string;
  sessionId: string;
}

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/** The client's address as the socket saw it (set by the adapter per request). */
export const peerKey = createContextKey<string>("unknown", { description: "client address" });
