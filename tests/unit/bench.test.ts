/**
 * `deno task bench --quick --only conn_table` runs end to end and its output is well formed: the printed table, the
 * JSON file with every expected key, and figures that are finite and positive. No timings are
 * asserted: the quick sizes are too small to quote.
 *
 * @module
 */

import assert from "node:assert/strict";
import { formatColumns } from "../../bench/bench.ts";
import { forwardingBenchmark } from "../../bench/forwarding.ts";
import { BENCHMARKS, chartPathFor, DEFAULT_OUT, main, parseRunArgs } from "../../bench/run.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
/** The sizes `--quick` runs, restated so that the test notices if they change. */
const QUICK_SIZES = [2_000, 20_000];

/** Every number anywhere in `value` is finite; returns how many there were. */
function assertAllFinite(value: unknown, path: string): number {
  if (typeof value === "number") {
    assert.ok(Number.isFinite(value), `${path} is ${value}`);
    return 1;
  }
  if (value === null || typeof value !== "object") return 0;
  let count = 0;
  for (const [k, v] of Object.entries(value)) count += assertAllFinite(v, `${path}.${k}`);
  return count;
}

/** A timed phase ran all its passes of `ops` operations each, at a positive rate. */
function assertPhase(p: Record<string, unknown>, ops: number, what: string): void {
  const passes = p.passes as number;
  assert.ok(Number.isInteger(passes) && passes >= 1 && passes <= 1000, `${what}.passes`);
  assert.equal(p.ops, ops * passes, `${what}.ops`);
  assert.equal(p.complete, true, `${what}.complete`);
  assert.ok((p.ms as number) >= 0, `${what}.ms`);
  assert.ok((p.perSec as number) > 0, `${what}.perSec`);
}

/** One implementation's sample at size `n`. */
function assertSample(s: Record<string, unknown>, impl: string, n: number): void {
  const what = `${impl}@${n}`;
  assert.equal(s.impl, impl);
  assert.equal(s.n, n);
  const rss = s.rss as Record<string, number>;
  for (const k of ["bareBytes", "idleBytes", "fullBytes"]) {
    assert.ok(rss[k] > 1024 * 1024, `${what}.rss.${k} = ${rss[k]}`);
  }
  // RSS differences at these sizes are within the heap's noise: they need only be numbers.
  assert.equal(typeof s.bytesPerConnAboveIdle, "number");
  assert.equal(typeof s.bytesPerConnAboveBare, "number");
  assert.ok((s.ownBytes as number) > 0, `${what}.ownBytes`);
  assertPhase(s.inserts as Record<string, unknown>, n, `${what}.inserts`);
  assertPhase(s.hits as Record<string, unknown>, 2 * n, `${what}.hits`);
  assertPhase(s.misses as Record<string, unknown>, n, `${what}.misses`);
  const expiry = s.expiry as Record<string, unknown>;
  assert.equal(expiry.complete, true, `${what}.expiry.complete`);
  assert.equal(expiry.expired, n, `${what}.expiry.expired`);
  assert.ok((expiry.ticks as number) > 0 && (expiry.ticks as number) <= 1300);
  assert.ok((expiry.totalMs as number) > 0 && (expiry.maxTickMs as number) > 0);
  assert.ok((expiry.maxTickMs as number) <= (expiry.totalMs as number));
  // Lifetimes are spread over the ticks: no tick may see every connection expire.
  assert.ok((expiry.maxTickExpired as number) < n, `${what}: one tick expired everything`);
}

