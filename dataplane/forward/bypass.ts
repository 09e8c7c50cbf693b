/**
 * Sending a client's packet on to a tunnel or DR real, whose replies bypass the director: the
 * tunnel encapsulates it in its slot (MSS clamped on a SYN), DR hands it to the DirectSender; a
 * packet too big for the path is answered with fragmentation needed when it has DF.
 *
 * @module
 */
import { EngineCounter as C } from "../engine_counters.ts";
import { Forward, type Service } from "../service.ts";
import { DROP, SENT } from "../verdict.ts";
import { ipDontFragment, PROTO_ICMP, PROTO_TCP } from "../wire/ipv4.ts";
import { TCP_SYN } from "../wire/tcp.ts";
import type { DirectSender } from "./direct.ts";
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

  /** Sends DR packets through `direct`; counts into `counters` (`EngineCounter` indexes). */
  constructor(readonly direct: DirectSender, readonly counters: Float64Array) {}

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
    if (tunnel && whole && proto === PROTO_TCP && (flags & TCP_SYN) !== 0) {
      if (clampMss(b, l4, mtu - TUNNEL_MSS_OVERHEAD)) counters[C.MSS_CLAMPED]++;
    }
    const room = tunnel ? mtu - IPIP_HEADER : mtu;
    if (mtu > 0 && total > room) {
      // Never an error about an ICMP error or about a later fragment (RFC 1122 3.2.2).
      if (whole && proto !== PROTO_ICMP && ipDontFragment(b, off)) {
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
      if (whole) counters[C.FORWARDED]++;
      return len;
    }
    if (!this.direct.send(svc.index, real, b, off, total)) {
      counters[C.DROP_DIRECT_SEND_FAILED]++;
      return DROP;
    }
    counters[C.DIRECT_SENT]++;
    if (whole) counters[C.FORWARDED]++;
    return SENT;
  }

  /** The IP ID for the next header the engine makes. */
  nextIpId(): number {
    this.#ipId = (this.#ipId + 1) & 0xffff;
    return this.#ipId;
  }
}
