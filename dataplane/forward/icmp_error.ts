/**
 * ICMP error messages about NAT-ed connections, translated like the connection they quote (as
 * IPVS's ip_vs_out_icmp / ip_vs_in_icmp with ip_vs_nat_icmp do), so that path-MTU discovery and
 * unreachable reports work through the appliance:
 *
 * - towards the client (`icmpErrorToClient`): the error quotes a client → real packet; it leaves
 *   from the VIP and quotes client → VIP:port, the packet the client sent;
 * - towards the real (`icmpErrorToReal`): the error, sent to the VIP, quotes a VIP:port → client
 *   reply; it goes to the real and quotes real:port → client, the packet the real sent.
 *
 * The quoted IP header gets a fresh checksum; the quoted TCP/UDP checksum, when quoted, is
 * updated for the changed address and port (IPVS leaves it; Linux's NAT updates it) so the quote
 * is what its sender sent; the ICMP checksum is recomputed over the message, and the outer IP
 * header checksum too. None of this is per data packet, so full sums are fine.
 */
import { get16, get32, set16, set32 } from "../wire/bytes.ts";
import { adjust16, adjust32, checksum } from "../wire/checksum.ts";
import {
  ICMP_DEST_UNREACH,
  ICMP_EMBEDDED_OFFSET,
  ICMP_HEADER,
  ICMP_PARAM_PROBLEM,
  ICMP_SOURCE_QUENCH,
  ICMP_TIME_EXCEEDED,
  setIcmpChecksum,
} from "../wire/icmp.ts";
import {
  fillIpHeaderChecksum,
  ipFragmentOffset,
  ipHeaderLength,
  ipProtocol,
  IPV4_DST_OFFSET,
  IPV4_MIN_HEADER,
  IPV4_SRC_OFFSET,
  PROTO_TCP,
  PROTO_UDP,
} from "../wire/ipv4.ts";
import { TCP_CHECKSUM_OFFSET } from "../wire/tcp.ts";
import { adjustUdpChecksum16, adjustUdpChecksum32, UDP_CHECKSUM_OFFSET } from "../wire/udp.ts";

/** Bytes of the quoted transport header that hold the two ports. */
const PORTS = 4;

/**
 * True for the error types translated along their connection: destination unreachable
 * (fragmentation needed included), source quench and time exceeded, as IPVS handles, and
 * parameter problem, which quotes the offending packet the same way. Redirects are not: they
 * are advice for the router's neighbour, not for the far end.
 */
export function icmpErrorTranslated(type: number): boolean {
  return type === ICMP_DEST_UNREACH || type === ICMP_SOURCE_QUENCH ||
    type === ICMP_TIME_EXCEEDED || type === ICMP_PARAM_PROBLEM;
}

/**
 * Offset of the quoted IPv4 header of the ICMP message at `l4` (`l4len` bytes), or -1 unless
 * the quote is a TCP or UDP packet with its header and ports present: version 4, a header
 * length of at least 20 that fits, and not a later fragment (which would quote no ports).
 */
export function quotedPacket(b: Uint8Array, l4: number, l4len: number): number {
  const avail = b.length - l4;
  if (l4len > avail) l4len = avail;
  const inner = l4 + ICMP_EMBEDDED_OFFSET;
  if (!(l4len >= ICMP_HEADER + IPV4_MIN_HEADER + PORTS)) return -1;
  if (b[inner] >>> 4 !== 4) return -1;
  const ihl = ipHeaderLength(b, inner);
  if (ihl < IPV4_MIN_HEADER || ICMP_HEADER + ihl + PORTS > l4len) return -1;
  const proto = ipProtocol(b, inner);
  if (proto !== PROTO_TCP && proto !== PROTO_UDP) return -1;
  if (ipFragmentOffset(b, inner) !== 0) return -1;
  return inner;
}

