import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { ChatService, Conversation, Message } from "../../gen/chat/chat_pb.js";
import type {
  CaughtUp,
  Event,
  MessageDeleted,
  ParticipantAdded,
  ParticipantRemoved,
  ParticipantRoleChanged,
  Presence,
  ReactionChanged,
  Ready,
  RealtimeService,
  ReceiptUpdated,
  ResyncRequired,
  SessionRevoked,
  StatusPosted,
  Typing,
} from "../../gen/realtime/realtime_pb.js";
import { Emitter } from "./emitter.js";
import { backoffDelay, sleep } from "./retry.js";
import type { Session } from "./session.js";

/** Options of {@link ChatwireClient.subscribe}. */
export interface SubscribeOptions {
  /**
   * Replay the stored events after this inbox position first (e.g. the
   * `position` you saved, or GetConversations' `inboxPosition`). Unset: live
   * from now.
   */
  since?: bigint | number;
  /** Acknowledge received messages with MarkDelivered, batched per conversation (default true). */
  autoDeliver?: boolean;
  /** How long to gather messages before one MarkDelivered per conversation (default 100 ms). */
  deliverDelayMs?: number;
  /** First reconnect delay; doubles per failed attempt, with jitter (default 500 ms). */
  initialBackoffMs?: number;
  /** Longest reconnect delay (default 30 s). */
  maxBackoffMs?: number;
  /**
   * Silence after which the connection counts as dead and is reopened.
   * Default: two heartbeat intervals (as `ready.heartbeatSeconds` says) plus 2 s.
   */
  heartbeatTimeoutMs?: number;
  /** Ends the subscription when aborted. */
  signal?: AbortSignal;
}

/** Events of a {@link Subscription}, for `sub.on(name, listener)`. */
export interface SubscriptionEvents {
  /** Every event as it arrives, control events included. */
  event: [event: Event];
  /** A (re)connected stream is open: `ready.position` is where it starts. */
  ready: [ready: Ready];
  /** The replay is done; what follows is live. */
  caughtUp: [caughtUp: CaughtUp];
  /** A new message (user or system message). */
  message: [message: Message, event: Event];
  /** A message's text changed. */
  messageEdited: [message: Message, event: Event];
  /** A message was deleted. */
  messageDeleted: [deleted: MessageDeleted, event: Event];
  /** The reactions on a message changed. */
  reaction: [reaction: ReactionChanged, event: Event];
  /** A participant's delivered/read watermarks moved (ticks). */
  receipt: [receipt: ReceiptUpdated, event: Event];
  /** A conversation was created for you or changed. */
  conversation: [conversation: Conversation, event: Event];
  /** Group membership or roles changed. */
  participants: [change: ParticipantAdded | ParticipantRemoved | ParticipantRoleChanged, event: Event];
  /** Someone started or stopped typing. */
  typing: [typing: Typing, event: Event];
  /** Someone came online or went offline. */
  presence: [presence: Presence, event: Event];
  /** A status was posted. */
  status: [status: StatusPosted, event: Event];
  /** One of your sessions was signed out. */
  sessionRevoked: [revoked: SessionRevoked, event: Event];
  /**
   * The server cannot replay from where this device stopped: reload your
   * conversations (GetConversations, ListMessages). The stream goes on from
   * `resync.position` by itself.
   */
  resync: [resync: ResyncRequired];
  /** The stream broke; it reopens after `retryInMs` from the last position. */
  disconnected: [error: ConnectError, retryInMs: number];
  /** The subscription ended for good (logged out, or a non-retryable error). */
  error: [error: ConnectError];
  /** The subscription is closed (by you, by logout, or after `error`). */
  closed: [];
}

// Refusals that reconnecting cannot cure.
const FATAL = new Set([Code.InvalidArgument, Code.PermissionDenied, Code.FailedPrecondition, Code.Unimplemented]);
const DEFAULT_HEARTBEAT_SECONDS = 15;
// Events kept for a for-await loop that has not started yet.
const UNREAD_LIMIT = 10_000;

