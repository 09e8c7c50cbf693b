/**
 * Which worker owns a packet's connection, computed from the packet alone before any lookup,
 * so that every worker agrees without sharing a table (docs/workers.md):
 *
 * - towards a VIP (or read from a firewall-mark device): the client is the source →
 *   hash(source address & client mask) mod N;
 * - towards a FULLNAT local address (a reply from a real): the local port, which the owner's
 *   allocator chose ≡ owner (mod N) → destination port mod N;
 * - anything else (a NAT reply from a real, steered in by the reply rules): the client is the
 *   destination → hash(destination address & client mask) mod N;
 * - an ICMP error: the quoted packet is one the director sent, so its reverse decides.
 *
 * Hashing the client address, not its port, keeps a client's persistence template and the
 * per-client scheduler state (sh, dh, lblc, mh) in one worker, and needs no ports, which later
 * fragments do not carry.
 */
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP } from "./wire/ipv4.ts";
import type { DataplaneSpec } from "./service.ts";

/** ICMP types whose payload quotes the packet they are about. */
const ICMP_DEST_UNREACHABLE = 3;
const ICMP_SOURCE_QUENCH = 4;
const ICMP_TIME_EXCEEDED = 11;
const ICMP_PARAMETER_PROBLEM = 12;

/** A 32-bit integer mix (murmur3's finaliser): spreads neighbouring client addresses. */
export function mixAddress(a: number): number {
  let h = a >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The addresses ownership depends on, indexed for a few integer operations per packet. */
export class PacketOwners {
  /** Open-addressed set of VIPs and local addresses; 0 marks an empty slot. */
  #keys: Uint32Array;
  /** Per slot of `#keys`: 1 a VIP, 2 a FULLNAT local address. */
  #kinds: Uint8Array;
  #mask: number;
  /**
   * Client addresses are hashed under this mask: the narrowest persistence netmask of all
   * services, so that clients sharing a template (-M) share a worker.
   */
  readonly clientMask: number;

  /** Indexes `spec` for `workers` workers. */
  constructor(readonly workers: number, spec: DataplaneSpec) {
    const vips = new Set<number>();
    const locals = new Set<number>();
    let clientMask = 0xffffffff;
    for (const s of spec.services) {
      if (s.vip !== 0) vips.add(s.vip >>> 0);
      for (const v of s.vips ?? []) vips.add(v >>> 0);
      for (const l of s.localAddresses ?? []) locals.add(l >>> 0);
      if (s.persistence !== undefined) clientMask = (clientMask & s.persistence.netmask) >>> 0;
    }
    this.clientMask = clientMask;
    let size = 16;
    while (size < (vips.size + locals.size) * 4) size <<= 1;
    this.#mask = size - 1;
    this.#keys = new Uint32Array(size);
    this.#kinds = new Uint8Array(size);
    for (const v of vips) this.#add(v, 1);
    for (const l of locals) this.#add(l, 2);
  }

  #add(addr: number, kind: number): void {
    if (addr === 0) return;
    let i = mixAddress(addr) & this.#mask;
    while (this.#kinds[i] !== 0 && this.#keys[i] !== addr) i = (i + 1) & this.#mask;
    this.#keys[i] = addr;
    this.#kinds[i] |= kind;
  }

  /** Every VIP and local address with its kind (see `kind`), in ascending address order. */
  addressKinds(): Array<{ address: number; kind: number }> {
    const out: Array<{ address: number; kind: number }> = [];
    for (let i = 0; i < this.#keys.length; i++) {
      if (this.#kinds[i] !== 0) out.push({ address: this.#keys[i], kind: this.#kinds[i] });
    }
    return out.sort((a, b) => a.address - b.address);
  }

  /** 1 if `addr` is a VIP, 2 if a local address, 3 both, 0 neither. */
  kind(addr: number): number {
    let i = mixAddress(addr) & this.#mask;
    while (this.#kinds[i] !== 0) {
      if (this.#keys[i] === addr) return this.#kinds[i];
      i = (i + 1) & this.#mask;
    }
    return 0;
  }

  /** The worker owning a packet from `src`:`sport` to `dst`:`dport` (ports 0 when unknown). */
  ownerOf(src: number, dst: number, dport: number, fromMarkDevice: boolean): number {
    const n = this.workers;
    if (n === 1) return 0;
    if (fromMarkDevice) return mixAddress(src & this.clientMask) % n;
    const k = this.kind(dst >>> 0);
    if ((k & 1) !== 0) return mixAddress(src & this.clientMask) % n;
    if (k === 2) return dport % n;
    return mixAddress(dst & this.clientMask) % n;
  }

  /**
   * The worker owning the IPv4 packet of `len` bytes at `off` in `b`, read from a firewall-mark
   * device when `fromMarkDevice`. Short packets and other IP versions go to worker 0 (which drops
   * or passes them as it would anyway). The steering program (steering/owner_program.ts) computes
   * the same function in the kernel: a change here must be made there too.
   */
  ownerOfPacket(b: Uint8Array, off: number, len: number, fromMarkDevice: boolean): number {
    if (this.workers === 1 || len < 20 || (b[off] >> 4) !== 4) return 0;
    const ihl = (b[off] & 0x0f) << 2;
    const proto = b[off + 9];
    const src = readU32(b, off + 12);
    const dst = readU32(b, off + 16);
    // Later fragments carry no ports; the address rules need none.
    const firstFragment = ((b[off + 6] & 0x1f) | b[off + 7]) === 0;
    if (proto === PROTO_ICMP && firstFragment && len >= ihl + 8 + 20 && !fromMarkDevice) {
      const type = b[off + ihl];
      if (
        type === ICMP_DEST_UNREACHABLE || type === ICMP_TIME_EXCEEDED ||
        type === ICMP_SOURCE_QUENCH || type === ICMP_PARAMETER_PROBLEM
      ) {
        // The quote is a packet the director sent: its reverse is a packet towards us.
        const q = off + ihl + 8;
        const qihl = (b[q] & 0x0f) << 2;
        const qproto = b[q + 9];
        const qsrc = readU32(b, q + 12);
        const qdst = readU32(b, q + 16);
        let qsport = 0;
        if ((qproto === PROTO_TCP || qproto === PROTO_UDP) && len >= ihl + 8 + qihl + 4) {
          qsport = (b[q + qihl] << 8) | b[q + qihl + 1];
        }
        return this.ownerOf(qdst, qsrc, qsport, false);
      }
    }
    let dport = 0;
    if ((proto === PROTO_TCP || proto === PROTO_UDP) && firstFragment && len >= ihl + 4) {
      dport = (b[off + ihl + 2] << 8) | b[off + ihl + 3];
    }
    return this.ownerOf(src, dst, dport, fromMarkDevice);
  }
}

function readU32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}
