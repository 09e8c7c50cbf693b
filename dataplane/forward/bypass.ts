/**
 * Sending a client's packet on to a tunnel or DR real, whose replies bypass the director: the
 * tunnel encapsulates it in its slot (MSS clamped on a SYN), DR hands it to the DirectSender; a
 * packet too big for the path is answered with fragmentation needed when it has DF.
 *
 * Offloads (the packet's virtio_net_hdr): a DR sender that takes offloads (a raw packet socket
 * with PACKET_VNET_HDR) gets the packet with its header as it came, and the kernel finishes the
 * checksum and cuts a GSO packet on the real's link. Otherwise the packet must be complete: a
 * tunnelled packet sits inside an IPIP header, for which virtio_net_hdr has no GSO type. Then a
 * partial checksum is finished in software, and a GSO packet is cut into segments
 * (segmentation.ts): for a tunnel each is encapsulated and spilled for the worker to write in
 * the packet's place; for DR each is sent from a segment buffer of its own.
 *
 * @module
 */
import { EngineCounter as C } from "../engine_counters.ts";
import { Forward, type Service } from "../service.ts";
import { DROP, SENT } from "../verdict.ts";
import { ipDontFragment, PROTO_ICMP, PROTO_TCP } from "../wire/ipv4.ts";
import { TCP_SYN } from "../wire/tcp.ts";
import { VnetGso, VnetHeader } from "../wire/virtio_net_hdr.ts";
import type { Outbox } from "../outbox.ts";
import type { DirectSender } from "./direct.ts";
import {
  segmentCount,
  segmentHeaderLength,
  SPILL_PACKET_BYTES,
  writeSegment,
} from "./segmentation.ts";
import {
  clampMss,
  encapsulateIpip,
  fragmentationNeeded,
  IPIP_HEADER,
  TUNNEL_MSS_OVERHEAD,
} from "./tunnel.ts";

/** The engine's way out to tunnel and DR reals, counting into the engine's counters. */
export class BypassSender {
  /** IP ID of the next header made here (tunnel outer headers, frag-needed). */
  #ipId = 0;
  /** Where a GSO packet's DR segments are cut, one at a time. */
  readonly #segment = new Uint8Array(SPILL_PACKET_BYTES);

  /**
   * Sends DR packets through `direct`; counts into `counters` (`EngineCounter` indexes); `vnet`
   * is the header of the packet being sent, `spill` where a GSO packet's tunnel segments go.
   */
  constructor(
    readonly direct: DirectSender,
    readonly counters: Float64Array,
    readonly vnet: VnetHeader = new VnetHeader(),
    public spill: Outbox | null = null,
  ) {}

  /**
   * Sends a client's packet on to real `real` of tunnel or DR service `svc` (`whole` false for a
   * later fragment or a passed-on ICMP error: no clamping, no frag-needed about it, not counted
   * as forwarded; the fragment's datagram was counted with its first fragment). Tunnel: the MSS
   * of a SYN is clamped, the packet encapsulated in its slot; DR: handed to the DirectSender. A
   * packet too big for the path with DF set is answered with frag-needed instead, as IPVS does.
   * Returns the length to write back, SENT or DROP.
   */
  send(
    b: Uint8Array,
    off: number,
    l4: number,
    proto: number,
    flags: number,
    total: number,
    svc: Service,
    real: number,
    whole: boolean,
  ): number {
    const counters = this.counters;
    const mtu = svc.mtu[real];
    const tunnel = svc.forwardKind === Forward.TUNNEL;
    const v = this.vnet;
    const gso = v.gso !== VnetGso.NONE;
    if (tunnel && gso) return this.#tunnelSegments(b, off, proto, total, svc, real, whole);
    const offloaded = !tunnel && this.direct.takesOffloads === true;
    // The real's decapsulation, or a frame on the real's link, gets the packet as it is.
    if (!gso && !offloaded) v.finishChecksum(b, off, total);
    if (tunnel && whole && proto === PROTO_TCP && (flags & TCP_SYN) !== 0) {
      if (clampMss(b, l4, mtu - TUNNEL_MSS_OVERHEAD)) counters[C.MSS_CLAMPED]++;
    }
    const room = tunnel ? mtu - IPIP_HEADER : mtu;
    // A GSO packet (DR only, here) leaves as segments of its headers and gso_size bytes.
    const size = gso ? segmentHeaderLength(b, off, proto) + v.gsoSize : total;
    if (mtu > 0 && size > room) {
      // Never an error about an ICMP error or about a later fragment (RFC 1122 3.2.2).
      if (whole && proto !== PROTO_ICMP && ipDontFragment(b, off)) {
        v.clear();
        const len = fragmentationNeeded(b, off, total, room, this.nextIpId());
        if (len > 0) {
          counters[C.FRAG_NEEDED_SENT]++;
          return len;
        }
        counters[C.DROP_TOO_BIG]++;
        return DROP;
      }
      // A tunnel's outer packet may be fragmented by the kernel; a DR frame cannot be.
      if (!tunnel) {
        counters[C.DROP_TOO_BIG]++;
        return DROP;
      }
    }
    if (tunnel) {
      const len = encapsulateIpip(
        b,
        off,
        total,
        svc.tunnelSource[real],
        svc.addr[real],
        this.nextIpId(),
      );
      if (len < 0) {
        counters[C.DROP_TOO_BIG]++;
        return DROP;
      }
      v.clear();
      if (whole) counters[C.FORWARDED]++;
      return len;
    }
    if (gso && !offloaded) return this.#directSegments(b, off, proto, total, svc, real, whole);
    if (!this.direct.send(svc.index, real, b, off, total, v)) {
      counters[C.DROP_DIRECT_SEND_FAILED]++;
      return DROP;
    }
    counters[C.DIRECT_SENT]++;
    if (whole) counters[C.FORWARDED]++;
    return SENT;
  }

