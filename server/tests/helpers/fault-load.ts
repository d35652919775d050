import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { expect } from "vitest";

// Shared by the fault tests that kill a dependency while messages are sent with client retries
// (pg-outage, nats-cluster): the bounded wait, and the count of what was lost and doubled, asked of
// PostgreSQL itself.

/** Polls until `check` holds (bounded); returns the ms it took. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not so after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** One message a test sent: its conversation and the client_message_id every retry used. */
export interface SentMessage {
  sender: { conversationId: string };
  clientMessageId: string;
}

export interface StoredRow {
  conversation_id: string;
  seq: string;
  client_message_id: string;
}

/**
 * Waits (at most `timeoutMs`) until every message of `work` is stored (the worker may still be catching up),
 * runs `thenWait` if given, and reads the rows of those conversations in seq order: how long storing took,
 * the rows, and how many of `work` are missing (lost) or stored twice (doubled).
 */
export async function storedOutcome(
  databaseUrl: string,
  work: readonly SentMessage[],
  timeoutMs: number,
  thenWait?: () => Promise<unknown>,
): Promise<{ storedAllMs: number; rows: StoredRow[]; lost: number; doubled: number }> {
  const ids = [...new Set(work.map((w) => w.sender.conversationId))];
  const check = new pg.Client({ connectionString: databaseUrl });
  await check.connect();
  try {
    const storedAllMs = await until(
      `${work.length} messages stored`,
      async () => Number((await check.query("select count(*) as n from messages where conversation_id = any($1)", [ids])).rows[0].n) >= work.length,
      timeoutMs,
      100,
    );
    await thenWait?.();
    const { rows } = await check.query<StoredRow>(
      "select conversation_id, seq::text as seq, client_message_id from messages where conversation_id = any($1) order by conversation_id, messages.seq",
      [ids],
    );
    const storedKeys = rows.map((r) => `${r.conversation_id}/${r.client_message_id}`);
    const distinct = new Set(storedKeys);
    const lost = work.filter((w) => !distinct.has(`${w.sender.conversationId}/${w.clientMessageId}`)).length;
    return { storedAllMs, rows, lost, doubled: storedKeys.length - distinct.size };
  } finally {
    await check.end();
  }
}

/**
 * Asserts what a fault test promises: nothing of `work` lost or stored twice, and in each conversation seq runs
 * 1, 2, 3, … with no gap, each of its client_message_ids exactly once.
 */
export function expectStoredOnceGapless(outcome: { rows: StoredRow[]; lost: number; doubled: number }, work: readonly SentMessage[]): void {
  const { rows, lost, doubled } = outcome;
  expect({ lost, doubled }).toEqual({ lost: 0, doubled: 0 });
  expect(rows.length).toBe(work.length);
  for (const conversationId of new Set(work.map((w) => w.sender.conversationId))) {
    const mine = rows.filter((r) => r.conversation_id === conversationId);
    const expected = work.filter((w) => w.sender.conversationId === conversationId).map((w) => w.clientMessageId);
    expect(
      mine.map((r) => Number(r.seq)),
      "seq is gapless",
    ).toEqual(Array.from({ length: expected.length }, (_, i) => i + 1));
    expect(mine.map((r) => r.client_message_id).sort(), "each message exactly once").toEqual([...expected].sort());
  }
}
