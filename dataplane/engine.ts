/**
 * The per-packet pipeline: validate, classify, look up or create the
 * connection, translate in place. One call per packet, no allocation.
 */
import { ConnFlag, ConnTable } from "./conn/table.ts";
import { CONN_STATE_NAMES, ConnState, nextTcpState, stateTimeouts } from "./conn/state.ts";
import { natOriginal, natReply } from "./forward/nat.ts";
import { type DataplaneSpec, RealCounter, type Service, ServiceTable } from "./service.ts";
import { adjust16 } from "./wire/checksum.ts";
import {
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  icmpChecksum,
  icmpType,
  parseIcmp,
  setIcmpChecksum,
  setIcmpType,
} from "./wire/icmp.ts";
import {
  fillIpHeaderChecksum,
  ipDst,
  ipFragmentOffset,
  ipHeaderLength,
  ipMoreFragments,
  ipProtocol,
  ipSrc,
  ipTotalLength,
  parseIpv4,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  setIpDst,
  setIpSrc,
  setIpTtl,
} from "./wire/ipv4.ts";
import { parseTcp, TCP_ACK, TCP_SYN, tcpDstPort, tcpFlags, tcpSrcPort } from "./wire/tcp.ts";
import { parseUdp, UDP_HEADER, udpDstPort, udpSrcPort } from "./wire/udp.ts";

/** What `process` returns for a packet that must not be written back. */
export const DROP = -1;

/** Engine-wide counters, by index into `Engine.counters`. */
export const EngineCounter = {
  RX_PACKETS: 0,
  FORWARDED: 1,
  PASSED_THROUGH: 2,
  CONNECTIONS_CREATED: 3,
  CONNECTIONS_EXPIRED: 4,
  ECHO_REPLIES: 5,
  DROP_MALFORMED_IPV4: 6,
  DROP_MALFORMED_TCP: 7,
  DROP_MALFORMED_UDP: 8,
  DROP_MALFORMED_ICMP: 9,
  DROP_NO_SERVICE: 10,
  DROP_NO_CONNECTION: 11,
  DROP_NO_REAL: 12,
  DROP_TABLE_FULL: 13,
  DROP_FRAGMENT: 14,
  DROP_UNSUPPORTED: 15,
} as const;

/** Metric names of `EngineCounter`, indexed alike. */
export const ENGINE_COUNTER_NAMES: readonly string[] = [
  "rx_packets",
  "forwarded",
  "passed_through",
  "connections_created",
  "connections_expired",
  "echo_replies",
  "drop_malformed_ipv4",
  "drop_malformed_tcp",
  "drop_malformed_udp",
  "drop_malformed_icmp",
  "drop_no_service",
  "drop_no_connection",
  "drop_no_real",
  "drop_table_full",
  "drop_fragment",
  "drop_unsupported",
];

const C = EngineCounter;

/** The forwarding engine of one worker: services, connections, counters. */
export class Engine {
  readonly conns: ConnTable;
  readonly counters = new Float64Array(ENGINE_COUNTER_NAMES.length);
  services: ServiceTable;
  #timeouts: Float64Array;
  /** The engine's clock in ms; the worker advances it once per batch. */
  now = 0;
  readonly #onExpire = (id: number): boolean => this.#expired(id);

  /** Builds the engine for `spec`. */
  constructor(spec: DataplaneSpec) {
    this.conns = new ConnTable(spec.maxConnections);
    this.services = new ServiceTable(spec.services);
    this.#timeouts = stateTimeouts(spec.timeouts);
  }

  /**
   * Handles the packet of `len` bytes at `off` in `b`, rewriting it in place.
   * Returns the length to write back, or DROP.
   */
  process(b: Uint8Array, off: number, len: number): number {
    this.counters[C.RX_PACKETS]++;
    if (parseIpv4(b, off, len) !== 0) {
      this.counters[C.DROP_MALFORMED_IPV4]++;
      return DROP;
    }
    const total = ipTotalLength(b, off);
    const proto = ipProtocol(b, off);
    const l4 = off + ipHeaderLength(b, off);
    const l4len = total - (l4 - off);
    const src = ipSrc(b, off);
    const dst = ipDst(b, off);

    if (ipFragmentOffset(b, off) !== 0) {
      // A later fragment has no ports: it cannot be matched to a connection.
      if (this.services.isVip(dst)) {
        this.counters[C.DROP_FRAGMENT]++;
        return DROP;
      }
      this.counters[C.PASSED_THROUGH]++;
      return total;
    }

    let sport: number;
    let dport: number;
    let flags = 0;
    if (proto === PROTO_TCP) {
      if (parseTcp(b, l4, l4len) !== 0) {
        this.counters[C.DROP_MALFORMED_TCP]++;
        return DROP;
      }
      sport = tcpSrcPort(b, l4);
      dport = tcpDstPort(b, l4);
      flags = tcpFlags(b, l4);
    } else if (proto === PROTO_UDP) {
      // A first fragment holds the UDP header but not the whole datagram its length counts.
      const udpOk = ipMoreFragments(b, off) ? l4len >= UDP_HEADER : parseUdp(b, l4, l4len) === 0;
      if (!udpOk) {
        this.counters[C.DROP_MALFORMED_UDP]++;
        return DROP;
      }
      sport = udpSrcPort(b, l4);
      dport = udpDstPort(b, l4);
    } else if (proto === PROTO_ICMP) {
      return this.#icmp(b, off, l4, l4len, src, dst, total);
    } else {
      return this.#other(dst, total);
    }

    const entry = this.conns.lookup(proto, src, sport, dst, dport);
    if (entry >= 0) return this.#translate(b, off, l4, entry, proto, flags, total);

    const si = this.services.match(proto, dst, dport);
    if (si < 0) return this.#other(dst, total);
    // As IPVS: only a SYN opens a TCP connection; anything else without one is stale.
    if (proto === PROTO_TCP && (flags & (TCP_SYN | TCP_ACK)) !== TCP_SYN) {
      this.counters[C.DROP_NO_CONNECTION]++;
      return DROP;
    }
    const id = this.#create(this.services.services[si], proto, src, sport, dst, dport);
    if (id < 0) return DROP;
    return this.#translate(b, off, l4, id << 1, proto, flags, total);
  }

