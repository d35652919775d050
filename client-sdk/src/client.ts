import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { AuthService, type SendOTPResponse, type VerifyOTPResponse } from "../../gen/auth/auth_pb.js";
import { ChatService, type Message, type SendMessageRequest, type SendMessageRequestSchema, type SendMessageResponse } from "../../gen/chat/chat_pb.js";
import { RealtimeService } from "../../gen/realtime/realtime_pb.js";
import { StatusService } from "../../gen/status/status_pb.js";
import { MediaService } from "../../gen/media/media_pb.js";
import { UserService } from "../../gen/user/user_pb.js";
import { PushService } from "../../gen/push/push_pb.js";
import { Emitter } from "./emitter.js";
import { Outbox, type OutboxOptions, type OutboxStore } from "./outbox.js";
import { backoffDelay, isTransient, randomId, sleep } from "./retry.js";
import { expiryOf, Session } from "./session.js";
import { Subscription, type SubscribeOptions } from "./subscription.js";
import type { TokenStore, Tokens } from "./tokens.js";

/** The wire protocol: Connect (default), gRPC-Web, or gRPC (Node only: HTTP/2). */
export type TransportKind = "connect" | "grpc-web" | "grpc";

/** What a transport factory gets: build a Transport that runs these interceptors. */
export interface TransportSettings {
  baseUrl: string;
  /** The SDK's bearer interceptor (first), then `options.interceptors`. */
  interceptors: Interceptor[];
  useBinaryFormat: boolean;
}

/** Builds the transport yourself (a proxy, a test router, custom fetch). */
export type TransportFactory = (settings: TransportSettings) => Transport;

/** The device a login opens a session for. */
export interface DeviceInfo {
  /** Stable id of this device/app install (default: a random id, kept in localStorage in browsers). */
  id?: string;
  /** Human name, e.g. "Ayşe's laptop". */
  name?: string;
  /** "web", "ios", "android", "desktop", "node", … */
  type?: string;
  /** APNs/FCM push token. */
  pushToken?: string;
}

/** Options of `createChatwireClient`. */
export interface ChatwireClientOptions {
  /** The server, e.g. `"http://localhost:8080"`. */
  baseUrl: string;
  /** `"connect"` (default), `"grpc-web"`, `"grpc"` (Node only), or your own factory. */
  transport?: TransportKind | TransportFactory;
  /** Where tokens live. Default: localStorage in browsers, memory in Node. */
  tokenStore?: TokenStore;
  /** Default device for `auth.verify`. */
  device?: DeviceInfo;
  /** Protobuf binary on the wire (default true); false sends JSON (Connect, gRPC-Web). */
  useBinaryFormat?: boolean;
  /** Refresh the access token this long before it expires (default 60 s). */
  refreshMarginSeconds?: number;
  /** Extra interceptors, run after the SDK's bearer interceptor. */
  interceptors?: Interceptor[];
  /** How often `sendMessage` retries on Unavailable (default 5). */
  sendRetries?: number;
  /** The outbox of messages queued while offline (`client.outbox`): its store and give-up time. */
  outbox?: OutboxOptions;
}

/** AuthService, plus the login flow in two calls. */
export type AuthClient = Client<typeof AuthService> & {
  /** Asks for a one-time code by SMS (in dev mode every number accepts 123456). */
  sendCode(phone: string): Promise<SendOTPResponse>;
  /** Checks the code, opens a session for `device` and stores its tokens. */
  verify(phone: string, code: string, device?: DeviceInfo): Promise<VerifyOTPResponse>;
  /** Gets a new token pair now (normally automatic). */
  refresh(): Promise<Tokens>;
};

/** Events of the client itself. */
export interface ClientEvents {
  /** The tokens changed: login, refresh, logout, or the session ended server-side (`"expired"`). */
  session: [tokens: Tokens | null, reason: "login" | "refresh" | "logout" | "expired"];
}

