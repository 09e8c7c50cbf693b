/**
 * The director's own TCP timestamp clock: the TSval of the SYNs it sends to reals in its own name
 * (the SYN proxy's SYN, and every FULLNAT SYN, which leaves from a local address). A real keeps a
 * tuple it closed in TIME_WAIT and takes a new SYN on it only when the SYN's TSval is newer than
 * the last it saw there (Linux's tcp_timewait_state_process, the property tcp_tw_reuse relies on
 * too); a clock that only increases makes every SYN on a reused tuple newer, since the segments
 * of the earlier connection carried this clock's value at its SYN plus the client's own progress
 * (a millisecond clock on Linux) since then.
 *
 * @module
 */

/** Wall-clock milliseconds modulo 2^32, read through the engine's monotonic clock. */
export class TimestampClock {
  /**
   * Milliseconds since the epoch at the engine clock's 0 (`performance.now()`'s origin): the
   * clock counts wall-clock milliseconds, so that it keeps increasing across workers and
   * restarts, and within one process it follows the monotonic engine clock. Tests set it.
   */
  origin = performance.timeOrigin;

  /** The TSval at engine time `now` (ms). */
  at(now: number): number {
    // ToUint32 of an integer below 2^53: modulo 2^32.
    return Math.floor(this.origin + now) >>> 0;
  }
}
