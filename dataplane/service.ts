/**
 * The virtual services the dataplane serves: the plain specification the
 * control plane posts, and the compiled table the engine matches packets with.
 */
import type { Timeouts } from "./conn/state.ts";
import type { SynproxySpec } from "./synproxy/synproxy.ts";
import { createScheduler, type SchedulerName } from "./sched/registry.ts";
import type { RealSet, Scheduler, SchedulerFlags } from "./sched/scheduler.ts";
import { formatIpv4, PROTO_TCP, PROTO_UDP } from "./wire/ipv4.ts";

/** Forwarding methods, with the names ipvsadm (and DPVS, for FULLNAT) prints for them. */
export const FORWARD_METHODS = {
  nat: "Masq",
  fullnat: "FullNat",
  tunnel: "Tunnel",
  dr: "Route",
} as const;

/** A forwarding method the dataplane implements. */
export type ForwardName = keyof typeof FORWARD_METHODS;

/** Forwarding methods as the engine switches on them. */
export const Forward = { NAT: 0, FULLNAT: 1, TUNNEL: 2, DR: 3 } as const;

const FORWARD_KINDS: Record<string, number> = {
  nat: Forward.NAT,
  fullnat: Forward.FULLNAT,
  tunnel: Forward.TUNNEL,
  dr: Forward.DR,
};

/** One real server as the control plane specifies it. */
export interface RealSpec {
  /** IPv4 address, host order. */
  addr: number;
  port: number;
  weight: number;
  /** Connections at which the real takes no new ones (0 = no limit). */
  upperThreshold: number;
  /** Connections below which it takes new ones again (0 = below 3/4 of the upper). */
  lowerThreshold: number;
  /** Tunnel: the director's address (host order) the encapsulated packets leave from. */
  tunnelSource?: number;
  /**
   * Tunnel and DR: the MTU of the path towards the real (the tunnel's 20 bytes come out of it).
   * Tunnel defaults to 1500; DR without it leaves oversize packets to the socket's refusal.
   */
  mtu?: number;
  /** DR: the index of the interface that reaches the real. */
  ifindex?: number;
  /** DR: the real's MAC address, "aa:bb:cc:dd:ee:ff", from the kernel's neighbour table. */
  mac?: string;
}

/** The tunnel's path MTU when the control plane names none. */
export const DEFAULT_TUNNEL_MTU = 1500;

/** The smallest MTU IPv4 allows (RFC 791); a tunnel needs 20 bytes more. */
const MIN_MTU = 68;

/** An inclusive range of ports, `[first, last]`. */
export type PortRange = [number, number];

/** Persistence as ipvsadm's `-p TIMEOUT -M NETMASK` sets it. */
export interface PersistenceSpec {
  /** How long a client's template lives after its last new connection, in ms. */
  timeoutMs: number;
  /** Clients whose addresses agree under this mask share a template (uint32, host order). */
  netmask: number;
}

/** One virtual service as the control plane specifies it. */
export interface ServiceSpec {
  name: string;
  /** IP protocol number (6 TCP, 17 UDP); 0 for a firewall-mark service, which takes any. */
  protocol: number;
  /** IPv4 address, host order; 0 for a firewall-mark service. */
  vip: number;
  /**
   * A firewall-mark service (ipvsadm -f): it takes the packets read from the TUN device the
   * host routes this mark into, whatever their address, port and protocol; `vip` and `port` 0.
   */
  fwmark?: number;
  /** A firewall-mark service's VIPs (host order): packets to them never pass through unchanged. */
  vips?: number[];
  /**
   * The port served; 0 with `ports` (a port group) or, with persistence and no `ports`, any
   * port not served by another service on the VIP (ipvsadm's port 0).
   */
  port: number;
  /** A port group: the service serves every port of these ranges (what a firewall mark groups). */
  ports?: PortRange[];
  /** Persistence (-p/-M); none when absent. */
  persistence?: PersistenceSpec;
  /** One-packet scheduling (-o): each datagram is scheduled on its own. UDP only. */
  onePacket?: boolean;
  scheduler: SchedulerName;
  schedulerFlags: SchedulerFlags;
  forward: ForwardName;
  /** FULLNAT: the local addresses (host order) requests leave from. */
  localAddresses?: number[];
  /** FULLNAT over TCP: client segments carry the client's address as a TOA option. */
  toa?: boolean;
  /**
   * NAT or FULLNAT over TCP: SYNs are answered with SYN cookies and the real sees a connection
   * only once the client completed its handshake (see synproxy/synproxy.ts).
   */
  synproxy?: boolean;
  reals: RealSpec[];
}

