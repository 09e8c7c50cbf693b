/**
 * IP-in-IP tunnelling (ipvsadm -i, "Tunnel"), in place: the packet moves 20 bytes up its slot
 * and gets an outer IPv4 header in front. With it, what the tunnel's 20 bytes make necessary:
 * clamping the MSS of a client's SYN, and an ICMP "fragmentation needed" for a packet that no
 * longer fits the path and must not be fragmented, built in the same slot.
 */
import { get16, set16, set32 } from "../wire/bytes.ts";
import { adjust16, checksum } from "../wire/checksum.ts";
import { ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HEADER } from "../wire/icmp.ts";
import {
  fillIpHeaderChecksum,
  ipDst,
  ipHeaderLength,
  ipSrc,
  IPV4_MIN_HEADER,
  PROTO_ICMP,
  PROTO_IPIP,
} from "../wire/ipv4.ts";
import { setTcpChecksum, TCP_OPT_MSS, tcpChecksum, tcpFindOption } from "../wire/tcp.ts";

/** Bytes the outer header adds. */
export const IPIP_HEADER = IPV4_MIN_HEADER;

/** The largest IPv4 datagram: an encapsulated packet must still fit one (and one batch slot). */
export const IPV4_MAX_LENGTH = 65535;

/** What a tunnelled TCP segment carries besides its payload: outer, inner IPv4 and TCP headers. */
export const TUNNEL_MSS_OVERHEAD = IPIP_HEADER + IPV4_MIN_HEADER + 20;

/** TTL of the headers made here (the kernel's default, as IPVS's tunnel uses the route's). */
const TTL = 64;

/** The DF bit in the flags byte (offset 6) of an IPv4 header. */
const DF = 0x40;

/** IPTOS_PREC_INTERNETCONTROL: the precedence Linux gives its ICMP errors. */
const TOS_INTERNET_CONTROL = 0xc0;

/**
 * Wraps the `total`-byte IPv4 packet at `off` in an outer header from `src` to `dst` (host order)
 * with IP ID `id`: the inner packet moves to `off + 20`, untouched. The outer header copies the
 * inner TOS (ECN included) and DF bit. Returns the new length, or -1 when the result would not fit
 * an IPv4 datagram or `b` (a batch slot holds MAX_PACKET = 65535 bytes from the packet's start, so
 * the first check covers the slot).
 */
export function encapsulateIpip(
  b: Uint8Array,
  off: number,
  total: number,
  src: number,
  dst: number,
  id: number,
): number {
  const len = total + IPIP_HEADER;
  if (len > IPV4_MAX_LENGTH || off + len > b.length) return -1;
  const tos = b[off + 1];
  const df = b[off + 6] & DF;
  b.copyWithin(off + IPIP_HEADER, off, off + total);
  b[off] = 0x45;
  b[off + 1] = tos;
  set16(b, off + 2, len);
  set16(b, off + 4, id);
  b[off + 6] = df;
  b[off + 7] = 0;
  b[off + 8] = TTL;
  b[off + 9] = PROTO_IPIP;
  set32(b, off + 12, src);
  set32(b, off + 16, dst);
  fillIpHeaderChecksum(b, off);
  return len;
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}

/**
 * Lowers the MSS option of the TCP header at `l4` to `maxMss` when it is higher, fixing the
 * checksum incrementally; true when it changed. A segment without the option is left alone: its
 * peer assumes 536, which any path that carries IPv4 tunnels fits.
 */
export function clampMss(b: Uint8Array, l4: number, maxMss: number): boolean {
  const at = tcpFindOption(b, l4, TCP_OPT_MSS);
  if (at < 0 || b[at + 1] !== 4) return false;
  const mss = get16(b, at + 2);
  if (mss <= maxMss) return false;
  set16(b, at + 2, maxMss);
  // After an odd number of one-byte options the value straddles two checksum words, where it
  // counts byte-swapped (ones'-complement sums commute with swapping).
  const odd = ((at + 2 - l4) & 1) !== 0;
  setTcpChecksum(
    b,
    l4,
    odd
      ? adjust16(tcpChecksum(b, l4), swap16(mss), swap16(maxMss))
      : adjust16(tcpChecksum(b, l4), mss, maxMss),
  );
  return true;
}

/**
 * Replaces the `total`-byte packet at `off` with the ICMP "fragmentation needed" (type 3 code 4)
 * its sender must get: from the packet's destination (the VIP, as a kernel director answers) to
 * its source, next-hop MTU `mtu`, quoting the packet's IP header and first 8 bytes of payload.
 * The quote moves up first, so the message is built in the same bytes. Returns its length, or -1
 * when `b` has no room for it.
 */
export function fragmentationNeeded(
  b: Uint8Array,
  off: number,
  total: number,
  mtu: number,
  id: number,
): number {
  const ihl = ipHeaderLength(b, off);
  const quote = Math.min(ihl + 8, total);
  const icmp = off + IPV4_MIN_HEADER;
  const len = IPV4_MIN_HEADER + ICMP_HEADER + quote;
  if (off + len > b.length) return -1;
  const src = ipSrc(b, off);
  const dst = ipDst(b, off);
  b.copyWithin(icmp + ICMP_HEADER, off, off + quote);
  b[off] = 0x45;
  b[off + 1] = TOS_INTERNET_CONTROL;
  set16(b, off + 2, len);
  set16(b, off + 4, id);
  set16(b, off + 6, 0);
  b[off + 8] = TTL;
  b[off + 9] = PROTO_ICMP;
  set32(b, off + 12, dst);
  set32(b, off + 16, src);
  fillIpHeaderChecksum(b, off);
  b[icmp] = ICMP_DEST_UNREACH;
  b[icmp + 1] = ICMP_FRAG_NEEDED;
  set16(b, icmp + 2, 0);
  set16(b, icmp + 4, 0);
  set16(b, icmp + 6, mtu);
  set16(b, icmp + 2, checksum(b, icmp, ICMP_HEADER + quote));
  return len;
}
