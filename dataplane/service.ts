/**
 * The virtual services the dataplane serves: the plain specification the
 * control plane posts, and the compiled table the engine matches packets with.
 */
import type { Timeouts } from "./conn/state.ts";
import { createScheduler, type SchedulerName } from "./sched/registry.ts";
import type { RealSet, Scheduler, SchedulerFlags } from "./sched/scheduler.ts";

/** Forwarding methods, with the names ipvsadm prints for them. */
export const FORWARD_METHODS = { nat: "Masq" } as const;

/** A forwarding method the dataplane implements. */
export type ForwardName = keyof typeof FORWARD_METHODS;

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
}

/** One virtual service as the control plane specifies it. */
export interface ServiceSpec {
  name: string;
  /** IP protocol number (6 TCP, 17 UDP). */
  protocol: number;
  /** IPv4 address, host order. */
  vip: number;
  port: number;
  scheduler: SchedulerName;
  schedulerFlags: SchedulerFlags;
  forward: ForwardName;
  reals: RealSpec[];
}

/** Everything the dataplane needs to run: structured-clone safe, posted to workers. */
export interface DataplaneSpec {
  services: ServiceSpec[];
  timeouts: Timeouts;
  /** Connection table capacity. */
  maxConnections: number;
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
  readonly scheduler: Scheduler;

  /** Compiles `spec` (the index is the service's position in its table). */
  constructor(readonly spec: ServiceSpec, readonly index: number) {
    const n = spec.reals.length;
    this.count = n;
    this.addr = Uint32Array.from(spec.reals, (r) => r.addr);
    this.port = Uint16Array.from(spec.reals, (r) => r.port);
    this.weight = Int32Array.from(spec.reals, (r) => r.weight);
    this.active = new Int32Array(n);
    this.inactive = new Int32Array(n);
    this.overloaded = new Uint8Array(n);
    this.upperThreshold = Int32Array.from(spec.reals, (r) => r.upperThreshold);
    this.lowerThreshold = Int32Array.from(spec.reals, (r) => r.lowerThreshold);
    this.counters = new Float64Array(n * REAL_COUNTERS);
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

/**
 * The services, with an open-addressing index on (protocol, VIP, port) and
 * a set of VIPs, both in typed arrays.
 */
export class ServiceTable {
  readonly services: Service[];
  readonly #keys: Int32Array;
  readonly #vips: Uint32Array;
  readonly #vipUsed: Uint8Array;
  readonly #mask: number;

  /** Compiles every service of `specs`. */
  constructor(specs: ServiceSpec[]) {
    this.services = specs.map((s, i) => new Service(s, i));
    let size = 16;
    while (size < specs.length * 4) size <<= 1;
    this.#mask = size - 1;
    this.#keys = new Int32Array(size).fill(EMPTY);
    this.#vips = new Uint32Array(size);
    this.#vipUsed = new Uint8Array(size);
    for (const svc of this.services) {
      const { protocol, vip, port } = svc.spec;
      let slot = this.#slot(protocol, vip, port);
      while (this.#keys[slot] !== EMPTY) slot = (slot + 1) & this.#mask;
      this.#keys[slot] = svc.index;
      let v = mix(vip) & this.#mask;
      while (this.#vipUsed[v] && this.#vips[v] !== vip) v = (v + 1) & this.#mask;
      this.#vips[v] = vip;
      this.#vipUsed[v] = 1;
    }
  }

  /** The service for a packet to `vip`:`port` over `protocol`, or -1. */
  match(protocol: number, vip: number, port: number): number {
    let slot = this.#slot(protocol, vip, port);
    for (;;) {
      const i = this.#keys[slot];
      if (i === EMPTY) return -1;
      const s = this.services[i].spec;
      if (s.vip === vip && s.port === port && s.protocol === protocol) return i;
      slot = (slot + 1) & this.#mask;
    }
  }

  /** Whether `addr` is the VIP of any service. */
  isVip(addr: number): boolean {
    let v = mix(addr) & this.#mask;
    while (this.#vipUsed[v]) {
      if (this.#vips[v] === addr) return true;
      v = (v + 1) & this.#mask;
    }
    return false;
  }

  #slot(protocol: number, vip: number, port: number): number {
    return mix(vip ^ Math.imul(port | (protocol << 16), 0x9e3779b1)) & this.#mask;
  }
}

function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}
