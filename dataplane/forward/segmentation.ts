/**
 * Software segmentation of a GSO super-packet, for the one path where the kernel cannot do it:
 * a packet to a tunnel real, which goes back to the TUN inside an IPIP header, and
 * virtio_net_hdr has no GSO type for IPIP. Each segment is cut as the kernel's TSO/USO would cut
 * it and gets finished checksums. No allocation: segments are written into the caller's buffer.
 *
 * @module
 */
import { get16, get32, set16, set32 } from "../wire/bytes.ts";
import { l4Checksum } from "../wire/checksum.ts";
import { fillIpHeaderChecksum, ipHeaderLength, PROTO_TCP, PROTO_UDP } from "../wire/ipv4.ts";
import { TCP_CWR, TCP_FIN, TCP_PSH, tcpDataOffset } from "../wire/tcp.ts";
import { UDP_HEADER } from "../wire/udp.ts";

/** Segments one GSO packet may be cut into (65535 bytes of payload, a gso_size of 344 or more). */
export const SPILL_SLOTS = 192;
/** Largest segment a spill slot holds: a 9000-byte MTU's, plus the tunnel's outer header. */
export const SPILL_PACKET_BYTES = 9216 + 20;

/** Bytes of headers (IPv4 and TCP or UDP) in front of the payload of the packet at `off`. */
export function segmentHeaderLength(b: Uint8Array, off: number, proto: number): number {
  const ihl = ipHeaderLength(b, off);
  return ihl + (proto === PROTO_TCP ? tcpDataOffset(b, off + ihl) : UDP_HEADER);
}

/** How many segments of at most `gsoSize` payload bytes the `total`-byte packet at `off` makes. */
export function segmentCount(
  b: Uint8Array,
  off: number,
  total: number,
  proto: number,
  gsoSize: number,
): number {
  const payload = total - segmentHeaderLength(b, off, proto);
  return payload <= 0 ? 1 : Math.ceil(payload / gsoSize);
}

/**
 * Writes segment `index` of the TCP (TSO) or UDP (USO) GSO packet of `total` bytes at `off` in
 * `b`, cut every `gsoSize` payload bytes, at `at` in `out` (which may be `b`, at a place that
 * does not overlap the packet), and returns its length. The headers
 * are copied; each segment gets its own IP total length, IP ID (the packet's plus `index`, as the
 * kernel's TSO counts) and header checksum. TCP: sequence number moved on by the payload before
 * it, FIN and PSH only on the last segment, CWR only on the first. UDP: its own length. The L4
 * checksum is computed in full (0 stored as 0xffff for UDP).
 */
export function writeSegment(
  b: Uint8Array,
  off: number,
  total: number,
  proto: number,
  gsoSize: number,
  index: number,
  out: Uint8Array,
  at: number,
): number {
  const ihl = ipHeaderLength(b, off);
  const headers = segmentHeaderLength(b, off, proto);
  const payload = total - headers;
  const start = index * gsoSize;
  const len = payload - start < gsoSize ? payload - start : gsoSize;
  const last = start + len >= payload;
  // Within one buffer, copyWithin is a memmove; across two, a byte loop (a subarray view for
  // `set` would be an allocation per segment).
  const from = off + headers + start;
  const to = at + headers;
  if (out === b) {
    b.copyWithin(at, off, off + headers);
    b.copyWithin(to, from, from + len);
  } else {
    for (let i = 0; i < headers; i++) out[at + i] = b[off + i];
    for (let i = 0; i < len; i++) out[to + i] = b[from + i];
  }
  const length = headers + len;
  set16(out, at + 2, length);
  set16(out, at + 4, (get16(b, off + 4) + index) & 0xffff);
  fillIpHeaderChecksum(out, at);
  const l4 = at + ihl;
  if (proto === PROTO_TCP) {
    set32(out, l4 + 4, (get32(b, off + ihl + 4) + start) >>> 0);
    let flags = b[off + ihl + 13];
    if (!last) flags &= ~(TCP_FIN | TCP_PSH);
    if (index !== 0) flags &= ~TCP_CWR;
    out[l4 + 13] = flags;
    set16(out, l4 + 16, 0);
    set16(out, l4 + 16, l4Checksum(out, at, l4, length - ihl, PROTO_TCP));
  } else {
    set16(out, l4 + 4, length - ihl);
    set16(out, l4 + 6, 0);
    set16(out, l4 + 6, l4Checksum(out, at, l4, length - ihl, PROTO_UDP) || 0xffff);
  }
  return length;
}
