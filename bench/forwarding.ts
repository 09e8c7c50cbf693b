/**
 * The forwarding benchmark: builds the namespace lab (client ─ director ─ real), sets up each
 * forwarding path in the director in turn (plain routing, nftables DNAT, HAProxy, tunvs NAT,
 * FULLNAT and tunnel, with and without the SYN proxy), and measures through each one bulk TCP
 * (iperf3, 1 and 8 streams), 64-byte UDP packets (iperf3), new TCP connections per second (wrk
 * with `Connection: close` against nginx), request latency at a fixed rate, and CPU seconds per
 * GB moved. `forwarding_report.ts` turns the figures into tables, targets and the chart.
 *
 * @module
 */

import {
  type BenchTopology,
  buildBenchTopology,
  freshClientAddress,
  namespacePids,
  spreadClients,
} from "../lab/bench_topology.ts";
import { IPERF3_BIN, runIperf3 } from "../lab/iperf3.ts";
import { HAPROXY_BIN } from "../lab/haproxy.ts";
import { Lab } from "../lab/netns.ts";
import { NFT_BIN } from "../lab/nft_dnat.ts";
import { NGINX_BIN } from "../lab/nginx.ts";
import { cpuSince, cpuSnapshot } from "../lab/proc_cpu.ts";
import { runWrk, WRK_BIN } from "../lab/wrk.ts";
import type { Benchmark, BenchOptions, BenchOutcome } from "./bench.ts";
import { forwardingOutcome } from "./forwarding_report.ts";
import { type ForwardingPath, type PathName, PATHS } from "./forwarding_paths.ts";
import { type LatencyResult, runLatencyClient } from "./latency_client.ts";

/** Bulk TCP through one path. */
export interface BulkSample {
  streams: number;
  seconds: number;
  /** Payload bytes the receiver got. */
  bytes: number;
  gbitPerSecond: number;
  /** CPU seconds of every process of the path meanwhile: iperf3 client and server, the
   * forwarder (tunvs or HAProxy) and the kernel's forwarding work done in their time slices. */
  cpuSeconds: number;
  /** Of which the director's processes (tunvs or HAProxy; 0 for the kernel's paths). */
  forwarderCpuSeconds: number;
  /** cpuSeconds per 10^9 payload bytes. */
  cpuSecondsPerGB: number;
}

/** 64-byte UDP datagrams sent as fast as iperf3 can, counted by the receiver. */
export interface UdpSample {
  payloadBytes: number;
  seconds: number;
  sentPackets: number;
  lostPackets: number;
  lostPercent: number;
  receivedPacketsPerSecond: number;
}

/** New TCP connections per second: wrk, one request per connection. */
export interface ConnSample {
  /** Connections wrk keeps busy at once. */
  concurrency: number;
  seconds: number;
  requests: number;
  requestsPerSecond: number;
  errors: number;
}

/** The latency probe's figures, and what they add over the direct path at the same rate. */
export interface LatencySample extends LatencyResult {
  seconds: number;
  /** Every run; the sample's own figures are those of the run with the lowest p99. */
  runs: LatencyResult[];
  addedP50Ms?: number;
  addedP99Ms?: number;
}

/** Everything measured through one path. */
export interface PathResult {
  name: PathName;
  description: string;
  /** The client's source address during this path (each path has its own). */
  clientAddr?: string;
  bulk1?: BulkSample;
  bulk8?: BulkSample;
  /** 8 streams again, the connections spread over SPREAD_CLIENTS client addresses. */
  bulk8Spread?: BulkSample;
  /** Absent where the path has no UDP test (HAProxy; the SYN proxy variants). */
  udp?: UdpSample;
  conns?: ConnSample;
  /** New connections/s again, spread over SPREAD_CLIENTS client addresses. */
  connsSpread?: ConnSample;
  latency?: LatencySample;
  /** The appliance's non-zero counters after the tests (tunvs paths). */
  applianceCounters?: Record<string, number>;
  /** What could not be measured, and why. */
  errors: string[];
}

/** The paths a full run measures, NAT first: its peak sets the latency probe's rate. */
export const FULL_PATHS: readonly PathName[] = [
  "nat",
  "direct",
  "nft",
  "haproxy",
  "nat+synproxy",
  "fullnat",
  "fullnat+synproxy",
  "tunnel",
];
/** The paths `--quick` measures: NAT and the three references. */
export const QUICK_PATHS: readonly PathName[] = ["nat", "direct", "nft", "haproxy"];
/** Default length of each timed test. */
export const DEFAULT_SECONDS = 5;
/** Length of each timed test of the quick run. */
export const QUICK_SECONDS = 1;
/** Connections wrk keeps open at once in the connections-per-second test. */
const WRK_CONNECTIONS = 32;
/** The latency probe runs at this share of the NAT path's peak connection rate… */
const LATENCY_LOAD_SHARE = 0.5;
/** …and at least this many requests a second (when the peak could not be measured). */
const MIN_LATENCY_RATE = 50;
/** Latency probe runs per path (the quick run makes one): the machine is shared, and one
 * scheduling stall of another tenant's job moves a p99 by tens of ms; the run with the lowest
 * p99 is the one least disturbed, and every path gets the same number of tries. */