Deno.test("deno task bench --quick --only conn_table prints the table and writes well-formed JSON", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-bench-" });
  const out = `${dir}/nested/latest.json`;
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "bench", "--quick", "--only", "conn_table", "--out", out],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(r.stdout);
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, `${stdout}\n${stderr}`);

    assert.match(stdout, /^machine: \d+ cores, /m);
    assert.match(stdout, /^conn_table: /m);
    assert.match(stdout, /^size\s+impl\s+B\/conn idle\s+B\/conn bare\s+own B\/conn\s+inserts/m);
    for (const size of ["2k", "20k"]) {
      for (const impl of ["table", "Map", "ratio"]) {
        assert.match(stdout, new RegExp(`^${size}\\s+${impl}\\s+\\S`, "m"), `${size} ${impl}`);
      }
    }
    assert.match(stdout, /^target: 1M connections in <= 160\.0 MiB .*: NOT MEASURED/m);
    assert.match(stdout, /^targets: 0 of 0 measured passed$/m);

    const json = JSON.parse(await Deno.readTextFile(out));
    assert.ok(Number.isFinite(Date.parse(json.date)), `date ${json.date}`);
    assert.equal(json.quick, true);
    assert.ok(json.machine.cores >= 1);
    assert.equal(typeof json.machine.deno, "string");
    assert.deepEqual(Object.keys(json.benchmarks), ["conn_table"]);
    const bench = json.benchmarks.conn_table;
    assert.ok(assertAllFinite(bench, "conn_table") > 50, "too few figures");
    assert.ok(bench.durationMs > 0);
    assert.deepEqual(bench.sizes.map((s: { n: number }) => s.n), QUICK_SIZES);
    for (const s of bench.sizes) {
      assertSample(s.table, "table", s.n);
      assertSample(s.map, "map", s.n);
      for (const [k, v] of Object.entries(s.ratios as Record<string, number>)) {
        if (k.endsWith("PerSec") || k === "maxTickMs") assert.ok(v > 0, `ratio ${k} = ${v}`);
      }
      // The table's arrays are exact: its tuple fields alone take 40 bytes a connection, and
      // anything over IPVS's 300 would mean the arrays are sized wrongly.
      const perConn = s.table.ownBytes / s.n;
      assert.ok(perConn >= 40 && perConn <= 300, `table own bytes per connection ${perConn}`);
    }
    assert.equal(bench.targets.length, 1);
    assert.equal(bench.targets[0].measured, false);
    assert.equal(bench.target.measured, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench flags: --quick, --only NAME, --out PATH; unknown ones are refused", () => {
  assert.deepEqual(parseRunArgs([]), {
    quick: false,
    only: undefined,
    out: DEFAULT_OUT,
    seconds: undefined,
  });
  assert.ok(DEFAULT_OUT.endsWith("/bench/results/latest.json"));
  assert.deepEqual(
    parseRunArgs(["--quick", "--only", "conn_table", "--out=/tmp/x.json", "--seconds", "3"]),
    { quick: true, only: "conn_table", out: "/tmp/x.json", seconds: 3 },
  );
  assert.deepEqual(BENCHMARKS.map((b) => b.name), ["conn_table", "tun_io", "forwarding"]);
  assert.throws(
    () => parseRunArgs(["--only", "nope"]),
    /unknown benchmark nope; known: conn_table, tun_io, forwarding/,
  );
  assert.throws(() => parseRunArgs(["--seconds", "0"]), /--seconds must be a whole number/);
  assert.throws(() => parseRunArgs(["--seconds", "1.5"]), /--seconds must be a whole number/);
  assert.equal(chartPathFor("/r/latest.json"), "/r/latest.png");
  assert.throws(() => parseRunArgs(["--only"]), /--only needs a value/);
  assert.throws(() => parseRunArgs(["--fast"]), /unknown argument --fast/);
});

Deno.test("formatColumns aligns the first column left and the others right", () => {
  assert.deepEqual(formatColumns(["size", "rate"], [["10k", "5M/s"], ["1M", "300k/s"]]), [
    "size    rate",
    "----  ------",
    "10k     5M/s",
    "1M    300k/s",
  ]);
});

Deno.test("a benchmark that cannot run is reported, fails the run, and leaves valid JSON", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-bench-" });
  const original = forwardingBenchmark.run;
  const log = console.log;
  const printed: string[] = [];
  forwardingBenchmark.run = () => Promise.reject(new Error("iperf3 is missing"));
  console.log = (...args: unknown[]) => printed.push(args.join(" "));
  try {
    const code = await main(["--only", "forwarding", "--out", `${dir}/r.json`]);
    assert.equal(code, 1);
    assert.ok(printed.some((l) => l.includes("forwarding: could not run: iperf3 is missing")));
    assert.ok(
      printed.some((l) => /^targets: 0 of 1 measured passed — FAIL: forwarding ran/.test(l)),
    );
    const json = JSON.parse(await Deno.readTextFile(`${dir}/r.json`));
    assert.equal(json.benchmarks.forwarding.error, "iperf3 is missing");
  } finally {
    forwardingBenchmark.run = original;
    console.log = log;
    await Deno.remove(dir, { recursive: true });
  }
});
