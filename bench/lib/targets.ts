// Issue 15's targets, printed next to the figures they judge.

/** A delivery step passes with p99 at or under this (and nothing lost or failed). */
export const DELIVERY_P99_MS = 50;

/** 1:1 delivery, msg/s at p99 ≤ 50 ms, by devices subscribed. */
/** Issue 15 item 7: the embedded profile (PGlite, inline queue), 100 devices. */
export const EMBEDDED_TARGET = 500;
export const DELIVERY_TARGETS: Record<number, number> = { 100: 2500, 1000: 2000, 5000: 1500 };

/** msg/s ÷ (Chatwire + PostgreSQL + NATS cores): the figure that compares with ejabberd's. */
export const PER_SERVER_CORE_SECOND = 3000;

/** SendMessage → durable ack p50 at ACK_RATE msg/s. */
export const ACK_P50_MS = 2;
export const ACK_RATE = 1000;

/** Server RSS per idle Subscribe stream. */
export const IDLE_STREAM_KIB = 32;

/** Reconnect storm: every device caught up within. */
export const STORM_SECONDS = 10;

export const thousands = (n: number) => n.toLocaleString("en-US");
