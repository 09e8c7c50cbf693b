/**
 * Turns the forwarding benchmark's measurements into what the runner prints and stores: one
 * table per figure with each path's value and its ratio to nft DNAT and to HAProxy measured in
 * the same run, the performance goals (PASS/MISS), the JSON data and the PNG chart.
 *
 * @module
 */

import { type Bar, type Panel, renderBarChart, type Rgb } from "./bar_chart.ts";
import {
  type BenchOutcome,
  formatColumns,
  formatRatio,
  type TargetCheck,
  verdict,
} from "./bench.ts";
import type { PathResult } from "./forwarding.ts";
import { PATH_NAMES, type PathName } from "./forwarding_paths.ts";
import { SPREAD_CLIENTS } from "../lab/bench_topology.ts";

/** One figure the tables show. */
export interface FigureDef {
  key: string;
  title: string;
  unit: string;
  higherIsBetter: boolean;
  /** The path's value; undefined when it was not measured. */
  value(p: PathResult): number | undefined;
  /** Formats a value for the table. */
  format(v: number): string;
}

/** One path's row of a figure: its value and its ratios to the peers (null: not available). */
export interface FigureRow {
  path: PathName;
  value: number | null;
  vsNft: number | null;
  vsHaproxy: number | null;
}

/** A figure's table as stored in the JSON. */
export interface FigureTable {
  key: string;
  title: string;
  unit: string;
  higherIsBetter: boolean;
  rows: FigureRow[];
}

const fixed = (digits: number) => (v: number) => v.toFixed(digits);

/** Every figure, in the order they are printed. */
export const FIGURES: readonly FigureDef[] = [
  {
    key: "bulk1Gbps",
    title: "bulk TCP, 1 stream",
    unit: "Gbit/s",
    higherIsBetter: true,
    value: (p) => p.bulk1?.gbitPerSecond,
    format: fixed(2),
  },
  {
    key: "bulk8Gbps",
    title: "bulk TCP, 8 streams",
    unit: "Gbit/s",
    higherIsBetter: true,
    value: (p) => p.bulk8?.gbitPerSecond,
    format: fixed(2),
  },
  {
    key: "bulk8SpreadGbps",
    title: `bulk TCP, 8 streams from ${SPREAD_CLIENTS} client addresses`,
    unit: "Gbit/s",
    higherIsBetter: true,
    value: (p) => p.bulk8Spread?.gbitPerSecond,
    format: fixed(2),
  },
  {
    key: "udp64Kpps",
    title: "UDP, 64-byte payload, received",
    unit: "k packets/s",
    higherIsBetter: true,
    value: (p) => p.udp && p.udp.receivedPacketsPerSecond / 1000,
    format: fixed(1),
  },
  {
    key: "connsPerSec",
    title: "new TCP connections, one HTTP request each",
    unit: "per second",
    higherIsBetter: true,
    value: (p) => p.conns?.requestsPerSecond,
    format: fixed(0),
  },
  {
    key: "connsSpreadPerSec",
    title: `new TCP connections from ${SPREAD_CLIENTS} client addresses`,
    unit: "per second",
    higherIsBetter: true,
    value: (p) => p.connsSpread?.requestsPerSecond,
    format: fixed(0),
  },
  {
    key: "latencyP50Ms",
    title: "request latency p50, new connection each",
    unit: "ms",
    higherIsBetter: false,
    value: (p) => p.latency?.p50Ms,
    format: fixed(3),
  },
  {
    key: "latencyP99Ms",
    title: "request latency p99, new connection each",
    unit: "ms",
    higherIsBetter: false,
    value: (p) => p.latency?.p99Ms,
    format: fixed(3),
  },
  {
    key: "addedP99Ms",
    title: "added p99 latency over direct",
    unit: "ms",
    higherIsBetter: false,
    value: (p) => p.latency?.addedP99Ms,
    format: fixed(3),
  },
  {
    key: "cpuSecPerGB",
    title: "CPU of the whole path per GB, bulk TCP 1 stream",
    unit: "CPU s/GB",
    higherIsBetter: false,
    value: (p) => p.bulk1?.cpuSecondsPerGB,
    format: fixed(3),
  },
];

/** value ÷ peer, or null when either is missing or the peer is not positive. */
export function ratio(value: number | undefined, peer: number | undefined): number | null {
  if (value === undefined || peer === undefined || !(peer > 0)) return null;
  return value / peer;
}

