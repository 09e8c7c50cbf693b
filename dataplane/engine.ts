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
import { ENGINE_COUNTER_NAMES, EngineCounter } from "./engine_counters.ts";
import { forwardLaterFragment, recordFirstFragment } from "./fragment_forwarding.ts";
import { BypassSender } from "./forward/bypass.ts";
import { addToa, rewriteReply, rewriteRequest } from "./forward/connection_rewrite.ts";
import { type DirectSender, NO_DIRECT_SENDER } from "./forward/direct.ts";
import { FullnatSequence } from "./forward/fullnat_sequence.ts";
import { FullnatTimestamps } from "./forward/fullnat_timestamps.ts";
import { LocalPortAllocator } from "./forward/local_ports.ts";
import { TOA_LENGTH } from "./forward/toa.ts";
import { forwardIcmp } from "./icmp_forwarding.ts";
import { Outbox } from "./outbox.ts";
import {
  type DataplaneSpec,
  Forward,
  ONE_PACKET_REPLY_WAIT_MS,
  RealCounter,
  type Service,
  ServiceTable,
} from "./service.ts";
import {
  HANDSHAKE_SEGMENT_MAX,
  HANDSHAKE_TIMEOUT_MS,
  SYN_RESEND_AFTER_MS,
  Synproxy,
  SYNPROXY_DEFAULTS,
  SynproxyPhase,
} from "./synproxy/synproxy.ts";
import { TimestampClock } from "./timestamp_clock.ts";
import { DROP } from "./verdict.ts";
import { SPILL_PACKET_BYTES, SPILL_SLOTS } from "./forward/segmentation.ts";
import { VnetGso, VnetHeader } from "./wire/virtio_net_hdr.ts";
import {
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
} from "./wire/ipv4.ts";
import {
  parseTcp,
  setTcpChecksum,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  tcpAck,
  tcpChecksum,
  tcpDstPort,
  tcpFlags,
  tcpSrcPort,
} from "./wire/tcp.ts";
import { parseUdp, UDP_HEADER, udpDstPort, udpSrcPort } from "./wire/udp.ts";

