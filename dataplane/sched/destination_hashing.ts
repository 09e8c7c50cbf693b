import { bucketOf, fillBuckets, HASH_BUCKETS } from "./hash_buckets.ts";
import { mix32 } from "./integer_hash.ts";
import { available, type RealSet, type Scheduler } from "./scheduler.ts";

/**
 * IPVS `dh`, destination hashing: the packet's destination address picks one
 * of 256 buckets, filled one per real in turn (IPVS ignores weights here, only
 * weight 0 matters: such a real takes nothing). A destination whose real is
 * drained or overloaded gets nothing; dh has no fallback. It is meant for
 * caches and firewall-mark services with many destinations; for a plain VIP the
 * destination is always the VIP, so one real takes the whole service.
 */
export class DestinationHashing implements Scheduler {
  readonly name = "dh";
  readonly #buckets = new Int32Array(HASH_BUCKETS).fill(-1);

  /** The real the destination address hashes to, if it may take the connection. */
  pick(reals: RealSet, _client: number, _clientPort: number, vip: number, _vport: number): number {
    const real = this.#buckets[bucketOf(mix32(vip))];
    return real >= 0 && real < reals.count && available(reals, real) ? real : -1;
  }

  /** Refills the buckets from the current reals. */
  reset(reals: RealSet): void {
    fillBuckets(this.#buckets, reals, false);
  }

  /** The bucket table, by bucket: a real's position (read-only view, for inspection). */
  get buckets(): Int32Array {
    return this.#buckets;
  }
}
