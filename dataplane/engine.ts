/**
 * The per-packet pipeline: validate, classify, look up or create the
 * connection, translate in place. One call per packet, no allocation.
 */
import { ConnFlag, ConnTable } from "./conn/table.ts";
import {
  CONN_STATE_NAMES,
  ConnState,
  nextTcpState,
  stateTimeouts,
  TcpDir,
  tcpStateActive,
  type Timeouts,
} from "./conn/state.ts";
import { FragmentTable } from "./conn/fragment_table.ts";
import { type ApplyOptions, type ApplyResult, applySpec } from "./apply.ts";
import { NO_ROOM, Persistence } from "./conn/persistence.ts";
import {
  icmpErrorToClient,
  icmpErrorToReal,
  icmpErrorTranslated,
  quotedDstPort,
  quotedPacket,
  quotedSrcPort,
} from "./forward/icmp_error.ts";
import { type DirectSender, NO_DIRECT_SENDER } from "./forward/direct.ts";
import { LocalPortAllocator } from "./forward/local_ports.ts";
import { rewriteDestination, rewriteSource } from "./forward/nat.ts";
import { insertToa, shrinkMssForToa, TOA_NO_ROOM } from "./forward/toa.ts";
import {
  clampMss,
  encapsulateIpip,
  fragmentationNeeded,
  IPIP_HEADER,
  TUNNEL_MSS_OVERHEAD,
} from "./forward/tunnel.ts";
import {
  type DataplaneSpec,
  Forward,
  ONE_PACKET_REPLY_WAIT_MS,
  RealCounter,
  type Service,
  ServiceTable,
} from "./service.ts";
import { adjust16, adjust32 } from "./wire/checksum.ts";
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
  ipDontFragment,
  ipDst,
  ipFragmentOffset,
  ipHeaderChecksum,
  ipHeaderLength,
  ipId,
  ipMoreFragments,
  ipProtocol,
  ipSrc,
  ipTotalLength,
  parseIpv4,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  setIpDst,
  setIpHeaderChecksum,
  setIpSrc,
  setIpTtl,
} from "./wire/ipv4.ts";
import {
  parseTcp,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  tcpDstPort,
  tcpFlags,
  tcpSrcPort,
} from "./wire/tcp.ts";
import { parseUdp, UDP_HEADER, udpDstPort, udpSrcPort } from "./wire/udp.ts";

/** What `process` returns for a packet that must not be written back. */
export const DROP = -1;

/**
 * What `process` returns for a packet it handed to the DirectSender (DR): sent already, so not to
 * be written back.
 */
export const SENT = -3;

/** What the ICMP error path returns when the message is about no connection it handles. */
const UNTRACKED = -2;

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
  /** ICMP errors about a connection, translated along it (an outcome, apart from FORWARDED). */
  ICMP_ERRORS_TRANSLATED: 16,
  /** Later fragments given their first fragment's addresses (apart from FORWARDED). */
  FRAGMENTS_TRANSLATED: 17,
  /** ICMP errors to a VIP that quote no connection we track. */
  DROP_ICMP_UNTRACKED: 18,
  DROP_NO_LOCAL_PORT: 19,
  /** Client segments given the TOA option (FULLNAT with `toa`); apart from FORWARDED. */
  TOA_INSERTED: 20,
  /** Client segments that should have carried TOA but had no room (forwarded without it). */
  TOA_SKIPPED: 21,
  /** DR packets handed to the packet socket (apart from FORWARDED, which counts them too). */
  DIRECT_SENT: 22,
  /** DR packets the packet socket refused. */
  DROP_DIRECT_SEND_FAILED: 23,
  /** Client SYNs whose MSS was lowered to fit the tunnel. */
  MSS_CLAMPED: 24,
  /** Packets too big for the path to a tunnel or DR real, with DF: answered with frag-needed. */
  FRAG_NEEDED_SENT: 25,
  /** Packets too big for the path to a tunnel or DR real that could be neither sent nor answered. */
  DROP_TOO_BIG: 26,
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
  "icmp_errors_translated",
  "fragments_translated",
  "drop_icmp_untracked",
  "drop_no_local_port",
  "toa_inserted",
  "toa_skipped",
  "direct_sent",
  "drop_direct_send_failed",
  "mss_clamped",
  "frag_needed_sent",
  "drop_too_big",
];

