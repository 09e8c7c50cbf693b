/**
 * Integer hashing for the hashing schedulers: 32-bit mixes built from
 * multiply and xor-shift, in plain numbers so a pick allocates nothing.
 *
 * @module
 */

/**
 * Scrambles a 32-bit integer so that inputs one bit apart land far apart. It is a
 * bijection on uint32 (xor-shifts and odd multipliers are invertible), so
 * distinct keys never collide before a caller reduces the result.
 */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Hashes two 32-bit integers into one, e.g. an address and a port. Mixing the
 * first before adding the second keeps (a, b) and (a + 1, b - 1) apart, which
 * a plain sum (as IPVS's `hash_32(addr + port)`) would not.
 */
export function mixPair(a: number, b: number): number {
  return mix32((mix32(a) + b) | 0);
}

/** Hashes a whole number below 2^53 (such as an address·port key) under a seed. */
export function mixKey(key: number, seed: number): number {
  const high = Math.floor(key / 0x1_0000_0000);
  return mixPair((key ^ seed) | 0, (high ^ Math.imul(seed, 0x9e3779b1)) | 0);
}
