/**
 * The worker's DirectSender: one AF_PACKET socket through FFI, and a `sockaddr_ll` per DR real
 * made in advance, so a send is one system call from the packet's batch slot with no allocation.
 *
 * Without TUN offloads the socket is SOCK_DGRAM and the kernel adds the Ethernet header (the
 * real's MAC, the interface's own): one `sendto`. With offloads it is SOCK_RAW with
 * PACKET_VNET_HDR (which Linux refuses on SOCK_DGRAM), so a partial checksum or a GSO
 * super-packet passes on with its virtio_net_hdr and the kernel finishes or cuts it on the
 * real's link; the header and an Ethernet header made per real go in front of the packet by a
 * `sendmsg` with two iovecs, built once and repointed per packet.
 */
import { type DirectSender, fillSockaddrLl, parseMac, SOCKADDR_LL_SIZE } from "./forward/direct.ts";
import { errno, libc, size, strerror } from "./libc.ts";
import type { DataplaneSpec, RealSpec, ServiceTable } from "./service.ts";
import { SLOT_BYTES } from "./tun.ts";
import { VNET_HDR_LEN, type VnetHeader } from "./wire/virtio_net_hdr.ts";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_DGRAM = 2;
const SOL_PACKET = 263;
const PACKET_VNET_HDR = 15;
const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
/** What goes in front of a packet on the raw socket: virtio_net_hdr, Ethernet header. */
const FRAME_PREFIX = VNET_HDR_LEN + ETH_HLEN;
/** struct msghdr and struct iovec on 64-bit Linux. */
const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;
const SOCK_CLOEXEC = 0o2000000;
/** A full socket buffer fails the send (counted) instead of stalling the worker. */
const MSG_DONTWAIT = 0x40;

/** Why the packet socket could not be opened, in words an operator can act on. */
export class DirectRoutesError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "DirectRoutesError";
  }
}

/** The link facts of one real the control plane resolves (and re-resolves) for tunnel and DR. */
export type RealLink = Pick<RealSpec, "tunnelSource" | "mtu" | "ifindex" | "mac">;

/** Sends DR packets to their reals' MACs through one packet socket. */
export class DirectRoutes implements DirectSender {
  /** Sends that failed, and the errno of the last one. */
  failures = 0;
  lastError = 0;
  /** Per service, per real: its route, or null for a real with no route (not DR). */
  readonly #addresses: (DirectRoute | null)[][];
  /** Raw socket only: the virtio_net_hdr and Ethernet header sent in front of a packet. */
  readonly #prefix = new Uint8Array(FRAME_PREFIX);
  /** Raw socket only: the two iovecs (prefix, packet) and the msghdr naming them. */
  readonly #iov = new Uint8Array(2 * IOVEC_SIZE);
  readonly #iovView = new DataView(this.#iov.buffer);
  readonly #msg = new Uint8Array(MSGHDR_SIZE);
  readonly #msgView = new DataView(this.#msg.buffer);
  /**
   * Pointers into the buffers packets are sent from (the batch; the bypass's segment buffer),
   * by slot index, made on first use, with the offsets they are for.
   */
  readonly #buffers: SendBuffer[] = [];
  #closed = false;

