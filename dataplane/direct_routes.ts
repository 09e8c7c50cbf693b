/**
 * The worker's DirectSender: one AF_PACKET/SOCK_DGRAM socket through FFI, and a `sockaddr_ll`
 * per DR real made in advance, so a send is one `sendto` from the packet's batch slot with no
 * allocation. The kernel adds the Ethernet header (the real's MAC, the interface's own).
 *
 * With TUN offloads the socket takes a virtio_net_hdr in front of each packet (PACKET_VNET_HDR):
 * a partial checksum or a GSO super-packet passes on as it came, and the kernel finishes or cuts
 * it for the real's link, as it would have for the TUN.
 */
import { type DirectSender, fillSockaddrLl, parseMac, SOCKADDR_LL_SIZE } from "./forward/direct.ts";
import { errno, libc, size, strerror } from "./libc.ts";
import type { DataplaneSpec, RealSpec, ServiceTable } from "./service.ts";
import { SLOT_BYTES } from "./tun.ts";
import { VNET_HDR_LEN, VnetGso, type VnetHeader } from "./wire/virtio_net_hdr.ts";

const AF_PACKET = 17;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
/** A full socket buffer fails the send (counted) instead of stalling the worker. */
const MSG_DONTWAIT = 0x40;
const SOL_PACKET = 263;
const PACKET_VNET_HDR = 15;
/** The Ethernet header the kernel puts in front: csum_start counts from the frame's start. */
const ETH_HLEN = 14;
/** What a GSO packet gets on a socket without PACKET_VNET_HDR: it cannot be sent whole. */
const EMSGSIZE = 90;

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
  /** Per service, per real: its `sockaddr_ll`, or null for a real with no route (not DR). */
  readonly #addresses: (Uint8Array<ArrayBuffer> | null)[][];
  /** Pointers into batch slots, by slot index, made on first use, and the offsets they are for. */
  readonly #slots: Deno.PointerObject[] = [];
  readonly #slotOffsets: number[] = [];
  #buffer: Uint8Array | null = null;
  #base: Deno.PointerObject | null = null;
  #closed = false;

  /** Wraps socket `fd`; `vnetHeader` when it takes a virtio_net_hdr with each packet. */
  private constructor(readonly fd: number, spec: DataplaneSpec, readonly vnetHeader: boolean) {
    this.#addresses = routesOf(spec);
  }

  /**
   * Opens the socket when `spec` has a DR service; null when it has none. With `offloads` (the
   * TUN has them) it asks for PACKET_VNET_HDR; without it, offloaded packets are finished here.
   */
  static open(spec: DataplaneSpec, offloads = false): DirectRoutes | null {
    if (!spec.services.some((s) => s.forward === "dr")) return null;
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
    let vnetHeader = false;
    if (offloads) {
      const one = new Uint8Array(4);
      one[0] = 1;
      vnetHeader = libc().setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, one, 4) === 0;
    }
    try {
      return new DirectRoutes(fd, spec, vnetHeader);
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
    this.#addresses.push(...routesOf(spec));
  }

  /** Replaces the route of every DR real that `links` (per service, per real) names. */
  update(spec: DataplaneSpec, links: RealLink[][]): void {
    spec.services.forEach((s, i) => {
      if (s.forward !== "dr") return;
      s.reals.forEach((r, j) => {
        const link = links[i]?.[j];
        if (link?.ifindex === undefined || link.mac === undefined) return;
        this.#addresses[i][j] = sockaddrFor(s.name, { ...r, ...link });
      });
    });
  }

  /**
   * Sends the packet at `off` (with its virtio_net_hdr `vnet`) to real `real` of service
   * `service`; false when it failed.
   */
  send(
    service: number,
    real: number,
    b: Uint8Array,
    off: number,
    len: number,
    vnet: VnetHeader,
  ): boolean {
    const to = this.#addresses[service]?.[real];
    if (to === null || to === undefined) return false;
    let at = off;
    if (this.vnetHeader && off >= VNET_HDR_LEN) {
      // The header goes in the room in front of the packet (its batch slot's header).
      at = off - VNET_HDR_LEN;
      len += VNET_HDR_LEN;
      const start = vnet.csumStart;
      if (vnet.needsCsum) vnet.csumStart = start + ETH_HLEN;
      vnet.write(b, at);
      vnet.csumStart = start;
    } else if (this.vnetHeader || vnet.gso !== VnetGso.NONE) {
      this.failures++;
      this.lastError = EMSGSIZE;
      return false;
    } else {
      vnet.finishChecksum(b, off, len);
    }
    const r = libc().sendtoPointer(
      this.fd,
      this.#pointer(b, at),
      size(len),
      MSG_DONTWAIT,
      to,
      SOCKADDR_LL_SIZE,
    );
    if (r === len) return true;
    this.failures++;
    this.lastError = r < 0 ? errno() : 0;
    return false;
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.fd);
  }

  /**
   * A pointer to `b[off]`. Sends start at the same offset in their batch slot every time, so
   * the slot's pointer, made once, serves every later packet there.
   */
  #pointer(b: Uint8Array, off: number): Deno.PointerObject {
    if (b !== this.#buffer) {
      this.#buffer = b;
      this.#base = Deno.UnsafePointer.of(b as Uint8Array<ArrayBuffer>);
      this.#slots.length = 0;
      this.#slotOffsets.length = 0;
    }
    const slot = (off / SLOT_BYTES) | 0;
    if (this.#slotOffsets[slot] !== off) {
      this.#slots[slot] = Deno.UnsafePointer.offset(this.#base!, off)!;
      this.#slotOffsets[slot] = off;
    }
    return this.#slots[slot];
  }
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

/** A sockaddr_ll per DR real of `spec`, by service and real; null for other reals. */
function routesOf(spec: DataplaneSpec): (Uint8Array<ArrayBuffer> | null)[][] {
  return spec.services.map((s) =>
    s.reals.map((r) => s.forward === "dr" ? sockaddrFor(s.name, r) : null)
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
