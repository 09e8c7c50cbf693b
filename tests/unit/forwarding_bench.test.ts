/**
 * The forwarding benchmark's pieces that need no lab: parsing iperf3, wrk and /proc output, the
 * latency quantiles and rate, the ratio tables and goals, the peers' configurations, and the PNG
 * encoder with its chart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";
import { renderBarChart } from "../../bench/bar_chart.ts";
import {
  addDirectBaseline,
  bestLatencyRun,
  latencyRateFor,
  type PathResult,
} from "../../bench/forwarding.ts";
import { applianceConfig, PATH_NAMES } from "../../bench/forwarding_paths.ts";
import {
  FIGURES,
  figureTable,
  goals,
  LATENCY_FLOOR_MS,
  ratio,
} from "../../bench/forwarding_report.ts";
import { quantile } from "../../bench/latency_client.ts";
import { crc32, encodePng, PNG_SIGNATURE, pngSize } from "../../bench/png.ts";
import { parseConfig } from "../../control/config.ts";
import { haproxyConfig } from "../../lab/haproxy.ts";
import { childCpuSeconds, parseIperf3Report } from "../../lab/iperf3.ts";
import { nftDnatRuleset } from "../../lab/nft_dnat.ts";
import { nginxConfig } from "../../lab/nginx.ts";
import { parseProcStat } from "../../lab/proc_cpu.ts";
import { parseWrkOutput } from "../../lab/wrk.ts";

Deno.test("iperf3 reports: TCP from sum_received, UDP from the server's sum", () => {
  const tcp = parseIperf3Report({
    end: {
      sum_received: { seconds: 2, bytes: 2.5e9, bits_per_second: 1e10 },
      sum: { seconds: 2, bytes: 2.6e9, bits_per_second: 1.04e10 },
    },
  }, 1.5);
  assert.deepEqual(tcp, { seconds: 2, bytes: 2.5e9, bitsPerSecond: 1e10, clientCpuSeconds: 1.5 });
  const udp = parseIperf3Report({
    end: {
      sum: {
        seconds: 2,
        bytes: 6400,
        bits_per_second: 25600,
        packets: 100,
        lost_packets: 20,
      },
    },
  }, 0);
  assert.equal(udp.receivedPacketsPerSecond, 40);
  assert.equal(udp.lostPackets, 20);
  assert.throws(() => parseIperf3Report({ end: {} }, 0), /no receiver summary/);
});

Deno.test("/proc stat lines: own and waited-for children's CPU, comm with spaces", () => {
  const line = "42 (a b) S 1 2 3 0 -1 4194560 1 2 3 4 150 50 300 100 20 0 1 0 5 6 7";
  assert.deepEqual(parseProcStat(line), { cpuSeconds: 2, childrenCpuSeconds: 4 });
  assert.equal(childCpuSeconds(`warning\n${line}\n`), 4);
  assert.equal(parseProcStat("garbage"), null);
  assert.equal(childCpuSeconds(""), 0);
});

Deno.test("wrk output: requests, rate and every kind of error", () => {
  const text = `Running 1s test @ http://10.10.10.11/
  1 threads and 32 connections
  9191 requests in 1.00s, 1.27MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   9190.52
Transfer/sec:      1.27MB
`;
  assert.deepEqual(parseWrkOutput(text), {
    requests: 9191,
    requestsPerSecond: 9190.52,
    errors: 10,
  });
  assert.equal(parseWrkOutput("unable to connect"), null);
});

Deno.test("latency: nearest-rank quantiles; the rate is half of NAT's peak, or of a slower path's", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(sorted, 0.5), 50);
  assert.equal(quantile(sorted, 0.99), 99);
  assert.equal(quantile([7], 0.99), 7);
  assert.equal(quantile([], 0.5), 0);
  assert.equal(latencyRateFor(8000, 20000), 4000);
  assert.equal(latencyRateFor(8000, 3000), 1500);
  assert.equal(latencyRateFor(undefined, undefined), 50);
  assert.equal(latencyRateFor(40, 1000), 50);
  const run = (p99Ms: number) => ({
    rate: 1,
    started: 1,
    completed: 1,
    failed: 0,
    skipped: 0,
    p50Ms: 1,
    p90Ms: 1,
    p99Ms,
    maxMs: p99Ms,
  });
  assert.equal(bestLatencyRun([run(9), run(4), run(4.5)]).p99Ms, 4);
  assert.throws(() => bestLatencyRun([]), /no latency run/);
});

/** A path result with the figures the tests need. */
function result(name: string, gbps: number, kpps: number | undefined, p99: number): PathResult {
  const bulk = {
    streams: 1,
    seconds: 1,
    bytes: gbps * 1.25e8,
    gbitPerSecond: gbps,
    cpuSeconds: 1,
    forwarderCpuSeconds: 0,
    cpuSecondsPerGB: 1 / (gbps * 0.125),
  };
  return {
    name: name as PathResult["name"],
    description: name,
    bulk1: bulk,
    bulk8: { ...bulk, streams: 8 },
    udp: kpps === undefined ? undefined : {
      payloadBytes: 64,
      seconds: 1,
      sentPackets: kpps * 2000,
      lostPackets: kpps * 1000,
      lostPercent: 50,
      receivedPacketsPerSecond: kpps * 1000,
    },
    conns: { concurrency: 32, seconds: 1, requests: 1000, requestsPerSecond: 1000, errors: 0 },
    latency: {
      seconds: 1,
      runs: [],
      rate: 500,
      started: 500,
      completed: 500,
      failed: 0,
      skipped: 0,
      p50Ms: p99 / 2,
      p90Ms: p99,
      p99Ms: p99,
      maxMs: p99,
    },
    errors: [],
  };
}

