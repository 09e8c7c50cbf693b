import { localityOverloaded, monotonicNow } from "./locality_least_connection.ts";
import { type LocalityOptions, LocalityTable } from "./locality_table.ts";
import { realKeys, remapPositions } from "./real_identity.ts";
import type { RealSet, Scheduler } from "./scheduler.ts";
import { WeightedLeastConnection } from "./weighted_least_connection.ts";

/**
 * IPVS `lblcr`, locality-based least connection with replication: each
 * destination address keeps a set of reals and uses the least loaded of them
 * (connection overhead per weight). When that one is overloaded by the
 * locality rule, wlc picks a real from the whole service and it joins the set.
 * A set that has not changed for `expiration` loses its most loaded member, one
 * per pick, so it shrinks back once the load is gone.
 */
export class ReplicatedLocalityBasedLeastConnection implements Scheduler {
  readonly name = "lblcr";
  readonly #table: LocalityTable;
  readonly #now: () => number;
  readonly #least = new WeightedLeastConnection();
  /** 32-bit words per entry's member bitmap. */
  #stride = 1;
  /** Member bitmaps, `#stride` words per entry id, bit i = real position i. */
  #members: Uint32Array;
  /** Members per entry id. */
  readonly #memberCount: Int32Array;
  /** Clock value of the last change to each entry's set (IPVS's `lastmod`). */
  readonly #lastMod: Float64Array;
  #keys: Float64Array = new Float64Array(0);

  /** A scheduler with an empty cache; options default to IPVS's. */
  constructor(options: LocalityOptions = {}) {
    this.#table = new LocalityTable(options.maxEntries, options.expiration);
    this.#now = options.now ?? monotonicNow;
    const capacity = this.#table.capacity;
    this.#members = new Uint32Array(capacity);
    this.#memberCount = new Int32Array(capacity);
    this.#lastMod = new Float64Array(capacity);
  }

  /** The set's least loaded real unless overloaded, else wlc's pick added to the set. */
  pick(reals: RealSet, client: number, clientPort: number, vip: number, vport: number): number {
    const now = this.#now();
    const table = this.#table;
    table.collect(now);
    let entry = table.find(vip);
    if (entry >= 0) {
      table.lastUse[entry] = now;
      const least = this.#leastLoaded(entry, reals);
      if (this.#memberCount[entry] > 1 && now - this.#lastMod[entry] > table.expiration) {
        const most = this.#mostLoaded(entry, reals);
        if (most >= 0) this.#erase(entry, most, now);
      }
      if (least >= 0 && !localityOverloaded(reals, least)) return least;
    }
    const r = this.#least.pick(reals, client, clientPort, vip, vport);
    if (r < 0) return -1;
    if (entry < 0) {
      entry = table.add(vip, now);
      if (entry < 0) return r;
      this.#members.fill(0, entry * this.#stride, (entry + 1) * this.#stride);
      this.#memberCount[entry] = 0;
    }
    this.#insert(entry, r, now);
    return r;
  }

  /** Real positions in destination `vip`'s set, ascending (for inspection; allocates). */
  members(vip: number): number[] {
    const entry = this.#table.find(vip);
    const out: number[] = [];
    if (entry < 0) return out;
    for (let i = 0; i < this.#stride * 32; i++) if (this.#has(entry, i)) out.push(i);
    return out;
  }

  /** Re-points every set at the reals' new positions; removed reals leave their sets. */
  reset(reals: RealSet): void {
    const keys = realKeys(reals);
    const moved = remapPositions(this.#keys, keys);
    const oldStride = this.#stride;
    const old = this.#members;
    const stride = Math.max(1, Math.ceil(reals.count / 32));
    const members = new Uint32Array(this.#table.capacity * stride);
    for (let e = 0; e < this.#table.capacity; e++) {
      if (!this.#table.isLive(e)) continue;
      let count = 0;
      for (let j = 0; j < moved.length && j < oldStride * 32; j++) {
        const to = moved[j];
        if (to < 0 || (old[e * oldStride + (j >>> 5)] & (1 << (j & 31))) === 0) continue;
        members[e * stride + (to >>> 5)] |= 1 << (to & 31);
        count++;
      }
      this.#memberCount[e] = count;
    }
    this.#keys = keys;
    this.#stride = stride;
    this.#members = members;
  }

  #has(entry: number, i: number): boolean {
    return (this.#members[entry * this.#stride + (i >>> 5)] & (1 << (i & 31))) !== 0;
  }

  #insert(entry: number, r: number, now: number): void {
    if (this.#has(entry, r)) return;
    this.#members[entry * this.#stride + (r >>> 5)] |= 1 << (r & 31);
    this.#memberCount[entry]++;
    this.#lastMod[entry] = now;
  }

  #erase(entry: number, r: number, now: number): void {
    this.#members[entry * this.#stride + (r >>> 5)] &= ~(1 << (r & 31));
    this.#memberCount[entry]--;
    this.#lastMod[entry] = now;
  }

  /**
   * IPVS's `ip_vs_dest_set_min`: among members neither drained nor over their
   * upper threshold, the least overhead per weight; the first on ties.
   */
  #leastLoaded(entry: number, reals: RealSet): number {
    let least = -1;
    let leastOverhead = 0;
    const n = Math.min(reals.count, this.#stride * 32);
    for (let i = 0; i < n; i++) {
      if (!this.#has(entry, i) || reals.overloaded[i] !== 0 || reals.weight[i] <= 0) continue;
      const o = reals.active[i] * 256 + reals.inactive[i];
      if (least < 0 || leastOverhead * reals.weight[i] > o * reals.weight[least]) {
        least = i;
        leastOverhead = o;
      }
    }
    return least;
  }

  /**
   * IPVS's `ip_vs_dest_set_max`: among weighted members (over threshold or not),
   * the most overhead per weight; the first on ties.
   */
  #mostLoaded(entry: number, reals: RealSet): number {
    let most = -1;
    let mostOverhead = 0;
    const n = Math.min(reals.count, this.#stride * 32);
    for (let i = 0; i < n; i++) {
      if (!this.#has(entry, i) || reals.weight[i] <= 0) continue;
      const o = reals.active[i] * 256 + reals.inactive[i];
      if (most < 0 || mostOverhead * reals.weight[i] < o * reals.weight[most]) {
        most = i;
        mostOverhead = o;
      }
    }
    return most;
  }
}
