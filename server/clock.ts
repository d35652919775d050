/** Wall clock, injected so tests can move time (OTP expiry, stories). */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
