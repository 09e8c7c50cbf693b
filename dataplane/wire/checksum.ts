/**
 * Internet checksum (RFC 1071) and incremental updates (RFC 1624) over byte views.
 *
 * Bytes are read as `b[i]`: an index past the end yields `undefined`, which the bit operations
 * turn into 0, so nothing here throws on short buffers (the result is merely wrong for them, and
 * callers validate lengths with the parse functions first).
 *
 * Sums are plain non-negative numbers. `sum16` and `pseudoHeaderSum` return values below 2^19
 * that are not yet folded; they may be passed on as `initial` or to `fold16`/`finish`.
 *
 * @module
 */
import { get16 } from "./bytes.ts";

/** Bytes summed between carry folds: 8192 words keeps the running sum below 2^30 (a V8 Smi). */
const FOLD_BLOCK_BYTES = 16384;

/**
 * Ones'-complement accumulation of big-endian 16-bit words of `b[off .. off+len)`, an odd trailing
 * byte padded with zero, added to `initial` (any non-negative value below 2^32, e.g. a previous
 * `sum16`/`pseudoHeaderSum` result). Returns an unfolded sum below 2^19.
 */
export function sum16(b: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = (initial & 0xffff) + (initial >>> 16);
  if (!(len > 0)) return sum;
  const end = off + len - (len & 1);
  let i = off;
  while (i < end) {
    const blockEnd = end - i > FOLD_BLOCK_BYTES ? i + FOLD_BLOCK_BYTES : end;
    for (; i < blockEnd; i += 2) sum += get16(b, i);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (len & 1) sum += b[end] << 8;
  return sum;
}

/** Folds carries of a sum below 2^32 into 16 bits (not inverted); a non-zero sum never folds to 0. */
export function fold16(sum: number): number {
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/** Turns an accumulated sum into the value stored in a checksum field: `~fold16(sum) & 0xffff`. */
export function finish(sum: number): number {
  return ~fold16(sum) & 0xffff;
}

/** Finished Internet checksum of `b[off .. off+len)` plus `initial`. Verifying a header that
 * includes its own correct checksum field yields 0. */
export function checksum(b: Uint8Array, off: number, len: number, initial = 0): number {
  return finish(sum16(b, off, len, initial));
}

/** Unfolded sum of the IPv4 pseudo header (src, dst, zero+protocol, L4 length) for TCP/UDP. */
export function pseudoHeaderSum(src: number, dst: number, proto: number, l4len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + (proto & 0xff) +
    (l4len & 0xffff);
}

/**
 * RFC 1624 eqn. 3 update of a finished checksum field for one 16-bit word changing from `oldWord`
 * to `newWord`: HC' = ~(~HC + ~m + m'). Gives the same bits as a full recomputation, including a
 * result of 0x0000 where eqn. 2 would produce 0xffff, whenever the covered data is not all zero
 * (true for IPv4 headers and anything summed with a pseudo header).
 */
export function adjust16(check: number, oldWord: number, newWord: number): number {
  return ~fold16((~check & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff)) & 0xffff;
}

/** `adjust16` for a 32-bit value (such as an IPv4 address) changing, as two 16-bit words. */
export function adjust32(check: number, oldValue: number, newValue: number): number {
  return ~fold16(
    (~check & 0xffff) + (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff) +
      (newValue >>> 16) + (newValue & 0xffff),
  ) & 0xffff;
}

/**
 * Update of a field holding the folded, NOT inverted, pseudo-header sum (as the kernel leaves it
 * in packets flagged VIRTIO_NET_HDR_F_NEEDS_CSUM) for a 16-bit word change:
 * partial' = fold(partial + ~m + m'). Result is in 0..0xffff.
 */
export function adjustPartial16(partial: number, oldWord: number, newWord: number): number {
  return fold16((partial & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff));
}

/** `adjustPartial16` for a 32-bit value (an address in the pseudo header), as two 16-bit words. */
export function adjustPartial32(partial: number, oldValue: number, newValue: number): number {
  return fold16(
    (partial & 0xffff) + (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff) +
      (newValue >>> 16) + (newValue & 0xffff),
  );
}

/**
 * Finished TCP/UDP checksum over the IPv4 pseudo header (addresses read from the IPv4 header at
 * `ipOff`, the given `proto` and `l4Len`) and the L4 bytes `b[l4Off .. l4Off+l4Len)`.
 *
 * The checksum field inside the L4 bytes is summed as it is: for a packet with a correct checksum
 * the result is 0 (verification); to compute a fresh checksum, zero the field first and store the
 * result (for UDP, store a computed 0 as 0xffff).
 */
export function l4Checksum(
  b: Uint8Array,
  ipOff: number,
  l4Off: number,
  l4Len: number,
  proto: number,
): number {
  // Source and destination addresses are contiguous at IPv4 offset 12..19.
  const pseudo = sum16(b, ipOff + 12, 8, (proto & 0xff) + (l4Len & 0xffff));
  return checksum(b, l4Off, l4Len, pseudo);
}

/** True if the TCP/UDP checksum verifies; a UDP checksum field of 0 means "none" and passes. */
export function ipv4L4ChecksumOk(
  b: Uint8Array,
  ipOff: number,
  l4Off: number,
  l4Len: number,
  proto: number,
): boolean {
  if (proto === 17 && (get16(b, l4Off + 6)) === 0) return true;
  return l4Checksum(b, ipOff, l4Off, l4Len, proto) === 0;
}
