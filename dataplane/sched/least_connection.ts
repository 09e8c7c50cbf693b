import { available, type RealSet, type Scheduler } from "./scheduler.ts";

/**
 * IPVS's cost of a real's connections: an active connection weighs 256
 * inactive ones, since inactive entries (handshakes, TIME_WAIT) hold almost
 * nothing on the server.
 */
export function connectionOverhead(reals: RealSet, i: number): number {
  return reals.active[i] * 256 + reals.inactive[i];
}

/** IPVS `lc`: the real with the lowest connection overhead, weights only gate (0 = drained). */
export class LeastConnection implements Scheduler {
  readonly name = "lc";

  /** Picks the first real with the smallest overhead among those with a weight. */
  pick(reals: RealSet, _client: number, _clientPort: number, _vip: number, _vport: number): number {
    let least = -1;
    let leastOverhead = 0;
    for (let i = 0; i < reals.count; i++) {
      if (!available(reals, i)) continue;
      const overhead = connectionOverhead(reals, i);
      if (least < 0 || overhead < leastOverhead) {
        least = i;
        leastOverhead = overhead;
      }
    }
    return least;
  }

  /** Keeps no state. */
  reset(_reals: RealSet): void {}
}
