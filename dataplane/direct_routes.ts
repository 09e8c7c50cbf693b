/**
 * The worker's DirectSender: one AF_PACKET/SOCK_DGRAM socket through FFI, and a `sockaddr_ll`
 * per DR real made in advance, so a send is one `sendto` from the packet's batch slot with no
 * allocation. The kernel adds the Ethernet header (the real's MAC, the interface's own).
 */
import { type DirectSender, fillSockaddrLl, parseMac, SOCKADDR_LL_SIZE } from "./forward/direct.ts";
import { errno, libc, size, strerror } from "./libc.ts";
import type { DataplaneSpec, RealSpec, ServiceTable } from "./service.ts";
import { SLOT_BYTES } from "./tun.ts";

const AF_PACKET = 17;
const SOCK_DGRAM = 2;
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
  /** Per service, per real: its `sockaddr_ll`, or null for a real with no route (not DR). */
  readonly #addresses: (Uint8Array<ArrayBuffer> | null)[][];
  /**
   * Pointers into the buffers packets are sent from (the batch; the bypass's segment buffer),
   * by slot index, made on first use, with the offsets they are for.
   */
  readonly #buffers: SendBuffer[] = [];
  #closed = false;

  private constructor(readonly fd: number, spec: DataplaneSpec) {
    this.#addresses = routesOf(spec);
  }

  /** Opens the socket when `spec` has a DR service; null when it has none. */
  static open(spec: DataplaneSpec): DirectRoutes | null {
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
    try {
      return new DirectRoutes(fd, spec);
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

  /** Sends the packet at `off` to real `real` of service `service`; false when it failed. */
  send(service: number, real: number, b: Uint8Array, off: number, len: number): boolean {
    const to = this.#addresses[service]?.[real];
    if (to === null || to === undefined) return false;
    const r = libc().sendtoPointer(
      this.fd,
      this.#pointer(b, off),
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
   * A pointer to `b[off]`. A packet is sent from the same offset of its batch slot (or of the
   * segment buffer) every time, so the pointer, made once, serves every later packet there.
   */
  #pointer(b: Uint8Array, off: number): Deno.PointerObject {
    let sb: SendBuffer | undefined;
    for (const known of this.#buffers) if (known.buffer === b) sb = known;
    if (sb === undefined) {
      // Few buffers ever send (the batch, the segment buffer): an old one is let go past four.
      if (this.#buffers.length === 4) this.#buffers.shift();
      sb = {
        buffer: b,
        base: Deno.UnsafePointer.of(b as Uint8Array<ArrayBuffer>)!,
        pointers: [],
        offsets: [],
      };
      this.#buffers.push(sb);
    }
    const slot = (off / SLOT_BYTES) | 0;
    if (sb.offsets[slot] !== off) {
      sb.pointers[slot] = Deno.UnsafePointer.offset(sb.base, off)!;
      sb.offsets[slot] = off;
    }
    return sb.pointers[slot];
  }
}

/** A buffer packets are sent from, and the pointers into it made so far. */
interface SendBuffer {
  buffer: Uint8Array;
  base: Deno.PointerObject;
  pointers: Deno.PointerObject[];
  offsets: number[];
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
