/**
 * Unit tests of the IPVS rate estimator and of the per-service/per-real counters and rates built
 * on it. Expected values are worked out by hand from the kernel's arithmetic: every 2 s the
 * interval's count is scaled (<< 9 for counts: 2^10 fixed point, halved for the 2 s; << 4 for bytes:
 * 2^5, halved), the average moves by (rate - avg) >> 2, and a read rounds with +0x1FF >> 10 or
 * +0xF >> 5.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Engine } from "../../dataplane/engine.ts";
import { Rate, RATE_INTERVAL_MS, RateEstimator } from "../../dataplane/stats/rate_estimator.ts";
import { ServiceStats } from "../../dataplane/stats/service_stats.ts";
import { PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { CLIENT, dataplaneSpec, service, VIP } from "../fixtures/dataplane_specs.ts";
import { udp } from "../fixtures/packet_builders.ts";

/** Feeds `perInterval` new packets to row 0 for each of `intervals` samples; returns the reads. */
function steady(e: RateEstimator, perInterval: number, intervals: number, start = 0): number[] {
  const reads: number[] = [];
  let count = start;
  for (let i = 0; i < intervals; i++) {
    count += perInterval;
    e.sample(0, 0, count, 0, 0, 0);
    reads.push(e.rate(0, Rate.IN_PPS));
  }
  return reads;
}

Deno.test("estimator: a steady 1000 pps converges to 1000 along the kernel's sequence", () => {
  const e = new RateEstimator(1);
  // 2000 packets a sample: rate = 2000 << 9 = 1024000.
  // avg: 1024000 >> 2 = 256000 → (256000 + 511) >> 10 = 250
  //      256000 + (768000 >> 2) = 448000 → 437
  //      448000 + (576000 >> 2) = 592000 → 578
  //      592000 + (432000 >> 2) = 700000 → 684
  //      700000 + (324000 >> 2) = 781000 → 763
  const reads = steady(e, 2000, 40);
  assert.deepEqual(reads.slice(0, 5), [250, 437, 578, 684, 763]);
  assert.equal(e.scaled(0, Rate.IN_PPS), 1023988, "the average after 40 samples");
  // The average stays within 4 of the rate (the shift stops moving it), read back as 1000.
  assert.ok(reads.slice(26).every((r) => r === 1000), `reads: ${reads.slice(20)}`);
  assert.equal(reads[25], 999);
  assert.deepEqual(steady(e, 2000, 100, 80000).slice(-1), [1000]);
  // Other rates of the row did not move.
  assert.equal(e.rate(0, Rate.CPS), 0);
  assert.equal(e.rate(0, Rate.OUT_PPS), 0);
});

Deno.test("estimator: a step up and down follows the EWMA, rounding down on the way down", () => {
  const e = new RateEstimator(1);
  // 100 pps: 200 a sample, rate 102400.
  const up = steady(e, 200, 8);
  assert.deepEqual(up, [25, 44, 58, 68, 76, 82, 87, 90]);
  assert.equal(e.scaled(0, Rate.IN_PPS), 92148);
  // Traffic stops: rate 0. (0 - 92148) >> 2 = -23037 → 69111; then (0 - 69111) >> 2 is
  // -17277.75 rounded down to -17278 → 51833 (a truncating division would leave 51834).
  const down = steady(e, 0, 4, 1600);
  assert.equal(e.scaled(0, Rate.IN_PPS), 29155);
  assert.deepEqual(down, [67, 51, 38, 28]);
});

Deno.test("estimator: bytes are scaled by 2^5 and each rate is independent", () => {
  const e = new RateEstimator(3);
  // Row 2: 1.5 MB/s in, 3000000 bytes a sample: 3000000 << 4 = 48000000, avg 12000000,
  // read (12000000 + 15) >> 5 = 375000; then 21000000 → 656250; then 27750000 → 867187.
  let bytes = 0;
  const reads: number[] = [];
  for (let i = 0; i < 3; i++) {
    bytes += 3_000_000;
    e.sample(2, 10 * (i + 1), 0, 0, bytes, 0);
    reads.push(e.rate(2, Rate.IN_BPS));
  }
  assert.deepEqual(reads, [375000, 656250, 867187]);
  // 10 connections a sample: 5120 → 1280, 2240, 2960 → reads 1, 2, 3.
  assert.equal(e.scaled(2, Rate.CPS), 2960);
  assert.equal(e.rate(2, Rate.CPS), 3);
  // Rows 0 and 1 saw nothing.
  for (let which = 0; which < 5; which++) {
    assert.equal(e.rate(0, which), 0);
    assert.equal(e.rate(1, which), 0);
  }
});

Deno.test("estimator: reset zeroes the averages and measures the next interval from there", () => {
  const e = new RateEstimator(1);
  steady(e, 2000, 10);
  assert.ok(e.rate(0, Rate.IN_PPS) > 900);
  // Counters stand at 20000 when zeroed; without the reset the next sample would see 2000 more.
  e.reset(0, 0, 20000, 0, 0, 0);
  assert.equal(e.rate(0, Rate.IN_PPS), 0);
  e.sample(0, 0, 22000, 0, 0, 0);
  assert.equal(e.rate(0, Rate.IN_PPS), 250);
});

