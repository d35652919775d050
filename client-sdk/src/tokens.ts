/**
 * The credentials of one logged-in device (session), as the SDK keeps them.
 */
export interface Tokens {
  /** Short-lived bearer token (15 minutes by default). */
  accessToken: string;
  /** Long-lived single-use token that buys the next pair. */
  refreshToken: string;
  /** When `accessToken` expires, in milliseconds since the epoch. */
  accessTokenExpiresAt: number;
  /** When `refreshToken` expires, in milliseconds since the epoch (0 when unknown). */
  refreshTokenExpiresAt: number;
  /** The session (device) both tokens belong to. */
  sessionId: string;
  /** The logged-in user's id. */
  userId: string;
}

/**
 * Where the SDK keeps the tokens. Implement it to keep them somewhere else
 * (secure storage on a device, a cookie-backed store, a file); both methods
 * may be synchronous or return promises.
 */
export interface TokenStore {
  /** The current tokens, or null when logged out. */
  get(): Tokens | null | Promise<Tokens | null>;
  /** Replaces the tokens; null forgets them (logout). */
  set(tokens: Tokens | null): void | Promise<void>;
}

/** Keeps the tokens in memory only: the default in Node. */
export class MemoryTokenStore implements TokenStore {
  #tokens: Tokens | null;
  constructor(initial: Tokens | null = null) {
    this.#tokens = initial;
  }
  get(): Tokens | null {
    return this.#tokens;
  }
  set(tokens: Tokens | null): void {
    this.#tokens = tokens;
  }
}

/** The part of the Web Storage API the SDK uses (localStorage, sessionStorage, or your own). */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Keeps the tokens in `localStorage` under one key, so a reload stays logged
 * in and tabs of one origin share a session: the default in browsers.
 */
export class LocalStorageTokenStore implements TokenStore {
  /** @param key the localStorage key (default `"chatwire.tokens"`). */
  constructor(
    readonly key = "chatwire.tokens",
    private readonly storage: KeyValueStorage = globalThis.localStorage,
  ) {}
  get(): Tokens | null {
    const raw = this.storage.getItem(this.key);
    if (!raw) return null;
    try {
      const t = JSON.parse(raw) as Partial<Tokens>;
      return typeof t.accessToken === "string" && typeof t.refreshToken === "string" ? (t as Tokens) : null;
    } catch {
      return null;
    }
  }
  set(tokens: Tokens | null): void {
    if (tokens) this.storage.setItem(this.key, JSON.stringify(tokens));
    else this.storage.removeItem(this.key);
  }
}

/** The `exp` claim of a JWT in milliseconds, or 0 when it cannot be read. */
export function jwtExpiry(token: string): number {
  const payload = token.split(".")[1];
  if (!payload) return 0;
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), "="))) as { exp?: unknown };
    return typeof json.exp === "number" ? json.exp * 1000 : 0;
  } catch {
    return 0;
  }
}