const C = EngineCounter;

/** The forwarding engine of one worker: services, connections, counters. */
export class Engine {
  readonly conns: ConnTable;
  /** Persistence templates (-p) and the connections they control, within `conns`. */
  readonly persistence: Persistence;
  /** First fragments' rewrites, which their later fragments follow. */
  readonly fragments = new FragmentTable();
  readonly counters = new Float64Array(ENGINE_COUNTER_NAMES.length);
  services: ServiceTable;
  #timeouts: Float64Array;
  #operatorTimeouts: Timeouts;
  /** The engine's clock in ms; the worker advances it once per batch. */
  now = 0;
  readonly #onExpire = (id: number): boolean => this.#expired(id);
  readonly #localPorts = new LocalPortAllocator();
  readonly #direct: DirectSender;
  /** IP ID of the next header the engine makes (tunnel outer headers, frag-needed). */
  #ipId = 0;

  /** Builds the engine for `spec`; DR packets go out through `direct`. */
  constructor(spec: DataplaneSpec, direct: DirectSender = NO_DIRECT_SENDER) {
    this.#direct = direct;
    this.conns = new ConnTable(spec.maxConnections);
    this.persistence = new Persistence(this.conns);
    this.services = new ServiceTable(spec.services);
    this.#timeouts = stateTimeouts(spec.timeouts);
    this.#operatorTimeouts = { ...spec.timeouts };
  }

