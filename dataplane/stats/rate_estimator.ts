/**
 * Rate estimation as IPVS does it for `ipvsadm --rate`: every 2 seconds each
 * row's counters are sampled and the rate over the interval is folded into an
 * exponentially weighted moving average with weight 1/4. Averages are kept in
 * the kernel's fixed-point scales (2^10 for connections and packets per
 * second, 2^5 for bytes per second) and rounded the same way when read, so the
 * figures match what kernel IPVS would show for the same traffic.
 */

/** The sampling interval, in ms. */
export const RATE_INTERVAL_MS = 2000;

/** The rates of a row, by index into `RateEstimator.rate`. */
export const Rate = {
  CPS: 0,
  IN_PPS: 1,
  OUT_PPS: 2,
  IN_BPS: 3,
  OUT_BPS: 4,
} as const;

const RATES = 5;
/** Counts per 2-second sample → per second scaled by 2^10: times 2^10 / 2. */
const COUNT_SCALE = 512;
/** Bytes per 2-second sample → per second scaled by 2^5: times 2^5 / 2. */
const BYTE_SCALE = 16;
/** Rounding added before a scaled average is shifted back (half the scale, less one). */
const COUNT_ROUND = 511;
const BYTE_ROUND = 15;

/**
 * Estimators for a fixed number of rows (a service or a real each). Float64
 * holds the kernel's 64-bit fixed-point values exactly up to 2^53, i.e. rates
 * far above what one worker can forward.
 */
export class RateEstimator {
  /** Counter values at the last sample, RATES per row in `Rate` order. */
  readonly #last: Float64Array;
  /** Scaled moving averages, RATES per row in `Rate` order. */
  readonly #avg: Float64Array;

  /** Allocates `rows` estimators, all at zero. */
  constructor(readonly rows: number) {
    this.#last = new Float64Array(rows * RATES);
    this.#avg = new Float64Array(rows * RATES);
  }

  /**
   * Folds one interval into `row`, given its counters now. Whatever time passed
   * since the last sample counts as one interval, as in the kernel.
   */
  sample(
    row: number,
    conns: number,
    inPackets: number,
    outPackets: number,
    inBytes: number,
    outBytes: number,
  ): void {
    const base = row * RATES;
    this.#fold(base + Rate.CPS, conns, COUNT_SCALE);
    this.#fold(base + Rate.IN_PPS, inPackets, COUNT_SCALE);
    this.#fold(base + Rate.OUT_PPS, outPackets, COUNT_SCALE);
    this.#fold(base + Rate.IN_BPS, inBytes, BYTE_SCALE);
    this.#fold(base + Rate.OUT_BPS, outBytes, BYTE_SCALE);
  }

  /**
   * Starts `row` over from the given counters (what `ipvsadm -Z` does): the
   * averages drop to zero and the next interval is measured from these values.
   */
  reset(
    row: number,
    conns: number,
    inPackets: number,
    outPackets: number,
    inBytes: number,
    outBytes: number,
  ): void {
    const base = row * RATES;
    this.#last[base + Rate.CPS] = conns;
    this.#last[base + Rate.IN_PPS] = inPackets;
    this.#last[base + Rate.OUT_PPS] = outPackets;
    this.#last[base + Rate.IN_BPS] = inBytes;
    this.#last[base + Rate.OUT_BPS] = outBytes;
    this.#avg.fill(0, base, base + RATES);
  }

  /** The rate `which` (a `Rate` value) of `row`, per second, rounded as the kernel reads it. */
  rate(row: number, which: number): number {
    const avg = this.#avg[row * RATES + which];
    return which >= Rate.IN_BPS
      ? Math.floor((avg + BYTE_ROUND) / 32)
      : Math.floor((avg + COUNT_ROUND) / 1024);
  }

  /** The scaled moving average behind `rate`, for tests that follow the kernel's arithmetic. */
  scaled(row: number, which: number): number {
    return this.#avg[row * RATES + which];
  }

  #fold(i: number, value: number, scale: number): void {
    const rate = (value - this.#last[i]) * scale;
    this.#last[i] = value;
    // The kernel shifts the signed difference right by 2: a division by 4 rounded down.
    this.#avg[i] += Math.floor((rate - this.#avg[i]) / 4);
  }
}
