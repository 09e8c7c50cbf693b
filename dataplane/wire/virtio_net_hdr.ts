/**
 * `struct virtio_net_hdr`, the 10 bytes a TUN opened with IFF_VNET_HDR puts in front of every
 * packet: whether the L4 checksum still has to be finished (NEEDS_CSUM: the field holds the
 * un-inverted pseudo-header sum, csum_start/csum_offset say where), whether it was verified
 * (DATA_VALID), and, for a GSO super-packet, how the kernel is to cut it (gso_type, gso_size = the
 * MSS). Fields are little-endian: a TUN uses the host's order unless TUNSETVNETBE says otherwise,
 * and tunvs runs on little-endian hosts only (x86, arm64).
 *
 * The fields are kept as numbers in one reused object, read from a batch slot before the engine
 * sees the packet and written back after it, so nothing is allocated per packet.
 *
 * @module
 */
import { finish, sum16 } from "./checksum.ts";

/** Bytes of the header (no mergeable buffers: no `num_buffers`). */
export const VNET_HDR_LEN = 10;

/** `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum field holds the pseudo-header sum. */
export const VNET_F_NEEDS_CSUM = 1;
/** `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel verified the checksum (reads only). */
export const VNET_F_DATA_VALID = 2;

/** `VIRTIO_NET_HDR_GSO_*` values of `gso_type`. */
export const VnetGso = {
  NONE: 0,
  TCPV4: 1,
  /** UFO: one datagram cut into IP fragments (never offered by tunvs). */
  UDP: 3,
  TCPV6: 4,
  /** USO: one UDP datagram per gso_size of payload. */
  UDP_L4: 5,
  /** Flag: the segments carry ECN; CWR goes on the first only. */
  ECN: 0x80,
} as const;

/** One packet's virtio_net_hdr, as numbers. */
export class VnetHeader {
  /** VNET_F_* bits. */
  flags = 0;
  /** VnetGso value, ECN bit included. */
  gsoType = 0;
  /** Bytes of headers (a hint for the kernel's linear part). */
  hdrLen = 0;
  /** Payload bytes per segment of a GSO packet. */
  gsoSize = 0;
  /** Where checksumming starts, from the IP header's first byte. */
  csumStart = 0;
  /** Where the checksum field is, from `csumStart`. */
  csumOffset = 0;

  /** Reads the header at `at` in `b`. */
  read(b: Uint8Array, at: number): void {
    this.flags = b[at];
    this.gsoType = b[at + 1];
    this.hdrLen = b[at + 2] | (b[at + 3] << 8);
    this.gsoSize = b[at + 4] | (b[at + 5] << 8);
    this.csumStart = b[at + 6] | (b[at + 7] << 8);
    this.csumOffset = b[at + 8] | (b[at + 9] << 8);
  }

  /** Writes the header at `at` in `b`. */
  write(b: Uint8Array, at: number): void {
    b[at] = this.flags;
    b[at + 1] = this.gsoType;
    b[at + 2] = this.hdrLen;
    b[at + 3] = this.hdrLen >>> 8;
    b[at + 4] = this.gsoSize;
    b[at + 5] = this.gsoSize >>> 8;
    b[at + 6] = this.csumStart;
    b[at + 7] = this.csumStart >>> 8;
    b[at + 8] = this.csumOffset;
    b[at + 9] = this.csumOffset >>> 8;
  }

  /** Makes it the header of a packet with finished checksums and no GSO (what the engine makes). */
  clear(): void {
    this.flags = 0;
    this.gsoType = 0;
    this.hdrLen = 0;
    this.gsoSize = 0;
    this.csumStart = 0;
    this.csumOffset = 0;
  }

  /** Whether the L4 checksum field holds a pseudo-header sum the kernel still has to finish. */
  get needsCsum(): boolean {
    return (this.flags & VNET_F_NEEDS_CSUM) !== 0;
  }

  /** The GSO kind without the ECN bit; VnetGso.NONE for a single packet. */
  get gso(): number {
    return this.gsoType & ~VnetGso.ECN;
  }

  /**
   * Finishes the checksum of the `len`-byte packet at `off` in software, as the kernel would
   * (sum from csum_start to the end, stored inverted, 0 as 0xffff), and clears NEEDS_CSUM. For
   * paths that need a complete packet (tunnel, engine-made copies); a GSO packet is cut instead.
   */
  finishChecksum(b: Uint8Array, off: number, len: number): void {
    if (!this.needsCsum) return;
    const start = off + this.csumStart;
    const field = start + this.csumOffset;
    // The field holds the pseudo-header sum, which is exactly what the final sum starts from.
    const check = finish(sum16(b, start, off + len - start)) || 0xffff;
    b[field] = check >>> 8;
    b[field + 1] = check;
    this.flags &= ~VNET_F_NEEDS_CSUM;
  }
}
