/**
 * The answers of several dataplane workers merged into the one answer a single worker gave:
 * counters and rates summed, the connection listing walked worker after worker (the cursor
 * carries the worker's index), so the API and /metrics show the same totals as before.
 */
import type { ApplyResult } from "../dataplane/apply.ts";
import {
  type ConnectionPage,
  type ConnectionQuery,
  LIST_DEFAULT_LIMIT,
} from "../dataplane/stats/conn_listing.ts";
import type { ServiceTrafficStats, TrafficStats } from "../dataplane/stats/service_stats.ts";
import type { WorkerStats } from "../dataplane/worker.ts";

/** One worker's share of the traffic, for `tunvs_worker_*` metrics. */
export interface WorkerShare {
  worker: number;
  rxPackets: number;
  handoffsOut: number;
  handoffsIn: number;
  connections: number;
}

/** Stats of all workers: the sums, plus each worker's share. */
export interface MergedStats extends WorkerStats {
  workers?: WorkerShare[];
}

/** Where a listing cursor points: a worker and an entry id in its table. */
export interface WorkerCursor {
  worker: number;
  slot: number;
}

/** Adds `from`'s numbers into `into` key by key. */
function addRecord(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Sums the workers' stats (the per-real weight is the spec's, the same everywhere). */
export function mergeStats(all: WorkerStats[]): MergedStats {
  const first = all[0];
  const merged: MergedStats = {
    connections: 0,
    connectionsByState: {},
    counters: {},
    writeFailures: 0,
    services: first.services.map((s) => ({ name: s.name, reals: s.reals.map((r) => ({ ...r })) })),
  };
  all.forEach((w, i) => {
    merged.connections += w.connections;
    addRecord(merged.connectionsByState, w.connectionsByState);
    addRecord(merged.counters, w.counters);
    merged.writeFailures += w.writeFailures;
    if (i === 0) return;
    w.services.forEach((s, si) => {
      const into = merged.services[si];
      if (into === undefined || into.name !== s.name) return;
      s.reals.forEach((r, ri) => {
        const m = into.reals[ri];
        if (m === undefined) return;
        m.activeConns += r.activeConns;
        m.inactiveConns += r.inactiveConns;
        m.connections += r.connections;
        m.inPackets += r.inPackets;
        m.inBytes += r.inBytes;
        m.outPackets += r.outPackets;
        m.outBytes += r.outBytes;
        m.persistConns += r.persistConns;
      });
    });
  });
  if (all.length > 1) {
    merged.workers = all.map((w, worker) => ({
      worker,
      rxPackets: w.counters.rx_packets ?? 0,
      handoffsOut: w.counters.handoffs_out ?? 0,
      handoffsIn: w.counters.handoffs_in ?? 0,
      connections: w.connections,
    }));
  }
  return merged;
}

const TRAFFIC_FIELDS = [
  "conns",
  "inPkts",
  "outPkts",
  "inBytes",
  "outBytes",
  "cps",
  "inPps",
  "outPps",
  "inBps",
  "outBps",
] as const satisfies readonly (keyof TrafficStats)[];

function addTraffic(into: TrafficStats, from: TrafficStats): void {
  for (const f of TRAFFIC_FIELDS) into[f] += from[f];
}

/** Sums the workers' traffic counters and rates per service and per real. */
export function mergeTraffic(all: ServiceTrafficStats[][]): ServiceTrafficStats[] {
  const merged = all[0].map((s) => ({ ...s, reals: s.reals.map((r) => ({ ...r })) }));
  for (const w of all.slice(1)) {
    w.forEach((s, si) => {
      const into = merged[si];
      if (into === undefined || into.name !== s.name) return;
      addTraffic(into, s);
      s.reals.forEach((r, ri) => {
        if (into.reals[ri] !== undefined) addTraffic(into.reals[ri], r);
      });
    });
  }
  return merged;
}

/** Sums the workers' apply results; warnings are the first worker's (all see one spec). */
export function mergeApply(all: ApplyResult[]): ApplyResult {
  const m = structuredClone(all[0]);
  for (const r of all.slice(1)) {
    m.connections.remapped += r.connections.remapped;
    m.connections.cut += r.connections.cut;
    m.ms = Math.max(m.ms, r.ms);
  }
  return m;
}

/** Reads a listing cursor of `workers` workers: worker = cursor mod N, slot = cursor div N. */
export function splitCursor(cursor: number | undefined, workers: number): WorkerCursor {
  const c = cursor ?? 0;
  if (!Number.isInteger(c) || c < 0) {
    throw new RangeError(`cursor must be a non-negative integer, got ${c}`);
  }
  return { worker: c % workers, slot: Math.floor(c / workers) };
}

/** A cursor past every table: a listing from it scans nothing and answers the table's total. */
export const PAST_THE_END = 2 ** 31 - 1;

/**
 * One page of the listing across `workers` workers, asking worker k for its own pages through
 * `ask`: filled from the worker the cursor names, then from the next ones while room is left, so
 * a small table still fits one page as with one worker. The next cursor names the worker and
 * the entry id in its table to go on from; `total` counts every worker's live connections.
 */
export async function listAcrossWorkers(
  workers: number,
  ask: (worker: number, q: ConnectionQuery) => Promise<ConnectionPage>,
  q: ConnectionQuery,
): Promise<ConnectionPage> {
  const limit = q.limit ?? LIST_DEFAULT_LIMIT;
  let { worker, slot } = splitCursor(q.cursor, workers);
  const totals: (number | null)[] = new Array(workers).fill(null);
  const out: ConnectionPage = { connections: [], cursor: null, scanned: 0, total: 0 };
  for (;;) {
    const page = await ask(worker, { ...q, cursor: slot, limit: limit - out.connections.length });
    totals[worker] = page.total;
    out.connections.push(...page.connections);
    out.scanned += page.scanned;
    if (page.cursor !== null) {
      out.cursor = page.cursor * workers + worker;
      break;
    }
    if (worker + 1 === workers) break;
    worker++;
    slot = 0;
    if (out.connections.length >= limit) {
      out.cursor = worker;
      break;
    }
  }
  for (let w = 0; w < workers; w++) {
    totals[w] ??= (await ask(w, { ...q, cursor: PAST_THE_END, limit: 1 })).total;
    out.total += totals[w]!;
  }
  return out;
}
