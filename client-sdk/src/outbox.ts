import { Code, ConnectError } from "@connectrpc/connect";
import type { Message } from "../../gen/chat/chat_pb.js";
import { Emitter } from "./emitter.js";
import { backoffDelay, isTransient, randomId } from "./retry.js";
import type { KeyValueStorage } from "./tokens.js";

/** Where a queued message stands. */
export type OutboxState = "pending" | "sending" | "sent" | "failed";

/** What `outbox.enqueue` takes besides the conversation and the text. */
export interface OutboxExtra {
  clientMessageId?: string;
  replyToMessageId?: string;
  mentionUserIds?: string[];
  mediaUrl?: string;
  mediaType?: string;
}

/** A message in the outbox. Its `clientMessageId` is the one every attempt sends, so the server stores it once. */
export interface OutboxEntry {
  readonly clientMessageId: string;
  readonly conversationId: string;
  readonly content: string;
  readonly extra: Omit<OutboxExtra, "clientMessageId">;
  /** When it was queued (ms since the epoch): the give-up time counts from here. */
  readonly queuedAt: number;
  state: OutboxState;
  /** Failed attempts so far. */
  attempts: number;
  /** Why the last attempt failed (a `Code` name and the server's message), or why it was given up. */
  lastError?: string;
  /** The stored message, once `state` is `"sent"`. */
  message?: Message;
}

/** Where unsent messages are kept between runs (pending and failed entries). Both methods may return promises. */
export interface OutboxStore {
  load(): OutboxRecord[] | Promise<OutboxRecord[]>;
  save(records: OutboxRecord[]): void | Promise<void>;
}

/** An entry as a store keeps it (no stored message: sent entries leave the store). */
export type OutboxRecord = Omit<OutboxEntry, "message">;

/** Keeps the outbox in memory: lost with the process (the default in Node). */
export class MemoryOutboxStore implements OutboxStore {
  #records: OutboxRecord[] = [];
  load(): OutboxRecord[] {
    return this.#records.map((r) => ({ ...r }));
  }
  save(records: OutboxRecord[]): void {
    this.#records = records.map((r) => ({ ...r }));
  }
}

/** Keeps the outbox under one localStorage key, so unsent messages survive a reload (the default in browsers). */
export class LocalStorageOutboxStore implements OutboxStore {
  /** @param key the storage key (default `"chatwire.outbox"`). */
  constructor(
    readonly key = "chatwire.outbox",
    private readonly storage: KeyValueStorage = globalThis.localStorage,
  ) {}
  load(): OutboxRecord[] {
    const raw = this.storage.getItem(this.key);
    if (!raw) return [];
    try {
      const v = JSON.parse(raw) as unknown;
      return Array.isArray(v) ? v.filter(isRecord) : [];
    } catch {
      return [];
    }
  }
  save(records: OutboxRecord[]): void {
    if (records.length === 0) this.storage.removeItem(this.key);
    else this.storage.setItem(this.key, JSON.stringify(records));
  }
}

function isRecord(v: unknown): v is OutboxRecord {
  const r = v as Partial<OutboxRecord> | null;
  return typeof r?.clientMessageId === "string" && typeof r.conversationId === "string" && typeof r.content === "string" && typeof r.queuedAt === "number";
}

