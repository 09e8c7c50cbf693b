/**
 * The director's own TCP timestamp clock: the TSval of the SYNs it sends to reals in its own name
 * (the SYN proxy's SYN, and every FULLNAT SYN, which leaves from a local address). A real keeps a
 * tuple it closed in TIME_WAIT and takes a new SYN on it only when the SYN's TSval is newer than
 * the last it saw there (Linux's tcp_timewait_state_process, the property tcp_tw_reuse relies on
 * too); a clock that only increases makes every SYN on a reused tuple newer, since the segments
 * of the earlier connection carried this clock's value at its SYN plus the client's own progress
 * (a millisecond clock on Linux) since then.
 *
 * The same wall clock also gives the ISN of FULLNAT SYNs from clients that send no timestamps
 * (forward/fullnat_sequence.ts), where the real's TIME_WAIT decides by sequence number instead.
 *
 * @module
 */

/**
 * The ISN clock's rate: 64 ns ticks, 15.6 million a second (Linux's secure_tcp_seq). A reused
 * tuple's SYN is taken when the clock has moved further since the earlier connection's SYN than
 * that connection's client sent bytes, so the rate bounds the upload a connection may make (15.6
 * MB per second of its life and its TIME_WAIT); RFC 793's 250 kHz would refuse any upload past
 * 250 kB/s. The price is a half-wrap (2^31 ticks) of 137 s: a tuple reused 137 to 274 s after
 * its earlier connection's SYN (one that lived over a minute, closing within TIME_WAIT) is
 * refused, later ones as often as before, by where the clock stands.
 */
const ISN_TICKS_PER_MS = 15_625;

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

  /** The ISN at engine time `now` (ms): wall-clock 64 ns ticks modulo 2^32, as Linux's. */
  isnAt(now: number): number {
    // The whole count of ticks (about 2^54 now) is past a double's integers, so the milliseconds
    // are reduced modulo 2^32 first: (ms mod 2^32) × 15,625 stays below 2^46.
    const wall = this.origin + now;
    const ms = Math.floor(wall);
    const ticks = (ms % 2 ** 32) * ISN_TICKS_PER_MS + Math.floor((wall - ms) * ISN_TICKS_PER_MS);
    return ticks % 2 ** 32;
  }
}