  /**
   * Handles the packet of `len` bytes at `off` in `b`, rewriting it in place (a tunnelled packet
   * grows by 20 bytes within its slot). Returns the length to write back, DROP, or SENT.
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

    // A later fragment has no ports: only its first fragment's rewrite tells where it goes.
    if (ipFragmentOffset(b, off) !== 0) return this.#laterFragment(b, off, proto, src, dst, total);

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

  /** The operator's timeouts in force, in seconds. */
  get timeouts(): Timeouts {
    return { ...this.#operatorTimeouts };
  }

  /**
   * Replaces the operator's timeouts. As IPVS's `--set`: a connection keeps the expiry it has
   * and takes the new value with its next packet, which re-arms its timer from the table.
   */
  setTimeouts(t: Timeouts): void {
    this.#timeouts = stateTimeouts(t);
    this.#operatorTimeouts = { ...t };
  }

  /**
   * Takes a new specification without dropping established connections (hot reload, weight
   * changes): see `applySpec`. Throws, changing nothing, when `spec` does not compile.
   */
  apply(spec: DataplaneSpec, options: ApplyOptions = {}): ApplyResult {
    const result = applySpec(this, spec, options);
    this.counters[C.CONNECTIONS_EXPIRED] += result.connections.cut;
    return result;
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
    let real: number;
    let tpl = -1;
    t.control[id] = 0;
    if (svc.persistTimeoutMs > 0) {
      // The real comes from the client's template (ip_vs_sched_persist).
      tpl = this.persistence.acquire(svc, src, sport, dst, dport, this.now);
      if (tpl < 0) {
        t.release(id);
        this.counters[tpl === NO_ROOM ? C.DROP_TABLE_FULL : C.DROP_NO_REAL]++;
        return -1;
      }
      this.persistence.control(id, tpl, svc, this.now);
      real = t.real[tpl];
    } else {
      real = svc.scheduler.pick(svc, src, sport, dst, dport);
      if (real < 0) {
        t.release(id);
        this.counters[C.DROP_NO_REAL]++;
        return -1;
      }
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
    // A real without a port (port 0) takes the port the client asked for.
    t.outDstPort[id] = svc.port[real] !== 0 ? svc.port[real] : dport;
    if (svc.forwardKind === Forward.FULLNAT) {
      // FULLNAT: the request leaves from a local address, so the reply comes back to us.
      const lp = this.#localPorts;
      if (!lp.allocate(t, proto, svc.localAddresses, t.outDst[id], t.outDstPort[id])) {
        if (tpl >= 0) this.persistence.release(id);
        t.release(id);
        this.counters[C.DROP_NO_LOCAL_PORT]++;
        return -1;
      }
      t.outSrc[id] = lp.address;
      t.outSrcPort[id] = lp.port;
    }
    // Tunnel, DR: the real answers the client itself, so no reply will ever look us up.
    if (svc.forwardKind >= Forward.TUNNEL) t.flags[id] |= ConnFlag.NO_REPLY;
    const state = proto === PROTO_TCP ? ConnState.NONE : ConnState.UDP;
    t.state[id] = state;
    let timeout = this.#timeouts[state];
    if (svc.onePacket) {
      // -o: the next datagram must be scheduled anew, so only the reply may find this entry.
      t.flags[id] |= ConnFlag.ONE_PACKET | ConnFlag.NO_ORIGINAL;
      if (timeout > ONE_PACKET_REPLY_WAIT_MS) timeout = ONE_PACKET_REPLY_WAIT_MS;
    }
    svc.bind(real);
    svc.count1(real, RealCounter.CONNS, 1);
    t.link(id, this.now + timeout, this.now);
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
    const fullnat = svc.forwardKind === Forward.FULLNAT;
    if (reply) {
      rewriteSource(b, off, l4, proto, t.inDst[id], t.inDstPort[id]);
      if (fullnat) rewriteDestination(b, off, l4, proto, t.inSrc[id], t.inSrcPort[id]);
      if (svc.toa && proto === PROTO_TCP) this.#toaReply(b, l4, id, flags);
      svc.count1(real, RealCounter.OUT_PACKETS, 1);
      svc.count1(real, RealCounter.OUT_BYTES, total);
    } else {
      // Tunnel and DR deliver the packet as the client sent it, to the VIP the real also has.
      if (svc.forwardKind < Forward.TUNNEL) {
        rewriteDestination(b, off, l4, proto, t.outDst[id], t.outDstPort[id]);
      }
      if (fullnat) rewriteSource(b, off, l4, proto, t.outSrc[id], t.outSrcPort[id]);
      // As DPVS: client segments after the SYN-ACK carry TOA until the real has a socket.
      if (
        (t.flags[id] & ConnFlag.TOA_PENDING) !== 0 &&
        (flags & (TCP_SYN | TCP_RST | TCP_ACK)) === TCP_ACK
      ) {
        total = this.#toa(b, off, l4, id, total);
      }
      svc.count1(real, RealCounter.IN_PACKETS, 1);
      svc.count1(real, RealCounter.IN_BYTES, total);
    }
    if (ipMoreFragments(b, off)) this.#firstFragment(b, off, id, reply, proto, total);
    let state = t.state[id];
    if (proto === PROTO_TCP) {
      // IPVS's directions; a connection whose replies bypass us has its own input table.
      const dir = reply
        ? TcpDir.OUTPUT
        : (t.flags[id] & ConnFlag.NO_REPLY) !== 0
        ? TcpDir.INPUT_ONLY
        : TcpDir.INPUT;
      const next = nextTcpState(state, flags, dir);
      if (next !== state) {
        // As IPVS's set_tcp_state: a connection moves between the real's active and inactive
        // counts only when its state crosses between the two kinds.
        const wasActive = (t.flags[id] & ConnFlag.ACTIVE) !== 0;
        const isActive = tcpStateActive(next);
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
    let timeout = this.#timeouts[state];
    // A one-packet entry only ever waits for its reply.
    if ((t.flags[id] & ConnFlag.ONE_PACKET) !== 0 && timeout > ONE_PACKET_REPLY_WAIT_MS) {
      timeout = ONE_PACKET_REPLY_WAIT_MS;
    }
    const expires = this.now + timeout;
    // A shorter timeout must fire on time; a longer one is found lazily by the wheel.
    const earlier = expires < t.expires[id];
    t.expires[id] = expires;
    if (earlier) t.reschedule(id, this.now);
    if (!reply && svc.forwardKind >= Forward.TUNNEL) {
      const out = this.#bypass(b, off, l4, proto, flags, total, svc, real, true);
      // Without a reply to wait for, a one-packet entry is done once its datagram is sent.
      if ((t.flags[id] & ConnFlag.ONE_PACKET) !== 0) this.#drop(id);
      return out;
    }
    // A one-packet entry has done its work once its datagram's reply is through.
    if (reply && (t.flags[id] & ConnFlag.ONE_PACKET) !== 0) this.#drop(id);
    this.counters[C.FORWARDED]++;
    return total;
  }

  /**
   * Sends a client's packet on to a tunnel or DR real (`whole` false for a later fragment or a
   * passed-on ICMP error: no clamping, no frag-needed about it, not counted as forwarded; the
   * fragment's datagram was counted with its first fragment). Tunnel: the MSS of a SYN is
   * clamped, the packet encapsulated in its slot; DR: handed to the DirectSender. A packet too big
   * for the path with DF set is answered with frag-needed instead, as IPVS does. Returns the
   * length to write back, SENT or DROP.
   */
  #bypass(
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
    const mtu = svc.mtu[real];
    const tunnel = svc.forwardKind === Forward.TUNNEL;
    if (tunnel && whole && proto === PROTO_TCP && (flags & TCP_SYN) !== 0) {
      if (clampMss(b, l4, mtu - TUNNEL_MSS_OVERHEAD)) this.counters[C.MSS_CLAMPED]++;
    }
    const room = tunnel ? mtu - IPIP_HEADER : mtu;
    if (mtu > 0 && total > room) {
      // Never an error about an ICMP error or about a later fragment (RFC 1122 3.2.2).
      if (whole && proto !== PROTO_ICMP && ipDontFragment(b, off)) {
        const len = fragmentationNeeded(b, off, total, room, this.#nextIpId());
        if (len > 0) {
          this.counters[C.FRAG_NEEDED_SENT]++;
          return len;
        }
        this.counters[C.DROP_TOO_BIG]++;
        return DROP;
      }
      // A tunnel's outer packet may be fragmented by the kernel; a DR frame cannot be.
      if (!tunnel) {
        this.counters[C.DROP_TOO_BIG]++;
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
        this.#nextIpId(),
      );
      if (len < 0) {
        this.counters[C.DROP_TOO_BIG]++;
        return DROP;
      }
      if (whole) this.counters[C.FORWARDED]++;
      return len;
    }
    if (!this.#direct.send(svc.index, real, b, off, total)) {
      this.counters[C.DROP_DIRECT_SEND_FAILED]++;
      return DROP;
    }
    this.counters[C.DIRECT_SENT]++;
    if (whole) this.counters[C.FORWARDED]++;
    return SENT;
  }

  #nextIpId(): number {
    this.#ipId = (this.#ipId + 1) & 0xffff;
    return this.#ipId;
  }

  /**
   * The real's side of TOA: its SYN-ACK announces 8 bytes less MSS, so that a client segment
   * with the option still fits the path, and opens the TOA window; anything else it sends
   * closes it, since only a socket that exists (and has read any TOA) sends more than SYN-ACKs.
   */
  #toaReply(b: Uint8Array, l4: number, id: number, flags: number): void {
    const t = this.conns;
    if ((flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) {
      shrinkMssForToa(b, l4);
      t.flags[id] |= ConnFlag.TOA_PENDING;
    } else {
      t.flags[id] &= ~ConnFlag.TOA_PENDING;
    }
  }

  /** Gives a client segment the TOA option; returns the packet's length, grown or not. */
  #toa(b: Uint8Array, off: number, l4: number, id: number, total: number): number {
    const t = this.conns;
    const grown = insertToa(b, off, l4, total, t.inSrc[id], t.inSrcPort[id]);
    if (grown === TOA_NO_ROOM) {
      this.counters[C.TOA_SKIPPED]++;
      return total;
    }
    this.counters[C.TOA_INSERTED]++;
    return grown;
  }

  #expired(id: number): boolean {
    const t = this.conns;
    const svc = this.services.services[t.service[id]];
    if ((t.flags[id] & ConnFlag.TEMPLATE) !== 0) return this.persistence.expire(id, svc, this.now);
    this.#forget(id, svc);
    return true;
  }

  /** Removes connection `id` before its time, as its expiry would. */
  #drop(id: number): void {
    this.#forget(id, this.services.services[this.conns.service[id]]);
    this.conns.remove(id);
    this.counters[C.CONNECTIONS_EXPIRED]++;
  }