/** Options of the outbox (`ChatwireClientOptions.outbox`). */
export interface OutboxOptions {
  /** Where unsent messages live: memory in Node, localStorage in browsers, or yours. */
  store?: OutboxStore;
  /** A message still unsent this long after it was queued is given up (`failed`). Default 24 h. */
  giveUpAfterMs?: number;
  /** Backoff between attempts while the server is unreachable: first delay (default 500 ms) and cap (default 15 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Events of the outbox. */
export interface OutboxEvents {
  /** An entry changed state (queued, sending, sent, failed, retried) or was discarded (`removed` true). */
  change: [entry: Readonly<OutboxEntry>, removed: boolean];
}

type Send = (conversationId: string, content: string, extra: OutboxExtra) => Promise<Message>;

/**
 * Messages written while the server cannot be reached: kept (memory, localStorage or your store)
 * and sent one at a time in the order queued, each with its own `clientMessageId` on every
 * attempt, until the server stores it, refuses it (`failed`, with the reason), or the give-up
 * time passes (`failed`). Sent entries leave the store; failed ones stay until `retry` or `discard`.
 */
export class Outbox extends Emitter<OutboxEvents> {
  readonly #entries: OutboxEntry[] = [];
  readonly #store: OutboxStore;
  readonly #send: Send;
  readonly #giveUpAfterMs: number;
  readonly #initialBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #waiters = new Map<string, Array<{ resolve: (m: Message) => void; reject: (e: ConnectError) => void }>>();
  #loaded: Promise<void>;
  #running = false;
  #wake: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** @internal Use `client.outbox`. */
  constructor(send: Send, options: OutboxOptions, defaultStore: OutboxStore) {
    super();
    this.#send = send;
    this.#store = options.store ?? defaultStore;
    this.#giveUpAfterMs = options.giveUpAfterMs ?? 24 * 3_600_000;
    this.#initialBackoffMs = options.initialBackoffMs ?? 500;
    this.#maxBackoffMs = options.maxBackoffMs ?? 15_000;
    this.#loaded = this.#load();
  }

  async #load(): Promise<void> {
    const records = await this.#store.load();
    for (const r of records) {
      if (this.#entries.some((e) => e.clientMessageId === r.clientMessageId)) continue;
      // One that was being sent when the app stopped may or may not be stored: sending it again is safe.
      this.#entries.push({ ...r, state: r.state === "sending" ? "pending" : r.state });
    }
    if (this.#entries.some((e) => e.state === "pending")) this.#run();
  }

  /** Resolves once what the store held at start is loaded (and queued for sending). */
  ready(): Promise<void> {
    return this.#loaded;
  }

  /**
   * Queues a text message and returns its entry at once (state `pending`); it is sent as soon as
   * the server answers, after everything queued before it. `sent(entry.clientMessageId)` waits for it.
   */
  async enqueue(conversationId: string, content: string, extra: OutboxExtra = {}): Promise<Readonly<OutboxEntry>> {
    await this.#loaded;
    if (this.#closed) throw new ConnectError("the client is closed", Code.Canceled);
    const { clientMessageId, ...rest } = extra;
    const id = clientMessageId || randomId();
    const existing = this.#entries.find((e) => e.clientMessageId === id);
    if (existing) return existing;
    const entry: OutboxEntry = { clientMessageId: id, conversationId, content, extra: rest, queuedAt: Date.now(), state: "pending", attempts: 0 };
    this.#entries.push(entry);
    await this.#persist();
    this.emit("change", entry, false);
    this.#run();
    return entry;
  }

  /** Resolves with the stored message once the entry is sent; rejects with the reason if it fails or is discarded. */
  sent(clientMessageId: string): Promise<Message> {
    const e = this.#entries.find((x) => x.clientMessageId === clientMessageId);
    if (!e) return Promise.reject(new ConnectError(`no outbox entry ${clientMessageId}`, Code.NotFound));
    if (e.state === "sent" && e.message) return Promise.resolve(e.message);
    if (e.state === "failed") return Promise.reject(new ConnectError(e.lastError ?? "failed", Code.Unknown));
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(clientMessageId) ?? [];
      list.push({ resolve, reject });
      this.#waiters.set(clientMessageId, list);
    });
  }