export { DROP, SENT } from "./verdict.ts";
export { ENGINE_COUNTER_NAMES, EngineCounter } from "./engine_counters.ts";

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
  #localPorts = new LocalPortAllocator();
  /** The way out to tunnel and DR reals. */
  readonly bypass: BypassSender;
  /**
   * The TSval clock of the SYNs reals get from the director's addresses (the SYN proxy's, and
   * FULLNAT's from local addresses), one for both so that a tuple sees it only increase.
   */
  readonly tsClock = new TimestampClock();
  /** SYN cookies and the proxied handshakes of `synproxy` services. */
  readonly synproxy: Synproxy;
  /** FULLNAT connections' timestamps, moved onto `tsClock` (the real's TIME_WAIT needs it). */
  readonly fullnatTimestamps: FullnatTimestamps;
  /** FULLNAT connections' sequence numbers where the SYN had no timestamps, likewise. */
  readonly fullnatSequence: FullnatSequence;
  /** Packets made on the timer (`tick`): the worker writes them out, then clears it. */
  readonly outbox = new Outbox(64);
  /**
   * The virtio_net_hdr of the packet `process` is given (all zero on a TUN without offloads):
   * the worker reads it in before and writes it out after; packets the engine makes get a zero
   * one.
   */
  readonly vnet = new VnetHeader();
  /**
   * Segments a GSO packet was cut into by `process` (for a tunnel real, which no GSO type
   * describes): the worker writes them in the packet's place, then clears it.
   */
  spill = new Outbox(SPILL_SLOTS, SPILL_PACKET_BYTES);

  /** Builds the engine for `spec`; DR packets go out through `direct`. */
  constructor(spec: DataplaneSpec, direct: DirectSender = NO_DIRECT_SENDER) {
    this.bypass = new BypassSender(direct, this.counters, this.vnet, this.spill);
    this.conns = new ConnTable(spec.maxConnections);
    this.persistence = new Persistence(this.conns);
    this.services = new ServiceTable(spec.services);
    this.#timeouts = stateTimeouts(spec.timeouts);
    this.#operatorTimeouts = { ...spec.timeouts };
    this.synproxy = new Synproxy(
      spec.maxConnections,
      spec.synproxy ?? SYNPROXY_DEFAULTS,
      this.now,
      this.counters,
      undefined,
      this.tsClock,
    );
    this.fullnatTimestamps = new FullnatTimestamps(spec.maxConnections, this.tsClock);
    this.fullnatSequence = new FullnatSequence(spec.maxConnections, this.tsClock);
  }

  /**
   * Makes this engine worker `worker` of `workers`: its FULLNAT connections leave from local
   * ports ≡ worker (mod workers) only, so that their replies name it as their owner.
   */
  shareLocalPorts(worker: number, workers: number): void {
    this.#localPorts = new LocalPortAllocator(workers, worker);
  }

  /**
   * Handles the packet of `len` bytes at `off` in `b`, rewriting it in place (a tunnelled packet
   * grows by 20 bytes within its slot). `mark`: the firewall mark of the TUN device it was read
   * from (0: the main device). Returns the length to write back, DROP, or SENT.
   */
  process(b: Uint8Array, off: number, len: number, mark = 0): number {
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
    const v = this.vnet;
    if ((v.flags | v.gsoType) !== 0 && !this.#offloadUsable(b, off, l4, proto, total)) {
      this.counters[C.DROP_OFFLOAD]++;
      return DROP;
    }

    // A later fragment has no ports: only its first fragment's rewrite tells where it goes.
    if (ipFragmentOffset(b, off) !== 0) {
      return forwardLaterFragment(this, b, off, proto, src, dst, total);
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
      return forwardIcmp(this, b, off, l4, l4len, src, dst, total);
    } else {
      return this.#other(dst, total, mark);
    }

    const entry = this.conns.lookup(proto, src, sport, dst, dport);
    if (entry >= 0) {
      if ((this.conns.flags[entry >> 1] & ConnFlag.SYNPROXY) !== 0) {
        return this.#synproxied(b, off, l4, entry, flags, total, src, sport, dst, dport);
      }
      if (
        proto === PROTO_TCP && (entry & 1) === 0 && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN &&
        over(this.conns.state[entry >> 1])
      ) {
        // The client reuses the ports of a connection that is over: a new connection, scheduled
        // anew (IPVS's conn_reuse_mode), not sent to the old one's real, which may be gone.
        this.#drop(entry >> 1);
        return this.#open(b, off, l4, proto, flags, total, src, sport, dst, dport, mark);
      }
      return this.#translate(b, off, l4, entry, proto, flags, total);
    }
    return this.#open(b, off, l4, proto, flags, total, src, sport, dst, dport, mark);
  }

  /**
   * Whether the packet's virtio_net_hdr is one the engine handles: GSO only for TCP (TCPV4) and
   * UDP (UDP_L4) with the checksum left to the kernel at the L4 header. A partial checksum
   * anywhere else (not where a rewrite expects it) is finished here in software.
   */
  #offloadUsable(b: Uint8Array, off: number, l4: number, proto: number, total: number): boolean {
    const v = this.vnet;
    const field = proto === PROTO_TCP ? 16 : proto === PROTO_UDP ? 6 : -1;
    const standard = v.needsCsum && v.csumStart === l4 - off && v.csumOffset === field;
    if (v.gso !== VnetGso.NONE) {
      return standard &&
        (proto === PROTO_TCP ? v.gso === VnetGso.TCPV4 : v.gso === VnetGso.UDP_L4) &&
        v.gsoSize > 0 && ipFragmentOffset(b, off) === 0 && !ipMoreFragments(b, off);
    }
    if (v.needsCsum && !standard) {
      if (v.csumStart + v.csumOffset + 2 > total) return false;
      v.finishChecksum(b, off, total);
    }
    return true;
  }

  /** A packet of no connection: opens one for a service, or answers for a SYN proxy. */
  #open(
    b: Uint8Array,
    off: number,
    l4: number,
    proto: number,
    flags: number,
    total: number,
    src: number,
    sport: number,
    dst: number,
    dport: number,
    mark: number,
  ): number {
    // As ip_vs_service_find: a marked packet's firewall-mark service first, then VIP:port.
    let si = mark !== 0 ? this.services.matchMark(mark) : -1;
    if (si < 0) si = this.services.match(proto, dst, dport);
    if (si < 0) return this.#other(dst, total, mark);
    const svc = this.services.services[si];
    if (proto === PROTO_TCP && svc.synproxy) {
      return this.#synproxyOpen(b, off, l4, svc, flags, total, src, sport, dst, dport);
    }
    // As IPVS: only a SYN opens a TCP connection; anything else without one is stale.
    if (proto === PROTO_TCP && (flags & (TCP_SYN | TCP_ACK)) !== TCP_SYN) {
      this.counters[C.DROP_NO_CONNECTION]++;
      return DROP;
    }
    const id = this.#create(svc, proto, src, sport, dst, dport);
    if (id < 0) return DROP;
    if (proto === PROTO_TCP && svc.forwardKind === Forward.FULLNAT) {
      const fts = this.fullnatTimestamps;
      fts.begin(b, l4, id, this.now);
      this.fullnatSequence.begin(b, l4, id, this.now, fts.translating[id] === 1);
    }
    return this.#translate(b, off, l4, id << 1, proto, flags, total);
  }

  /**
   * A synproxy service's TCP segment without a connection: a SYN is answered with a cookie
   * SYN-ACK and forgotten; an ACK returning a valid cookie opens the connection and becomes the
   * SYN to the real; anything else is dropped.
   */
  #synproxyOpen(
    b: Uint8Array,
    off: number,
    l4: number,
    svc: Service,
    flags: number,
    total: number,
    src: number,
    sport: number,
    dst: number,
    dport: number,
  ): number {
    const sp = this.synproxy;
    // Whatever goes out from here is a segment made here, checksums finished.
    this.vnet.clear();
    const kind = flags & (TCP_SYN | TCP_ACK | TCP_RST);
    if (kind === TCP_SYN) {
      // A TOA service's clients must leave room for the option in every segment.
      const mss = svc.toa ? sp.mss - TOA_LENGTH : sp.mss;
      const len = sp.answerSyn(b, off, l4, mss, this.now, this.bypass.nextIpId());
      if (len < 0) {
        this.counters[C.DROP_SYNPROXY_NO_ROOM]++;
        return DROP;
      }
      this.counters[C.SYNPROXY_SYNS_ANSWERED]++;
      return len;
    }
    if (kind !== TCP_ACK) {
      this.counters[C.DROP_NO_CONNECTION]++;
      return DROP;
    }
    // Costs one hash and no state: an ACK flood with made-up cookies ends here.
    const mssIndex = sp.checkAck(b, off, l4);
    if (mssIndex < 0) {
      this.counters[C.SYNPROXY_COOKIES_REJECTED]++;
      return DROP;
    }
    this.counters[C.SYNPROXY_COOKIES_VALIDATED]++;
    const t = this.conns;
    const id = this.#create(svc, PROTO_TCP, src, sport, dst, dport);
    if (id < 0) {
      // No real or no room: the client believes it is connected, so tell it it is not.
      this.counters[C.SYNPROXY_HANDSHAKES_FAILED]++;
      return sp.resetUnopened(b, off, l4, this.bypass.nextIpId());
    }
    t.flags[id] |= ConnFlag.SYNPROXY;
    const len = sp.open(b, off, l4, total, id, mssIndex, t, this.now, this.bypass.nextIpId());
    if (len < 0) {
      this.#drop(id);
      this.counters[C.DROP_SYNPROXY_NO_ROOM]++;
      return DROP;
    }
    const real = t.real[id];
    this.#advance(id, svc, real, TCP_SYN, TcpDir.INPUT);
    this.#expireIn(id, HANDSHAKE_TIMEOUT_MS);
    svc.count1(real, RealCounter.IN_PACKETS, 1);
    svc.count1(real, RealCounter.IN_BYTES, len);
    this.counters[C.FORWARDED]++;
    return len;
  }

  /** A segment of a connection the SYN proxy opened. */
  #synproxied(
    b: Uint8Array,
    off: number,
    l4: number,
    entry: number,
    flags: number,
    total: number,
    src: number,
    sport: number,
    dst: number,
    dport: number,
  ): number {
    const id = entry >> 1;
    const reply = (entry & 1) === 1;
    const sp = this.synproxy;
    if (sp.phase[id] === SynproxyPhase.AWAITING_REAL) {
      return this.#awaitingReal(b, off, l4, id, reply, flags, total);
    }
    if (!reply && (flags & TCP_SYN) !== 0 && closing(this.conns.state[id])) {
      // The client reuses the tuple of a connection that is over: a new connection.
      this.#drop(id);
      return this.#open(b, off, l4, PROTO_TCP, flags, total, src, sport, dst, dport, 0);
    }
    if (reply && (flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) {
      // The real missed the ACK of its handshake and repeats its SYN-ACK: answer it again.
      if (off + HANDSHAKE_SEGMENT_MAX > b.length) {
        this.counters[C.DROP_SYNPROXY_NO_ROOM]++;
        return DROP;
      }
      const t = this.conns;
      this.vnet.clear();
      let len = sp.ackToReal(b, off, id, t, sp.realTimestamp(b, l4), this.bypass.nextIpId());
      if ((t.flags[id] & ConnFlag.TOA_PENDING) !== 0) {
        len = addToa(b, off, off + 20, len, t, id, this.counters, this.vnet);
      }
      this.counters[C.SYNPROXY_ACKS_RESENT]++;
      return len;
    }
    return this.#translate(b, off, l4, entry, PROTO_TCP, flags, total);
  }

  /** A segment of connection `id` while its real has not answered the proxy's SYN. */
  #awaitingReal(
    b: Uint8Array,
    off: number,
    l4: number,
    id: number,
    reply: boolean,
    flags: number,
    total: number,
  ): number {
    const t = this.conns;
    const sp = this.synproxy;
    const svc = this.services.services[t.service[id]];
    const real = t.real[id];
    // Whatever goes out from here is a segment made here, checksums finished.
    this.vnet.clear();
    if (!reply) {
      if ((flags & TCP_RST) !== 0) {
        // The client gives up: so does the real's half-open connection.
        const len = sp.resetReal(b, off, id, t, this.bypass.nextIpId());
        this.#drop(id);
        return len;
      }
      if ((flags & TCP_SYN) !== 0) {
        this.counters[C.DROP_NO_CONNECTION]++;
        return DROP;
      }
      // The request right behind a pure ACK: kept for the real, like data in the ACK itself.
      if (sp.holdFirstData(b, off, l4, total, id)) return DROP;
      const sentAt = t.expires[id] - HANDSHAKE_TIMEOUT_MS;
      if (this.now - sentAt < SYN_RESEND_AFTER_MS || off + HANDSHAKE_SEGMENT_MAX > b.length) {
        this.counters[C.DROP_SYNPROXY_PENDING]++;
        return DROP;
      }
      // The client resends what the real never acknowledged: the SYN or its answer was lost.
      this.counters[C.SYNPROXY_SYNS_RESENT]++;
      return sp.synToReal(b, off, id, t, this.bypass.nextIpId());
    }
    if ((flags & TCP_RST) !== 0) {
      const len = sp.resetClient(b, off, id, t, this.bypass.nextIpId());
      this.counters[C.SYNPROXY_HANDSHAKES_FAILED]++;
      this.#drop(id);
      return len;
    }
    const ack = tcpAck(b, l4);
    if ((flags & TCP_ACK) !== 0 && ack !== ((sp.clientIsn[id] + 1) >>> 0)) {
      return this.#staleAck(b, off, id, ack);
    }
    if ((flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK)) {
      this.counters[C.DROP_NO_CONNECTION]++;
      return DROP;
    }
    if (off + HANDSHAKE_SEGMENT_MAX > b.length) {
      this.counters[C.DROP_SYNPROXY_NO_ROOM]++;
      return DROP;
    }
    svc.count1(real, RealCounter.OUT_PACKETS, 1);
    svc.count1(real, RealCounter.OUT_BYTES, total);
    this.#advance(id, svc, real, flags, TcpDir.OUTPUT);
    let len = sp.complete(b, off, l4, id, t, this.bypass.nextIpId());
    const ackFlags = tcpFlags(b, off + 20);
    if (svc.toa) {
      // As for any FULLNAT handshake: the real's socket is created by this ACK, so it carries TOA.
      t.flags[id] |= ConnFlag.TOA_PENDING;
      len = addToa(b, off, off + 20, len, t, id, this.counters, this.vnet);
    }
    this.#advance(id, svc, real, ackFlags, TcpDir.INPUT);
    this.#rearm(id);
    svc.count1(real, RealCounter.IN_PACKETS, 1);
    svc.count1(real, RealCounter.IN_BYTES, len);
    this.counters[C.SYNPROXY_HANDSHAKES_COMPLETED]++;
    this.counters[C.FORWARDED]++;
    return len;
  }

  /**
   * The real answered connection `id`'s SYN with an ACK of something else (`ack`), typically the
   * ACK of an earlier connection of the same tuple it still holds in TIME_WAIT, which did not
   * take the SYN (its timestamp or sequence number not newer than that connection's). As a TCP in
   * SYN-SENT (RFC 9293 3.10.7.3): a RST with `ack` as its sequence number, which ends the
   * TIME_WAIT (Linux's tcp_timewait_state_process, unless `tcp_rfc1337`), in the packet's place,
   * and the SYN again at once in the spill, which the worker writes behind it.
   */
  #staleAck(b: Uint8Array, off: number, id: number, ack: number): number {
    const t = this.conns;
    const sp = this.synproxy;
    this.counters[C.SYNPROXY_REAL_STALE_ACKS]++;
    const len = sp.resetRealAt(b, off, id, t, ack, this.bypass.nextIpId());
    const spill = this.spill;
    if (!spill.full && spill.packetBytes >= HANDSHAKE_SEGMENT_MAX) {
      spill.commit(sp.synToReal(spill.buf, spill.next(), id, t, this.bypass.nextIpId()));
      this.counters[C.SYNPROXY_SYNS_RESENT]++;
    }
    // Otherwise the SYN goes again with the client's next segment after a second.
    return len;
  }

  /**
   * Moves the spill into `buffer` from `base` on: the buffer packets are processed in, so that
   * segments are copied within one buffer (native memmove) rather than byte by byte.
   */
  spillInto(buffer: Uint8Array, base: number): void {
    this.spill = new Outbox(SPILL_SLOTS, SPILL_PACKET_BYTES, buffer, base);
    this.bypass.spill = this.spill;
  }

  /** Expires connections whose time has come; call about every 250 ms. */
  tick(now: number): void {
    this.now = now;
    this.synproxy.tick(now);
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
    const synproxy = spec.synproxy ?? SYNPROXY_DEFAULTS;
    Synproxy.check(synproxy);
    const result = applySpec(this, spec, options);
    this.synproxy.configure(synproxy, this.now);
    this.counters[C.CONNECTIONS_EXPIRED] += result.connections.cut;
    return result;
  }

  /**
   * Ends every connection of real slot `real` of service `service` at once (the operator's
   * "cut"): its next packets find no entry, as after IPVS's expire_nodest_conn. Persistence
   * templates stay, so the real keeps its clients. Returns how many were cut.
   */
  cutConnections(service: number, real: number): number {
    const t = this.conns;
    const doomed: number[] = [];
    t.forEach((id) => {
      if (
        t.service[id] === service && t.real[id] === real && (t.flags[id] & ConnFlag.TEMPLATE) === 0
      ) doomed.push(id);
    });
    for (const id of doomed) this.#drop(id);
    return doomed.length;
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
    if (reply) {
      rewriteReply(b, off, l4, proto, flags, t, id, svc, this.vnet);
      svc.count1(real, RealCounter.OUT_PACKETS, 1);
      svc.count1(real, RealCounter.OUT_BYTES, total);
    } else {
      total = rewriteRequest(b, off, l4, proto, flags, total, t, id, svc, this.counters, this.vnet);
      svc.count1(real, RealCounter.IN_PACKETS, 1);
      svc.count1(real, RealCounter.IN_BYTES, total);
    }
    if ((t.flags[id] & ConnFlag.SYNPROXY) !== 0) {
      // Sequence numbers, SACK and timestamps are TCP header bytes: a partial checksum, which
      // the kernel finishes over them, stays as it is.
      const check = tcpChecksum(b, l4);
      this.synproxy.shift(b, l4, id, reply);
      if (this.vnet.needsCsum) setTcpChecksum(b, l4, check);
    } else if (proto === PROTO_TCP && svc.forwardKind === Forward.FULLNAT) {
      this.fullnatTimestamps.translate(b, l4, id, reply, this.vnet.needsCsum);
      this.fullnatSequence.translate(b, l4, id, reply, this.vnet.needsCsum);
    }
    if (ipMoreFragments(b, off)) recordFirstFragment(this, b, off, id, reply, proto, total);
    if (proto === PROTO_TCP) {
      // IPVS's directions; a connection whose replies bypass us has its own input table.
      const dir = reply
        ? TcpDir.OUTPUT
        : (t.flags[id] & ConnFlag.NO_REPLY) !== 0
        ? TcpDir.INPUT_ONLY
        : TcpDir.INPUT;
      this.#advance(id, svc, real, flags, dir);
    }
    this.#rearm(id);
    if (!reply && svc.forwardKind >= Forward.TUNNEL) {
      const out = this.bypass.send(b, off, l4, proto, flags, total, svc, real, true);
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
   * Moves TCP connection `id` (of `svc`, on `real`) along IPVS's table for a segment with
   * `flags` travelling in `dir` (a `TcpDir`).
   */
  #advance(id: number, svc: Service, real: number, flags: number, dir: number): void {
    const t = this.conns;
    const state = t.state[id];
    const next = nextTcpState(state, flags, dir);
    if (next === state) return;
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
    t.state[id] = next;
  }

  /** Re-arms connection `id`'s timer with its state's timeout. */
  #rearm(id: number): void {
    const t = this.conns;
    let timeout = this.#timeouts[t.state[id]];
    // A one-packet entry only ever waits for its reply.
    if ((t.flags[id] & ConnFlag.ONE_PACKET) !== 0 && timeout > ONE_PACKET_REPLY_WAIT_MS) {
      timeout = ONE_PACKET_REPLY_WAIT_MS;
    }
    this.#expireIn(id, timeout);
  }

  /** Sets connection `id` to expire `ms` from now. */
  #expireIn(id: number, ms: number): void {
    const t = this.conns;
    const expires = this.now + ms;
    // A shorter timeout must fire on time; a longer one is found lazily by the wheel.
    const earlier = expires < t.expires[id];
    t.expires[id] = expires;
    if (earlier) t.reschedule(id, this.now);
  }

  #expired(id: number): boolean {
    const t = this.conns;
    const svc = this.services.services[t.service[id]];
    if ((t.flags[id] & ConnFlag.TEMPLATE) !== 0) return this.persistence.expire(id, svc, this.now);
    if (
      (t.flags[id] & ConnFlag.SYNPROXY) !== 0 &&
      this.synproxy.phase[id] === SynproxyPhase.AWAITING_REAL
    ) {
      // The real never answered: the client, connected as far as it knows, is reset.
      const o = this.outbox;
      if (o.full) return false;
      o.commit(this.synproxy.resetClient(o.buf, o.next(), id, t, this.bypass.nextIpId()));
      this.counters[C.SYNPROXY_HANDSHAKES_FAILED]++;
    }
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
    if ((t.flags[id] & ConnFlag.SYNPROXY) !== 0) this.synproxy.forget(id);
    this.fullnatTimestamps.forget(id);
    this.fullnatSequence.forget(id);
  }

  #other(dst: number, total: number, mark: number): number {
    // Written back unchanged, a packet for a VIP would be routed straight back to us; so would
    // a marked one, which the host's mark rule sends to us again.
    if (mark !== 0 || this.services.isVip(dst)) {
      this.counters[C.DROP_NO_SERVICE]++;
      return DROP;
    }
    this.counters[C.PASSED_THROUGH]++;
    return total;
  }
}

/** Whether TCP state `s` ends a connection for good: IPVS's is_new_conn_expected. */
function over(s: number): boolean {
  return s === ConnState.TIME_WAIT || s === ConnState.CLOSE;
}

/** Whether TCP state `s` is one of a connection on its way out (a SYN there opens a new one). */
function closing(s: number): boolean {
  return s === ConnState.FIN_WAIT || s === ConnState.TIME_WAIT || s === ConnState.CLOSE ||
    s === ConnState.CLOSE_WAIT || s === ConnState.LAST_ACK;
}