const LATENCY_RUNS = 2;
/** A pause between tests so sockets of the previous one close and servers settle. */
const SETTLE_MS = 300;
/** The tools the lab runs; their Debian packages are in ./dev's list. */
const TOOLS = [IPERF3_BIN, WRK_BIN, NGINX_BIN, HAPROXY_BIN, NFT_BIN];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Throws unless the run can build a lab and finds every tool. */
async function assertRunnable(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("the forwarding benchmark builds namespaces: run as root");
  const missing: string[] = [];
  for (const tool of TOOLS) {
    try {
      await Deno.stat(tool);
    } catch {
      missing.push(tool);
    }
  }
  if (missing.length > 0) {
    throw new Error(`missing ${missing.join(", ")}: ./dev bench installs them (Debian packages)`);
  }
}

/** Runs `fn`, recording its error under `what` instead of throwing. */
async function attempt<T>(
  errors: string[],
  what: string,
  fn: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    errors.push(`${what}: ${(err as Error).message.split("\n").slice(0, 6).join(" | ")}`);
    return undefined;
  } finally {
    await sleep(SETTLE_MS);
  }
}

/** Pids of the processes in the director's and the real's namespace (forwarder and servers). */
async function pathPids(
  lab: Lab,
  topo: BenchTopology,
): Promise<{ all: number[]; director: number[] }> {
  const director = await namespacePids(lab.nsName(topo.directorRole));
  return { all: [...director, ...(await topo.realPids())], director };
}

/** Bulk TCP with `streams` streams, and the CPU the path's processes spent on it. */
async function measureBulk(
  lab: Lab,
  topo: BenchTopology,
  target: { host: string; iperfPort: number },
  streams: number,
  seconds: number,
): Promise<BulkSample> {
  const pids = await pathPids(lab, topo);
  const all = cpuSnapshot(pids.all);
  const director = cpuSnapshot(pids.director);
  const r = await runIperf3(lab, topo.clientRole, {
    host: target.host,
    port: target.iperfPort,
    seconds,
    streams,
  });
  const forwarderCpuSeconds = cpuSince(director);
  const cpuSeconds = cpuSince(all) + r.clientCpuSeconds;
  if (!(r.bytes > 0)) throw new Error(`no bytes arrived (${streams} streams)`);
  return {
    streams,
    seconds: r.seconds,
    bytes: r.bytes,
    gbitPerSecond: r.bitsPerSecond / 1e9,
    cpuSeconds,
    forwarderCpuSeconds,
    cpuSecondsPerGB: cpuSeconds / (r.bytes / 1e9),
  };
}

/** New connections per second: wrk, a new connection per request, against nginx. */
async function measureConns(
  lab: Lab,
  topo: BenchTopology,
  target: { host: string; httpPort: number },
  seconds: number,
): Promise<ConnSample> {
  const r = await runWrk(lab, topo.clientRole, {
    url: `http://${target.host}:${target.httpPort}/`,
    seconds,
    connections: WRK_CONNECTIONS,
    close: true,
  });
  return { concurrency: WRK_CONNECTIONS, seconds, ...r };
}

/** 64-byte UDP at full speed; the receiver's count. */
async function measureUdp(
  lab: Lab,
  topo: BenchTopology,
  target: { host: string; iperfPort: number },
  seconds: number,
): Promise<UdpSample> {
  const payloadBytes = 64;
  const r = await runIperf3(lab, topo.clientRole, {
    host: target.host,
    port: target.iperfPort,
    seconds,
    udpPayload: payloadBytes,
  });
  const sent = r.packets ?? 0, lost = r.lostPackets ?? 0;
  if (!(sent > lost)) throw new Error(`no datagram arrived (${sent} sent, ${lost} lost)`);
  return {
    payloadBytes,
    seconds: r.seconds,
    sentPackets: sent,
    lostPackets: lost,
    lostPercent: (100 * lost) / sent,
    receivedPacketsPerSecond: r.receivedPacketsPerSecond ?? 0,
  };
}

