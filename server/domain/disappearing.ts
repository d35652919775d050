// Disappearing messages: the timers a conversation may have, in seconds.

/** Off, 24 hours, 7 days, 90 days (WhatsApp's choices). */
export const DISAPPEARING_TIMERS: readonly number[] = [0, 86_400, 604_800, 7_776_000];

/** A purge run deletes at most this many messages per transaction ... */
export const PURGE_BATCH = 500;
/** ... and at most this many batches: a backlog is worked off over the next runs, reads hide it meanwhile. */
export const PURGE_BATCHES_PER_RUN = 4;
