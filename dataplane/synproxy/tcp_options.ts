/**
 * The TCP options a SYN proxy reads from handshake segments (MSS, window scale, SACK permitted,
 * timestamps) and writes into the segments it makes, in Linux's layout. No allocation: one
 * `HandshakeOptions` is reused for every segment.
 *
 * @module
 */
import { get16, get32, set16, set32 } from "../wire/bytes.ts";
import {
  TCP_MIN_HEADER,
  TCP_OPT_EOL,
  TCP_OPT_MSS,
  TCP_OPT_NOP,
  TCP_OPT_SACK_PERMITTED,
  TCP_OPT_TIMESTAMP,
  TCP_OPT_WSCALE,
} from "../wire/tcp.ts";

/** Largest window scale (RFC 7323). */
export const MAX_WSCALE = 14;

/** The handshake options of one segment, as `read` found them. */
export class HandshakeOptions {
  /** MSS option value; 0 when absent. */
  mss = 0;
  /** Window scale shift (0..14); -1 when absent. */
  wscale = -1;
  sackOk = false;
  timestamps = false;
  tsVal = 0;
  tsEcr = 0;

  /** Reads the options of the TCP header at `l4` (its data offset already validated). */
  read(b: Uint8Array, l4: number): void {
    this.mss = 0;
    this.wscale = -1;
    this.sackOk = false;
    this.timestamps = false;
    this.tsVal = 0;
    this.tsEcr = 0;
    const end = l4 + ((b[l4 + 12] >>> 4) << 2);
    let i = l4 + TCP_MIN_HEADER;
    while (i < end) {
      const kind = b[i];
      if (kind === TCP_OPT_EOL) return;
      if (kind === TCP_OPT_NOP) {
        i++;
        continue;
      }
      if (i + 1 >= end) return;
      const len = b[i + 1];
      if (len < 2 || i + len > end) return;
      if (kind === TCP_OPT_MSS && len === 4) {
        this.mss = get16(b, i + 2);
      } else if (kind === TCP_OPT_WSCALE && len === 3) {
        // RFC 7323: a larger shift is taken as 14.
        this.wscale = b[i + 2] > MAX_WSCALE ? MAX_WSCALE : b[i + 2];
      } else if (kind === TCP_OPT_SACK_PERMITTED && len === 2) {
        this.sackOk = true;
      } else if (kind === TCP_OPT_TIMESTAMP && len === 10) {
        this.timestamps = true;
        this.tsVal = get32(b, i + 2);
        this.tsEcr = get32(b, i + 6);
      }
      i += len;
    }
  }
}

/**
 * Writes handshake options at `at` in Linux's order and padding: MSS, then SACK permitted with
 * timestamps (or either alone, NOP-padded), then window scale (`wscale` -1: none). Returns the
 * bytes written, a multiple of 4, at most 20.
 */
export function writeHandshakeOptions(
  b: Uint8Array,
  at: number,
  mss: number,
  wscale: number,
  sackOk: boolean,
  timestamps: boolean,
  tsVal: number,
  tsEcr: number,
): number {
  let i = at;
  b[i] = TCP_OPT_MSS;
  b[i + 1] = 4;
  set16(b, i + 2, mss);
  i += 4;
  if (timestamps) {
    i = writeTimestamps(b, i, sackOk, tsVal, tsEcr);
  } else if (sackOk) {
    b[i] = TCP_OPT_NOP;
    b[i + 1] = TCP_OPT_NOP;
    b[i + 2] = TCP_OPT_SACK_PERMITTED;
    b[i + 3] = 2;
    i += 4;
  }
  if (wscale >= 0) {
    b[i] = TCP_OPT_NOP;
    b[i + 1] = TCP_OPT_WSCALE;
    b[i + 2] = 3;
    b[i + 3] = wscale;
    i += 4;
  }
  return i - at;
}

/**
 * Writes the 12-byte timestamps block at `at` (led by SACK permitted, or by two NOPs) and
 * returns the offset behind it.
 */
export function writeTimestamps(
  b: Uint8Array,
  at: number,
  sackOk: boolean,
  tsVal: number,
  tsEcr: number,
): number {
  if (sackOk) {
    b[at] = TCP_OPT_SACK_PERMITTED;
    b[at + 1] = 2;
  } else {
    b[at] = TCP_OPT_NOP;
    b[at + 1] = TCP_OPT_NOP;
  }
  b[at + 2] = TCP_OPT_TIMESTAMP;
  b[at + 3] = 10;
  set32(b, at + 4, tsVal);
  set32(b, at + 8, tsEcr);
  return at + 12;
}
