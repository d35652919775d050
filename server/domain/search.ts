import { createHash } from "node:crypto";

// What a search query means, without the database: SearchMessages' words as a
// to_tsquery, SearchConversations' text and phone digits, and the page token.

const SEARCH_QUERY_MAX = 256;
const SEARCH_WORDS_MAX = 16;
const NAME_QUERY_MAX = 100;

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/**
 * SearchMessages' query as a to_tsquery text: its words (runs of letters,
 * marks and digits, lower-cased) all required, the last one also as a prefix.
 * Nothing else of the query reaches to_tsquery, so its syntax (& | ! : ' ( ))
 * cannot be injected.
 */
export function messageQuery(query: string): Parsed<string> {
  if ([...query].length > SEARCH_QUERY_MAX) return { ok: false, problem: `query: at most ${SEARCH_QUERY_MAX} characters` };
  const words = (query.toLowerCase().match(/[\p{L}\p{M}\p{N}]+/gu) ?? []) as string[];
  if (words.length === 0) return { ok: false, problem: "query: give at least one word (letters or digits)" };
  if (words.length > SEARCH_WORDS_MAX) return { ok: false, problem: `query: at most ${SEARCH_WORDS_MAX} words (got ${words.length})` };
  const terms = words.map((w, i) => (i === words.length - 1 ? `${w}:*` : w));
  return { ok: true, value: terms.join(" & ") };
}

/** SearchConversations' query: the trimmed text, and its digits when it looks like (part of) a phone number. */
export function nameQuery(query: string): Parsed<{ text: string; digits: string }> {
  const text = query.trim();
  if (text === "") return { ok: false, problem: "query: must not be empty" };
  if ([...text].length > NAME_QUERY_MAX) return { ok: false, problem: `query: at most ${NAME_QUERY_MAX} characters` };
  const phoneLike = /^[+\d\s().-]+$/.test(text);
  const digits = phoneLike ? text.replace(/\D/g, "") : "";
  return { ok: true, value: { text, digits } };
}

export interface SearchPosition {
  rank: string;
  createdAt: string;
  id: string;
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Ties a page token to its query, so a token from another search is refused rather than misread. */
function fingerprint(tsquery: string, conversationId: string): string {
  return createHash("sha256").update(`${tsquery}\u0000${conversationId}`).digest("base64url").slice(0, 11);
}

export function encodeSearchToken(p: SearchPosition, tsquery: string, conversationId: string): string {
  return Buffer.from(JSON.stringify([p.rank, p.createdAt, p.id, fingerprint(tsquery, conversationId)])).toString("base64url");
}

/** The position a token names, or undefined when it is not a token of this search. */
export function decodeSearchToken(token: string, tsquery: string, conversationId: string): SearchPosition | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (!Array.isArray(v) || v.length !== 4 || !v.every((x) => typeof x === "string")) return undefined;
    const [rank, createdAt, id, f] = v as string[];
    if (f !== fingerprint(tsquery, conversationId)) return undefined;
    if (
      !/^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(rank!) ||
      !Number.isFinite(Number(rank)) ||
      !ISO_MS.test(createdAt!) ||
      Number.isNaN(Date.parse(createdAt!)) ||
      !UUID.test(id!)
    )
      return undefined;
    return { rank: rank!, createdAt: createdAt!, id: id! };
  } catch {
    return undefined;
  }
}
