/**
 * TCP header accessors over `(b, off)` where `off` is the TCP header's first byte.
 *
 * Accessors never throw: bytes past the end of `b` read as 0. Call `parseTcp` before trusting
 * the data offset. Setters do not touch the checksum; use `adjust16`/`adjust32` from checksum.ts,
 * or `replaceTcp32`, which stores a 32-bit field and returns the checksum updated for it.
 *
 * @module
 */
import { get16, get32, set16, set32 } from "./bytes.ts";
import { adjust16, adjust32 } from "./checksum.ts";

/** Smallest valid TCP header (data offset 5). */
export const TCP_MIN_HEADER = 20;
/** Byte offset of the checksum within the TCP header. */
export const TCP_CHECKSUM_OFFSET = 16;

/** FIN flag bit. */
export const TCP_FIN = 1;
/** SYN flag bit. */
export const TCP_SYN = 2;
/** RST flag bit. */
export const TCP_RST = 4;
/** PSH flag bit. */
export const TCP_PSH = 8;
/** ACK flag bit. */
export const TCP_ACK = 16;
/** URG flag bit. */
export const TCP_URG = 32;
/** ECE flag bit. */
export const TCP_ECE = 64;
/** CWR flag bit. */
export const TCP_CWR = 128;

/** Option kind: end of option list. */
export const TCP_OPT_EOL = 0;
/** Option kind: no-operation (single-byte padding). */
export const TCP_OPT_NOP = 1;
/** Option kind: maximum segment size. */
export const TCP_OPT_MSS = 2;
/** Option kind: window scale. */
export const TCP_OPT_WSCALE = 3;
/** Option kind: SACK permitted. */
export const TCP_OPT_SACK_PERMITTED = 4;
/** Option kind: SACK blocks. */
export const TCP_OPT_SACK = 5;
/** Option kind: timestamps. */
export const TCP_OPT_TIMESTAMP = 8;

/** Result codes of `parseTcp`; index into `TCP_PARSE_REASONS` for a label. */
export const TcpParse = { OK: 0, TOO_SHORT: 1, BAD_DATA_OFFSET: 2 } as const;
/** A `parseTcp` result code. */
export type TcpParse = typeof TcpParse[keyof typeof TcpParse];

/** Metric labels for `TcpParse` codes, indexed by code. */
export const TCP_PARSE_REASONS: readonly string[] = ["ok", "too_short", "bad_data_offset"];

/** Source port. */
export function tcpSrcPort(b: Uint8Array, off: number): number {
  return get16(b, off);
}

/** Destination port. */
export function tcpDstPort(b: Uint8Array, off: number): number {
  return get16(b, off + 2);
}

/** Stores the source port (checksum untouched). */
export function setTcpSrcPort(b: Uint8Array, off: number, port: number): void {
  set16(b, off, port);
}

/** Stores the destination port (checksum untouched). */
export function setTcpDstPort(b: Uint8Array, off: number, port: number): void {
  set16(b, off + 2, port);
}

/** Sequence number as uint32. */
export function tcpSeq(b: Uint8Array, off: number): number {
  return get32(b, off + 4);
}

/** Acknowledgment number as uint32. */
export function tcpAck(b: Uint8Array, off: number): number {
  return get32(b, off + 8);
}

/** Stores the sequence number (checksum untouched). */
export function setTcpSeq(b: Uint8Array, off: number, seq: number): void {
  set32(b, off + 4, seq);
}

/** Stores the acknowledgment number (checksum untouched). */
export function setTcpAck(b: Uint8Array, off: number, ack: number): void {
  set32(b, off + 8, ack);
}

/** Header length in bytes (data offset * 4), options included. */
export function tcpDataOffset(b: Uint8Array, off: number): number {
  return (b[off + 12] >>> 4) << 2;
}

/** The 8 flag bits (TCP_FIN .. TCP_CWR). */
export function tcpFlags(b: Uint8Array, off: number): number {
  return b[off + 13] | 0;
}

/** Receive window (unscaled). */
export function tcpWindow(b: Uint8Array, off: number): number {
  return get16(b, off + 14);
}

/** Checksum field as stored. */
export function tcpChecksum(b: Uint8Array, off: number): number {
  return get16(b, off + 16);
}

/** Stores the checksum field. */
export function setTcpChecksum(b: Uint8Array, off: number, check: number): void {
  set16(b, off + 16, check);
}

/**
 * Validates the TCP header at `off` within an L4 payload of `l4len` bytes (clamped to the
 * buffer). Returns a `TcpParse` code. The checksum is not verified here (see checksum.ts).
 */
export function parseTcp(b: Uint8Array, off: number, l4len: number): number {
  const avail = b.length - off;
  if (l4len > avail) l4len = avail;
  if (!(l4len >= TCP_MIN_HEADER)) return TcpParse.TOO_SHORT;
  const doff = (b[off + 12] >>> 4) << 2;
  if (doff < TCP_MIN_HEADER || doff > l4len) return TcpParse.BAD_DATA_OFFSET;
  return TcpParse.OK;
}

/**
 * Byte offset (absolute, within `b`) of the first option of `kind` in the TCP header at `off`,
 * or -1. The walk stops at end-of-list, at the data offset, at the end of `b`, and at the first
 * option whose length is below 2 or runs past the data offset, so malformed lists terminate.
 * A returned non-NOP/EOL option is guaranteed to fit inside the header.
 */
export function tcpFindOption(b: Uint8Array, off: number, kind: number): number {
  let end = off + ((b[off + 12] >>> 4) << 2);
  if (end > b.length) end = b.length;
  let i = off + TCP_MIN_HEADER;
  while (i < end) {
    const k = b[i];
    if (k === TCP_OPT_EOL) return kind === TCP_OPT_EOL ? i : -1;
    if (k === TCP_OPT_NOP) {
      if (kind === TCP_OPT_NOP) return i;
      i++;
      continue;
    }
    if (i + 1 >= end) return -1;
    const len = b[i + 1];
    if (len < 2 || i + len > end) return -1;
    if (k === kind) return i;
    i += len;
  }
  return -1;
}

/** The MSS option value of the TCP header at `off`, or 0 if absent or not 4 bytes long. */
export function tcpMss(b: Uint8Array, off: number): number {
  const at = tcpFindOption(b, off, TCP_OPT_MSS);
  if (at < 0 || b[at + 1] !== 4) return 0;
  return get16(b, at + 2);
}

/**
 * Stores the 32-bit `value` at `at` within the TCP segment at `off` and returns the checksum
 * `check` updated for it (RFC 1624). A field at an odd offset from `off` (an option behind a
 * lone NOP) straddles three checksum words, which are updated one by one.
 */
export function replaceTcp32(
  b: Uint8Array,
  off: number,
  at: number,
  value: number,
  check: number,
): number {
  if (((at - off) & 1) === 0) {
    const old = get32(b, at);
    set32(b, at, value);
    return adjust32(check, old, value);
  }
  const w0 = get16(b, at - 1);
  const w1 = get16(b, at + 1);
  const w2 = get16(b, at + 3);
  set32(b, at, value);
  check = adjust16(check, w0, get16(b, at - 1));
  check = adjust16(check, w1, get16(b, at + 1));
  return adjust16(check, w2, get16(b, at + 3));
}
