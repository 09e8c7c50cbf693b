/**
 * A running engine takes a new specification (hot reload, ipvsadm -e/-a/-d, weight changes,
 * health checks) without dropping established connections.
 *
 * A service is the same service when its protocol, VIP, port (or port group) and forwarding
 * method agree; a real is the same real when its address and port agree within that service.
 * The new ServiceTable is compiled first (a bad spec throws and nothing changes), the
 * surviving reals' counters (active/inactive/persistent, traffic, overload) are carried over,
 * and then one pass over the live connections and templates rewrites their service and real
 * indices. Connections of removed reals (and services) either drain — their real keeps a hidden
 * slot after the schedulable ones (`Service.gone`), their service a hidden place after the
 * matchable ones (`ServiceTable.visibleCount`), until the last entry ends — or are cut at once.
 *
 * Cost: the pass visits every live entry once through the timer wheel and does a few typed-array
 * writes each (plus a template index re-hash per template); about 1M entries take tens of ms
 * (see tests/unit/apply.test.ts), during which the worker forwards nothing. That is a
 * control-rate operation.
 *
 * @module
 */
import { ConnFlag } from "./conn/table.ts";
import type { Engine } from "./engine.ts";
import {
  type DataplaneSpec,
  type HiddenService,
  type RealSpec,
  type Service,
  type ServiceSpec,
  ServiceTable,
} from "./service.ts";

/** How an apply treats connections of removed reals and services. */
export interface ApplyOptions {
  /** Remove them at once; by default they drain (kept until they end). */
  cut?: boolean;
}

/** What an apply did. */
export interface ApplyResult {
  services: { kept: number; added: number; removed: number; draining: number };
  reals: { kept: number; added: number; removed: number; draining: number };
  connections: { remapped: number; cut: number };
  /** How long the apply took, in ms. */
  ms: number;
  /** Parts of the spec that did not take effect (e.g. a new table capacity needs a restart). */
  warnings: string[];
}

/** Index meaning "not carried over". */
const NONE = -1;
/** A service index no service has: fragments of a cut connection find none. */
const NO_SERVICE = 0xffff;
const REAL_COUNTERS = 5;

/** Identity of a service across specs. */
function serviceKey(s: ServiceSpec): string {
  const ports = s.ports === undefined ? "" : s.ports.map(([a, b]) => `${a}-${b}`).join(",");
  return `${s.protocol}/${s.vip}/${s.port}/${ports}/${s.forward}/${s.fwmark ?? 0}`;
}

/** Identity of a real within its service. */
function realKey(addr: number, port: number): number {
  return addr * 65536 + port;
}

/** Spec of slot `r` of `svc`: one of its reals, or one of its draining gone reals. */
function realSpecOf(svc: Service, r: number): RealSpec {
  return r < svc.count ? svc.spec.reals[r] : svc.gone[r - svc.count];
}

/** Connections and templates still counted on slot `r` of `svc`. */
function inUse(svc: Service, r: number): boolean {
  return svc.active[r] + svc.inactive[r] + svc.persistent[r] > 0;
}