Deno.test("figure tables: ratios to nft and HAProxy, n/a where a peer has no value", () => {
  const results = [
    result("haproxy", 5, undefined, 1.2),
    result("nat", 1, 50, 1.05),
    result("nft", 20, 100, 1.02),
    result("direct", 25, 110, 1),
  ];
  addDirectBaseline(results);
  const bulk = figureTable(FIGURES.find((f) => f.key === "bulk1Gbps")!, results);
  assert.deepEqual(bulk.rows.map((r) => r.path), ["direct", "nft", "haproxy", "nat"]);
  assert.deepEqual(bulk.rows.find((r) => r.path === "nat"), {
    path: "nat",
    value: 1,
    vsNft: 0.05,
    vsHaproxy: 0.2,
  });
  const udp = figureTable(FIGURES.find((f) => f.key === "udp64Kpps")!, results);
  assert.deepEqual(udp.rows.find((r) => r.path === "haproxy"), {
    path: "haproxy",
    value: null,
    vsNft: null,
    vsHaproxy: null,
  });
  assert.equal(udp.rows.find((r) => r.path === "nat")!.vsHaproxy, null);
  assert.equal(ratio(1, 0), null);
  assert.equal(ratio(undefined, 2), null);

  const tables = FIGURES.map((f) => figureTable(f, results));
  const checks = goals(tables, false);
  const byName = (d: string) => checks.find((c) => c.description.startsWith(d))!;
  const bulkVsNft = byName("bulk TCP (1 stream) through NAT >= 0.9x nft");
  assert.equal(bulkVsNft.goal, true);
  assert.equal(bulkVsNft.measured, true);
  assert.equal(bulkVsNft.pass, false);
  assert.match(bulkVsNft.detail, /^0\.050x: nat 1\.00 vs nft 20\.00 Gbit\/s$/);
  // Added p99: NAT 0.05 ms, nft 0.02 ms — both at the noise floor, so the ratio is 1 and passes.
  const latency = byName("added p99 latency");
  assert.equal(latency.pass, true);
  assert.match(latency.detail, new RegExp(`values under ${LATENCY_FLOOR_MS} ms count`));
  assert.equal(byName("fullnat bulk TCP, 1 stream").measured, false);
  assert.ok(goals(tables, true).every((c) => !c.measured));
});

Deno.test("the peers' configurations stay inside the lab", () => {
  const nginx = nginxConfig("/tmp/tunvs-lab/x", { port: 80 });
  for (const path of nginx.matchAll(/\s(\/[\w/.-]+)/g)) {
    assert.ok(path[1].startsWith("/tmp/tunvs-lab/x"), `nginx uses ${path[1]}`);
  }
  assert.match(nginx, /^daemon off;$/m);
  assert.match(nginx, /worker_processes 1;/);
  const haproxy = haproxyConfig({ vip: "192.168.1.31", real: "10.10.10.11", ports: [80, 5201] });
  assert.match(haproxy, /nbthread 2/);
  assert.match(haproxy, /bind 192\.168\.1\.31:5201\n {2}server real 10\.10\.10\.11:5201/);
  const nft = nftDnatRuleset("192.168.1.31", "10.10.10.11", [5201, 80]);
  assert.match(nft, /ip daddr 192\.168\.1\.31 udp dport \{ 5201, 80 \} dnat to 10\.10\.10\.11/);
});

Deno.test("every tunvs path's configuration is valid", () => {
  const topo = { vip: "192.168.1.31", realAddr: "10.10.10.11" };
  for (const name of PATH_NAMES.filter((n) => !["direct", "nft", "haproxy"].includes(n))) {
    const [forward, synproxy] = name.split("+") as ["nat" | "fullnat" | "tunnel", string?];
    const config = parseConfig(applianceConfig(topo, forward, synproxy !== undefined), name);
    assert.equal(config.services.length, 3, name);
    for (const svc of config.services) {
      assert.equal(svc.forward, forward, name);
      assert.equal(svc.synproxy === true, synproxy !== undefined && svc.protocol === "tcp", name);
    }
  }
  // The two FULLNAT paths leave from different local addresses: neither meets the other's
  // TIME_WAIT sockets on the real.
  const pool = (synproxy: boolean) =>
    /local_addresses: \[([\d.]+)\]/.exec(applianceConfig(topo, "fullnat", synproxy))![1];
  assert.notEqual(pool(false), pool(true));
});

Deno.test("PNG: CRC-32, signature, IHDR size, pixels that inflate back", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const rgb = new Uint8Array(3 * 2 * 3).map((_, i) => i);
  const png = encodePng(3, 2, rgb);
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  assert.deepEqual(pngSize(png), { width: 3, height: 2 });
  // IDAT starts after signature (8) + IHDR chunk (25); its data after its 8-byte header.
  const idatLength = new DataView(png.buffer).getUint32(33);
  assert.equal(String.fromCharCode(...png.subarray(37, 41)), "IDAT");
  const raw = new Uint8Array(inflateSync(png.subarray(41, 41 + idatLength)));
  assert.deepEqual([...raw], [0, ...rgb.subarray(0, 9), 0, ...rgb.subarray(9)]);
  assert.throws(() => encodePng(3, 3, rgb), /18 bytes for 3x3/);
  assert.equal(pngSize(new Uint8Array(40)), null);

  const chart = renderBarChart("title", [{
    title: "panel",
    bars: [
      { label: "nft", value: 2, text: "2", color: [0, 0, 255] },
      { label: "haproxy", value: undefined, text: "n/a", color: [255, 0, 0] },
    ],
  }]);
  assert.deepEqual(pngSize(chart.png), { width: chart.width, height: chart.height });
});
