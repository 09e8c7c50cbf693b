/**
 * ICMP (v4) header accessors over `(b, off)` where `off` is the ICMP header's first byte.
 *
 * Accessors never throw: bytes past the end of `b` read as 0. Error messages (`icmpIsError`)
 * quote the offending datagram's IP header at `off + ICMP_EMBEDDED_OFFSET`.
 *
 * @module
 */

import { get16, set16 } from "./bytes.ts";
import { checksum } from "./checksum.ts";

/** Size of the fixed ICMP header (type, code, checksum, 4 type-specific bytes). */
export const ICMP_HEADER = 8;
/** Byte offset, from the ICMP header, of the IP header quoted by an error message. */
export const ICMP_EMBEDDED_OFFSET = 8;

/** Type: echo reply. */
export const ICMP_ECHO_REPLY = 0;
/** Type: destination unreachable. */
export const ICMP_DEST_UNREACH = 3;
/** Type: source quench (deprecated, still an error message). */
export const ICMP_SOURCE_QUENCH = 4;
/** Type: redirect. */
export const ICMP_REDIRECT = 5;
/** Type: echo request. */
export const ICMP_ECHO_REQUEST = 8;
/** Type: time exceeded. */
export const ICMP_TIME_EXCEEDED = 11;
/** Type: parameter problem. */
export const ICMP_PARAM_PROBLEM = 12;
/** Destination-unreachable code: fragmentation needed and DF set (carries next-hop MTU). */
export const ICMP_FRAG_NEEDED = 4;

/** Result codes of `parseIcmp`; index into `ICMP_PARSE_REASONS` for a label. */
export const IcmpParse = { OK: 0, TOO_SHORT: 1, BAD_CHECKSUM: 2 } as const;
/** A `parseIcmp` result code. */
export type IcmpParse = typeof IcmpParse[keyof typeof IcmpParse];

/** Metric labels for `IcmpParse` codes, indexed by code. */
export const ICMP_PARSE_REASONS: readonly string[] = ["ok", "too_short", "bad_checksum"];

/** Message type. */
export function icmpType(b: Uint8Array, off: number): number {
  return b[off] | 0;
}

/** Message code. */
export function icmpCode(b: Uint8Array, off: number): number {
  return b[off + 1] | 0;
}

/** Checksum field as stored. */
export function icmpChecksum(b: Uint8Array, off: number): number {
  return get16(b, off + 2);
}

/** Stores the message type (checksum untouched). */
export function setIcmpType(b: Uint8Array, off: number, type: number): void {
  b[off] = type;
}

/** Stores the message code (checksum untouched). */
export function setIcmpCode(b: Uint8Array, off: number, code: number): void {
  b[off + 1] = code;
}

/** Stores the checksum field. */
export function setIcmpChecksum(b: Uint8Array, off: number, check: number): void {
  set16(b, off + 2, check);
}

/** Echo request/reply identifier. */
export function icmpId(b: Uint8Array, off: number): number {
  return get16(b, off + 4);
}

/** Stores the echo identifier (checksum untouched). */
export function setIcmpId(b: Uint8Array, off: number, id: number): void {
  set16(b, off + 4, id);
}

/** Echo request/reply sequence number. */
export function icmpSeq(b: Uint8Array, off: number): number {
  return get16(b, off + 6);
}

/** Next-hop MTU of a fragmentation-needed message (RFC 1191); 0 from routers predating it. */
export function icmpNextHopMtu(b: Uint8Array, off: number): number {
  return get16(b, off + 6);
}

/** True for the types that are error messages quoting an offending datagram. */
export function icmpIsError(type: number): boolean {
  return type === ICMP_DEST_UNREACH || type === ICMP_SOURCE_QUENCH || type === ICMP_REDIRECT ||
    type === ICMP_TIME_EXCEEDED || type === ICMP_PARAM_PROBLEM;
}

/**
 * Validates the ICMP message at `off` spanning `l4len` bytes (clamped to the buffer): at least
 * the 8-byte header, and a checksum over the whole message that verifies.
 */
export function parseIcmp(b: Uint8Array, off: number, l4len: number): number {
  const avail = b.length - off;
  if (l4len > avail) l4len = avail;
  if (!(l4len >= ICMP_HEADER)) return IcmpParse.TOO_SHORT;
  if (checksum(b, off, l4len) !== 0) return IcmpParse.BAD_CHECKSUM;
  return IcmpParse.OK;
}