  /** Every entry in queue order: pending, sending and failed ones, and those sent since this client started. */
  list(): ReadonlyArray<Readonly<OutboxEntry>> {
    return [...this.#entries];
  }

  /** Entries not yet sent or given up (pending or sending). */
  get pending(): number {
    return this.#entries.filter((e) => e.state === "pending" || e.state === "sending").length;
  }

  /** Puts a failed entry back in the queue (its give-up time counts again from now), keeping its id. */
  async retry(clientMessageId: string): Promise<void> {
    const e = this.#entries.find((x) => x.clientMessageId === clientMessageId);
    if (e?.state !== "failed") return;
    Object.assign(e, { state: "pending", queuedAt: Date.now(), attempts: 0, lastError: undefined });
    await this.#persist();
    this.emit("change", e, false);
    this.#run();
  }

  /** Removes a pending or failed entry (it is not sent; one being sent right now may still arrive). */
  async discard(clientMessageId: string): Promise<void> {
    const i = this.#entries.findIndex((x) => x.clientMessageId === clientMessageId);
    if (i < 0) return;
    const [e] = this.#entries.splice(i, 1);
    await this.#persist();
    this.#settle(e!, undefined, new ConnectError("discarded from the outbox", Code.Canceled));
    this.emit("change", e!, true);
  }

  /** Tries now instead of waiting out the backoff (e.g. when the network comes back). */
  flush(): void {
    this.#wake?.();
    this.#run();
  }

  /** @internal Stops sending (the client closes); entries stay in the store. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  #run(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    void this.#loop().finally(() => {
      this.#running = false;
      // Queued while the loop was finishing.
      if (!this.#closed && this.#entries.some((e) => e.state === "pending")) this.#run();
    });
  }

  async #loop(): Promise<void> {
    let backoff = 0;
    while (!this.#closed) {
      const e = this.#entries.find((x) => x.state === "pending");
      if (!e) return;
      if (Date.now() - e.queuedAt >= this.#giveUpAfterMs) {
        await this.#fail(e, `given up: not sent within ${Math.round(this.#giveUpAfterMs / 1000)} s${e.lastError ? ` (last error: ${e.lastError})` : ""}`);
        continue;
      }
      e.state = "sending";
      this.emit("change", e, false);
      try {
        const message = await this.#send(e.conversationId, e.content, { ...e.extra, clientMessageId: e.clientMessageId });
        e.state = "sent";
        e.message = message;
        e.lastError = undefined;
        backoff = 0;
        await this.#persist();
        this.#settle(e, message);
        this.emit("change", e, false);
      } catch (err) {
        const ce = ConnectError.from(err);
        e.attempts++;
        e.lastError = `${Code[ce.code]}: ${ce.rawMessage}`;
        // "Not now" (unreachable, busy, a broken connection) keeps it; any other answer fails it at once.
        if (!isTransient(ce, true)) {
          await this.#fail(e, e.lastError);
          continue;
        }
        // Not now: keep it first in line (order is kept) and wait, at most until its give-up time.
        e.state = "pending";
        this.emit("change", e, false);
        const wait = Math.min(backoffDelay(backoff++, this.#initialBackoffMs, this.#maxBackoffMs), Math.max(0, e.queuedAt + this.#giveUpAfterMs - Date.now()));
        await this.#pause(wait);
      }
    }
  }

  async #fail(e: OutboxEntry, reason: string): Promise<void> {
    e.state = "failed";
    e.lastError = reason;
    await this.#persist();
    this.#settle(e, undefined, new ConnectError(reason, Code.Unknown));
    this.emit("change", e, false);
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(this.#timer);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      this.#timer = setTimeout(done, ms);
    });
  }

  #settle(e: OutboxEntry, message?: Message, error?: ConnectError): void {
    const list = this.#waiters.get(e.clientMessageId);
    if (!list) return;
    this.#waiters.delete(e.clientMessageId);
    for (const w of list) {
      if (message) w.resolve(message);
      else w.reject(error!);
    }
  }

  async #persist(): Promise<void> {
    const keep = this.#entries.filter((e) => e.state !== "sent").map(({ message: _m, ...r }) => r);
    try {
      await this.#store.save(keep);
    } catch (err) {
      // A full or broken store must not stop sending: the entries are still in memory.
      console.error("chatwire: the outbox store could not save", err);
    }
  }
}
