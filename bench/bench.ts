/**
 * What every benchmark shares: the options `bench/run.ts` passes in, the outcome it gets back, and
 * the plain-text table the figures are printed in.
 *
 * @module
 */

/** Options every benchmark takes from the command line. */
export interface BenchOptions {
  /** Tiny sizes and budgets: checks that the benchmark runs, measures nothing worth quoting. */
  quick: boolean;
  /** Seconds each timed load test runs (`--seconds`); the benchmark's default when absent. */
  seconds?: number;
  /** Where a benchmark that draws a chart writes it (PNG), beside the JSON results. */
  chartPath?: string;
}

/**
 * A target a benchmark checks. A limit (the default) is printed PASS or FAIL and a measured FAIL
 * makes the run exit 1; a goal (`goal: true`, the performance targets of the forwarding
 * benchmark) is printed PASS or MISS and never fails the run: how fast a shared machine moves
 * packets is a figure to report, not a correctness check.
 */
export interface TargetCheck {
  /** What is checked, in words an operator reads. */
  description: string;
  /** A performance goal: a miss is reported, never fails the run. */
  goal?: boolean;
  /** Whether the run measured what the target needs (the quick run does not). */
  measured: boolean;
  /** True when measured and met. */
  pass: boolean;
  /** The measured figure and the limit, or why nothing was measured. */
  detail: string;
}

/** What one benchmark hands back to the runner. */
export interface BenchOutcome {
  /** Printed as they are, one line each. */
  lines: string[];
  /** Written under the benchmark's name into `bench/results/latest.json`. */
  data: Record<string, unknown>;
  /** The targets it checked; the runner fails when a measured one fails. */
  targets: TargetCheck[];
}

/** A benchmark the runner knows by name. */
export interface Benchmark {
  /** Name for `--only` and the key in the JSON results. */
  name: string;
  /** One line saying what it measures. */
  description: string;
  /** Runs it; must bound every loop in count and time. */
  run(options: BenchOptions): Promise<BenchOutcome>;
}

/** Lays out `rows` under `header` in columns, the first left-aligned and the rest right-aligned. */
export function formatColumns(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}

/** Formats a count as 10k, 1.5M and the like. */
export function formatCount(n: number): string {
  if (n >= 1e6) return `${trim(n / 1e6)}M`;
  if (n >= 1e3) return `${trim(n / 1e3)}k`;
  return String(n);
}

/** Formats a rate per second with three significant digits and a k/M suffix. */
export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toPrecision(3)}M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toPrecision(3)}k/s`;
  return `${perSecond.toPrecision(3)}/s`;
}

/** Formats bytes as MiB with one decimal. */
export function formatMiB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Formats milliseconds with three significant digits. */
export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toPrecision(3)} s` : `${ms.toPrecision(3)} ms`;
}

/** How a target's outcome is printed: PASS, FAIL (a limit), MISS (a goal), or NOT MEASURED. */
export function verdict(t: TargetCheck): string {
  if (!t.measured) return "NOT MEASURED";
  if (t.pass) return "PASS";
  return t.goal ? "MISS" : "FAIL";
}

/** Formats ours ÷ theirs as a ratio like `0.21x`. */
export function formatRatio(ratio: number): string {
  return `${ratio >= 10 ? ratio.toFixed(0) : ratio.toPrecision(2)}x`;
}

function trim(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(3).replace(/\.?0+$/, "");
}
