/**
 * `deno task bench --quick` builds the namespace lab, measures every quick path and writes
 * well-formed output: a table per figure with every path, the JSON with finite, positive figures
 * and ratios that agree with them, and a PNG whose header states the size the JSON names. No
 * performance figure is asserted: a one-second run on a shared machine is not quotable.
 *
 * @module
 */

import assert from "node:assert/strict";
import { QUICK_PATHS } from "../../bench/forwarding.ts";
import { FIGURES, type FigureTable } from "../../bench/forwarding_report.ts";
import { pngSize } from "../../bench/png.ts";
import { e2eOptions } from "./harness.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const opts = e2eOptions("the quick forwarding benchmark");

/** Figures whose value may be zero or negative: the direct path's own added latency is 0, and
 * another path's may dip below the direct one's within the noise. */
const SIGNED = new Set(["addedP99Ms"]);

/** Asserts `ratio` is value ÷ peer (to rounding), or null when there is nothing to divide by. */
function assertRatio(
  ratio: number | null,
  value: number | null,
  peer: number | null | undefined,
  what: string,
): void {
  if (value === null || peer === null || peer === undefined || !(peer > 0)) {
    assert.equal(ratio, null, `${what} should be n/a`);
    return;
  }
  assert.ok(ratio !== null && Number.isFinite(ratio), `${what} = ${ratio}`);
  assert.ok(Math.abs(ratio - value / peer) <= 1e-9 * Math.max(1, Math.abs(ratio)), what);
}