/**
 * A live event stream that survives disconnects: iterate it with `for await`,
 * or listen with `on("message", …)`, or both. Reconnects with exponential
 * backoff and jitter, resuming after the last stored event it handled.
 *
 * Listeners run as events arrive. For `for await`, events are queued from the
 * moment the subscription opens (so a loop started a little later misses
 * nothing); if no loop ever reads them, only the newest 10,000 are kept.
 */
export class Subscription extends Emitter<SubscriptionEvents> implements AsyncIterable<Event> {
  #position: bigint | undefined;
  #closed = false;
  #running = true;
  #fatal: ConnectError | undefined;
  readonly #stop = new AbortController();
  #attempt: AbortController | undefined;
  #connected = false;
  readonly #unread: Event[] = [];
  #waiting: Array<{ resolve: (r: IteratorResult<Event>) => void; reject: (e: unknown) => void }> = [];
  readonly #deliver = new Map<string, bigint>();
  #deliverTimer: ReturnType<typeof setTimeout> | undefined;
  #me: string | undefined;
  #lastReady: Ready | undefined;
  /** Resolves when the subscription has ended. */
  readonly done: Promise<void>;

  /** @internal Use `client.subscribe()`. */
  constructor(
    private readonly realtime: Client<typeof RealtimeService>,
    private readonly chat: Client<typeof ChatService>,
    private readonly session: Session,
    private readonly opts: SubscribeOptions,
    private readonly onEnd: (sub: Subscription) => void,
  ) {
    super();
    this.#position = opts.since === undefined ? undefined : BigInt(opts.since);
    opts.signal?.addEventListener("abort", () => this.close(), { once: true });
    this.done = this.#run();
  }

  /**
   * The inbox position of the last stored event handled: save it and pass it
   * as `since` to resume later without gaps. Undefined until the first `ready`.
   */
  get position(): bigint | undefined {
    return this.#position;
  }

