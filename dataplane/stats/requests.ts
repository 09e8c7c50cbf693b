/**
 * What a dataplane worker answers the control plane: counters, rates, the
 * connection listing and the timeouts, each a request with typed parameters
 * and result (`WorkerRequests`). Kept out of the worker module so that tests
 * drive it against an engine directly.
 */
import type { ApplyResult } from "../apply.ts";
import type { Timeouts } from "../conn/state.ts";
import { type Engine, ENGINE_COUNTER_NAMES } from "../engine.ts";
import { type DataplaneSpec, RealCounter, type ServiceTable } from "../service.ts";
import {
  type ConnectionPage,
  type ConnectionQuery,
  countByState,
  listConnections,
} from "./conn_listing.ts";
import { ServiceStats, type ServiceTrafficStats } from "./service_stats.ts";

/** Largest timeout in seconds: timeout * 1000 stays a signed 32-bit millisecond count. */
export const MAX_TIMEOUT_SECONDS = 2147483;

/** Counters of one real, as the worker reports them. */
export interface RealStats {
  address: number;
  port: number;
  weight: number;
  activeConns: number;
  inactiveConns: number;
  connections: number;
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
  /** Persistence templates pointing at the real (ipvsadm's PersistConn). */
  persistConns: number;
}

/** A snapshot of the worker's state for the admin endpoint. */
export interface WorkerStats {
  connections: number;
  connectionsByState: Record<string, number>;
  counters: Record<string, number>;
  writeFailures: number;
  services: { name: string; reals: RealStats[] }[];
}

/** What `zeroStats` zeroed. */
export interface ZeroResult {
  /** Names of the services whose counters and rates were zeroed. */
  zeroed: string[];
}

/** The requests a worker answers: each one's parameters and result. */
export interface WorkerRequests {
  /** Counters, connection counts by state and per-real figures (`/api/v1/services`). */
  stats: { params: Record<string, never>; result: WorkerStats };
  /** Counters and rates per service and per real (`ipvsadm --stats --rate`). */
  traffic: { params: Record<string, never>; result: ServiceTrafficStats[] };
  /** Zeroes counters and rates of one service, or of all (`ipvsadm -Z`). */
  zeroStats: { params: { service?: string }; result: ZeroResult };
  /** One page of the connection listing (`ipvsadm -Lnc`). */
  connections: { params: ConnectionQuery; result: ConnectionPage };
  /** The timeouts in force (`ipvsadm -L --timeout`). */
  getTimeouts: { params: Record<string, never>; result: Timeouts };
  /** Changes some timeouts (`ipvsadm --set`); answers with those now in force. */
  setTimeouts: { params: Partial<Timeouts>; result: Timeouts };
  /**
   * Takes a new spec, keeping established connections; those of removed reals drain unless
   * `cut` (hot reload, weight changes).
   */
  apply: { params: { spec: DataplaneSpec; cut?: boolean }; result: ApplyResult };
  /** Ends the connections of one real of a service now; answers how many. */
  cutConnections: {
    params: { service: string; address: number; port: number };
    result: { cut: number };
  };
}

/** What the worker does around an `apply` besides the engine's part. */
export interface ApplyHooks {
  /** Throws to refuse `spec` before anything changes. */
  check?(spec: DataplaneSpec): void;
  /** Called once the engine runs `spec`. */
  applied?(spec: DataplaneSpec): void;
  /** Counters the worker keeps besides the engine's (the hand-off's), reported with them. */
  extraCounters?(): Record<string, number>;
}

/** Name of a request a worker answers. */
export type WorkerRequestName = keyof WorkerRequests;

/** Answers the control plane's requests about one engine, and keeps its rate estimators. */
export class DataplaneRequests {
  /** Packets the TUN refused to take back; the worker counts them. */
  writeFailures = 0;
  #traffic: ServiceStats;

  /** Serves requests about `engine`; rates start from its counters now. */
  constructor(readonly engine: Engine, readonly hooks: ApplyHooks = {}) {
    this.#traffic = new ServiceStats(engine.services);
  }

  /** Samples the rate estimators when 2 s have passed on the worker's clock `now`. */
  tick(now: number): void {
    this.#stats().tick(now);
  }

  /** Milliseconds until the next rate sample is due. */
  untilNextSample(now: number): number {
    return this.#stats().untilNextSample(now);
  }

