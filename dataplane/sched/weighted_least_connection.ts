import { connectionOverhead } from "./least_connection.ts";
import { available, type RealSet, type Scheduler } from "./scheduler.ts";

/**
 * The weighted-least family: each real costs `overhead(i) / weight(i)` and the
 * cheapest wins (first on ties). Costs are compared cross-multiplied, as IPVS
 * does, so no division and no rounding.
 */
function weightedLeast(
  reals: RealSet,
  overhead: (reals: RealSet, i: number) => number,
  idleWins: boolean,
): number {
  let least = -1;
  let leastOverhead = 0;
  for (let i = 0; i < reals.count; i++) {
    if (!available(reals, i)) continue;
    const w = reals.weight[i];
    // nq: a real without active connections takes the connection at once.
    if (idleWins && reals.active[i] === 0) return i;
    const o = overhead(reals, i);
    if (least < 0 || leastOverhead * w > o * reals.weight[least]) {
      least = i;
      leastOverhead = o;
    }
  }
  return least;
}

function expectedDelay(reals: RealSet, i: number): number {
  return reals.active[i] + 1;
}

/** IPVS `wlc` (ipvsadm's default): least connection overhead per unit of weight. */
export class WeightedLeastConnection implements Scheduler {
  readonly name = "wlc";

  /** Picks the real with the smallest overhead/weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    return weightedLeast(reals, connectionOverhead, false);
  }

  /** Keeps no state. */
  reset(_reals: RealSet): void {}
}

/** IPVS `sed`, shortest expected delay: the smallest (active + 1) / weight. */
export class ShortestExpectedDelay implements Scheduler {
  readonly name = "sed";

  /** Picks the real with the smallest (active + 1)/weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    return weightedLeast(reals, expectedDelay, false);
  }

  /** Keeps no state. */
  reset(_reals: RealSet): void {}
}

/** IPVS `nq`, never queue: an idle real if there is one, else as `sed`. */
export class NeverQueue implements Scheduler {
  readonly name = "nq";

  /** Picks the first idle real, or the one with the smallest (active + 1)/weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    return weightedLeast(reals, expectedDelay, true);
  }

  /** Keeps no state. */
  reset(_reals: RealSet): void {}
}
