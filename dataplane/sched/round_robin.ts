import { available, type RealSet, type Scheduler } from "./scheduler.ts";

/** IPVS `rr`: each new connection goes to the next real with a non-zero weight. */
export class RoundRobin implements Scheduler {
  readonly name = "rr";
  #last = -1;

  /** Picks the real after the previous pick, skipping drained (weight 0) reals. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    const n = reals.count;
    for (let step = 1; step <= n; step++) {
      const i = (this.#last + step) % n;
      if (available(reals, i)) {
        this.#last = i;
        return i;
      }
    }
    return -1;
  }

  /** Keeps the position unless it no longer exists. */
  reset(reals: RealSet): void {
    if (this.#last >= reals.count) this.#last = -1;
  }
}