Deno.test(
  { name: "deno task bench --quick: forwarding paths, tables, JSON, PNG", ...opts },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "tunvs-bench-quick-" });
    const out = `${dir}/results/latest.json`;
    try {
      const started = performance.now();
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["task", "--quiet", "bench", "--quick", "--out", out],
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const seconds = (performance.now() - started) / 1000;
      const stdout = new TextDecoder().decode(r.stdout);
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, `${stdout}\n${stderr}`);
      assert.ok(seconds < 120, `the quick run took ${seconds.toFixed(0)} s`);

      // The printed tables: one per figure, a row for every quick path.
      for (const f of FIGURES) {
        const at = stdout.indexOf(`${f.title} (${f.unit}, `);
        assert.ok(at >= 0, `no table for ${f.title}`);
        const table = stdout.slice(at).split("\n\n")[0];
        assert.match(table, /^path\s+value\s+x nft\s+x haproxy$/m);
        for (const path of QUICK_PATHS) {
          const escaped = path.replace(/[+]/g, "\\+");
          assert.match(table, new RegExp(`^${escaped}\\s+\\S`, "m"), `${f.key}: ${path}`);
        }
      }
      assert.match(stdout, /^target: every path measured every figure: PASS/m);
      assert.match(
        stdout,
        /^goal: bulk TCP \(1 stream\) through NAT >= 0\.9x nft DNAT: NOT MEASURED/m,
      );
      assert.match(stdout, /^targets: \d+ of \d+ measured passed$/m);
      assert.match(stdout, /^goals: 0 of 0 measured met/m);

      const json = JSON.parse(await Deno.readTextFile(out));
      assert.equal(json.quick, true);
      assert.deepEqual(Object.keys(json.benchmarks), ["conn_table", "tun_io", "forwarding"]);
      // TUN I/O: both paths measured both ways, with figures and ratios that agree.
      assert.match(stdout, /^tun_io: /m);
      const io = json.benchmarks.tun_io;
      for (const way of ["write", "read"]) {
        const [sys, uring] = [io[way].syscalls.pps, io[way].io_uring.pps];
        assert.ok(sys > 0 && uring > 0, `tun_io ${way}: ${sys} ${uring}`);
        assert.ok(Math.abs(io[way].ratio - uring / sys) < 1e-9, `tun_io ${way} ratio`);
      }
      const fwd = json.benchmarks.forwarding;
      assert.equal(fwd.seconds, 1);
      assert.ok(fwd.latencyRate >= 50);
      // NAT's probe runs at half of NAT's own peak, as every path does unless it is slower.
      assert.equal(fwd.paths.nat.latency.rate, fwd.latencyRate);
      assert.deepEqual(Object.keys(fwd.paths).sort(), [...QUICK_PATHS].sort());
      // Every path had a client address of its own (no TIME_WAIT carried over on the real).
      const clients = Object.values(fwd.paths).map((p) => (p as { clientAddr: string }).clientAddr);
      assert.equal(new Set(clients).size, QUICK_PATHS.length, `client addresses ${clients}`);
      // The appliance's counters come with its path, and only the non-zero ones.
      const counters = Object.values(fwd.paths.nat.applianceCounters as Record<string, number>);
      assert.ok(counters.length > 0 && counters.every((v) => v > 0), "NAT's counters");
      assert.equal(fwd.paths.nft.applianceCounters, undefined);
      for (const [name, p] of Object.entries(fwd.paths) as [string, Record<string, unknown>][]) {
        assert.deepEqual(p.errors, [], `${name} errors`);
        for (const key of ["bulk1", "bulk8", "bulk8Spread", "conns", "connsSpread", "latency"]) {
          assert.ok(p[key], `${name}.${key} missing`);
        }
        assert.equal(p.udp === undefined, name === "haproxy", `${name}.udp`);
        const bulk = p.bulk1 as Record<string, number>;
        assert.ok(bulk.bytes > 0 && bulk.cpuSeconds > 0, `${name} bulk bytes and CPU`);
        assert.ok(
          Math.abs(bulk.cpuSecondsPerGB - bulk.cpuSeconds / (bulk.bytes / 1e9)) < 1e-9,
          `${name} CPU per GB`,
        );
        const latency = p.latency as Record<string, number>;
        assert.ok(latency.completed > 0 && latency.p50Ms <= latency.p99Ms, `${name} latency`);
        assert.equal((p.latency as { runs: unknown[] }).runs.length, 1, `${name}: one quick run`);
      }

      assert.deepEqual(fwd.figures.map((f: FigureTable) => f.key), FIGURES.map((f) => f.key));
      for (const fig of fwd.figures as FigureTable[]) {
        assert.deepEqual(fig.rows.map((row) => row.path).sort(), [...QUICK_PATHS].sort());
        const value = (path: string) => fig.rows.find((row) => row.path === path)?.value;
        for (const row of fig.rows) {
          const what = `${fig.key}/${row.path}`;
          if (row.value === null) {
            assert.ok(fig.key === "udp64Kpps" && row.path === "haproxy", `${what} not measured`);
          } else {
            assert.ok(Number.isFinite(row.value), `${what} = ${row.value}`);
            if (!SIGNED.has(fig.key)) assert.ok(row.value > 0, `${what} = ${row.value}`);
          }
          assertRatio(row.vsNft, row.value, value("nft"), `${what} x nft`);
          assertRatio(row.vsHaproxy, row.value, value("haproxy"), `${what} x haproxy`);
        }
      }
      assert.equal(fwd.targets[0].description, "every path measured every figure");
      assert.equal(fwd.targets[0].pass, true);
      for (const goal of fwd.targets.slice(1)) {
        assert.equal(goal.goal, true);
        assert.equal(goal.measured, false, `${goal.description}: a quick run quotes no goal`);
      }

      // The chart: a PNG beside the JSON, its IHDR stating the size the JSON records.
      assert.equal(fwd.chart.path, `${dir}/results/latest.png`);
      const png = await Deno.readFile(fwd.chart.path);
      const size = pngSize(png);
      assert.ok(size, "not a PNG");
      assert.deepEqual(size, { width: fwd.chart.width, height: fwd.chart.height });
      assert.ok(size.width >= 400 && size.height >= 400, `${size.width}x${size.height}`);
      assert.match(
        stdout,
        new RegExp(`^chart: .*latest\\.png \\(${size.width}x${size.height}\\)$`, "m"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
