/**
 * Counters and rates per service and per real, as `ipvsadm --stats` and
 * `--rate` show them. The engine counts per real (`Service.counters`); a
 * service's counters are the sums over its reals. Rates come from one IPVS
 * estimator row per service and per real, sampled every 2 seconds by the
 * worker's clock.
 */
import { RealCounter, type Service, type ServiceTable } from "../service.ts";
import { formatIpv4, PROTO_TCP, PROTO_UDP } from "../wire/ipv4.ts";
import { Rate, RATE_INTERVAL_MS, RateEstimator } from "./rate_estimator.ts";

/** Counters and rates of a service or a real (ipvsadm's --stats and --rate columns). */
export interface TrafficStats {
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
  cps: number;
  inPps: number;
  outPps: number;
  /** Bytes per second, as IPVS's InBPS. */
  inBps: number;
  /** Bytes per second, as IPVS's OutBPS. */
  outBps: number;
}

/** One real's counters and rates. */
export interface RealTrafficStats extends TrafficStats {
  address: string;
  port: number;
}

/** One service's counters and rates (sums over its reals) and its reals'. */
export interface ServiceTrafficStats extends TrafficStats {
  name: string;
  /** "TCP" or "UDP", as ipvsadm prints it. */
  protocol: string;
  vip: string;
  port: number;
  reals: RealTrafficStats[];
}

/** ipvsadm's name for IP protocol `p`. */
export function protocolName(p: number): string {
  // 0: a firewall-mark template, which IPVS makes for IPPROTO_IP.
  return p === PROTO_TCP ? "TCP" : p === PROTO_UDP ? "UDP" : p === 0 ? "IP" : String(p);
}

/** Estimators for every service and real of one ServiceTable, on a 2-second schedule. */
export class ServiceStats {
  readonly #estimator: RateEstimator;
  /** Estimator row of each service; its reals follow it. */
  readonly #firstRow: Int32Array;
  /** The clock value (ms) at which the next sample is due; -1 before the first tick. */
  #nextSample = -1;

  /** Sets up estimators for the services of `table`, all starting from zero. */
  constructor(readonly table: ServiceTable) {
    const services = table.services;
    this.#firstRow = new Int32Array(services.length);
    let rows = 0;
    for (let s = 0; s < services.length; s++) {
      this.#firstRow[s] = rows;
      rows += 1 + services[s].count;
    }
    this.#estimator = new RateEstimator(rows);
    // Counters may already hold traffic: rates start from what is counted now.
    for (let s = 0; s < services.length; s++) this.#restart(s);
  }

  /** Milliseconds until the next sample is due at clock `now` (0 when due). */
  untilNextSample(now: number): number {
    return this.#nextSample < 0 ? RATE_INTERVAL_MS : Math.max(0, this.#nextSample - now);
  }

  /**
   * Samples every estimator when 2 s have passed on the worker's clock `now`;
   * otherwise does nothing. Returns whether it sampled.
   */
  tick(now: number): boolean {
    if (this.#nextSample < 0) {
      this.#nextSample = now + RATE_INTERVAL_MS;
      return false;
    }
    if (now < this.#nextSample) return false;
    const services = this.table.services;
    for (let s = 0; s < services.length; s++) this.#sample(s, services[s]);
    this.#nextSample += RATE_INTERVAL_MS;
    // After a stall the schedule restarts from now, rather than sampling in a burst to catch up.
    if (this.#nextSample <= now) this.#nextSample = now + RATE_INTERVAL_MS;
    return true;
  }

  /** Zeroes the counters and rates of service `index` and its reals (`ipvsadm -Z -t …`). */
  zero(index: number): void {
    this.table.services[index].counters.fill(0);
    this.#restart(index);
  }

  /** Zeroes every service's counters and rates (`ipvsadm -Z`). */
  zeroAll(): void {
    for (let s = 0; s < this.table.services.length; s++) this.zero(s);
  }

  /** Counters and rates of every service and real, for the admin endpoint. */
  snapshot(): ServiceTrafficStats[] {
    return this.table.services.map((svc, s) => {
      const row = this.#firstRow[s];
      const reals: RealTrafficStats[] = [];
      for (let r = 0; r < svc.count; r++) {
        reals.push({
          address: formatIpv4(svc.addr[r]),
          port: svc.port[r],
          ...this.#traffic(row + 1 + r, (which) => svc.counter(r, which)),
        });
      }
      return {
        name: svc.spec.name,
        protocol: protocolName(svc.spec.protocol),
        vip: formatIpv4(svc.spec.vip),
        port: svc.spec.port,
        ...this.#traffic(row, (which) => sumOverReals(svc, which)),
        reals,
      };
    });
  }

  #traffic(row: number, counter: (which: number) => number): TrafficStats {
    const e = this.#estimator;
    return {
      conns: counter(RealCounter.CONNS),
      inPkts: counter(RealCounter.IN_PACKETS),
      outPkts: counter(RealCounter.OUT_PACKETS),
      inBytes: counter(RealCounter.IN_BYTES),
      outBytes: counter(RealCounter.OUT_BYTES),
      cps: e.rate(row, Rate.CPS),
      inPps: e.rate(row, Rate.IN_PPS),
      outPps: e.rate(row, Rate.OUT_PPS),
      inBps: e.rate(row, Rate.IN_BPS),
      outBps: e.rate(row, Rate.OUT_BPS),
    };
  }

  #sample(s: number, svc: Service): void {
    const e = this.#estimator;
    const row = this.#firstRow[s];
    let conns = 0, inPkts = 0, outPkts = 0, inBytes = 0, outBytes = 0;
    for (let r = 0; r < svc.count; r++) {
      const c = svc.counter(r, RealCounter.CONNS);
      const ip = svc.counter(r, RealCounter.IN_PACKETS);
      const op = svc.counter(r, RealCounter.OUT_PACKETS);
      const ib = svc.counter(r, RealCounter.IN_BYTES);
      const ob = svc.counter(r, RealCounter.OUT_BYTES);
      e.sample(row + 1 + r, c, ip, op, ib, ob);
      conns += c;
      inPkts += ip;
      outPkts += op;
      inBytes += ib;
      outBytes += ob;
    }
    // The service has an estimator of its own, as in IPVS: the kernel's rounding makes the
    // average of a sum differ slightly from the sum of averages.
    e.sample(row, conns, inPkts, outPkts, inBytes, outBytes);
  }

  #restart(s: number): void {
    const e = this.#estimator;
    const svc = this.table.services[s];
    const row = this.#firstRow[s];
    for (let r = 0; r < svc.count; r++) {
      e.reset(
        row + 1 + r,
        svc.counter(r, RealCounter.CONNS),
        svc.counter(r, RealCounter.IN_PACKETS),
        svc.counter(r, RealCounter.OUT_PACKETS),
        svc.counter(r, RealCounter.IN_BYTES),
        svc.counter(r, RealCounter.OUT_BYTES),
      );
    }
    e.reset(
      row,
      sumOverReals(svc, RealCounter.CONNS),
      sumOverReals(svc, RealCounter.IN_PACKETS),
      sumOverReals(svc, RealCounter.OUT_PACKETS),
      sumOverReals(svc, RealCounter.IN_BYTES),
      sumOverReals(svc, RealCounter.OUT_BYTES),
    );
  }
}

function sumOverReals(svc: Service, which: number): number {
  let sum = 0;
  for (let r = 0; r < svc.count; r++) sum += svc.counter(r, which);
  return sum;
}