  /**
   * Wraps packet socket `fd`; `takesOffloads` when it is SOCK_RAW with PACKET_VNET_HDR (frames
   * are sent with a virtio_net_hdr and an Ethernet header made here).
   */
  private constructor(
    readonly fd: number,
    spec: DataplaneSpec,
    readonly takesOffloads: boolean,
  ) {
    this.#addresses = routesOf(spec, takesOffloads);
    setPointer(this.#iovView, 0, pointerValue(this.#prefix));
    setSize(this.#iovView, 8, FRAME_PREFIX);
    setPointer(this.#msgView, 16, pointerValue(this.#iov));
    setSize(this.#msgView, 24, 2);
    this.#msgView.setUint32(8, SOCKADDR_LL_SIZE, true);
  }

  /**
   * Opens the socket when `spec` has a DR service; null when it has none. With `offloads` (the
   * TUN's) a raw socket with PACKET_VNET_HDR is tried first.
   */
  static open(spec: DataplaneSpec, offloads = false): DirectRoutes | null {
    if (!spec.services.some((s) => s.forward === "dr")) return null;
    if (offloads) {
      const fd = libc().socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
      const one = new Uint8Array(4);
      one[0] = 1;
      if (fd >= 0 && libc().setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, one, 4) === 0) {
        try {
          return new DirectRoutes(fd, spec, true);
        } catch (err) {
          libc().close(fd);
          throw err;
        }
      }
      if (fd >= 0) libc().close(fd);
    }
    // Protocol 0: the socket only sends (each sockaddr_ll names IPv4), so nothing it would
    // receive can queue up unread.
    const fd = libc().socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      const e = errno();
      throw new DirectRoutesError(
        `cannot open a packet socket for direct routing: ${strerror(e)} ` +
          "(tunvs needs root or CAP_NET_RAW)",
      );
    }
    try {
      return new DirectRoutes(fd, spec, false);
    } catch (err) {
      libc().close(fd);
      throw err;
    }
  }

  /**
   * Takes the routes of a new spec (after a reload). Removed reals still draining have none:
   * their packets are refused and counted, as a real without a route.
   */
  replace(spec: DataplaneSpec): void {
    this.#addresses.length = 0;
    this.#addresses.push(...routesOf(spec, this.takesOffloads));
  }

  /** Replaces the route of every DR real that `links` (per service, per real) names. */
  update(spec: DataplaneSpec, links: RealLink[][]): void {
    spec.services.forEach((s, i) => {
      if (s.forward !== "dr") return;
      s.reals.forEach((r, j) => {
        const link = links[i]?.[j];
        if (link?.ifindex === undefined || link.mac === undefined) return;
        this.#addresses[i][j] = routeFor(s.name, { ...r, ...link }, this.takesOffloads);
      });
    });
  }

  /**
   * Sends the packet at `off` to real `real` of service `service` (with its virtio_net_hdr
   * `vnet` on a raw socket); false when it failed.
   */
  send(
    service: number,
    real: number,
    b: Uint8Array,
    off: number,
    len: number,
    vnet?: VnetHeader,
  ): boolean {
    const route = this.#addresses[service]?.[real];
    if (route === null || route === undefined) return false;
    if (this.takesOffloads) return this.#sendFrame(route, b, off, len, vnet);
    const r = libc().sendtoPointer(
      this.fd,
      this.#pointer(b, off),
      size(len),
      MSG_DONTWAIT,
      route.sockaddr,
      SOCKADDR_LL_SIZE,
    );
    if (r === len) return true;
    this.failures++;
    this.lastError = r < 0 ? errno() : 0;
    return false;
  }

  /**
   * Sends the packet at `off` as a frame on the raw socket: the virtio_net_hdr (its offsets
   * moved on by the Ethernet header, from which the kernel counts them) and the real's Ethernet
   * header from the prefix buffer, the packet from where it is.
   */
  #sendFrame(
    route: DirectRoute,
    b: Uint8Array,
    off: number,
    len: number,
    vnet: VnetHeader | undefined,
  ): boolean {
    const prefix = this.#prefix;
    if (vnet === undefined) prefix.fill(0, 0, VNET_HDR_LEN);
    else {
      const start = vnet.csumStart;
      const hdrLen = vnet.hdrLen;
      if (vnet.needsCsum) vnet.csumStart = start + ETH_HLEN;
      if (hdrLen !== 0) vnet.hdrLen = hdrLen + ETH_HLEN;
      vnet.write(prefix, 0);
      vnet.csumStart = start;
      vnet.hdrLen = hdrLen;
    }
    const eth = route.ethernet;
    for (let i = 0; i < ETH_HLEN; i++) prefix[VNET_HDR_LEN + i] = eth[i];
    setPointer(this.#iovView, IOVEC_SIZE, this.#pointerValue(b, off));
    setSize(this.#iovView, IOVEC_SIZE + 8, len);
    setPointer(this.#msgView, 0, route.sockaddrPointer);
    const r = libc().sendmsg(this.fd, this.#msg, MSG_DONTWAIT);
    if (r === FRAME_PREFIX + len) return true;
    this.failures++;
    this.lastError = r < 0 ? errno() : 0;
    return false;
  }

  /** The address of `b[off]` as a number (for an iovec), without making a pointer object. */
  #pointerValue(b: Uint8Array, off: number): number {
    return this.#sendBuffer(b).baseValue + off;
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.fd);
  }

  /**
   * A pointer to `b[off]`. A packet is sent from the same offset of its batch slot (or of the
   * segment buffer) every time, so the pointer, made once, serves every later packet there.
   */
  #pointer(b: Uint8Array, off: number): Deno.PointerObject {
    const sb = this.#sendBuffer(b);
    const slot = (off / SLOT_BYTES) | 0;
    if (sb.offsets[slot] !== off) {
      sb.pointers[slot] = Deno.UnsafePointer.offset(sb.base, off)!;
      sb.offsets[slot] = off;
    }
    return sb.pointers[slot];
  }

  /** What is known about sending from buffer `b`, made on its first send. */
  #sendBuffer(b: Uint8Array): SendBuffer {
    for (const known of this.#buffers) if (known.buffer === b) return known;
    // Few buffers ever send (the batch, the segment buffer): an old one is let go past four.
    if (this.#buffers.length === 4) this.#buffers.shift();
    const base = Deno.UnsafePointer.of(b as Uint8Array<ArrayBuffer>)!;
    const sb = {
      buffer: b,
      base,
      baseValue: Number(Deno.UnsafePointer.value(base)),
      pointers: [],
      offsets: [],
    };
    this.#buffers.push(sb);
    return sb;
  }
}

/** A buffer packets are sent from, and the pointers into it made so far. */
interface SendBuffer {
  buffer: Uint8Array;
  base: Deno.PointerObject;
  /** `base` as a number: addresses fit 2^53. */
  baseValue: number;
  pointers: Deno.PointerObject[];
  offsets: number[];
}

/** How to reach one DR real: its `sockaddr_ll` and, for the raw socket, the Ethernet header. */
interface DirectRoute {
  sockaddr: Uint8Array<ArrayBuffer>;
  /** `sockaddr`'s address, for a msghdr. */
  sockaddrPointer: number;
  /** Destination the real's MAC, source the interface's, type IPv4 (raw socket only). */
  ethernet: Uint8Array;
}

/** The address of `b`'s first byte as a number. */
function pointerValue(b: Uint8Array<ArrayBuffer>): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
}

/** Stores a 64-bit address held in a number, little-endian, without a bigint. */
function setPointer(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, (value / 4294967296) >>> 0, true);
}

/** Stores a size_t that fits 32 bits, little-endian. */
function setSize(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, 0, true);
}