/** Applies `spec` to `engine`: see the module's description. */
export function applySpec(engine: Engine, spec: DataplaneSpec, options: ApplyOptions): ApplyResult {
  const started = performance.now();
  const cut = options.cut === true;
  const old = engine.services;
  const result: ApplyResult = {
    services: { kept: 0, added: 0, removed: 0, draining: 0 },
    reals: { kept: 0, added: 0, removed: 0, draining: 0 },
    connections: { remapped: 0, cut: 0 },
    ms: 0,
    warnings: [],
  };
  if (spec.maxConnections !== engine.conns.capacity) {
    result.warnings.push(
      `maxConnections ${spec.maxConnections} takes effect after a restart ` +
        `(running with ${engine.conns.capacity})`,
    );
  }

  const newIndex = new Map<string, number>();
  spec.services.forEach((s, i) => {
    if (!newIndex.has(serviceKey(s))) newIndex.set(serviceKey(s), i);
  });
  // Per old service: its new index (or NONE), and per old slot its new slot (or NONE).
  const serviceMap = new Int32Array(old.services.length).fill(NONE);
  const realMaps: Int32Array[] = [];
  const gone: RealSpec[][] = spec.services.map(() => []);
  const hidden: HiddenService[] = [];
  const adopted = new Set<number>();
  for (const o of old.services) {
    const slots = o.addr.length;
    const map = new Int32Array(slots).fill(NONE);
    realMaps.push(map);
    const target = newIndex.get(serviceKey(o.spec));
    const visible = o.index < old.visibleCount;
    if (target !== undefined && !adopted.has(target)) {
      adopted.add(target);
      serviceMap[o.index] = target;
      if (visible) result.services.kept++;
      const reals = new Map<number, number>();
      spec.services[target].reals.forEach((r, i) => {
        if (!reals.has(realKey(r.addr, r.port))) reals.set(realKey(r.addr, r.port), i);
      });
      const count = spec.services[target].reals.length;
      for (let r = 0; r < slots; r++) {
        const to = reals.get(realKey(o.addr[r], o.port[r]));
        if (to !== undefined) {
          map[r] = to;
          if (r < o.count) result.reals.kept++;
        } else {
          if (r < o.count) result.reals.removed++;
          if (!cut && inUse(o, r)) {
            map[r] = count + gone[target].length;
            gone[target].push(realSpecOf(o, r));
            if (r < o.count) result.reals.draining++;
          }
        }
      }
      continue;
    }
    if (visible) {
      result.services.removed++;
      result.reals.removed += o.count;
    }
    if (cut) continue;
    const drained: RealSpec[] = [];
    for (let r = 0; r < slots; r++) {
      if (!inUse(o, r)) continue;
      map[r] = drained.length;
      drained.push(realSpecOf(o, r));
      if (r < o.count) result.reals.draining++;
    }
    if (drained.length === 0) continue;
    if (visible) result.services.draining++;
    serviceMap[o.index] = spec.services.length + hidden.length;
    hidden.push({ spec: { ...o.spec, reals: [] }, gone: drained });
  }
  result.services.added = spec.services.length - adopted.size;
  result.reals.added = spec.services.reduce((n, s) => n + s.reals.length, 0) -
    result.reals.kept;

  // Compiling may throw: nothing of the engine has changed yet.
  const table = new ServiceTable(spec.services, gone, hidden);

  for (const o of old.services) {
    const to = serviceMap[o.index];
    if (to === NONE) continue;
    carryCounters(o, table.services[to], realMaps[o.index]);
  }
  for (const svc of table.services) svc.scheduler.reset(svc);

  const t = engine.conns;
  const index = engine.persistence.index;
  const doomed: number[] = [];
  t.forEach((id) => {
    const from = t.service[id];
    const to = from < serviceMap.length ? serviceMap[from] : NONE;
    const real = to === NONE ? NONE : realMaps[from][t.real[id]] ?? NONE;
    if (real === NONE) {
      doomed.push(id);
      return;
    }
    if ((t.flags[id] & ConnFlag.TEMPLATE) !== 0) {
      // Templates are indexed by service: re-filed under the new one, unless their real only
      // drains (then new clients must be scheduled anew, as IPVS's invalid templates are).
      const indexed = index.delete(t, id);
      t.service[id] = to;
      t.real[id] = real;
      if (indexed && real < table.services[to].count) index.insert(t, id);
    } else {
      t.service[id] = to;
      t.real[id] = real;
    }
    result.connections.remapped++;
  });
  // Connections before templates: cutting a connection releases its template's reference.
  doomed.sort((a, b) => (t.flags[a] & ConnFlag.TEMPLATE) - (t.flags[b] & ConnFlag.TEMPLATE));
  for (const id of doomed) {
    if ((t.flags[id] & ConnFlag.TEMPLATE) !== 0) index.delete(t, id);
    else engine.persistence.release(id);
    if ((t.flags[id] & ConnFlag.SYNPROXY) !== 0) engine.synproxy.forget(id);
    engine.fullnatTimestamps.forget(id);
    engine.fullnatSequence.forget(id);
    t.remove(id);
    result.connections.cut++;
  }

  // Later fragments follow their first fragment's service and real.
  const f = engine.fragments;
  for (let i = 0; i < f.capacity; i++) {
    const from = f.service[i];
    const to = from < serviceMap.length ? serviceMap[from] : NONE;
    const real = to === NONE ? NONE : realMaps[from][f.real[i]] ?? NONE;
    f.service[i] = real === NONE ? NO_SERVICE : to;
    f.real[i] = real === NONE ? 0 : real;
  }

  engine.services = table;
  engine.setTimeouts(spec.timeouts);
  result.ms = performance.now() - started;
  return result;
}

/** Adds old service `o`'s per-real state to service `n`, slot by slot through `map`. */
function carryCounters(o: Service, n: Service, map: Int32Array): void {
  for (let r = 0; r < map.length; r++) {
    const to = map[r];
    if (to === NONE) continue;
    n.active[to] += o.active[r];
    n.inactive[to] += o.inactive[r];
    n.persistent[to] += o.persistent[r];
    for (let c = 0; c < REAL_COUNTERS; c++) {
      n.counters[to * REAL_COUNTERS + c] += o.counters[r * REAL_COUNTERS + c];
    }
    n.overloaded[to] = overloaded(n, to, o.overloaded[r] !== 0) ? 1 : 0;
  }
}

/** Whether slot `r` is overloaded under its (possibly new) thresholds, as bind/unbind decide. */
function overloaded(svc: Service, r: number, was: boolean): boolean {
  const total = svc.active[r] + svc.inactive[r];
  const upper = svc.upperThreshold[r];
  if (upper > 0 && total >= upper) return true;
  if (!was) return false;
  const lower = svc.lowerThreshold[r];
  return !(lower > 0 ? total < lower : upper > 0 ? total * 4 < upper * 3 : true);
}
