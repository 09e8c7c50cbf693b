import { available, type RealSet, type Scheduler } from "./scheduler.ts";

/**
 * IPVS `ovf`, weighted overflow: new connections go to the highest-weight real
 * (the first of equals) until its active connections exceed its weight, then
 * overflow to the next highest. As IPVS compares `active > weight`, a real takes
 * connections while it has at most `weight` active, so it ends with weight + 1.
 * Only active connections count, which makes it a poor fit for UDP.
 */
export class WeightedOverflow implements Scheduler {
  readonly name = "ovf";

  /** The first highest-weight available real whose active connections do not exceed its weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    let best = -1;
    let bestWeight = 0;
    for (let i = 0; i < reals.count; i++) {
      const w = reals.weight[i];
      if (!available(reals, i) || reals.active[i] > w) continue;
      if (w > bestWeight) {
        best = i;
        bestWeight = w;
      }
    }
    return best;
  }

  /** Keeps no state. */
  reset(_reals: RealSet): void {}
}