/** The MAC address of the interface with index `ifindex`, from /sys; null if none is found. */
function interfaceMac(ifindex: number): Uint8Array | null {
  for (const entry of Deno.readDirSync("/sys/class/net")) {
    try {
      const index = Number(Deno.readTextFileSync(`/sys/class/net/${entry.name}/ifindex`).trim());
      if (index !== ifindex) continue;
      return parseMac(Deno.readTextFileSync(`/sys/class/net/${entry.name}/address`).trim());
    } catch {
      // An interface that went away while listing.
    }
  }
  return null;
}

/** The route of DR real `r` of `service`; with `ethernet` also its Ethernet header. */
function routeFor(service: string, r: RealSpec, ethernet: boolean): DirectRoute {
  const sockaddr = sockaddrFor(service, r);
  const eth = new Uint8Array(ETH_HLEN);
  if (ethernet) {
    const own = interfaceMac(r.ifindex!);
    if (own === null) {
      throw new DirectRoutesError(
        `service ${service}: no MAC address for interface index ${r.ifindex} (real ${r.addr})`,
      );
    }
    eth.set(parseMac(r.mac!)!, 0);
    eth.set(own, 6);
    eth[12] = ETH_P_IP >>> 8;
    eth[13] = ETH_P_IP & 0xff;
  }
  return { sockaddr, sockaddrPointer: pointerValue(sockaddr), ethernet: eth };
}

function sockaddrFor(service: string, r: RealSpec): Uint8Array<ArrayBuffer> {
  const mac = r.mac === undefined ? null : parseMac(r.mac);
  if (r.ifindex === undefined || !(r.ifindex > 0) || mac === null) {
    throw new DirectRoutesError(
      `service ${service}: a DR real needs its interface index and MAC address ` +
        `(got ifindex ${r.ifindex}, mac ${JSON.stringify(r.mac)})`,
    );
  }
  const sll = new Uint8Array(SOCKADDR_LL_SIZE);
  fillSockaddrLl(sll, r.ifindex, mac);
  return sll;
}

/** A route per DR real of `spec`, by service and real; null for other reals. */
function routesOf(spec: DataplaneSpec, ethernet: boolean): (DirectRoute | null)[][] {
  return spec.services.map((s) =>
    s.reals.map((r) => s.forward === "dr" ? routeFor(s.name, r, ethernet) : null)
  );
}

/** Writes re-resolved tunnel sources and MTUs (per service, per real) into the engine's services. */
export function applyLinks(table: ServiceTable, links: RealLink[][]): void {
  table.services.forEach((svc, i) => {
    for (let j = 0; j < svc.count; j++) {
      const link = links[i]?.[j];
      if (link === undefined) continue;
      if (link.tunnelSource !== undefined && link.tunnelSource > 0) {
        svc.tunnelSource[j] = link.tunnelSource;
      }
      if (link.mtu !== undefined && link.mtu > 0) svc.mtu[j] = link.mtu;
    }
  });
}
