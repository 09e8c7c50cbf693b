/**
 * `deno task bench`: runs the benchmarks, prints their tables and target checks, and writes every
 * figure to `bench/results/latest.json`.
 *
 * Flags: `--quick` (tiny sizes: checks that everything runs), `--only NAME` (one benchmark),
 * `--out PATH` (where the JSON goes; the chart goes beside it, `.json` replaced by `.png`),
 * `--seconds N` (length of each timed load test). Exits 1 when a measured limit fails or a
 * benchmark could not measure, 2 on bad flags; a missed performance goal is printed as MISS and
 * does not change the exit code.
 *
 * @module
 */

import type { Benchmark, BenchOutcome, TargetCheck } from "./bench.ts";
import { connTableBenchmark } from "./conn_table.ts";
import { forwardingBenchmark } from "./forwarding.ts";
import { tunIoBenchmark } from "./tun_io.ts";

/** Every benchmark the runner knows, in the order it runs them; new ones are added here. */
export const BENCHMARKS: readonly Benchmark[] = [
  connTableBenchmark,
  tunIoBenchmark,
  forwardingBenchmark,
];

/** The command line, parsed. */
export interface RunArgs {
  quick: boolean;
  only: string | undefined;
  out: string;
  /** Seconds a timed load test runs; each benchmark's default when absent. */
  seconds: number | undefined;
}

/** Where the results go unless `--out` says otherwise. */
export const DEFAULT_OUT = new URL("./results/latest.json", import.meta.url).pathname;

/** Parses the runner's flags; throws on anything it does not know. */
export function parseRunArgs(args: readonly string[]): RunArgs {
  const parsed: RunArgs = { quick: false, only: undefined, out: DEFAULT_OUT, seconds: undefined };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split(/=(.*)/s, 2);
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined || v === "") throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--quick" && inline === undefined) parsed.quick = true;
    else if (flag === "--only") parsed.only = value();
    else if (flag === "--out") parsed.out = value();
    else if (flag === "--seconds") {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 600) {
        throw new Error(`--seconds must be a whole number from 1 to 600, not ${v}`);
      }
      parsed.seconds = n;
    } else throw new Error(`unknown argument ${args[i]}`);
  }
  if (parsed.only !== undefined && !BENCHMARKS.some((b) => b.name === parsed.only)) {
    throw new Error(
      `unknown benchmark ${parsed.only}; known: ${BENCHMARKS.map((b) => b.name).join(", ")}`,
    );
  }
  return parsed;
}

/** The machine the figures were taken on, as far as it can be read without privileges. */
export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryBytes: number;
  os: string;
  kernel: string;
  deno: string;
  v8: string;
}

/** Describes this machine. */
export function machineInfo(): MachineInfo {
  let cpu = "unknown";
  try {
    cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m)?.[1] ?? cpu;
  } catch {
    // Not Linux, or /proc is not mounted: the model stays unknown.
  }
  let memoryBytes = 0;
  try {
    memoryBytes = Deno.systemMemoryInfo().total;
  } catch {
    // Left at 0: the JSON says the total is unknown.
  }
  return {
    cores: navigator.hardwareConcurrency,
    cpu,
    memoryBytes,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
  };
}

/** Where the chart goes for results written to `out`: the same name with `.png`. */
export function chartPathFor(out: string): string {
  return `${out.replace(/\.json$/, "")}.png`;
}

/** Runs the selected benchmarks, prints them, writes the JSON; returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let opts: RunArgs;
  try {
    opts = parseRunArgs(args);
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 2;
  }
  const machine = machineInfo();
  const date = new Date().toISOString();
  console.log(
    `tunvs bench ${date}${opts.quick ? " (--quick: sizes too small to quote)" : ""}\n` +
      `machine: ${machine.cores} cores, ${machine.cpu}, ${
        (machine.memoryBytes / 1024 ** 3).toFixed(1)
      } GiB, ${machine.os}, kernel ${machine.kernel}, Deno ${machine.deno} (V8 ${machine.v8})\n`,
  );
  const results: Record<string, unknown> = {};
  const targets: TargetCheck[] = [];
  const slash = opts.out.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(opts.out.slice(0, slash), { recursive: true });
  for (const bench of BENCHMARKS) {
    if (opts.only !== undefined && bench.name !== opts.only) continue;
    const start = performance.now();
    let outcome: BenchOutcome;
    try {
      outcome = await bench.run({
        quick: opts.quick,
        seconds: opts.seconds,
        chartPath: chartPathFor(opts.out),
      });
    } catch (e) {
      // One benchmark that cannot run (no root, a tool missing) still leaves the others' figures.
      const message = (e as Error).message;
      outcome = {
        lines: [`${bench.name}: could not run: ${message}`],
        data: { error: message },
        targets: [{
          description: `${bench.name} ran`,
          measured: true,
          pass: false,
          detail: message,
        }],
      };
    }
    const durationMs = performance.now() - start;
    for (const line of outcome.lines) console.log(line);
    console.log(`(${bench.name} took ${(durationMs / 1000).toFixed(1)} s)\n`);
    results[bench.name] = { ...outcome.data, durationMs, targets: outcome.targets };
    targets.push(...outcome.targets);
  }
  const limits = targets.filter((t) => !t.goal);
  const goals = targets.filter((t) => t.goal);
  const failed = limits.filter((t) => t.measured && !t.pass);
  await Deno.writeTextFile(
    opts.out,
    JSON.stringify({ date, quick: opts.quick, machine, benchmarks: results }, null, 2) + "\n",
  );
  const measured = limits.filter((t) => t.measured).length;
  console.log(
    `targets: ${measured - failed.length} of ${measured} measured passed${
      failed.length > 0 ? ` — FAIL: ${failed.map((t) => t.description).join("; ")}` : ""
    }`,
  );
  if (goals.length > 0) {
    const missed = goals.filter((t) => t.measured && !t.pass);
    const measuredGoals = goals.filter((t) => t.measured).length;
    console.log(
      `goals: ${measuredGoals - missed.length} of ${measuredGoals} measured met${
        missed.length > 0 ? ` — MISS: ${missed.map((t) => t.description).join("; ")}` : ""
      } (a miss does not fail the run)`,
    );
  }
  console.log(`results: ${opts.out}`);
  return failed.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
