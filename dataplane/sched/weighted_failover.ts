import { available, type RealSet, type Scheduler } from "./scheduler.ts";

/**
 * IPVS `fo`, weighted failover: every new connection goes to the available real
 * with the highest weight (the first of equals), so weights rank the reals
 * instead of sharing load; when it is drained or overloaded the next takes over.
 */
export class WeightedFailover implements Scheduler {
  readonly name = "fo";

  /** The first available real of the highest weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    let best = -1;
    let bestWeight = 0;
    for (let i = 0; i < reals.count; i++) {
      if (available(reals, i) && reals.weight[i] > bestWeight) {
        best = i;
        bestWeight = reals.weight[i];
      }
    }
    return best;
  }

  /** Keeps no state. */
  reset(_reals: RealSet): void {}
}