/**
 * How long a one-packet entry waits for the reply it exists to translate. IPVS never hashes
 * such an entry and frees it right after forwarding the datagram, so a NAT reply finds nothing
 * and leaves untranslated; we keep it until the reply, at most this long (and never longer
 * than the udp timeout).
 */
export const ONE_PACKET_REPLY_WAIT_MS = 5_000;

/** Everything the dataplane needs to run: structured-clone safe, posted to workers. */
export interface DataplaneSpec {
  services: ServiceSpec[];
  timeouts: Timeouts;
  /** Connection table capacity. */
  maxConnections: number;
  /** The SYN proxy's settings; SYNPROXY_DEFAULTS when absent. */
  synproxy?: SynproxySpec;
}

/** Per-real counters, as ipvsadm --stats shows them. */
export const RealCounter = {
  CONNS: 0,
  IN_PACKETS: 1,
  IN_BYTES: 2,
  OUT_PACKETS: 3,
  OUT_BYTES: 4,
} as const;
const REAL_COUNTERS = 5;

/** A compiled service: its spec, scheduler and the reals as typed arrays. */
export class Service implements RealSet {
  /** Reals the scheduler sees; slots from here to `addr.length` hold draining removed reals. */
  readonly count: number;
  readonly addr: Uint32Array;
  readonly port: Uint16Array;
  readonly weight: Int32Array;
  readonly active: Int32Array;
  readonly inactive: Int32Array;
  readonly overloaded: Uint8Array;
  readonly upperThreshold: Int32Array;
  readonly lowerThreshold: Int32Array;
  /** `RealCounter` values per real, REAL_COUNTERS apart. */
  readonly counters: Float64Array;
  /** Persistence templates per real (ipvsadm's PersistConn); not connections. */
  readonly persistent: Int32Array;
  /** Persistence timeout in ms; 0 when the service is not persistent. */
  readonly persistTimeoutMs: number;
  /** Persistence netmask (uint32, host order). */
  readonly persistNetmask: number;
  /**
   * Whether the service serves more than one port (a port group, or port 0): its templates
   * then name no ports, as IPVS's firewall-mark and port-zero templates do.
   */
  readonly anyPort: boolean;
  /** The firewall mark the service is found by; 0 for a VIP:port service. */
  readonly fwmark: number;
  /** One-packet scheduling applies: set and UDP. */
  readonly onePacket: boolean;
  /** The forwarding method, a `Forward` value. */
  readonly forwardKind: number;
  /** FULLNAT's local address pool. */
  readonly localAddresses: Uint32Array;
  /** Tunnel: the outer source address per real (host order). */
  readonly tunnelSource: Uint32Array;
  /** Tunnel and DR: the path MTU per real; 0 when unknown (DR only). */
  readonly mtu: Int32Array;
  /** TOA applies: asked for, FULLNAT and TCP. */
  readonly toa: boolean;
  /** SYNs are answered with cookies (NAT or FULLNAT over TCP). */
  readonly synproxy: boolean;
  readonly scheduler: Scheduler;

