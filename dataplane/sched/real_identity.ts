/**
 * Which real is which across `reset()`: a RealSet is indexed by position, but
 * positions shift when a real is removed, and stateful schedulers (mh, lblc,
 * lblcr) must follow the real itself, as IPVS follows its `ip_vs_dest`.
 *
 * @module
 */

import type { RealSet } from "./scheduler.ts";

/** A number naming real `i` that survives reordering: address·65536 + port (exact, below 2^48). */
export function realKey(reals: RealSet, i: number): number {
  return reals.addr[i] * 65536 + reals.port[i];
}

/** The keys of all reals in `reals`, by position. */
export function realKeys(reals: RealSet): Float64Array {
  const keys = new Float64Array(reals.count);
  for (let i = 0; i < reals.count; i++) keys[i] = realKey(reals, i);
  return keys;
}

/**
 * For each old position, the new position of the same real (by key), or -1
 * when it is gone. Called from `reset()` only.
 */
export function remapPositions(oldKeys: Float64Array, newKeys: Float64Array): Int32Array {
  const byKey = new Map<number, number>();
  newKeys.forEach((key, i) => {
    if (!byKey.has(key)) byKey.set(key, i);
  });
  return Int32Array.from(oldKeys, (key) => byKey.get(key) ?? -1);
}