  /**
   * Cuts the GSO packet at `off` into segments of gso_size payload bytes, each encapsulated for
   * tunnel real `real` of `svc`, into the spill. Returns SENT (the slot itself is not written),
   * the length of a frag-needed answer when a segment is too big for the path and may not be
   * fragmented, or DROP.
   */
  #tunnelSegments(
    b: Uint8Array,
    off: number,
    proto: number,
    total: number,
    svc: Service,
    real: number,
    whole: boolean,
  ): number {
    const counters = this.counters;
    const v = this.vnet;
    const spill = this.spill;
    const mtu = svc.mtu[real];
    const room = mtu - IPIP_HEADER;
    const segment = segmentHeaderLength(b, off, proto) + v.gsoSize;
    if (mtu > 0 && segment > room) {
      v.clear();
      if (whole && ipDontFragment(b, off)) {
        const len = fragmentationNeeded(b, off, total, room, this.nextIpId());
        if (len > 0) {
          counters[C.FRAG_NEEDED_SENT]++;
          return len;
        }
      }
      counters[C.DROP_TOO_BIG]++;
      return DROP;
    }
    const count = segmentCount(b, off, total, proto, v.gsoSize);
    if (
      spill === null || count > spill.slots - spill.count ||
      segment + IPIP_HEADER > spill.packetBytes
    ) {
      counters[C.DROP_TOO_BIG]++;
      return DROP;
    }
    const src = svc.tunnelSource[real];
    const dst = svc.addr[real];
    const out = spill.buf;
    for (let k = 0; k < count; k++) {
      const at = spill.next();
      const len = writeSegment(b, off, total, proto, v.gsoSize, k, out, at);
      spill.commit(encapsulateIpip(out, at, len, src, dst, this.nextIpId()));
    }
    counters[C.GSO_SEGMENTED]++;
    if (whole) counters[C.FORWARDED]++;
    return SENT;
  }

  /**
   * Sends the GSO packet at `off` to DR real `real` of `svc` as segments of gso_size payload
   * bytes, cut one at a time into the segment buffer. Returns SENT, or DROP when a send failed.
   */
  #directSegments(
    b: Uint8Array,
    off: number,
    proto: number,
    total: number,
    svc: Service,
    real: number,
    whole: boolean,
  ): number {
    const counters = this.counters;
    const v = this.vnet;
    const out = this.#segment;
    if (segmentHeaderLength(b, off, proto) + v.gsoSize > out.length) {
      counters[C.DROP_TOO_BIG]++;
      return DROP;
    }
    const count = segmentCount(b, off, total, proto, v.gsoSize);
    for (let k = 0; k < count; k++) {
      const len = writeSegment(b, off, total, proto, v.gsoSize, k, out, 0);
      if (!this.direct.send(svc.index, real, out, 0, len)) {
        counters[C.DROP_DIRECT_SEND_FAILED]++;
        return DROP;
      }
      counters[C.DIRECT_SENT]++;
    }
    counters[C.GSO_SEGMENTED]++;
    if (whole) counters[C.FORWARDED]++;
    return SENT;
  }

  /** The IP ID for the next header the engine makes. */
  nextIpId(): number {
    this.#ipId = (this.#ipId + 1) & 0xffff;
    return this.#ipId;
  }
}