  /** True while a stream is open. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Resolves once a stream is open (at once if it is): events from then on
   * reach you. Rejects if the subscription ends first.
   */
  ready(): Promise<Ready> {
    if (this.#connected && this.#lastReady) return Promise.resolve(this.#lastReady);
    if (!this.#running) return Promise.reject(this.#fatal ?? new ConnectError("subscription closed", Code.Canceled));
    return new Promise((resolve, reject) => {
      const offReady = this.once("ready", (r) => {
        offClosed();
        resolve(r);
      });
      const offClosed = this.once("closed", () => {
        offReady();
        reject(this.#fatal ?? new ConnectError("subscription closed", Code.Canceled));
      });
    });
  }

  /** Stops the stream and ends every iterator. Pending delivery receipts are still sent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort(new ConnectError("subscription closed", Code.Canceled));
    this.#attempt?.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<Event> {
    return {
      next: () => {
        const event = this.#unread.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (this.#closed && !this.#running) {
          return this.#fatal ? Promise.reject(this.#fatal) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  async #run(): Promise<void> {
    let failures = 0;
    try {
      while (!this.#closed) {
        const error = await this.#connectOnce(() => (failures = 0));
        if (this.#closed) break;
        this.#connected = false;
        if (error.code === Code.Unauthenticated) {
          // An expired token is refreshed (once for all callers); a dead session ends here.
          try {
            const used = (await this.session.store.get())?.accessToken;
            await this.session.refresh(used);
          } catch (err) {
            this.#end(ConnectError.from(err));
            break;
          }
          if (failures === 0) {
            failures++;
            continue;
          }
        } else if (FATAL.has(error.code)) {
          this.#end(error);
          break;
        }
        const delay = backoffDelay(failures++, this.opts.initialBackoffMs ?? 500, this.opts.maxBackoffMs ?? 30_000);
        this.emit("disconnected", error, delay);
        try {
          await sleep(delay, this.#stop.signal);
        } catch {
          break;
        }
      }
    } finally {
      this.#running = false;
      this.#connected = false;
      this.#flushDelivered();
      this.onEnd(this);
      for (const w of this.#waiting.splice(0)) {
        if (this.#fatal) w.reject(this.#fatal);
        else w.resolve({ value: undefined, done: true });
      }
      this.emit("closed");
    }
  }

  #end(error: ConnectError): void {
    this.#fatal = error;
    this.#closed = true;
    this.emit("error", error);
  }

  /** One stream, until it fails; returns why it ended. */
  async #connectOnce(onReady: () => void): Promise<ConnectError> {
    const attempt = new AbortController();
    this.#attempt = attempt;
    let heartbeatSeconds = DEFAULT_HEARTBEAT_SECONDS;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      const ms = this.opts.heartbeatTimeoutMs ?? heartbeatSeconds * 2000 + 2000;
      watchdog = setTimeout(() => attempt.abort(new ConnectError(`no event or heartbeat for ${ms} ms: connection presumed dead`, Code.Unavailable)), ms);
    };
    arm();
    try {
      this.#me = (await this.session.store.get())?.userId;
      const req = this.#position === undefined ? {} : { sincePosition: this.#position };
      for await (const event of this.realtime.subscribe(req, { signal: attempt.signal })) {
        if (event.kind.case === "ready") {
          heartbeatSeconds = event.kind.value.heartbeatSeconds || DEFAULT_HEARTBEAT_SECONDS;
          this.#position ??= event.kind.value.position;
          this.#lastReady = event.kind.value;
          this.#connected = true;
          onReady();
        }
        arm();
        this.#handle(event);
      }
      return new ConnectError("the server ended the stream", Code.Unavailable);
    } catch (err) {
      const reason: unknown = attempt.signal.aborted ? attempt.signal.reason : undefined;
      return reason instanceof ConnectError ? reason : ConnectError.from(err);
    } finally {
      clearTimeout(watchdog);
      attempt.abort();
    }
  }

  #handle(event: Event): void {
    const k = event.kind;
    this.emit("event", event);
    switch (k.case) {
      case "ready":
        this.emit("ready", k.value);
        break;
      case "caughtUp":
        this.emit("caughtUp", k.value);
        this.#flushDelivered();
        break;
      case "heartbeat":
        break;
      case "resyncRequired":
        this.#position = k.value.position;
        this.emit("resync", k.value);
        break;
      case "messageCreated":
        if (k.value.message) {
          this.#noteDelivered(k.value.message);
          this.emit("message", k.value.message, event);
        }
        break;
      case "messageEdited":
        if (k.value.message) this.emit("messageEdited", k.value.message, event);
        break;
      case "messageDeleted":
        this.emit("messageDeleted", k.value, event);
        break;
      case "reactionChanged":
        this.emit("reaction", k.value, event);
        break;
      case "receiptUpdated":
        this.emit("receipt", k.value, event);
        break;
      case "conversationCreated":
      case "conversationUpdated":
        if (k.value.conversation) this.emit("conversation", k.value.conversation, event);
        break;
      case "participantAdded":
      case "participantRemoved":
      case "participantRoleChanged":
        this.emit("participants", k.value, event);
        break;
      case "typing":
        this.emit("typing", k.value, event);
        break;
      case "presence":
        this.emit("presence", k.value, event);
        break;
      case "statusPosted":
        this.emit("status", k.value, event);
        break;
      case "sessionRevoked":
        this.emit("sessionRevoked", k.value, event);
        break;
    }
    // Only stored events move the resume point, and only once handled.
    if (event.position > 0n) this.#position = event.position;
    this.#queue(event);
  }

  #queue(event: Event): void {
    const w = this.#waiting.shift();
    if (w) {
      w.resolve({ value: event, done: false });
      return;
    }
    this.#unread.push(event);
    if (this.#unread.length > UNREAD_LIMIT) this.#unread.shift();
  }

  #noteDelivered(m: Message): void {
    if (this.opts.autoDeliver === false || m.seq <= 0n || m.senderId === this.#me) return;
    const seen = this.#deliver.get(m.conversationId) ?? 0n;
    if (m.seq > seen) this.#deliver.set(m.conversationId, m.seq);
    this.#deliverTimer ??= setTimeout(() => this.#flushDelivered(), this.opts.deliverDelayMs ?? 100);
  }

  #flushDelivered(): void {
    clearTimeout(this.#deliverTimer);
    this.#deliverTimer = undefined;
    for (const [conversationId, upToSeq] of this.#deliver) {
      // Best effort: a later message (or the next replay) acknowledges again.
      this.chat.markDelivered({ conversationId, upToSeq }).catch(() => undefined);
    }
    this.#deliver.clear();
  }
}
