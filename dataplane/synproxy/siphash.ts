/**
 * SipHash-2-4 (Aumasson and Bernstein) over a message of whole 32-bit words, with its 64-bit
 * lanes kept as pairs of 32-bit halves in a typed array, so that hashing allocates nothing.
 * Written for SYN cookies: a keyed PRF over a connection's tuple.
 *
 * @module
 */

/** The state v0..v3, each as [low, high]: v0 at 0-1, v1 at 2-3, v2 at 4-5, v3 at 6-7. */
const v = new Uint32Array(8);

/** Adds lane `b` to lane `a` (indexes of their low halves), modulo 2^64. */
function add(a: number, b: number): void {
  const lo = (v[a] + v[b]) >>> 0;
  const carry = lo < v[a] ? 1 : 0;
  v[a] = lo;
  v[a + 1] = v[a + 1] + v[b + 1] + carry;
}

/** Rotates lane `a` left by `r` bits, 0 < r < 32. */
function rotl(a: number, r: number): void {
  const lo = v[a];
  const hi = v[a + 1];
  v[a] = (lo << r) | (hi >>> (32 - r));
  v[a + 1] = (hi << r) | (lo >>> (32 - r));
}

/** Rotates lane `a` by 32 bits: swaps its halves. */
function swap(a: number): void {
  const lo = v[a];
  v[a] = v[a + 1];
  v[a + 1] = lo;
}

/** XORs lane `b` into lane `a`. */
function xor(a: number, b: number): void {
  v[a] ^= v[b];
  v[a + 1] ^= v[b + 1];
}

const V0 = 0;
const V1 = 2;
const V2 = 4;
const V3 = 6;

function sipRound(): void {
  add(V0, V1);
  rotl(V1, 13);
  xor(V1, V0);
  swap(V0);
  add(V2, V3);
  rotl(V3, 16);
  xor(V3, V2);
  add(V0, V3);
  rotl(V3, 21);
  xor(V3, V0);
  add(V2, V1);
  rotl(V1, 17);
  xor(V1, V2);
  swap(V2);
}

/** Absorbs the 64-bit message block `lo`, `hi` with two rounds. */
function compress(lo: number, hi: number): void {
  v[V3] ^= lo;
  v[V3 + 1] ^= hi;
  sipRound();
  sipRound();
  v[V0] ^= lo;
  v[V0 + 1] ^= hi;
}

/**
 * SipHash-2-4 of the first `n` words of `m` (the message is their 4n bytes, each word little
 * endian, as SipHash reads bytes) under the 128-bit key `key` (four words, little endian: key
 * bytes 0-3 first). Writes the 64-bit result into `out` as [low, high] and returns the low word.
 */
export function sipHash24(key: Uint32Array, m: Uint32Array, n: number, out: Uint32Array): number {
  v[V0] = key[0] ^ 0x70736575;
  v[V0 + 1] = key[1] ^ 0x736f6d65;
  v[V1] = key[2] ^ 0x6e646f6d;
  v[V1 + 1] = key[3] ^ 0x646f7261;
  v[V2] = key[0] ^ 0x6e657261;
  v[V2 + 1] = key[1] ^ 0x6c796765;
  v[V3] = key[2] ^ 0x79746573;
  v[V3 + 1] = key[3] ^ 0x74656462;
  let i = 0;
  for (; i + 1 < n; i += 2) compress(m[i], m[i + 1]);
  // The last block: a remaining word, and the message length in bytes in its top byte.
  const lengthByte = ((n * 4) & 0xff) << 24;
  if (i < n) compress(m[i], lengthByte);
  else compress(0, lengthByte);
  v[V2] ^= 0xff;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  out[0] = v[V0] ^ v[V1] ^ v[V2] ^ v[V3];
  out[1] = v[V0 + 1] ^ v[V1 + 1] ^ v[V2 + 1] ^ v[V3 + 1];
  return out[0];
}
