/**
 * IPv4 fragments through the engine: a translated first fragment is recorded, and the later
 * fragments of its datagram, which carry no ports, are given the same addresses (and, for tunnel
 * and DR, sent the same way). In place, no allocation.
 *
 * @module
 */
import type { Engine } from "./engine.ts";
import { EngineCounter as C } from "./engine_counters.ts";
import { Forward, RealCounter } from "./service.ts";
import { DROP } from "./verdict.ts";
import { adjust32 } from "./wire/checksum.ts";
import {
  ipDst,
  ipFragmentOffset,
  ipHeaderChecksum,
  ipHeaderLength,
  ipId,
  ipMoreFragments,
  ipSrc,
  setIpDst,
  setIpHeaderChecksum,
  setIpSrc,
} from "./wire/ipv4.ts";

/**
 * Records the translated first fragment at `off` of connection `id` (`reply`: travelling from
 * the real) so that the rest of its datagram follows it.
 */
export function recordFirstFragment(
  e: Engine,
  b: Uint8Array,
  off: number,
  id: number,
  reply: boolean,
  proto: number,
  total: number,
): void {
  const t = e.conns;
  // Later fragments arrive with the addresses this one arrived with: the tuple it matched.
  const src = reply ? t.outDst[id] : t.inSrc[id];
  const dst = reply ? t.outSrc[id] : t.inDst[id];
  e.fragments.record(
    proto,
    src,
    dst,
    ipId(b, off),
    e.now,
    ipSrc(b, off),
    ipDst(b, off),
    t.service[id],
    t.real[id],
    reply,
    total - ipHeaderLength(b, off),
  );
}

/**
 * A fragment other than the first (from `src` to `dst`): rewritten as its first fragment was, or
 * not at all. Returns the length to write back, DROP or SENT.
 */
export function forwardLaterFragment(
  e: Engine,
  b: Uint8Array,
  off: number,
  proto: number,
  src: number,
  dst: number,
  total: number,
): number {
  const f = e.fragments;
  const slot = f.find(proto, src, dst, ipId(b, off), e.now);
  if (slot < 0) {
    if (e.services.isVip(dst)) {
      e.counters[C.DROP_FRAGMENT]++;
      return DROP;
    }
    e.counters[C.PASSED_THROUGH]++;
    return total;
  }
  const newSrc = f.newSrc[slot];
  const newDst = f.newDst[slot];
  let check = ipHeaderChecksum(b, off);
  if (newSrc !== src) {
    check = adjust32(check, src, newSrc);
    setIpSrc(b, off, newSrc);
  }
  if (newDst !== dst) {
    check = adjust32(check, dst, newDst);
    setIpDst(b, off, newDst);
  }
  setIpHeaderChecksum(b, off, check);
  const bytes = total - ipHeaderLength(b, off);
  const svc = e.services.services[f.service[slot]];
  const real = f.real[slot];
  // The datagram was counted as one packet with its first fragment; its bytes add up here.
  if (svc !== undefined && real < svc.addr.length) {
    svc.count1(real, f.reply[slot] ? RealCounter.OUT_BYTES : RealCounter.IN_BYTES, total);
  }
  f.account(slot, ipFragmentOffset(b, off), bytes, !ipMoreFragments(b, off));
  e.counters[C.FRAGMENTS_TRANSLATED]++;
  // A tunnel or DR datagram's fragments go the way its first went.
  if (svc !== undefined && real < svc.addr.length && svc.forwardKind >= Forward.TUNNEL) {
    return e.bypass.send(b, off, off + ipHeaderLength(b, off), proto, 0, total, svc, real, false);
  }
  return total;
}