  /** Answers request `name` at clock `now` (ms); throws on bad parameters. */
  answer<K extends WorkerRequestName>(
    name: K,
    params: WorkerRequests[K]["params"],
    now: number,
  ): WorkerRequests[K]["result"];
  answer(name: WorkerRequestName, params: unknown, now: number): unknown;
  answer(name: WorkerRequestName, params: unknown, now: number): unknown {
    const e = this.engine;
    switch (name) {
      case "stats":
        return this.#snapshot();
      case "traffic":
        return this.#stats().snapshot();
      case "zeroStats": {
        const { service } = (params ?? {}) as WorkerRequests["zeroStats"]["params"];
        const stats = this.#stats();
        if (service === undefined) {
          stats.zeroAll();
          return { zeroed: e.services.services.map((s) => s.spec.name) };
        }
        stats.zero(serviceIndex(e.services, service));
        return { zeroed: [service] };
      }
      case "connections":
        return listConnections(e.conns, e.services, now, (params ?? {}) as ConnectionQuery);
      case "getTimeouts":
        return e.timeouts;
      case "setTimeouts": {
        const p = (params ?? {}) as WorkerRequests["setTimeouts"]["params"];
        const current = e.timeouts;
        e.setTimeouts({
          tcp: validTimeout("tcp", p.tcp) ?? current.tcp,
          tcpfin: validTimeout("tcpfin", p.tcpfin) ?? current.tcpfin,
          udp: validTimeout("udp", p.udp) ?? current.udp,
        });
        return e.timeouts;
      }
      case "apply": {
        const p = (params ?? {}) as WorkerRequests["apply"]["params"];
        if (typeof p.spec !== "object" || p.spec === null || !Array.isArray(p.spec.services)) {
          throw new RangeError("apply needs a spec");
        }
        this.hooks.check?.(p.spec);
        const result = e.apply(p.spec, { cut: p.cut === true });
        this.hooks.applied?.(p.spec);
        return result;
      }
      case "cutConnections": {
        const p = (params ?? {}) as WorkerRequests["cutConnections"]["params"];
        const index = serviceIndex(e.services, p.service);
        const svc = e.services.services[index];
        for (let r = 0; r < svc.count; r++) {
          if (svc.addr[r] === p.address && svc.port[r] === p.port) {
            return { cut: e.cutConnections(index, r) };
          }
        }
        throw new RangeError(`no such real in ${p.service}`);
      }
      default:
        throw new RangeError(`unknown request: ${String(name)}`);
    }
  }

  /** The estimators of the engine's current services; rebuilt if the engine swaps its table. */
  #stats(): ServiceStats {
    if (this.#traffic.table !== this.engine.services) {
      this.#traffic = new ServiceStats(this.engine.services);
    }
    return this.#traffic;
  }

  #snapshot(): WorkerStats {
    const e = this.engine;
    const counters: Record<string, number> = {};
    ENGINE_COUNTER_NAMES.forEach((name, i) => counters[name] = e.counters[i]);
    Object.assign(counters, this.hooks.extraCounters?.() ?? {});
    return {
      connections: e.conns.size,
      connectionsByState: countByState(e.conns),
      counters,
      writeFailures: this.writeFailures,
      services: e.services.services.map((svc) => ({
        name: svc.spec.name,
        reals: Array.from({ length: svc.count }, (_, r) => ({
          address: svc.addr[r],
          port: svc.port[r],
          weight: svc.weight[r],
          activeConns: svc.active[r],
          inactiveConns: svc.inactive[r],
          connections: svc.counter(r, RealCounter.CONNS),
          inPackets: svc.counter(r, RealCounter.IN_PACKETS),
          inBytes: svc.counter(r, RealCounter.IN_BYTES),
          outPackets: svc.counter(r, RealCounter.OUT_PACKETS),
          outBytes: svc.counter(r, RealCounter.OUT_BYTES),
          persistConns: svc.persistent[r],
        })),
      })),
    };
  }
}

function serviceIndex(services: ServiceTable, name: string): number {
  const i = services.services.findIndex((s) => s.spec.name === name);
  if (i < 0) throw new RangeError(`no such service: ${name}`);
  return i;
}

function validTimeout(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_TIMEOUT_SECONDS) {
    throw new RangeError(`${name} must be an integer 1..${MAX_TIMEOUT_SECONDS}, got ${v}`);
  }
  return v;
}