/** Source port of the quoted packet whose IP header is at `inner`. */
export function quotedSrcPort(b: Uint8Array, inner: number): number {
  return get16(b, inner + ipHeaderLength(b, inner));
}

/** Destination port of the quoted packet whose IP header is at `inner`. */
export function quotedDstPort(b: Uint8Array, inner: number): number {
  return get16(b, inner + ipHeaderLength(b, inner) + 2);
}

/**
 * Rewrites the error at `off` (ICMP at `l4`, `l4len` bytes, quote at `inner`) that travels to
 * the client: the outer source and the quoted destination become `vip`, the quoted destination
 * port `vport`.
 */
export function icmpErrorToClient(
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  inner: number,
  vip: number,
  vport: number,
): void {
  rewrite(b, off, l4, l4len, inner, IPV4_SRC_OFFSET, IPV4_DST_OFFSET, 2, vip, vport);
}

/**
 * Rewrites the error at `off` (ICMP at `l4`, `l4len` bytes, quote at `inner`) that travels to
 * the real: the outer destination and the quoted source become `real`, the quoted source port
 * `port`.
 */
export function icmpErrorToReal(
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  inner: number,
  real: number,
  port: number,
): void {
  rewrite(b, off, l4, l4len, inner, IPV4_DST_OFFSET, IPV4_SRC_OFFSET, 0, real, port);
}

/**
 * FULLNAT's second half of an error to the client (after `icmpErrorToClient`): the outer
 * destination and the quoted source named the local address and port, and become the client's.
 */
export function icmpErrorToFullnatClient(
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  inner: number,
  client: number,
  port: number,
): void {
  rewrite(b, off, l4, l4len, inner, IPV4_DST_OFFSET, IPV4_SRC_OFFSET, 0, client, port);
}

/**
 * FULLNAT's second half of an error to the real (after `icmpErrorToReal`): the quoted
 * destination named the client, and the real only knows the local address and port; the outer
 * source becomes the local address too, as the real's own packets to it came from there.
 */
export function icmpErrorToFullnatReal(
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  inner: number,
  local: number,
  port: number,
): void {
  rewrite(b, off, l4, l4len, inner, IPV4_SRC_OFFSET, IPV4_DST_OFFSET, 2, local, port);
}

function rewrite(
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  inner: number,
  outerAt: number,
  innerAt: number,
  portAt: number,
  addr: number,
  port: number,
): void {
  const avail = b.length - l4;
  if (l4len > avail) l4len = avail;
  const ihl = ipHeaderLength(b, inner);
  const innerL4 = inner + ihl;
  const quotedL4 = l4len - ICMP_EMBEDDED_OFFSET - ihl;
  const oldAddr = get32(b, inner + innerAt);
  const oldPort = get16(b, innerL4 + portAt);

  // The quoted transport checksum covers the pseudo header's address and the port; it is only
  // there to update when the quote reaches it.
  const proto = ipProtocol(b, inner);
  if (proto === PROTO_TCP && quotedL4 >= TCP_CHECKSUM_OFFSET + 2) {
    const at = innerL4 + TCP_CHECKSUM_OFFSET;
    set16(b, at, adjust16(adjust32(get16(b, at), oldAddr, addr), oldPort, port));
  } else if (proto === PROTO_UDP && quotedL4 >= UDP_CHECKSUM_OFFSET + 2) {
    const at = innerL4 + UDP_CHECKSUM_OFFSET;
    set16(
      b,
      at,
      adjustUdpChecksum16(adjustUdpChecksum32(get16(b, at), oldAddr, addr), oldPort, port),
    );
  }
  set16(b, innerL4 + portAt, port);
  set32(b, inner + innerAt, addr);
  fillIpHeaderChecksum(b, inner);

  setIcmpChecksum(b, l4, 0);
  setIcmpChecksum(b, l4, checksum(b, l4, l4len));

  set32(b, off + outerAt, addr);
  fillIpHeaderChecksum(b, off);
}