  /**
   * Compiles `spec` (the index is the service's position in its table). `gone` are reals a
   * reload removed whose connections drain: they get slots after the `count` reals the
   * scheduler sees, so those connections keep counting and translating while nothing new
   * reaches them.
   */
  constructor(
    readonly spec: ServiceSpec,
    readonly index: number,
    readonly gone: readonly RealSpec[] = [],
  ) {
    this.count = spec.reals.length;
    const reals = gone.length === 0 ? spec.reals : [...spec.reals, ...gone];
    const n = reals.length;
    this.addr = Uint32Array.from(reals, (r) => r.addr);
    this.port = Uint16Array.from(reals, (r) => r.port);
    this.weight = Int32Array.from(reals, (r, i) => i < this.count ? r.weight : 0);
    this.active = new Int32Array(n);
    this.inactive = new Int32Array(n);
    this.overloaded = new Uint8Array(n);
    this.upperThreshold = Int32Array.from(reals, (r) => r.upperThreshold);
    this.lowerThreshold = Int32Array.from(reals, (r) => r.lowerThreshold);
    this.counters = new Float64Array(n * REAL_COUNTERS);
    this.persistent = new Int32Array(n);
    this.persistTimeoutMs = spec.persistence?.timeoutMs ?? 0;
    this.persistNetmask = (spec.persistence?.netmask ?? 0xffffffff) >>> 0;
    this.fwmark = spec.fwmark ?? 0;
    this.anyPort = spec.ports !== undefined || spec.port === 0;
    this.onePacket = spec.onePacket === true && spec.protocol === PROTO_UDP;
    this.forwardKind = FORWARD_KINDS[spec.forward];
    if (this.forwardKind === undefined) {
      throw new RangeError(`unknown forwarding method ${spec.forward}`);
    }
    this.localAddresses = Uint32Array.from(spec.localAddresses ?? []);
    this.tunnelSource = Uint32Array.from(reals, (r) => r.tunnelSource ?? 0);
    const tunnel = this.forwardKind === Forward.TUNNEL;
    this.mtu = Int32Array.from(reals, (r) => r.mtu ?? (tunnel ? DEFAULT_TUNNEL_MTU : 0));
    if (this.forwardKind >= Forward.TUNNEL) checkBypassReals(spec, tunnel);
    this.toa = spec.toa === true && this.forwardKind === Forward.FULLNAT &&
      spec.protocol === PROTO_TCP;
    this.synproxy = spec.synproxy === true;
    if (this.synproxy) checkSynproxy(spec, this.forwardKind);
    this.scheduler = createScheduler(spec.scheduler, spec.schedulerFlags);
    this.scheduler.reset(this);
  }

  /** Counts a new connection on `real` (inactive until established); applies the upper threshold. */
  bind(real: number): void {
    this.inactive[real]++;
    const upper = this.upperThreshold[real];
    if (upper > 0 && this.active[real] + this.inactive[real] >= upper) this.overloaded[real] = 1;
  }

  /**
   * Forgets a connection of `real` that ends. As IPVS: an overloaded real takes new
   * connections again below its lower threshold, or, without one, below 3/4 of its upper.
   */
  unbind(real: number, active: boolean): void {
    if (active) this.active[real]--;
    else this.inactive[real]--;
    if (this.overloaded[real] === 0) return;
    const total = this.active[real] + this.inactive[real];
    const lower = this.lowerThreshold[real];
    const upper = this.upperThreshold[real];
    if (lower > 0 ? total < lower : upper > 0 ? total * 4 < upper * 3 : true) {
      this.overloaded[real] = 0;
    }
  }

  /** Adds to counter `which` of real `real`. */
  count1(real: number, which: number, amount: number): void {
    this.counters[real * REAL_COUNTERS + which] += amount;
  }

  /** Reads counter `which` of real `real`. */
  counter(real: number, which: number): number {
    return this.counters[real * REAL_COUNTERS + which];
  }
}

const EMPTY = -1;

/** A service a reload removed, kept (with no reals to schedule) while its connections drain. */
export interface HiddenService {
  /** Its former spec, with `reals` empty. */
  spec: ServiceSpec;
  /** Its reals that still have connections or templates. */
  gone: RealSpec[];
}

/** Ranges up to this many ports go into the exact index port by port; longer ones are scanned. */
const EXPAND_MAX_PORTS = 64;

