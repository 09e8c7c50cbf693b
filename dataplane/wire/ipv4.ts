/**
 * IPv4 header accessors over `(b, off)` where `off` is the header's first byte.
 *
 * Accessors never throw: bytes past the end of `b` read as 0 (see checksum.ts). Call `parseIpv4`
 * before trusting any value. Addresses are uint32 numbers in host order (192.168.1.31 is
 * 0xc0a8011f).
 *
 * @module
 */

import { get16, get32, set16, set32 } from "./bytes.ts";
import { checksum, sum16 } from "./checksum.ts";

/** Smallest valid IPv4 header (IHL 5). */
export const IPV4_MIN_HEADER = 20;
/** IP protocol number of ICMP. */
export const PROTO_ICMP = 1;
/** IP protocol number of IP-in-IP encapsulation. */
export const PROTO_IPIP = 4;
/** IP protocol number of TCP. */
export const PROTO_TCP = 6;
/** IP protocol number of UDP. */
export const PROTO_UDP = 17;
/** Byte offset of the header checksum within the IPv4 header. */
export const IPV4_CHECKSUM_OFFSET = 10;
/** Byte offset of the source address within the IPv4 header. */
export const IPV4_SRC_OFFSET = 12;
/** Byte offset of the destination address within the IPv4 header. */
export const IPV4_DST_OFFSET = 16;

/** Result codes of `parseIpv4`; index into `IPV4_PARSE_REASONS` for a label. */
export const Ipv4Parse = {
  OK: 0,
  TOO_SHORT: 1,
  BAD_VERSION: 2,
  BAD_IHL: 3,
  BAD_TOTAL_LENGTH: 4,
  BAD_HEADER_CHECKSUM: 5,
} as const;
/** A `parseIpv4` result code. */
export type Ipv4Parse = typeof Ipv4Parse[keyof typeof Ipv4Parse];

/** Metric labels for `Ipv4Parse` codes, indexed by code. */
export const IPV4_PARSE_REASONS: readonly string[] = [
  "ok",
  "too_short",
  "bad_version",
  "bad_ihl",
  "bad_total_length",
  "bad_header_checksum",
];

/** IP version field (4 for IPv4). */
export function ipVersion(b: Uint8Array, off: number): number {
  return b[off] >>> 4;
}

/** Header length in bytes (IHL * 4). */
export function ipHeaderLength(b: Uint8Array, off: number): number {
  return (b[off] & 0x0f) << 2;
}

/** Type-of-service / DSCP+ECN byte. */
export function ipTos(b: Uint8Array, off: number): number {
  return b[off + 1] | 0;
}

/** Total length field: header plus payload, in bytes. */
export function ipTotalLength(b: Uint8Array, off: number): number {
  return get16(b, off + 2);
}

/** Identification field. */
export function ipId(b: Uint8Array, off: number): number {
  return get16(b, off + 4);
}

/** The 3 flag bits (reserved, DF, MF) as a number 0..7. */
export function ipFlags(b: Uint8Array, off: number): number {
  return b[off + 6] >>> 5;
}

/** True if the don't-fragment flag is set. */
export function ipDontFragment(b: Uint8Array, off: number): boolean {
  return (b[off + 6] & 0x40) !== 0;
}

/** True if the more-fragments flag is set. */
export function ipMoreFragments(b: Uint8Array, off: number): boolean {
  return (b[off + 6] & 0x20) !== 0;
}

/** Fragment offset in bytes (the field counts 8-byte units). */
export function ipFragmentOffset(b: Uint8Array, off: number): number {
  return (((b[off + 6] & 0x1f) << 8) | b[off + 7]) << 3;
}

/** True for any fragment: more-fragments set or a non-zero fragment offset. */
export function ipIsFragment(b: Uint8Array, off: number): boolean {
  return ((b[off + 6] & 0x3f) | b[off + 7]) !== 0;
}

/** Time to live. */
export function ipTtl(b: Uint8Array, off: number): number {
  return b[off + 8] | 0;
}

/** Protocol number of the payload (PROTO_TCP, PROTO_UDP, ...). */
export function ipProtocol(b: Uint8Array, off: number): number {
  return b[off + 9] | 0;
}

/** Header checksum field as stored. */
export function ipHeaderChecksum(b: Uint8Array, off: number): number {
  return get16(b, off + 10);
}

/** Source address as a host-order uint32. */
export function ipSrc(b: Uint8Array, off: number): number {
  return get32(b, off + 12);
}

/** Destination address as a host-order uint32. */
export function ipDst(b: Uint8Array, off: number): number {
  return get32(b, off + 16);
}

/** Stores the source address (does not touch any checksum). */
export function setIpSrc(b: Uint8Array, off: number, addr: number): void {
  set32(b, off + 12, addr);
}

/** Stores the destination address (does not touch any checksum). */
export function setIpDst(b: Uint8Array, off: number, addr: number): void {
  set32(b, off + 16, addr);
}

/** Stores the TTL (does not touch the header checksum). */
export function setIpTtl(b: Uint8Array, off: number, ttl: number): void {
  b[off + 8] = ttl;
}

/** Stores the header checksum field. */
export function setIpHeaderChecksum(b: Uint8Array, off: number, check: number): void {
  set16(b, off + 10, check);
}

/** Stores the total length field (does not touch the header checksum). */
export function setIpTotalLength(b: Uint8Array, off: number, len: number): void {
  set16(b, off + 2, len);
}

/** Header checksum over IHL*4 bytes with the checksum field itself treated as zero. */
export function computeIpHeaderChecksum(b: Uint8Array, off: number): number {
  const ihl = ipHeaderLength(b, off);
  return checksum(b, off + 12, ihl - 12, sum16(b, off, 10));
}

/** Recomputes and stores the header checksum. */
export function fillIpHeaderChecksum(b: Uint8Array, off: number): void {
  setIpHeaderChecksum(b, off, computeIpHeaderChecksum(b, off));
}

/**
 * Validates the IPv4 header at `off`, where `len` bytes from `off` are valid (the buffer may be
 * larger; `len` is also clamped to the buffer). Returns an `Ipv4Parse` code. Fragments and options
 * are accepted; the total length may be shorter than `len` (trailing padding).
 */
export function parseIpv4(b: Uint8Array, off: number, len: number): number {
  const avail = b.length - off;
  if (len > avail) len = avail;
  if (!(len >= IPV4_MIN_HEADER)) return Ipv4Parse.TOO_SHORT;
  if (b[off] >>> 4 !== 4) return Ipv4Parse.BAD_VERSION;
  const ihl = (b[off] & 0x0f) << 2;
  if (ihl < IPV4_MIN_HEADER) return Ipv4Parse.BAD_IHL;
  const total = get16(b, off + 2);
  if (total < ihl || total > len) return Ipv4Parse.BAD_TOTAL_LENGTH;
  if (checksum(b, off, ihl) !== 0) return Ipv4Parse.BAD_HEADER_CHECKSUM;
  return Ipv4Parse.OK;
}

/** Dotted-quad text of a host-order uint32 address. */
export function formatIpv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/** One decimal octet without sign or leading zeros; the 0..255 range is checked numerically. */
const OCTET = "(0|[1-9][0-9]{0,2})";
/** Exactly four octets separated by dots, nothing around them. */
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/** Parses a strict dotted quad into a host-order uint32, or null if it is not one. */
export function parseIpv4Address(s: string): number | null {
  const m = DOTTED_QUAD.exec(s);
  if (m === null) return null;
  let addr = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return null;
    addr = addr * 256 + octet;
  }
  return addr;
}