  /**
   * Undoes what a connection counted while it lived: its real's connection count and its
   * template's control. Every way a connection ends must come through here.
   */
  #forget(id: number, svc: Service | undefined): void {
    const t = this.conns;
    if (svc !== undefined) {
      svc.unbind(t.real[id], (t.flags[id] & ConnFlag.ACTIVE) !== 0);
    }
    this.persistence.release(id);
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
    const toVip = this.services.isVip(dst);
    if (ipMoreFragments(b, off)) {
      // Only part of the message: its checksum and its quote cannot be checked here.
      if (toVip) {
        this.counters[C.DROP_FRAGMENT]++;
        return DROP;
      }
      this.counters[C.PASSED_THROUGH]++;
      return total;
    }
    const type = l4len >= ICMP_HEADER ? icmpType(b, l4) : -1;
    if (icmpErrorTranslated(type)) {
      const out = this.#icmpError(b, off, l4, l4len, dst, total);
      if (out !== UNTRACKED) return out;
    }
    if (!toVip) {
      this.counters[C.PASSED_THROUGH]++;
      return total;
    }
    if (parseIcmp(b, l4, l4len) !== 0) {
      this.counters[C.DROP_MALFORMED_ICMP]++;
      return DROP;
    }
    if (type !== ICMP_ECHO_REQUEST) {
      this.counters[icmpErrorTranslated(type) ? C.DROP_ICMP_UNTRACKED : C.DROP_UNSUPPORTED]++;
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

  /**
   * Translates an ICMP error about a connection like the connection (IPVS's ip_vs_out_icmp and
   * ip_vs_in_icmp for NAT). Returns UNTRACKED when it quotes no connection it could be about.
   */
  #icmpError(
    b: Uint8Array,
    off: number,
    l4: number,
    l4len: number,
    dst: number,
    total: number,
  ): number {
    const inner = quotedPacket(b, l4, l4len);
    if (inner < 0) return UNTRACKED;
    const t = this.conns;
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
      if (this.services.isVip(dst)) return UNTRACKED;
    } else if (dst !== t.inDst[id]) {
      // About a reply: only for its own VIP.
      return UNTRACKED;
    } else if ((t.flags[id] & ConnFlag.NO_REPLY) !== 0) {
      // Tunnel, DR: the real sent the packet quoted, from the VIP; the error goes to it as it is
      // (IPVS's ip_vs_icmp_xmit), so that, e.g., its path MTU towards the client follows.
      return this.#icmpErrorToBypassReal(b, off, l4, l4len, id, total);
    }
    if (parseIcmp(b, l4, l4len) !== 0) {
      this.counters[C.DROP_MALFORMED_ICMP]++;
      return DROP;
    }
    const svc = this.services.services[t.service[id]];
    const real = t.real[id];
    if (toClient) {
      icmpErrorToClient(b, off, l4, l4len, inner, t.inDst[id], t.inDstPort[id]);
      if (svc !== undefined) {
        svc.count1(real, RealCounter.OUT_PACKETS, 1);
        svc.count1(real, RealCounter.OUT_BYTES, total);
      }
    } else {
      icmpErrorToReal(b, off, l4, l4len, inner, t.outDst[id], t.outDstPort[id]);
      if (svc !== undefined) {
        svc.count1(real, RealCounter.IN_PACKETS, 1);
        svc.count1(real, RealCounter.IN_BYTES, total);
      }
    }
    // As IPVS, an error neither moves the connection's state nor keeps it alive.
    this.counters[C.ICMP_ERRORS_TRANSLATED]++;
    return total;
  }

  /** An ICMP error about a tunnel or DR real's packet, sent on to that real unchanged. */
  #icmpErrorToBypassReal(
    b: Uint8Array,
    off: number,
    l4: number,
    l4len: number,
    id: number,
    total: number,
  ): number {
    if (parseIcmp(b, l4, l4len) !== 0) {
      this.counters[C.DROP_MALFORMED_ICMP]++;
      return DROP;
    }
    const svc = this.services.services[this.conns.service[id]];
    const real = this.conns.real[id];
    if (svc === undefined || svc.forwardKind < Forward.TUNNEL || real >= svc.addr.length) {
      return UNTRACKED;
    }
    const out = this.#bypass(b, off, l4, PROTO_ICMP, 0, total, svc, real, false);
    if (out === DROP) return DROP;
    svc.count1(real, RealCounter.IN_PACKETS, 1);
    svc.count1(real, RealCounter.IN_BYTES, total);
    this.counters[C.ICMP_ERRORS_TRANSLATED]++;
    return out;
  }

  /** Records a translated first fragment so that the rest of its datagram follows it. */
  #firstFragment(
    b: Uint8Array,
    off: number,
    id: number,
    reply: boolean,
    proto: number,
    total: number,
  ): void {
    const t = this.conns;
    // Later fragments arrive with the addresses this one arrived with: the tuple it matched.
    const src = reply ? t.outDst[id] : t.inSrc[id];
    const dst = reply ? t.outSrc[id] : t.inDst[id];
    this.fragments.record(
      proto,
      src,
      dst,
      ipId(b, off),
      this.now,
      ipSrc(b, off),
      ipDst(b, off),
      t.service[id],
      t.real[id],
      reply,
      total - ipHeaderLength(b, off),
    );
  }

  /** A fragment other than the first: rewritten as its first fragment was, or not at all. */
  #laterFragment(
    b: Uint8Array,
    off: number,
    proto: number,
    src: number,
    dst: number,
    total: number,
  ): number {
    const f = this.fragments;
    const slot = f.find(proto, src, dst, ipId(b, off), this.now);
    if (slot < 0) {
      if (this.services.isVip(dst)) {
        this.counters[C.DROP_FRAGMENT]++;
        return DROP;
      }
      this.counters[C.PASSED_THROUGH]++;
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
    const svc = this.services.services[f.service[slot]];
    const real = f.real[slot];
    // The datagram was counted as one packet with its first fragment; its bytes add up here.
    if (svc !== undefined && real < svc.addr.length) {
      svc.count1(real, f.reply[slot] ? RealCounter.OUT_BYTES : RealCounter.IN_BYTES, total);
    }
    f.account(slot, ipFragmentOffset(b, off), bytes, !ipMoreFragments(b, off));
    this.counters[C.FRAGMENTS_TRANSLATED]++;
    // A tunnel or DR datagram's fragments go the way its first went.
    if (svc !== undefined && real < svc.addr.length && svc.forwardKind >= Forward.TUNNEL) {
      return this.#bypass(b, off, off + ipHeaderLength(b, off), proto, 0, total, svc, real, false);
    }
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