/** One way a service is reached while the table is built: a port range on a VIP. */
interface PortEntry {
  protocol: number;
  vip: number;
  first: number;
  last: number;
  service: number;
}

/**
 * The services, with an open-addressing index on (protocol, VIP, port), and a set of VIPs each
 * with the few port ranges too long to index port by port, all in typed arrays. A packet's
 * service is found by one probe sequence in the index, then, for a port not in it, a scan of
 * its VIP's ranges only: specific ranges first, then any port-0 service (as IPVS tries a
 * port-zero service only when no service has the port).
 */
export class ServiceTable {
  readonly services: Service[];
  /** Index keys: `protocol << 16 | port`, EMPTY for a free slot. */
  readonly #keyProtoPort: Int32Array;
  readonly #keyVip: Uint32Array;
  readonly #keyService: Int32Array;
  readonly #keyMask: number;
  readonly #vips: Uint32Array;
  readonly #vipUsed: Uint8Array;
  /** Each VIP's ranges are `#range*[#vipRangeStart[v] .. #vipRangeEnd[v])`. */
  readonly #vipRangeStart: Int32Array;
  readonly #vipRangeEnd: Int32Array;
  readonly #vipMask: number;
  readonly #rangeProtocol: Uint8Array;
  readonly #rangeFirst: Uint16Array;
  readonly #rangeLast: Uint16Array;
  readonly #rangeService: Int32Array;
  /** Firewall marks, open addressing: `#markService` is -1 in a free slot. */
  readonly #marks: Uint32Array;
  readonly #markService: Int32Array;
  readonly #markMask: number;

  /** How many of `services` packets can match; the rest are kept only for draining connections. */
  readonly visibleCount: number;