/** A figure's rows for the measured paths, in the tables' order. */
export function figureTable(def: FigureDef, results: PathResult[]): FigureTable {
  const byName = new Map(results.map((r) => [r.name, r]));
  const nft = byName.get("nft"), haproxy = byName.get("haproxy");
  const rows: FigureRow[] = [];
  for (const name of PATH_NAMES) {
    const r = byName.get(name);
    if (!r) continue;
    const value = def.value(r);
    rows.push({
      path: name,
      value: value ?? null,
      vsNft: ratio(value, nft && def.value(nft)),
      vsHaproxy: ratio(value, haproxy && def.value(haproxy)),
    });
  }
  return {
    key: def.key,
    title: def.title,
    unit: def.unit,
    higherIsBetter: def.higherIsBetter,
    rows,
  };
}

/** A latency difference below this is within the probe's timing noise: ratios use it instead. */
export const LATENCY_FLOOR_MS = 0.05;

/** What the goals compare, read from the tables. */
function valueOf(tables: FigureTable[], key: string, path: PathName): number | undefined {
  const v = tables.find((t) => t.key === key)?.rows.find((r) => r.path === path)?.value;
  return v === null ? undefined : v;
}

/**
 * The issue's performance goals. Each compares two paths' figure: `subject` ≥ `factor` ×
 * `peer` (or ≤ for lower-is-better figures). A quick run marks them not measured.
 */
export function goals(tables: FigureTable[], quick: boolean): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const check = (
    description: string,
    key: string,
    subject: PathName,
    peer: PathName,
    factor: number,
    atMost = false,
    floor = 0,
  ) => {
    const def = FIGURES.find((f) => f.key === key)!;
    const a = valueOf(tables, key, subject), b = valueOf(tables, key, peer);
    if (a === undefined || b === undefined) {
      checks.push({
        description,
        goal: true,
        measured: false,
        pass: false,
        detail: `${a === undefined ? subject : peer} was not measured`,
      });
      return;
    }
    const bAdj = Math.max(b, floor), aAdj = Math.max(a, floor);
    const r = aAdj / bAdj;
    const pass = atMost ? r <= factor : r >= factor;
    const floorNote = floor > 0 && (a < floor || b < floor)
      ? ` (values under ${floor} ${def.unit} count as ${floor})`
      : "";
    checks.push({
      description,
      goal: true,
      measured: !quick,
      pass,
      detail: `${formatRatio(r)}: ${subject} ${def.format(a)} vs ${peer} ${
        def.format(b)
      } ${def.unit}${floorNote}${quick ? "; quick run, not quotable" : ""}`,
    });
  };
  for (
    const [key, label] of [
      ["bulk1Gbps", "1 stream"],
      ["bulk8Gbps", "8 streams"],
      ["bulk8SpreadGbps", `8 streams, ${SPREAD_CLIENTS} clients`],
    ]
  ) {
    check(`bulk TCP (${label}) through NAT >= 0.9x nft DNAT`, key, "nat", "nft", 0.9);
    check(`bulk TCP (${label}) through NAT >= 2x HAProxy`, key, "nat", "haproxy", 2);
  }
  check("64-byte UDP through NAT >= 0.8x nft DNAT", "udp64Kpps", "nat", "nft", 0.8);
  check("new connections/s through NAT >= 2x HAProxy", "connsPerSec", "nat", "haproxy", 2);
  check(
    `new connections/s (${SPREAD_CLIENTS} clients) through NAT >= 2x HAProxy`,
    "connsSpreadPerSec",
    "nat",
    "haproxy",
    2,
  );
  check(
    "added p99 latency through NAT at half its peak load <= 2x nft DNAT's",
    "addedP99Ms",
    "nat",
    "nft",
    2,
    true,
    LATENCY_FLOOR_MS,
  );
  for (const mode of ["fullnat", "tunnel"] as const) {
    for (const key of ["bulk1Gbps", "bulk8Gbps", "udp64Kpps", "connsPerSec"]) {
      const def = FIGURES.find((f) => f.key === key)!;
      check(`${mode} ${def.title} within 15% of NAT`, key, mode, "nat", 0.85);
    }
  }
  return checks;
}

/** The limit every run must meet: each path of the run measured every figure it has. */
export function completeness(results: PathResult[]): TargetCheck {
  const errors = results.flatMap((r) => r.errors.map((e) => `${r.name} ${e}`));
  return {
    description: "every path measured every figure",
    measured: true,
    pass: errors.length === 0,
    detail: errors.length === 0 ? `${results.length} paths` : errors.join("; "),
  };
}

