/**
 * Direct routing (ipvsadm -g, "Route"): the packet leaves unchanged at layer 3, in an Ethernet
 * frame addressed to the real's MAC. The engine does no I/O: it hands such packets to a
 * `DirectSender`, which the worker implements with a packet socket (direct_routes.ts).
 */
import type { VnetHeader } from "../wire/virtio_net_hdr.ts";

/** Sends the packets of direct-routing connections for the engine. */
export interface DirectSender {
  /**
   * Whether `send` takes packets as the TUN's offloads give them (a partial checksum, a GSO
   * super-packet, described by `vnet`) and has the kernel finish them; otherwise every packet
   * must be complete and no larger than the link's MTU.
   */
  readonly takesOffloads?: boolean;
  /**
   * Sends the IPv4 packet of `len` bytes at `off` in `b` to real `real` of service `service`
   * (indexes into the engine's ServiceTable), with its virtio_net_hdr `vnet` where the sender
   * takes offloads; false when it could not be sent.
   */
  send(
    service: number,
    real: number,
    b: Uint8Array,
    off: number,
    len: number,
    vnet?: VnetHeader,
  ): boolean;
}

/** A sender for an engine without a packet socket (tests, no DR service): every send fails. */
export const NO_DIRECT_SENDER: DirectSender = { send: () => false };

/** Bytes of a `struct sockaddr_ll`. */
export const SOCKADDR_LL_SIZE = 20;

const AF_PACKET = 17;
const ETH_P_IP = 0x0800;
const ETH_ALEN = 6;

/** Parses "aa:bb:cc:dd:ee:ff" into 6 bytes; null when it is not a MAC address. */
export function parseMac(s: string): Uint8Array | null {
  const parts = s.split(":");
  if (parts.length !== ETH_ALEN || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) return null;
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/**
 * Writes into `out` (at least 20 bytes) the `sockaddr_ll` that sends an IPv4 packet out of
 * interface `ifindex` to `mac`: with a SOCK_DGRAM packet socket the kernel builds the Ethernet
 * header from it (destination `mac`, source the interface's, type IPv4).
 */
export function fillSockaddrLl(out: Uint8Array, ifindex: number, mac: Uint8Array): void {
  const v = new DataView(out.buffer, out.byteOffset, SOCKADDR_LL_SIZE);
  out.fill(0, 0, SOCKADDR_LL_SIZE);
  v.setUint16(0, AF_PACKET, true);
  // sll_protocol is in network byte order.
  v.setUint16(2, ETH_P_IP, false);
  v.setInt32(4, ifindex, true);
  out[11] = ETH_ALEN;
  out.set(mac.subarray(0, ETH_ALEN), 12);
}
