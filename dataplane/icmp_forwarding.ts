/**
 * ICMP through the engine: echo requests to a VIP are answered, errors about a tracked
 * connection are translated like it (IPVS's ip_vs_out_icmp and ip_vs_in_icmp for NAT) or, for
 * tunnel and DR, sent on to the real unchanged (ip_vs_icmp_xmit); everything else to a VIP is
 * dropped, the rest passes. In place, no allocation.
 *
 * @module
 */
import { ConnFlag } from "./conn/table.ts";
import type { Engine } from "./engine.ts";
import { EngineCounter as C } from "./engine_counters.ts";
import {
  icmpErrorToClient,
  icmpErrorToFullnatClient,
  icmpErrorToFullnatReal,
  icmpErrorToReal,
  icmpErrorTranslated,
  quotedDstPort,
  quotedPacket,
  quotedSrcPort,
} from "./forward/icmp_error.ts";
import { Forward, RealCounter } from "./service.ts";
import { DROP } from "./verdict.ts";
import { adjust16 } from "./wire/checksum.ts";
import {
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_HEADER,
  icmpChecksum,
  icmpType,
  parseIcmp,
  setIcmpChecksum,
  setIcmpType,
} from "./wire/icmp.ts";
import {
  fillIpHeaderChecksum,
  ipDst,
  ipHeaderLength,
  ipMoreFragments,
  ipProtocol,
  ipSrc,
  PROTO_ICMP,
  PROTO_TCP,
  setIpDst,
  setIpSrc,
  setIpTtl,
} from "./wire/ipv4.ts";

/** What the ICMP error path returns when the message is about no connection it handles. */
const UNTRACKED = -2;

/**
 * Handles the ICMP message of `total` bytes at `off` (ICMP header at `l4`, `l4len` bytes, from
 * `src` to `dst`). Returns the length to write back, DROP, or SENT.
 */
export function forwardIcmp(
  e: Engine,
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  src: number,
  dst: number,
  total: number,
): number {
  const counters = e.counters;
  const toVip = e.services.isVip(dst);
  if (ipMoreFragments(b, off)) {
    // Only part of the message: its checksum and its quote cannot be checked here.
    if (toVip) {
      counters[C.DROP_FRAGMENT]++;
      return DROP;
    }
    counters[C.PASSED_THROUGH]++;
    return total;
  }
  const type = l4len >= ICMP_HEADER ? icmpType(b, l4) : -1;
  if (icmpErrorTranslated(type)) {
    const out = icmpError(e, b, off, l4, l4len, dst, total);
    if (out !== UNTRACKED) return out;
  }
  if (!toVip) {
    counters[C.PASSED_THROUGH]++;
    return total;
  }
  if (parseIcmp(b, l4, l4len) !== 0) {
    counters[C.DROP_MALFORMED_ICMP]++;
    return DROP;
  }
  if (type !== ICMP_ECHO_REQUEST) {
    counters[icmpErrorTranslated(type) ? C.DROP_ICMP_UNTRACKED : C.DROP_UNSUPPORTED]++;
    return DROP;
  }
  // The VIP answers pings itself, as a kernel director with the VIP configured would.
  setIpSrc(b, off, dst);
  setIpDst(b, off, src);
  setIpTtl(b, off, 64);
  fillIpHeaderChecksum(b, off);
  setIcmpType(b, l4, ICMP_ECHO_REPLY);
  setIcmpChecksum(
    b,
    l4,
    adjust16(icmpChecksum(b, l4), ICMP_ECHO_REQUEST << 8, ICMP_ECHO_REPLY << 8),
  );
  counters[C.ECHO_REPLIES]++;
  return total;
}

/**
 * Translates an ICMP error about a connection like the connection. Returns UNTRACKED when it
 * quotes no connection it could be about.
 */