/** @internal What each entry point (Node, browser) supplies. */
export interface Platform {
  transport(kind: TransportKind, settings: TransportSettings): Transport;
  defaultTokenStore(): TokenStore;
  defaultDevice(): Required<Pick<DeviceInfo, "id" | "type">> & DeviceInfo;
  defaultOutboxStore(): OutboxStore;
  /** Calls `fn` when the network comes back (browsers' `online` event); returns a function that stops it. */
  onOnline?(fn: () => void): () => void;
  close?(): void;
}

/**
 * A Chatwire client: typed clients for every service (`auth`, `chat`,
 * `realtime`, `users`, `status`), a session that refreshes itself, and a reconnecting event stream.
 */
export class ChatwireClient extends Emitter<ClientEvents> {
  /** AuthService, with `sendCode`, `verify` and `refresh`. */
  readonly auth: AuthClient;
  /** ChatService; its `sendMessage` fills `clientMessageId` and retries safely on Unavailable. */
  readonly chat: Client<typeof ChatService>;
  /** RealtimeService (prefer `subscribe()` to the raw stream). */
  readonly realtime: Client<typeof RealtimeService>;
  /** UserService: profiles, contacts, blocks, privacy. */
  readonly users: Client<typeof UserService>;
  /** StatusService: 24-hour status updates, their feed, views and replies. */
  readonly status: Client<typeof StatusService>;
  /** PushService: this device's push registration (FCM, APNs, Web Push), the VAPID key, push settings. */
  readonly push: Client<typeof PushService>;
  /** MediaService: declare uploads (the bytes go over tus to `/media/uploads/`), download URLs, deletion. */
  readonly media: Client<typeof MediaService>;
  /** The token store in use. */
  readonly tokens: TokenStore;
  /**
   * Messages queued with `outbox.enqueue` are kept (memory in Node, localStorage in browsers)
   * and sent in order, each under one `clientMessageId`, whenever the server can be reached.
   */
  readonly outbox: Outbox;
  readonly #offOnline: (() => void) | undefined;
  readonly #session: Session;
  readonly #subs = new Set<Subscription>();
  readonly #platform: Platform;

