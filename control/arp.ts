/**
 * Gratuitous ARP: tells the neighbours on a segment that an address (a VIP
 * we answer for by proxy ARP) is reachable at this host's MAC, so clients that
 * cached a failed or stale entry, or a previous director's MAC, move over at
 * once instead of when their entry times out.
 */
import { errno, libc, size, strerror } from "../dataplane/libc.ts";
import { parseIpv4Address } from "../dataplane/wire/ipv4.ts";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const ETH_P_ARP = 0x0806;
const ETH_P_IP = 0x0800;
const ARPHRD_ETHER = 1;
const ARPOP_REQUEST = 1;

function htons(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}

function parseMac(s: string): Uint8Array {
  const bytes = s.trim().split(":").map((h) => parseInt(h, 16));
  if (bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255))) {
    throw new Error(`unexpected MAC address ${JSON.stringify(s)}`);
  }
  return Uint8Array.from(bytes);
}

/** Builds the Ethernet frame of a gratuitous ARP request for `addr` from `mac`. */
export function gratuitousArpFrame(mac: Uint8Array, addr: number): Uint8Array<ArrayBuffer> {
  const f = new Uint8Array(42);
  const v = new DataView(f.buffer);
  f.fill(0xff, 0, 6);
  f.set(mac, 6);
  v.setUint16(12, ETH_P_ARP);
  v.setUint16(14, ARPHRD_ETHER);
  v.setUint16(16, ETH_P_IP);
  f[18] = 6;
  f[19] = 4;
  v.setUint16(20, ARPOP_REQUEST);
  f.set(mac, 22);
  v.setUint32(28, addr);
  // Target hardware address stays zero; sender and target protocol address are both `addr`.
  v.setUint32(38, addr);
  return f;
}

/** Broadcasts a gratuitous ARP for `address` on interface `ifname`. */
export async function announce(ifname: string, address: string): Promise<void> {
  const addr = parseIpv4Address(address);
  if (addr === null) throw new Error(`not an IPv4 address: ${address}`);
  const mac = parseMac(await Deno.readTextFile(`/sys/class/net/${ifname}/address`));
  const ifindex = Number(await Deno.readTextFile(`/sys/class/net/${ifname}/ifindex`));
  const frame = gratuitousArpFrame(mac, addr);
  const sll = new Uint8Array(20);
  const v = new DataView(sll.buffer);
  v.setUint16(0, AF_PACKET, true);
  v.setUint16(2, htons(ETH_P_ARP), true);
  v.setInt32(4, ifindex, true);
  sll[11] = 6;
  sll.fill(0xff, 12, 18);
  const c = libc();
  const fd = c.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) throw new Error(`cannot open a packet socket: ${strerror(errno())}`);
  try {
    if (c.sendto(fd, frame, size(frame.length), 0, sll, sll.length) < 0) {
      throw new Error(`cannot send gratuitous ARP on ${ifname}: ${strerror(errno())}`);
    }
  } finally {
    c.close(fd);
  }
}
