/**
 * Address and port rewriting for NAT (ipvsadm -m, "Masq": requests get the
 * real as destination, replies the VIP as source) and FULLNAT (both addresses
 * both ways), in place with incremental checksum updates (RFC 1624).
 *
 * A `partial` packet (virtio_net_hdr NEEDS_CSUM) holds in its L4 checksum field the
 * un-inverted pseudo-header sum, and the kernel sums the L4 header and payload over it when it
 * sends the packet: only the addresses (in the pseudo header) change that field, and without
 * RFC 1624's inversion; the ports are summed by the kernel as they are then.
 */
import { get16, get32, set16, set32 } from "../wire/bytes.ts";
import { adjust16, adjust32, adjustPartial32 } from "../wire/checksum.ts";
import {
  ipHeaderChecksum,
  IPV4_DST_OFFSET,
  IPV4_SRC_OFFSET,
  PROTO_TCP,
  setIpHeaderChecksum,
} from "../wire/ipv4.ts";
import { TCP_CHECKSUM_OFFSET } from "../wire/tcp.ts";
import { adjustUdpChecksum16, adjustUdpChecksum32, UDP_CHECKSUM_OFFSET } from "../wire/udp.ts";

/**
 * Rewrites the destination to `addr`:`port` (NAT requests; FULLNAT both ways); `partial` for a
 * packet whose L4 checksum the kernel still finishes.
 */
export function rewriteDestination(
  b: Uint8Array,
  off: number,
  l4: number,
  proto: number,
  addr: number,
  port: number,
  partial = false,
): void {
  rewrite(b, off, l4, proto, IPV4_DST_OFFSET, 2, addr, port, partial);
}

/**
 * Rewrites the source to `addr`:`port` (NAT replies; FULLNAT both ways); `partial` as for
 * `rewriteDestination`.
 */
export function rewriteSource(
  b: Uint8Array,
  off: number,
  l4: number,
  proto: number,
  addr: number,
  port: number,
  partial = false,
): void {
  rewrite(b, off, l4, proto, IPV4_SRC_OFFSET, 0, addr, port, partial);
}

/**
 * Replaces one address (at `addrAt` in the IP header) and the matching port
 * (at `portAt` in the TCP/UDP header, which keep ports at the same offsets),
 * fixing the IP header checksum and the L4 checksum, whose pseudo header
 * covers the address too.
 */
function rewrite(
  b: Uint8Array,
  off: number,
  l4: number,
  proto: number,
  addrAt: number,
  portAt: number,
  addr: number,
  port: number,
  partial: boolean,
): void {
  const oldAddr = get32(b, off + addrAt);
  const oldPort = get16(b, l4 + portAt);
  setIpHeaderChecksum(b, off, adjust32(ipHeaderChecksum(b, off), oldAddr, addr));
  set32(b, off + addrAt, addr);
  if (partial) {
    // TCP and UDP alike; a partial UDP sum is never the "no checksum" 0.
    const at = l4 + (proto === PROTO_TCP ? TCP_CHECKSUM_OFFSET : UDP_CHECKSUM_OFFSET);
    set16(b, at, adjustPartial32(get16(b, at), oldAddr, addr));
  } else if (proto === PROTO_TCP) {
    const at = l4 + TCP_CHECKSUM_OFFSET;
    set16(b, at, adjust16(adjust32(get16(b, at), oldAddr, addr), oldPort, port));
  } else {
    const at = l4 + UDP_CHECKSUM_OFFSET;
    set16(
      b,
      at,
      adjustUdpChecksum16(adjustUdpChecksum32(get16(b, at), oldAddr, addr), oldPort, port),
    );
  }
  set16(b, l4 + portAt, port);
}
