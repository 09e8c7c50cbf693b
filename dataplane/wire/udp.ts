/**
 * UDP header accessors over `(b, off)` where `off` is the UDP header's first byte.
 *
 * Accessors never throw: bytes past the end of `b` read as 0. Setters do not touch the checksum;
 * use `adjustUdpChecksum16`/`adjustUdpChecksum32`, which keep UDP's "0 means no checksum" rule.
 *
 * @module
 */

import { get16, set16 } from "./bytes.ts";
import { adjust16, adjust32 } from "./checksum.ts";

/** Size of the UDP header. */
export const UDP_HEADER = 8;
/** Byte offset of the checksum within the UDP header. */
export const UDP_CHECKSUM_OFFSET = 6;

/** Result codes of `parseUdp`; index into `UDP_PARSE_REASONS` for a label. */
export const UdpParse = { OK: 0, TOO_SHORT: 1, BAD_LENGTH: 2 } as const;
/** A `parseUdp` result code. */
export type UdpParse = typeof UdpParse[keyof typeof UdpParse];

/** Metric labels for `UdpParse` codes, indexed by code. */
export const UDP_PARSE_REASONS: readonly string[] = ["ok", "too_short", "bad_length"];

/** Source port. */
export function udpSrcPort(b: Uint8Array, off: number): number {
  return get16(b, off);
}

/** Destination port. */
export function udpDstPort(b: Uint8Array, off: number): number {
  return get16(b, off + 2);
}

/** Stores the source port (checksum untouched). */
export function setUdpSrcPort(b: Uint8Array, off: number, port: number): void {
  set16(b, off, port);
}

/** Stores the destination port (checksum untouched). */
export function setUdpDstPort(b: Uint8Array, off: number, port: number): void {
  set16(b, off + 2, port);
}

/** Length field: header plus payload, in bytes. */
export function udpLength(b: Uint8Array, off: number): number {
  return get16(b, off + 4);
}

/** Checksum field as stored (0 means the sender computed none). */
export function udpChecksum(b: Uint8Array, off: number): number {
  return get16(b, off + 6);
}

/** Stores the checksum field. */
export function setUdpChecksum(b: Uint8Array, off: number, check: number): void {
  set16(b, off + 6, check);
}

/**
 * `adjust16` for a UDP checksum field: a field of 0 ("no checksum") stays 0, and an updated
 * checksum that comes out as 0 is stored as 0xffff (RFC 768), as a full recomputation would.
 */
export function adjustUdpChecksum16(check: number, oldWord: number, newWord: number): number {
  if (check === 0) return 0;
  return adjust16(check, oldWord, newWord) || 0xffff;
}

/** `adjustUdpChecksum16` for a 32-bit value (an address) changing. */
export function adjustUdpChecksum32(check: number, oldValue: number, newValue: number): number {
  if (check === 0) return 0;
  return adjust32(check, oldValue, newValue) || 0xffff;
}

/**
 * Validates the UDP header at `off` within an L4 payload of `l4len` bytes (clamped to the
 * buffer). Returns a `UdpParse` code; the length field must be 8..l4len. The checksum is not
 * verified here (see checksum.ts).
 */
export function parseUdp(b: Uint8Array, off: number, l4len: number): number {
  const avail = b.length - off;
  if (l4len > avail) l4len = avail;
  if (!(l4len >= UDP_HEADER)) return UdpParse.TOO_SHORT;
  const len = get16(b, off + 4);
  if (len < UDP_HEADER || len > l4len) return UdpParse.BAD_LENGTH;
  return UdpParse.OK;
}