/** Measures every figure through one path; what fails is recorded in `errors`, not thrown. */
async function measurePath(
  lab: Lab,
  topo: BenchTopology,
  path: ForwardingPath,
  index: number,
  seconds: number,
  latencyRuns: number,
  latencyRate: (own: ConnSample | undefined) => number,
): Promise<PathResult> {
  const result: PathResult = {
    name: path.name as PathName,
    description: path.description,
    errors: [],
  };
  result.clientAddr = await attempt(
    result.errors,
    "client address",
    () => freshClientAddress(lab, topo, index),
  );
  const running = await attempt(result.errors, "set-up", () => path.start(lab, topo));
  if (!running) return result;
  try {
    const e = result.errors;
    result.bulk1 = await attempt(e, "bulk 1", () => measureBulk(lab, topo, running, 1, seconds));
    result.bulk8 = await attempt(e, "bulk 8", () => measureBulk(lab, topo, running, 8, seconds));
    if (path.udp) {
      result.udp = await attempt(e, "udp", () => measureUdp(lab, topo, running, seconds));
    }
    result.conns = await attempt(e, "conns", () => measureConns(lab, topo, running, seconds));
    const rate = latencyRate(result.conns);
    result.latency = await attempt(e, "latency", async () => {
      const runs: LatencyResult[] = [];
      for (let i = 0; i < latencyRuns; i++) {
        const r = await runLatencyClient(lab, topo.clientRole, {
          host: running.host,
          port: running.httpPort,
          rate,
          seconds,
        });
        if (r.completed === 0) throw new Error(`no request answered at ${rate}/s`);
        runs.push(r);
      }
      return { ...bestLatencyRun(runs), seconds, runs };
    });
    // The same generators again from many client addresses (several workers' worth for tunvs).
    const unspread = await attempt(
      e,
      "spread clients",
      () => spreadClients(lab, topo, index, running.host),
    );
    if (unspread) {
      result.bulk8Spread = await attempt(
        e,
        "bulk 8 spread",
        () => measureBulk(lab, topo, running, 8, seconds),
      );
      result.connsSpread = await attempt(
        e,
        "conns spread",
        () => measureConns(lab, topo, running, seconds),
      );
      await attempt(e, "unspread clients", unspread);
    }
    if (running.counters) {
      result.applianceCounters = await attempt(e, "counters", () => running.counters!());
    }
  } finally {
    await attempt(result.errors, "tear-down", () => running.stop());
  }
  return result;
}

/** The probe's rate for every path: a share of NAT's peak, lowered to that share of a path's own
 * peak where the path is slower, so that no path is measured overloaded. */
export function latencyRateFor(natPeak: number | undefined, ownPeak: number | undefined): number {
  const base = natPeak !== undefined && natPeak > 0
    ? natPeak * LATENCY_LOAD_SHARE
    : MIN_LATENCY_RATE;
  const own = ownPeak !== undefined && ownPeak > 0 ? ownPeak * LATENCY_LOAD_SHARE : base;
  return Math.max(MIN_LATENCY_RATE, Math.round(Math.min(base, own)));
}

/** The run with the lowest p99 (the first of equals). */
export function bestLatencyRun(runs: LatencyResult[]): LatencyResult {
  if (runs.length === 0) throw new Error("no latency run");
  return runs.reduce((best, r) => r.p99Ms < best.p99Ms ? r : best);
}

/** Fills in each path's latency above the direct path's (at the same or a lower rate). */
export function addDirectBaseline(results: PathResult[]): void {
  const direct = results.find((r) => r.name === "direct")?.latency;
  if (!direct) return;
  for (const r of results) {
    if (!r.latency) continue;
    r.latency.addedP50Ms = r.latency.p50Ms - direct.p50Ms;
    r.latency.addedP99Ms = r.latency.p99Ms - direct.p99Ms;
  }
}

/** Runs the whole measurement; the lab is always removed again. */
async function runForwarding(options: BenchOptions): Promise<BenchOutcome> {
  await assertRunnable();
  const seconds = options.seconds ?? (options.quick ? QUICK_SECONDS : DEFAULT_SECONDS);
  const order = options.quick ? QUICK_PATHS : FULL_PATHS;
  const started = new Date().toISOString();
  const results: PathResult[] = [];
  let natPeak: number | undefined;
  let decapsulator: "bpf" | "python" | undefined;
  const lab = await Lab.create("bench");
  try {
    const topo = await buildBenchTopology(lab);
    decapsulator = topo.decapsulator;
    for (const [index, name] of order.entries()) {
      const r = await measurePath(
        lab,
        topo,
        PATHS[name],
        index,
        seconds,
        options.quick ? 1 : LATENCY_RUNS,
        // NAT's own latency runs before its peak is stored: it is its own reference.
        (own) =>
          latencyRateFor(
            name === "nat" ? own?.requestsPerSecond : natPeak,
            own?.requestsPerSecond,
          ),
      );
      if (name === "nat") natPeak = r.conns?.requestsPerSecond;
      results.push(r);
    }
  } finally {
    await lab.destroy();
  }
  addDirectBaseline(results);
  return await forwardingOutcome({
    started,
    quick: options.quick,
    seconds,
    latencyRate: latencyRateFor(natPeak, undefined),
    results,
    decapsulator,
    chartPath: options.chartPath,
  });
}

/** The benchmark as the runner knows it. */
export const forwardingBenchmark: Benchmark = {
  name: "forwarding",
  description: "tunvs against nft DNAT, HAProxy and plain routing in the namespace lab",
  run: runForwarding,
};
