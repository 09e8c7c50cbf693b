/**
 * The rewrite of one segment of a known connection: a client's request towards its real (NAT:
 * destination; FULLNAT: both ends; TOA where pending) and a real's reply towards the client
 * (NAT: source; FULLNAT: both ends; the real's side of TOA). Tunnel and DR requests keep their
 * addresses (the bypass sender delivers them). In place, no allocation.
 *
 * `vnet` is the packet's virtio_net_hdr: with NEEDS_CSUM only pseudo-header changes (addresses,
 * the length TOA adds) touch the checksum field, and a TOA option lengthens the headers it counts.
 *
 * @module
 */
import { ConnFlag, type ConnTable } from "../conn/table.ts";
import { EngineCounter as C } from "../engine_counters.ts";
import { Forward, type Service } from "../service.ts";
import { PROTO_TCP } from "../wire/ipv4.ts";
import { setTcpChecksum, TCP_ACK, TCP_RST, TCP_SYN, tcpChecksum } from "../wire/tcp.ts";
import type { VnetHeader } from "../wire/virtio_net_hdr.ts";
import { rewriteDestination, rewriteSource } from "./nat.ts";
import { insertToa, shrinkMssForToa, TOA_NO_ROOM } from "./toa.ts";

/**
 * Rewrites a client's segment of connection `id` of `svc` for its real; returns the packet's
 * length, grown by a TOA option or not (counted in `counters`). `vnet` is the packet's header.
 */
export function rewriteRequest(
  b: Uint8Array,
  off: number,
  l4: number,
  proto: number,
  flags: number,
  total: number,
  t: ConnTable,
  id: number,
  svc: Service,
  counters: Float64Array,
  vnet: VnetHeader,
): number {
  const partial = vnet.needsCsum;
  // Tunnel and DR deliver the packet as the client sent it, to the VIP the real also has.
  if (svc.forwardKind < Forward.TUNNEL) {
    rewriteDestination(b, off, l4, proto, t.outDst[id], t.outDstPort[id], partial);
  }
  if (svc.forwardKind === Forward.FULLNAT) {
    rewriteSource(b, off, l4, proto, t.outSrc[id], t.outSrcPort[id], partial);
  }
  // As DPVS: client segments after the SYN-ACK carry TOA until the real has a socket.
  if (
    (t.flags[id] & ConnFlag.TOA_PENDING) !== 0 &&
    (flags & (TCP_SYN | TCP_RST | TCP_ACK)) === TCP_ACK
  ) {
    return addToa(b, off, l4, total, t, id, counters, vnet);
  }
  return total;
}

/**
 * Gives the client segment of connection `id` at `off` the TOA option with the client's address;
 * returns the packet's length, grown or not (counted in `counters`). `vnet`, the packet's
 * header, follows the longer TCP header.
 */
export function addToa(
  b: Uint8Array,
  off: number,
  l4: number,
  total: number,
  t: ConnTable,
  id: number,
  counters: Float64Array,
  vnet: VnetHeader,
): number {
  const grown = insertToa(b, off, l4, total, t.inSrc[id], t.inSrcPort[id], vnet.needsCsum);
  if (grown === TOA_NO_ROOM) {
    counters[C.TOA_SKIPPED]++;
    return total;
  }
  // The kernel copies hdr_len bytes of headers into each segment it cuts: the option is one.
  if (vnet.hdrLen !== 0) vnet.hdrLen += grown - total;
  counters[C.TOA_INSERTED]++;
  return grown;
}

/** Rewrites a real's segment of connection `id` of `svc` for the client; `vnet` its header. */
export function rewriteReply(
  b: Uint8Array,
  off: number,
  l4: number,
  proto: number,
  flags: number,
  t: ConnTable,
  id: number,
  svc: Service,
  vnet: VnetHeader,
): void {
  const partial = vnet.needsCsum;
  rewriteSource(b, off, l4, proto, t.inDst[id], t.inDstPort[id], partial);
  if (svc.forwardKind === Forward.FULLNAT) {
    rewriteDestination(b, off, l4, proto, t.inSrc[id], t.inSrcPort[id], partial);
  }
  if (svc.toa && proto === PROTO_TCP) toaReply(b, l4, t, id, flags, partial);
}

/**
 * The real's side of TOA: its SYN-ACK announces 8 bytes less MSS, so that a client segment
 * with the option still fits the path, and opens the TOA window; anything else it sends
 * closes it, since only a socket that exists (and has read any TOA) sends more than SYN-ACKs.
 */
function toaReply(
  b: Uint8Array,
  l4: number,
  t: ConnTable,
  id: number,
  flags: number,
  partial: boolean,
): void {
  if ((flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) {
    // A partial checksum leaves the option's bytes to the kernel's sum: the field stays.
    const check = tcpChecksum(b, l4);
    shrinkMssForToa(b, l4);
    if (partial) setTcpChecksum(b, l4, check);
    t.flags[id] |= ConnFlag.TOA_PENDING;
  } else {
    t.flags[id] &= ~ConnFlag.TOA_PENDING;
  }
}