  /**
   * Compiles every service of `specs`; throws RangeError for a spec no packet could use. A
   * reload passes the removed reals still draining per service (`gone`, by index of `specs`) and
   * the removed services still draining (`hidden`, placed after `specs`, matched by no packet).
   */
  constructor(
    specs: ServiceSpec[],
    gone: readonly RealSpec[][] = [],
    hidden: HiddenService[] = [],
  ) {
    specs.forEach(checkPorts);
    this.visibleCount = specs.length;
    this.services = specs.map((s, i) => new Service(s, i, gone[i]));
    for (const h of hidden) {
      this.services.push(new Service(h.spec, this.services.length, h.gone));
    }
    const visible = this.services.slice(0, specs.length);
    const exact: PortEntry[] = [];
    const ranges: PortEntry[] = [];
    const anyPort: PortEntry[] = [];
    for (const svc of visible) {
      if (svc.fwmark !== 0) continue;
      const { protocol, vip, port, ports } = svc.spec;
      const entry = (first: number, last: number) => ({
        protocol,
        vip,
        first,
        last,
        service: svc.index,
      });
      if (ports !== undefined) {
        for (const [first, last] of ports) {
          if (last - first < EXPAND_MAX_PORTS) {
            for (let p = first; p <= last; p++) exact.push(entry(p, p));
          } else ranges.push(entry(first, last));
        }
      } else if (port === 0) {
        anyPort.push(entry(0, 65535));
      } else {
        exact.push(entry(port, port));
      }
    }

    let keySize = 16;
    while (keySize < exact.length * 2) keySize <<= 1;
    this.#keyMask = keySize - 1;
    this.#keyProtoPort = new Int32Array(keySize).fill(EMPTY);
    this.#keyVip = new Uint32Array(keySize);
    this.#keyService = new Int32Array(keySize);
    for (const e of exact) {
      const key = (e.protocol << 16) | e.first;
      let slot = this.#slot(key, e.vip);
      while (this.#keyProtoPort[slot] !== EMPTY) {
        // The first service to claim a port keeps it; the control plane rejects overlaps.
        if (this.#keyProtoPort[slot] === key && this.#keyVip[slot] === e.vip) break;
        slot = (slot + 1) & this.#keyMask;
      }
      if (this.#keyProtoPort[slot] !== EMPTY) continue;
      this.#keyProtoPort[slot] = key;
      this.#keyVip[slot] = e.vip;
      this.#keyService[slot] = e.service;
    }

    // A firewall-mark service's VIPs are VIPs too: an unmarked packet to one must not loop.
    const vips = visible.flatMap((svc) => svc.fwmark === 0 ? [svc.spec.vip] : svc.spec.vips ?? []);
    let vipSize = 16;
    while (vipSize < vips.length * 4) vipSize <<= 1;
    this.#vipMask = vipSize - 1;
    this.#vips = new Uint32Array(vipSize);
    this.#vipUsed = new Uint8Array(vipSize);
    this.#vipRangeStart = new Int32Array(vipSize);
    this.#vipRangeEnd = new Int32Array(vipSize);
    const scanned = [...ranges, ...anyPort];
    this.#rangeProtocol = new Uint8Array(scanned.length);
    this.#rangeFirst = new Uint16Array(scanned.length);
    this.#rangeLast = new Uint16Array(scanned.length);
    this.#rangeService = new Int32Array(scanned.length);
    let next = 0;
    for (const vip of vips) {
      let v = mix(vip) & this.#vipMask;
      while (this.#vipUsed[v] && this.#vips[v] !== vip) v = (v + 1) & this.#vipMask;
      if (this.#vipUsed[v]) continue;
      this.#vips[v] = vip;
      this.#vipUsed[v] = 1;
      this.#vipRangeStart[v] = next;
      // `scanned` keeps specific ranges ahead of port-0 services, and a stable filter keeps that.
      for (const e of scanned) {
        if (e.vip !== vip) continue;
        this.#rangeProtocol[next] = e.protocol;
        this.#rangeFirst[next] = e.first;
        this.#rangeLast[next] = e.last;
        this.#rangeService[next] = e.service;
        next++;
      }
      this.#vipRangeEnd[v] = next;
    }

    let markSize = 16;
    while (markSize < specs.length * 2) markSize <<= 1;
    this.#markMask = markSize - 1;
    this.#marks = new Uint32Array(markSize);
    this.#markService = new Int32Array(markSize).fill(EMPTY);
    for (const svc of visible) {
      if (svc.fwmark === 0) continue;
      let m = mix(svc.fwmark) & this.#markMask;
      while (this.#markService[m] !== EMPTY && this.#marks[m] !== svc.fwmark) {
        m = (m + 1) & this.#markMask;
      }
      // The first service to claim a mark keeps it; the control plane rejects duplicates.
      if (this.#markService[m] !== EMPTY) continue;
      this.#marks[m] = svc.fwmark;
      this.#markService[m] = svc.index;
    }
  }

  /** The firewall-mark service for packets marked `mark` (nonzero), or -1. */
  matchMark(mark: number): number {
    let m = mix(mark) & this.#markMask;
    for (;;) {
      const s = this.#markService[m];
      if (s === EMPTY || this.#marks[m] === mark) return s;
      m = (m + 1) & this.#markMask;
    }
  }

  /** The service for a packet to `vip`:`port` over `protocol`, or -1. */
  match(protocol: number, vip: number, port: number): number {
    const key = (protocol << 16) | port;
    let slot = this.#slot(key, vip);
    for (;;) {
      const k = this.#keyProtoPort[slot];
      if (k === EMPTY) break;
      if (k === key && this.#keyVip[slot] === vip) return this.#keyService[slot];
      slot = (slot + 1) & this.#keyMask;
    }
    const v = this.#vipSlot(vip);
    if (v < 0) return -1;
    const end = this.#vipRangeEnd[v];
    for (let r = this.#vipRangeStart[v]; r < end; r++) {
      if (
        this.#rangeProtocol[r] === protocol && port >= this.#rangeFirst[r] &&
        port <= this.#rangeLast[r]
      ) return this.#rangeService[r];
    }
    return -1;
  }

  /** Whether `addr` is the VIP of any service. */
  isVip(addr: number): boolean {
    return this.#vipSlot(addr) >= 0;
  }

  #vipSlot(addr: number): number {
    let v = mix(addr) & this.#vipMask;
    while (this.#vipUsed[v]) {
      if (this.#vips[v] === addr) return v;
      v = (v + 1) & this.#vipMask;
    }
    return -1;
  }

  #slot(protocolPort: number, vip: number): number {
    return mix(vip ^ Math.imul(protocolPort, 0x9e3779b1)) & this.#keyMask;
  }
}

/**
 * Rejects reals of a tunnel or DR service the engine cannot send to: the packet reaches them
 * unchanged, so on the service's own port; a tunnel needs its outer source, and an MTU with room
 * for the outer header.
 */
function checkBypassReals(spec: ServiceSpec, tunnel: boolean): void {
  const where = `service ${JSON.stringify(spec.name)}`;
  for (const r of spec.reals) {
    const real = `${where}: real ${formatIpv4(r.addr)}`;
    if (r.port !== 0 && r.port !== spec.port) {
      throw new RangeError(
        `${real}: ${spec.forward} keeps the client's port; port ${r.port} differs`,
      );
    }
    if (tunnel && !(r.tunnelSource !== undefined && r.tunnelSource > 0)) {
      throw new RangeError(`${real}: a tunnel needs its source address (tunnelSource)`);
    }
    const min = tunnel ? MIN_MTU + 20 : MIN_MTU;
    if (r.mtu !== undefined && !(Number.isInteger(r.mtu) && r.mtu >= min && r.mtu <= 65535)) {
      throw new RangeError(`${real}: bad MTU ${r.mtu} (at least ${min})`);
    }
  }
}

/**
 * Rejects a SYN proxy where it cannot work: with tunnel and DR the real's segments go to the
 * client without passing the director, so their sequence numbers (chosen by the real, not the
 * cookie the client was given) could not be translated; UDP has no handshake to proxy.
 */
function checkSynproxy(spec: ServiceSpec, forwardKind: number): void {
  const where = `service ${JSON.stringify(spec.name)}`;
  if (forwardKind >= Forward.TUNNEL) {
    throw new RangeError(
      `${where}: synproxy needs forward nat or fullnat; with ${spec.forward} the real's replies ` +
        "bypass the director, which then cannot translate their sequence numbers",
    );
  }
  if (spec.protocol !== PROTO_TCP) throw new RangeError(`${where}: synproxy applies to TCP only`);
}

/** Rejects port settings the engine cannot serve as IPVS would. */
function checkPorts(spec: ServiceSpec): void {
  const where = `service ${JSON.stringify(spec.name)}`;
  const isPort = (p: number, min: number) => Number.isInteger(p) && p >= min && p <= 65535;
  if (spec.fwmark !== undefined) {
    if (!(Number.isInteger(spec.fwmark) && spec.fwmark >= 1 && spec.fwmark <= 0xffffffff)) {
      throw new RangeError(`${where}: bad firewall mark ${spec.fwmark}`);
    }
    if (spec.port !== 0 || spec.ports !== undefined || spec.vip !== 0) {
      throw new RangeError(`${where}: a firewall-mark service has no VIP and no port`);
    }
  } else if (spec.ports !== undefined) {
    if (spec.port !== 0) throw new RangeError(`${where}: a port group has port 0`);
    if (spec.ports.length === 0) throw new RangeError(`${where}: a port group needs ports`);
    for (const [first, last] of spec.ports) {
      if (!isPort(first, 1) || !isPort(last, 1) || first > last) {
        throw new RangeError(`${where}: bad port range ${first}-${last}`);
      }
    }
  } else if (!isPort(spec.port, 0)) {
    throw new RangeError(`${where}: bad port ${spec.port}`);
  } else if (spec.port === 0 && spec.persistence === undefined) {
    // IPVS schedules nothing for such a service ("port zero only supported in persistent services").
    throw new RangeError(`${where}: port 0 (any port) needs persistence`);
  }
}

function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}
