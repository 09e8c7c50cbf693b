/**
 * The 256-bucket table behind IPVS's `sh` and `dh` (IP_VS_SH_TAB_SIZE,
 * IP_VS_DH_TAB_SIZE): each bucket names a real, and a key picks the bucket
 * from the top bits of its hash.
 *
 * @module
 */

import type { RealSet } from "./scheduler.ts";

/** Buckets per table, as IPVS's 8-bit tables. */
export const HASH_BUCKETS = 256;

/**
 * Fills `buckets` with real positions going round the reals, as IPVS's
 * `reassign` does. Weighted (sh): a real holds `weight` consecutive buckets
 * before the next one gets its turn, and a real of weight 0 still holds one,
 * so its clients find it drained instead of silently moving. Unweighted (dh):
 * one bucket each per round. No reals: every bucket is -1.
 */
export function fillBuckets(buckets: Int32Array, reals: RealSet, weighted: boolean): void {
  const n = reals.count;
  if (n === 0) {
    buckets.fill(-1);
    return;
  }
  let real = 0;
  let filled = 0;
  for (let b = 0; b < buckets.length; b++) {
    buckets[b] = real;
    filled++;
    if (!weighted || filled >= reals.weight[real]) {
      real = (real + 1) % n;
      filled = 0;
    }
  }
}

/** The bucket of a 32-bit hash: its top 8 bits, the best-mixed ones. */
export function bucketOf(hash: number): number {
  return hash >>> 24;
}
