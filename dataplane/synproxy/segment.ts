/**
 * Headers for the TCP segments a SYN proxy makes itself (SYN-ACK to the client, SYN, ACK and RST
 * to the real, RST to the client): a plain 20-byte IPv4 header and a TCP header in front of
 * options and payload the caller has already put in place, both checksums computed in full
 * (these are handshake segments, not the data path).
 *
 * @module
 */
import { set16, set32 } from "../wire/bytes.ts";
import { l4Checksum } from "../wire/checksum.ts";
import { fillIpHeaderChecksum, IPV4_MIN_HEADER, PROTO_TCP } from "../wire/ipv4.ts";
import { TCP_MIN_HEADER } from "../wire/tcp.ts";

/** Where a made segment's TCP options start, relative to its IPv4 header. */
export const SEGMENT_OPTIONS_AT = IPV4_MIN_HEADER + TCP_MIN_HEADER;

/** DF set, as Linux sends TCP (path MTU discovery). */
const DONT_FRAGMENT = 0x4000;
const TTL = 64;

/**
 * Writes the IPv4 and TCP headers of a segment at `off` whose `optionsLen` bytes of options
 * (a multiple of 4) sit at `off + SEGMENT_OPTIONS_AT`, followed by `payloadLen` bytes. Returns
 * the segment's total length.
 */
export function writeSegment(
  b: Uint8Array,
  off: number,
  src: number,
  dst: number,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  window: number,
  ipId: number,
  optionsLen: number,
  payloadLen: number,
): number {
  const tcpLen = TCP_MIN_HEADER + optionsLen + payloadLen;
  const total = IPV4_MIN_HEADER + tcpLen;
  b[off] = 0x45;
  b[off + 1] = 0;
  set16(b, off + 2, total);
  set16(b, off + 4, ipId);
  set16(b, off + 6, DONT_FRAGMENT);
  b[off + 8] = TTL;
  b[off + 9] = PROTO_TCP;
  set32(b, off + 12, src);
  set32(b, off + 16, dst);
  fillIpHeaderChecksum(b, off);
  const l4 = off + IPV4_MIN_HEADER;
  set16(b, l4, sport);
  set16(b, l4 + 2, dport);
  set32(b, l4 + 4, seq);
  set32(b, l4 + 8, ack);
  b[l4 + 12] = ((TCP_MIN_HEADER + optionsLen) >>> 2) << 4;
  b[l4 + 13] = flags;
  set16(b, l4 + 14, window);
  set16(b, l4 + 16, 0);
  set16(b, l4 + 18, 0);
  set16(b, l4 + 16, l4Checksum(b, off, l4, tcpLen, PROTO_TCP));
  return total;
}
