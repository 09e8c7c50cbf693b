import { type LocalityOptions, LocalityTable } from "./locality_table.ts";
import { realKeys, remapPositions } from "./real_identity.ts";
import { available, type RealSet, type Scheduler } from "./scheduler.ts";
import { WeightedLeastConnection } from "./weighted_least_connection.ts";

/**
 * IPVS's locality overload rule (lblc, lblcr): real `r` is overloaded when it
 * has more active connections than its weight while some real is below half
 * of its own weight, i.e. there is somewhere better to go.
 */
export function localityOverloaded(reals: RealSet, r: number): boolean {
  if (reals.active[r] <= reals.weight[r]) return false;
  for (let i = 0; i < reals.count; i++) {
    if (reals.active[i] * 2 < reals.weight[i]) return true;
  }
  return false;
}

/** The monotonic clock locality schedulers read once per pick, in ms. */
export function monotonicNow(): number {
  return performance.now();
}

/**
 * IPVS `lblc`, locality-based least connection: each destination address keeps
 * the real it was first given (by wlc) until that real is drained, overloaded by
 * the locality rule, or gone; then wlc picks again and the entry follows. For
 * cache clusters with many destinations; a plain VIP is a single destination,
 * which makes it a sticky wlc.
 */
export class LocalityBasedLeastConnection implements Scheduler {
  readonly name = "lblc";
  readonly #table: LocalityTable;
  readonly #now: () => number;
  readonly #least = new WeightedLeastConnection();
  /** Real position per entry id. */
  readonly #real: Int32Array;
  #keys: Float64Array = new Float64Array(0);

  /** A scheduler with an empty cache; options default to IPVS's. */
  constructor(options: LocalityOptions = {}) {
    this.#table = new LocalityTable(options.maxEntries, options.expiration);
    this.#now = options.now ?? monotonicNow;
    this.#real = new Int32Array(this.#table.capacity).fill(-1);
  }

  /** The destination's cached real if it still qualifies, else wlc's pick, cached. */
  pick(reals: RealSet, client: number, clientPort: number, vip: number, vport: number): number {
    const now = this.#now();
    const table = this.#table;
    table.collect(now);
    let entry = table.find(vip);
    if (entry >= 0) {
      table.lastUse[entry] = now;
      const r = this.#real[entry];
      // IPVS checks only the weight here, not the upper-threshold flag; we honour
      // the threshold, as every other scheduler of this dataplane does.
      if (r >= 0 && r < reals.count && available(reals, r) && !localityOverloaded(reals, r)) {
        return r;
      }
    }
    const r = this.#least.pick(reals, client, clientPort, vip, vport);
    if (r < 0) return -1;
    if (entry < 0) entry = table.add(vip, now);
    // A full table just leaves the destination uncached, as IPVS does when out of memory.
    if (entry >= 0) this.#real[entry] = r;
    return r;
  }

  /** Re-points cached entries at the reals' new positions; entries of removed reals pick anew. */
  reset(reals: RealSet): void {
    const keys = realKeys(reals);
    const moved = remapPositions(this.#keys, keys);
    this.#keys = keys;
    for (let e = 0; e < this.#table.capacity; e++) {
      if (!this.#table.isLive(e)) continue;
      const r = this.#real[e];
      this.#real[e] = r >= 0 && r < moved.length ? moved[r] : -1;
    }
  }

  /** Cached destinations. */
  get entries(): number {
    return this.#table.size;
  }
}
