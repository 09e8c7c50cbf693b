import { bucketOf, fillBuckets, HASH_BUCKETS } from "./hash_buckets.ts";
import { mix32, mixPair } from "./integer_hash.ts";
import {
  available,
  NO_FLAGS,
  type RealSet,
  type Scheduler,
  type SchedulerFlags,
} from "./scheduler.ts";

/**
 * IPVS `sh`, source hashing: the client's address (and port, with `sh-port`)
 * picks one of 256 buckets filled round the reals by weight, so a client keeps
 * its real while the reals stay the same. When that real is drained or
 * overloaded the client gets nothing, unless `sh-fallback` lets it walk the
 * table to the next real that can take it.
 */
export class SourceHashing implements Scheduler {
  readonly name = "sh";
  readonly #buckets = new Int32Array(HASH_BUCKETS).fill(-1);
  readonly #port: boolean;
  readonly #fallback: boolean;

  /** `flags.port` hashes the client port too; `flags.fallback` tries further buckets. */
  constructor(flags: SchedulerFlags = NO_FLAGS) {
    this.#port = flags.port;
    this.#fallback = flags.fallback;
  }

  /** The real the client hashes to, or with fallback the first available one after it. */
  pick(reals: RealSet, client: number, clientPort: number, _vip: number, _vport: number): number {
    const home = bucketOf(this.#port ? mixPair(client, clientPort) : mix32(client));
    const real = this.#buckets[home];
    if (real < 0 || real >= reals.count) return -1;
    if (available(reals, real)) return real;
    if (!this.#fallback) return -1;
    // The first available real after the home bucket, round the whole table, as
    // IPVS's fallback intends (its code starts the walk at twice the home bucket,
    // an artifact of adding the offset to a hash that already contains it).
    for (let step = 1; step < HASH_BUCKETS; step++) {
      const r = this.#buckets[(home + step) & (HASH_BUCKETS - 1)];
      if (r >= 0 && r < reals.count && available(reals, r)) return r;
    }
    return -1;
  }

  /** Refills the buckets from the current reals and weights. */
  reset(reals: RealSet): void {
    fillBuckets(this.#buckets, reals, true);
  }

  /** The bucket table, by bucket: a real's position (read-only view, for inspection). */
  get buckets(): Int32Array {
    return this.#buckets;
  }
}