  /** @internal Use `createChatwireClient`. */
  constructor(options: ChatwireClientOptions, platform: Platform) {
    super();
    this.#platform = platform;
    const settings = (interceptors: Interceptor[]): TransportSettings => ({
      baseUrl: options.baseUrl,
      interceptors: [...interceptors, ...(options.interceptors ?? [])],
      useBinaryFormat: options.useBinaryFormat ?? true,
    });
    const make = (interceptors: Interceptor[]): Transport => {
      const t = options.transport ?? "connect";
      return typeof t === "function" ? t(settings(interceptors)) : platform.transport(t, settings(interceptors));
    };
    this.tokens = options.tokenStore ?? platform.defaultTokenStore();
    const publicAuth = createClient(AuthService, make([]));
    this.#session = new Session(this.tokens, publicAuth, (options.refreshMarginSeconds ?? 60) * 1000, {
      onTokens: (tokens, reason) => this.emit("session", tokens, reason),
    });
    const transport = make([this.#session.interceptor()]);
    const device = { ...platform.defaultDevice(), ...options.device };

    const auth = createClient(AuthService, transport);
    this.auth = Object.assign(auth, {
      sendCode: (phone: string) => auth.sendOTP({ phoneNumber: phone }),
      verify: async (phone: string, code: string, d: DeviceInfo = {}) => {
        const dev = { ...device, ...d };
        const res = await auth.verifyOTP({
          phoneNumber: phone,
          otpCode: code,
          deviceId: dev.id,
          deviceName: dev.name ?? "",
          deviceType: dev.type,
          pushToken: dev.pushToken ?? "",
        });
        await this.#session.set(
          {
            accessToken: res.accessToken,
            refreshToken: res.refreshToken,
            accessTokenExpiresAt: expiryOf(res.accessTokenExpiresAt, res.accessToken),
            refreshTokenExpiresAt: expiryOf(res.refreshTokenExpiresAt, res.refreshToken),
            sessionId: res.sessionId,
            userId: res.user?.id ?? "",
          },
          "login",
        );
        return res;
      },
      refresh: () => this.#session.refresh(),
    });

    const chat = createClient(ChatService, transport);
    const retries = options.sendRetries ?? 5;
    const rawSend = chat.sendMessage.bind(chat);
    this.chat = Object.assign(chat, {
      sendMessage: async (req: MessageInitShape<typeof SendMessageRequestSchema>, opts?: CallOptions): Promise<SendMessageResponse> => {
        // One id for every attempt: the server stores the message once however often it is retried.
        const request = { ...req, clientMessageId: req.clientMessageId || randomId() };
        for (let attempt = 0; ; attempt++) {
          try {
            return await rawSend(request, opts);
          } catch (err) {
            const ce = ConnectError.from(err);
            if (!isTransient(ce) || attempt >= retries || opts?.signal?.aborted) throw ce;
            await sleep(backoffDelay(attempt, 200, 5_000), opts?.signal);
          }
        }
      },
    });
    this.outbox = new Outbox(
      async (conversationId, content, extra) => {
        const res = await rawSend({ ...extra, conversationId, content });
        if (!res.message) throw new ConnectError("SendMessage answered without a message", Code.Internal);
        return res.message;
      },
      options.outbox ?? {},
      platform.defaultOutboxStore(),
    );
    this.#offOnline = platform.onOnline?.(() => this.outbox.flush());
    this.realtime = createClient(RealtimeService, transport);
    this.users = createClient(UserService, transport);
    this.status = createClient(StatusService, transport);
    this.push = createClient(PushService, transport);
    this.media = createClient(MediaService, transport);
  }

  /** The logged-in user's id, or undefined when logged out. */
  async userId(): Promise<string | undefined> {
    return (await this.tokens.get())?.userId || undefined;
  }

  /** Whether tokens are stored (they may still turn out revoked). */
  async isLoggedIn(): Promise<boolean> {
    return (await this.tokens.get()) !== null;
  }

  /**
   * Sends a text message; `clientMessageId` is generated and reused across
   * retries, so a retried send is stored once. Returns the stored message.
   */
  async sendMessage(
    conversationId: string,
    content: string,
    extra: Partial<Pick<SendMessageRequest, "mediaUrl" | "mediaType" | "clientMessageId" | "replyToMessageId" | "mentionUserIds">> = {},
  ): Promise<Message> {
    const res = await this.chat.sendMessage({ ...extra, conversationId, content });
    if (!res.message) throw new ConnectError("SendMessage answered without a message", Code.Internal);
    return res.message;
  }

  /**
   * Opens the live event stream: `for await (const e of sub)` or
   * `sub.on("message", m => …)`. It reconnects by itself until `close()`,
   * `logout()`, or the session ends.
   */
  subscribe(options: SubscribeOptions = {}): Subscription {
    const sub = new Subscription(this.realtime, this.chat, this.#session, options, (s) => this.#subs.delete(s));
    this.#subs.add(sub);
    return sub;
  }

  /** Ends this device's session on the server (best effort) and forgets its tokens. */
  async logout(): Promise<void> {
    for (const sub of this.#subs) sub.close();
    const t = await this.tokens.get();
    if (t) await this.auth.revokeCurrentDevice({ refreshToken: t.refreshToken }).catch(() => undefined);
    await this.#session.set(null, "logout");
  }

  /** Closes subscriptions and (in Node) open HTTP/2 connections, so the process can exit. Tokens stay. */
  close(): void {
    for (const sub of this.#subs) sub.close();
    this.outbox.close();
    this.#offOnline?.();
    this.#platform.close?.();
  }
}