  /** Expires connections whose time has come; call about every 250 ms. */
  tick(now: number): void {
    this.now = now;
    this.counters[C.CONNECTIONS_EXPIRED] += this.conns.expire(now, this.#onExpire);
  }

  /** Name of connection state `s`. */
  static stateName(s: number): string {
    return CONN_STATE_NAMES[s] ?? "UNKNOWN";
  }

  #create(
    svc: Service,
    proto: number,
    src: number,
    sport: number,
    dst: number,
    dport: number,
  ): number {
    const t = this.conns;
    // Room first: a refused connection must not move the scheduler on.
    const id = t.allocate();
    if (id < 0) {
      this.counters[C.DROP_TABLE_FULL]++;
      return -1;
    }
    const real = svc.scheduler.pick(svc, src, sport, dst, dport);
    if (real < 0) {
      t.release(id);
      this.counters[C.DROP_NO_REAL]++;
      return -1;
    }
    t.protocol[id] = proto;
    t.service[id] = svc.index;
    t.real[id] = real;
    t.inSrc[id] = src;
    t.inSrcPort[id] = sport;
    t.inDst[id] = dst;
    t.inDstPort[id] = dport;
    // NAT keeps the client as source and sends to the real.
    t.outSrc[id] = src;
    t.outSrcPort[id] = sport;
    t.outDst[id] = svc.addr[real];
    t.outDstPort[id] = svc.port[real];
    const state = proto === PROTO_TCP ? ConnState.NONE : ConnState.UDP;
    t.state[id] = state;
    svc.bind(real);
    svc.count1(real, RealCounter.CONNS, 1);
    t.link(id, this.now + this.#timeouts[state], this.now);
    this.counters[C.CONNECTIONS_CREATED]++;
    return id;
  }

  #translate(
    b: Uint8Array,
    off: number,
    l4: number,
    entry: number,
    proto: number,
    flags: number,
    total: number,
  ): number {
    const t = this.conns;
    const id = entry >> 1;
    const reply = (entry & 1) === 1;
    const svc = this.services.services[t.service[id]];
    const real = t.real[id];
    if (reply) {
      natReply(b, off, l4, proto, t.inDst[id], t.inDstPort[id]);
      svc.count1(real, RealCounter.OUT_PACKETS, 1);
      svc.count1(real, RealCounter.OUT_BYTES, total);
    } else {
      natOriginal(b, off, l4, proto, t.outDst[id], t.outDstPort[id]);
      svc.count1(real, RealCounter.IN_PACKETS, 1);
      svc.count1(real, RealCounter.IN_BYTES, total);
    }
    let state = t.state[id];
    if (proto === PROTO_TCP) {
      const next = nextTcpState(state, flags, !reply);
      if (next !== state) {
        const wasActive = (t.flags[id] & ConnFlag.ACTIVE) !== 0;
        const isActive = next === ConnState.ESTABLISHED;
        if (wasActive !== isActive) {
          if (isActive) {
            svc.active[real]++;
            svc.inactive[real]--;
            t.flags[id] |= ConnFlag.ACTIVE;
          } else {
            svc.active[real]--;
            svc.inactive[real]++;
            t.flags[id] &= ~ConnFlag.ACTIVE;
          }
        }
        t.state[id] = state = next;
      }
    }
    const expires = this.now + this.#timeouts[state];
    // A shorter timeout must fire on time; a longer one is found lazily by the wheel.
    const earlier = expires < t.expires[id];
    t.expires[id] = expires;
    if (earlier) t.reschedule(id, this.now);
    this.counters[C.FORWARDED]++;
    return total;
  }

  #expired(id: number): boolean {
    const t = this.conns;
    const svc = this.services.services[t.service[id]];
    if (svc !== undefined) {
      svc.unbind(t.real[id], (t.flags[id] & ConnFlag.ACTIVE) !== 0);
    }
    return true;
  }

  #icmp(
    b: Uint8Array,
    off: number,
    l4: number,
    l4len: number,
    src: number,
    dst: number,
    total: number,
  ): number {
    if (!this.services.isVip(dst)) {
      this.counters[C.PASSED_THROUGH]++;
      return total;
    }
    if (parseIcmp(b, l4, l4len) !== 0) {
      this.counters[C.DROP_MALFORMED_ICMP]++;
      return DROP;
    }
    if (icmpType(b, l4) !== ICMP_ECHO_REQUEST) {
      this.counters[C.DROP_UNSUPPORTED]++;
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
    this.counters[C.ECHO_REPLIES]++;
    return total;
  }

  #other(dst: number, total: number): number {
    // Written back unchanged, a packet for a VIP would be routed straight back to us.
    if (this.services.isVip(dst)) {
      this.counters[C.DROP_NO_SERVICE]++;
      return DROP;
    }
    this.counters[C.PASSED_THROUGH]++;
    return total;
  }
}