function icmpError(
  e: Engine,
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  dst: number,
  total: number,
): number {
  const inner = quotedPacket(b, l4, l4len);
  if (inner < 0) return UNTRACKED;
  const t = e.conns;
  // The quote is a packet as it left in one direction; its answer is what the table knows.
  const entry = t.lookup(
    ipProtocol(b, inner),
    ipDst(b, inner),
    quotedDstPort(b, inner),
    ipSrc(b, inner),
    quotedSrcPort(b, inner),
  );
  if (entry < 0) return UNTRACKED;
  const id = entry >> 1;
  const toClient = (entry & 1) === 1;
  if (toClient) {
    // About a packet on its way to the real: the error leaves from the VIP, so one sent to a
    // VIP would come straight back.
    if (e.services.isVip(dst)) return UNTRACKED;
  } else if (dst !== t.inDst[id]) {
    // About a reply: only for its own VIP.
    return UNTRACKED;
  } else if ((t.flags[id] & ConnFlag.NO_REPLY) !== 0) {
    // Tunnel, DR: the real sent the packet quoted, from the VIP; the error goes to it as it is
    // (IPVS's ip_vs_icmp_xmit), so that, e.g., its path MTU towards the client follows.
    return icmpErrorToBypassReal(e, b, off, l4, l4len, id, total);
  }
  if (parseIcmp(b, l4, l4len) !== 0) {
    e.counters[C.DROP_MALFORMED_ICMP]++;
    return DROP;
  }
  const svc = e.services.services[t.service[id]];
  const real = t.real[id];
  // FULLNAT's sequence translation: the quote carries numbers as they left the director.
  if (ipProtocol(b, inner) === PROTO_TCP && (t.flags[id] & ConnFlag.SYNPROXY) === 0) {
    const quotedL4 = inner + ipHeaderLength(b, inner);
    e.fullnatSequence.unshiftQuote(b, quotedL4, l4 + l4len - quotedL4, id, toClient);
  }
  const fullnat = svc !== undefined && svc.forwardKind === Forward.FULLNAT;
  if (toClient) {
    icmpErrorToClient(b, off, l4, l4len, inner, t.inDst[id], t.inDstPort[id]);
    if (fullnat) icmpErrorToFullnatClient(b, off, l4, l4len, inner, t.inSrc[id], t.inSrcPort[id]);
    if (svc !== undefined) {
      svc.count1(real, RealCounter.OUT_PACKETS, 1);
      svc.count1(real, RealCounter.OUT_BYTES, total);
    }
  } else {
    if ((t.flags[id] & ConnFlag.SYNPROXY) !== 0 && ipProtocol(b, inner) === PROTO_TCP) {
      // The quote carries the sequence number the client saw, not the real's.
      const quotedL4 = inner + ipHeaderLength(b, inner);
      e.synproxy.unshiftQuote(b, quotedL4, l4 + l4len - quotedL4, id);
    }
    icmpErrorToReal(b, off, l4, l4len, inner, t.outDst[id], t.outDstPort[id]);
    if (fullnat) icmpErrorToFullnatReal(b, off, l4, l4len, inner, t.outSrc[id], t.outSrcPort[id]);
    if (svc !== undefined) {
      svc.count1(real, RealCounter.IN_PACKETS, 1);
      svc.count1(real, RealCounter.IN_BYTES, total);
    }
  }
  // As IPVS, an error neither moves the connection's state nor keeps it alive.
  e.counters[C.ICMP_ERRORS_TRANSLATED]++;
  return total;
}

/** An ICMP error about a tunnel or DR real's packet, sent on to that real unchanged. */
function icmpErrorToBypassReal(
  e: Engine,
  b: Uint8Array,
  off: number,
  l4: number,
  l4len: number,
  id: number,
  total: number,
): number {
  if (parseIcmp(b, l4, l4len) !== 0) {
    e.counters[C.DROP_MALFORMED_ICMP]++;
    return DROP;
  }
  const svc = e.services.services[e.conns.service[id]];
  const real = e.conns.real[id];
  if (svc === undefined || svc.forwardKind < Forward.TUNNEL || real >= svc.addr.length) {
    return UNTRACKED;
  }
  const out = e.bypass.send(b, off, l4, PROTO_ICMP, 0, total, svc, real, false);
  if (out === DROP) return DROP;
  svc.count1(real, RealCounter.IN_PACKETS, 1);
  svc.count1(real, RealCounter.IN_BYTES, total);
  e.counters[C.ICMP_ERRORS_TRANSLATED]++;
  return out;
}
