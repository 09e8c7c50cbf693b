import { available, type RealSet, type Scheduler } from "./scheduler.ts";

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * IPVS `wrr`: interleaves reals in proportion to their weights. A current
 * weight steps down from the largest weight by the weights' gcd; each pass
 * picks the reals whose weight reaches it, so 2:1 gives A A B rather than
 * bursts.
 */
export class WeightedRoundRobin implements Scheduler {
  readonly name = "wrr";
  #index = -1;
  #current = 0;
  #max = 0;
  #step = 1;

  /** Recomputes the largest weight and the gcd step, restarting the sequence. */
  reset(reals: RealSet): void {
    let max = 0;
    let g = 0;
    for (let i = 0; i < reals.count; i++) {
      const w = reals.weight[i];
      if (w > max) max = w;
      if (w > 0) g = gcd(g, w);
    }
    this.#max = max;
    this.#step = g > 0 ? g : 1;
    this.#index = -1;
    this.#current = 0;
  }

  /** Picks the next real whose weight reaches the current weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    const n = reals.count;
    if (n === 0 || this.#max === 0) return -1;
    if (this.#index >= n) this.#index = -1;
    // At most one full descent of the current weight plus one lap finds a real.
    for (let guard = n * (this.#max / this.#step + 1); guard > 0; guard--) {
      this.#index = (this.#index + 1) % n;
      if (this.#index === 0) {
        this.#current -= this.#step;
        if (this.#current <= 0) this.#current = this.#max;
      }
      const i = this.#index;
      if (available(reals, i) && reals.weight[i] >= this.#current) return i;
    }
    return -1;
  }
}