const COLORS: Record<string, Rgb> = {
  direct: [150, 150, 150],
  nft: [70, 110, 170],
  haproxy: [220, 140, 40],
};
const TUNVS_COLOR: Rgb = [60, 160, 90];

/** The chart: one panel per figure, bars of the values, each with its ratio to nft DNAT. */
export function chartPanels(tables: FigureTable[]): Panel[] {
  return tables.map((t) => ({
    title: `${t.title} (${t.unit}, ${t.higherIsBetter ? "higher" : "lower"} is better)`,
    bars: t.rows.map((row): Bar => ({
      label: row.path,
      // Negative added latency (faster than direct: noise) draws no bar.
      value: row.value === null ? undefined : Math.max(0, row.value),
      text: row.value === null
        ? "n/a"
        : `${formatFigure(t, row.value)}${
          row.vsNft === null ? "" : `  ${formatRatio(row.vsNft)} nft`
        }`,
      color: COLORS[row.path] ?? TUNVS_COLOR,
    })),
  }));
}

function formatFigure(t: FigureTable, v: number): string {
  return FIGURES.find((f) => f.key === t.key)!.format(v);
}

/** The printed table of one figure. */
export function figureLines(t: FigureTable): string[] {
  const cell = (r: number | null) => r === null ? "n/a" : formatRatio(r);
  return [
    `${t.title} (${t.unit}, ${t.higherIsBetter ? "higher" : "lower"} is better)`,
    ...formatColumns(
      ["path", "value", "x nft", "x haproxy"],
      t.rows.map((r) => [
        r.path,
        r.value === null ? "n/a" : formatFigure(t, r.value),
        cell(r.vsNft),
        cell(r.vsHaproxy),
      ]),
    ),
    "",
  ];
}

/** What {@linkcode forwardingOutcome} needs. */
export interface ForwardingRun {
  started: string;
  quick: boolean;
  seconds: number;
  /** The latency probe's base rate (half of NAT's peak connections per second). */
  latencyRate: number;
  results: PathResult[];
  /** How the real decapsulates the tunnel path's IPIP (absent: not known). */
  decapsulator?: "bpf" | "python";
  /** Where the PNG goes; no chart when absent. */
  chartPath?: string;
}

/** Prints, checks, charts and packs the run. */
export async function forwardingOutcome(run: ForwardingRun): Promise<BenchOutcome> {
  const tables = FIGURES.map((f) => figureTable(f, run.results));
  const targets = [completeness(run.results), ...goals(tables, run.quick)];
  let chart: { path: string; width: number; height: number } | null = null;
  if (run.chartPath !== undefined) {
    const title = `tunvs forwarding benchmark ${
      run.started.slice(0, 16)
    }Z, ${run.seconds} s a test${run.quick ? " (quick)" : ""}`;
    const { png, width, height } = renderBarChart(title, chartPanels(tables));
    await Deno.writeFile(run.chartPath, png);
    chart = { path: run.chartPath, width, height };
  }
  const lines = [
    `forwarding: client -> director -> real in a namespace lab (seed 000 addresses), one path at a time, ${run.seconds} s a test${
      run.quick ? " (--quick: too short to quote)" : ""
    }`,
    "  paths: " + run.results.map((r) => `${r.name} (${r.description})`).join("; "),
    `  latency: new connection per request, open loop at ${run.latencyRate}/s (half of NAT's peak connections/s; a slower path at half its own peak)`,
    "  CPU: user+system seconds of the path's processes (iperf3 both ends, forwarder; kernel forwarding in their slices) per 10^9 bytes",
    ...(run.decapsulator === undefined ? [] : [
      `  tunnel: the real decapsulates IPIP ${
        run.decapsulator === "bpf"
          ? "in the kernel (a tcx BPF classifier, lab/ipip_decap_bpf.ts)"
          : "in the lab's Python decapsulator (the kernel refused the BPF one), which bounds the tunnel's figures"
      }`,
    ]),
    "",
    ...tables.flatMap(figureLines),
    ...run.results.flatMap((r) => r.errors.map((e) => `error: ${r.name} ${e}`)),
    ...targets.map((t) =>
      `${t.goal ? "goal" : "target"}: ${t.description}: ${verdict(t)} — ${t.detail}`
    ),
  ];
  if (chart) lines.push(`chart: ${chart.path} (${chart.width}x${chart.height})`);
  return {
    lines,
    data: {
      seconds: run.seconds,
      latencyRate: run.latencyRate,
      paths: Object.fromEntries(run.results.map((r) => [r.name, r])),
      decapsulator: run.decapsulator ?? null,
      figures: tables,
      chart,
    },
    targets,
  };
}
