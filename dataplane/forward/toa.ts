/**
 * TOA ("TCP option address"), the convention of Alibaba's LVS and DPVS for telling a FULLNAT real
 * server who the client is: an option of kind 254 and length 8 holding the client's port and
 * IPv4 address, which the real server's `toa` kernel module reads when the connection's socket
 * is created. Also the MSS reduction that makes room for it. In place, no allocation.
 *
 * @module
 */
import { get16, set16, set32 } from "../wire/bytes.ts";
import { adjust16, adjust32, adjustPartial16 } from "../wire/checksum.ts";
import {
  ipHeaderChecksum,
  ipMoreFragments,
  setIpHeaderChecksum,
  setIpTotalLength,
} from "../wire/ipv4.ts";
import {
  setTcpChecksum,
  TCP_MIN_HEADER,
  TCP_OPT_MSS,
  tcpChecksum,
  tcpDataOffset,
  tcpFindOption,
} from "../wire/tcp.ts";
import { MAX_PACKET } from "../tun.ts";

/** TCP option kind of TOA (254, one of RFC 4727's experimental kinds, as LVS and DPVS use it). */
export const TCP_OPT_TOA = 254;
/** Length of the IPv4 TOA option: kind, length, port (2), address (4). */
export const TOA_LENGTH = 8;
/** What `insertToa` returns when the segment cannot take the option. */
export const TOA_NO_ROOM = -1;

/** Largest TCP header: the data offset counts at most 15 words. */
const TCP_MAX_HEADER = 60;
/** Smallest MSS we still shrink; below it the peer is odd enough to be left alone. */
const MSS_FLOOR = 64 + TOA_LENGTH;

/**
 * Inserts the TOA option (client `addr`:`port`) in front of the TCP options of the IPv4/TCP
 * packet of `total` bytes at `off` (TCP header at `l4`), moving options and payload 8 bytes on,
 * and fixes the data offset, the total length and both checksums. Returns the new total length,
 * or TOA_NO_ROOM, leaving the packet untouched, when the TCP header would exceed 60 bytes, the
 * packet its slot (a batch slot holds MAX_PACKET bytes, the IPv4 limit) or `b`, or when the packet
 * is a first fragment, whose later fragments' offsets would no longer fit. A `partial` checksum
 * (NEEDS_CSUM: the pseudo-header sum, which the kernel finishes over the TCP bytes) changes by the
 * longer TCP length only.
 */
export function insertToa(
  b: Uint8Array,
  off: number,
  l4: number,
  total: number,
  addr: number,
  port: number,
  partial = false,
): number {
  const doff = tcpDataOffset(b, l4);
  const grown = total + TOA_LENGTH;
  if (doff + TOA_LENGTH > TCP_MAX_HEADER) return TOA_NO_ROOM;
  if (grown > MAX_PACKET || off + grown > b.length) return TOA_NO_ROOM;
  if (ipMoreFragments(b, off)) return TOA_NO_ROOM;

  // In front, not behind the other options: a parser stops at an end-of-list among them.
  const at = l4 + TCP_MIN_HEADER;
  b.copyWithin(at + TOA_LENGTH, at, off + total);
  const kindLen = (TCP_OPT_TOA << 8) | TOA_LENGTH;
  set16(b, at, kindLen);
  set16(b, at + 2, port);
  set32(b, at + 4, addr);

  // The 8 new bytes sit on a 16-bit boundary and move everything behind them by whole words, so
  // the sum changes by their words, the longer pseudo-header length and the data offset.
  const l4len = total - (l4 - off);
  const offsetWord = get16(b, l4 + 12);
  const newOffsetWord = offsetWord + ((TOA_LENGTH >> 2) << 12);
  let check = tcpChecksum(b, l4);
  if (partial) {
    set16(b, l4 + 12, newOffsetWord);
    setTcpChecksum(b, l4, adjustPartial16(check, l4len, l4len + TOA_LENGTH));
    setIpHeaderChecksum(b, off, adjust16(ipHeaderChecksum(b, off), total, grown));
    setIpTotalLength(b, off, grown);
    return grown;
  }
  check = adjust16(check, l4len, l4len + TOA_LENGTH);
  check = adjust16(check, offsetWord, newOffsetWord);
  check = adjust32(check, 0, ((kindLen << 16) | port) >>> 0);
  check = adjust32(check, 0, addr);
  set16(b, l4 + 12, newOffsetWord);
  setTcpChecksum(b, l4, check);

  setIpHeaderChecksum(b, off, adjust16(ipHeaderChecksum(b, off), total, grown));
  setIpTotalLength(b, off, grown);
  return grown;
}

/**
 * Lowers the MSS option of the TCP segment at `l4` by the TOA's 8 bytes, checksum fixed, so that
 * the peer's segments still fit the path once one carries the option. Returns whether it did
 * (false: no 4-byte MSS option, or one too small to lower).
 */
export function shrinkMssForToa(b: Uint8Array, l4: number): boolean {
  const at = tcpFindOption(b, l4, TCP_OPT_MSS);
  if (at < 0 || b[at + 1] !== 4) return false;
  const mss = get16(b, at + 2);
  if (mss < MSS_FLOOR) return false;
  // After an odd number of one-byte NOPs the value straddles two checksum words.
  const value = at + 2;
  if (((value - l4) & 1) === 0) {
    set16(b, value, mss - TOA_LENGTH);
    setTcpChecksum(b, l4, adjust16(tcpChecksum(b, l4), mss, mss - TOA_LENGTH));
    return true;
  }
  const before0 = get16(b, value - 1);
  const before1 = get16(b, value + 1);
  set16(b, value, mss - TOA_LENGTH);
  let check = adjust16(tcpChecksum(b, l4), before0, get16(b, value - 1));
  check = adjust16(check, before1, get16(b, value + 1));
  setTcpChecksum(b, l4, check);
  return true;
}
