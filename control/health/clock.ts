/** Time source for the health monitor, injectable so tests run checks on a fake clock. */

/** A timer handle; opaque because Deno's and Node's typings disagree on it. */
export type TimerId = unknown;

/** Milliseconds now, and one-shot timers. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
}

/** The real clock: Date.now and the global timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};