// --- ServiceStats over a running engine --------------------------------------------------------

/** Two UDP services on VIP, dns (53) and other (54), both with REAL1 and REAL2 on 5353. */
function spec() {
  return dataplaneSpec([
    service("dns", PROTO_UDP, 53, 5353),
    service("other", PROTO_UDP, 54, 5353),
  ], 4096);
}

/** A UDP datagram of 20 + 8 + 12 = 40 bytes with a valid checksum. */
function datagram(src: number, sport: number, dst: number, dport: number): Uint8Array {
  return udp(src, sport, dst, dport, 12);
}

/** `n` one-request, one-reply UDP exchanges with the dns service from new client ports. */
function exchanges(engine: Engine, n: number, firstPort: number): void {
  for (let i = 0; i < n; i++) {
    const port = firstPort + i;
    const q = datagram(CLIENT, port, VIP, 53);
    assert.equal(engine.process(q, 0, q.length), 40);
    const real = (q[16] << 24 | q[17] << 16 | q[18] << 8 | q[19]) >>> 0;
    const a = datagram(real, 5353, CLIENT, port);
    assert.equal(engine.process(a, 0, a.length), 40);
  }
}

Deno.test("service stats: counters per real, sums per service, rates every 2 s", () => {
  const engine = new Engine(spec());
  const stats = new ServiceStats(engine.services);
  const t0 = 10_000;
  assert.equal(stats.tick(t0), false, "the first tick only starts the schedule");
  assert.equal(stats.untilNextSample(t0), RATE_INTERVAL_MS);
  exchanges(engine, 100, 20000);
  assert.equal(stats.tick(t0 + 1999), false);
  assert.equal(stats.tick(t0 + 2000), true);

  const [dns, other] = stats.snapshot();
  assert.equal(dns.name, "dns");
  assert.equal(dns.protocol, "UDP");
  assert.equal(dns.vip, "192.168.1.31");
  // rr: 50 connections each, one packet each way of 40 bytes.
  for (const [i, real] of dns.reals.entries()) {
    assert.equal(real.address, i === 0 ? "10.10.10.11" : "10.10.10.12");
    assert.deepEqual(
      [real.conns, real.inPkts, real.outPkts, real.inBytes, real.outBytes],
      [50, 50, 50, 2000, 2000],
    );
    // 50 a sample: 25600 >> 2 = 6400 → (6400 + 511) >> 10 = 6; bytes 2000 << 4 = 32000 >> 2 =
    // 8000 → (8000 + 15) >> 5 = 250.
    assert.deepEqual(
      [real.cps, real.inPps, real.outPps, real.inBps, real.outBps],
      [6, 6, 6, 250, 250],
    );
  }
  assert.deepEqual(
    [dns.conns, dns.inPkts, dns.outPkts, dns.inBytes, dns.outBytes],
    [100, 100, 100, 4000, 4000],
  );
  // The service's own estimator: 100 a sample → 12800 → 12; 4000 bytes → 16000 → 500.
  assert.deepEqual([dns.cps, dns.inPps, dns.outPps, dns.inBps, dns.outBps], [12, 12, 12, 500, 500]);
  assert.deepEqual([other.conns, other.inPkts, other.cps], [0, 0, 0]);

  // A stall: the next sample takes everything since the last one as one interval, and the
  // schedule restarts from the late tick instead of catching up in a burst.
  exchanges(engine, 100, 30000);
  assert.equal(stats.tick(t0 + 9000), true);
  assert.equal(stats.untilNextSample(t0 + 9000), RATE_INTERVAL_MS);
  assert.equal(stats.tick(t0 + 10_999), false);
  // 12800 + ((51200 - 12800) >> 2) = 22400 → 22.
  assert.equal(stats.snapshot()[0].cps, 22);
});

Deno.test("service stats: zeroing one service or all resets counters and rates", () => {
  const engine = new Engine(spec());
  const stats = new ServiceStats(engine.services);
  stats.tick(0);
  exchanges(engine, 40, 20000);
  stats.tick(2000);
  assert.equal(stats.snapshot()[0].conns, 40);
  assert.equal(stats.snapshot()[0].cps, 5, "40 a sample: 20480 >> 2 = 5120 → 5");

  stats.zero(0);
  const zeroed = stats.snapshot()[0];
  assert.deepEqual(
    [zeroed.conns, zeroed.inPkts, zeroed.outBytes, zeroed.cps, zeroed.inPps, zeroed.outBps],
    [0, 0, 0, 0, 0, 0],
  );
  assert.ok(zeroed.reals.every((r) => r.conns === 0 && r.inPkts === 0 && r.inPps === 0));
  // Connections live on: their packets count again from zero.
  exchanges(engine, 20, 20000);
  stats.tick(4000);
  const after = stats.snapshot()[0];
  assert.deepEqual([after.conns, after.inPkts, after.outPkts], [0, 20, 20]);
  assert.equal(after.inPps, 2, "20 a sample: 10240 >> 2 = 2560 → 2");
  assert.equal(after.cps, 0);

  stats.zeroAll();
  assert.ok(stats.snapshot().every((s) => s.inPkts === 0 && s.inPps === 0));
});
