/**
 * Unit tests of the IPVS schedulers (rr, wrr, lc, wlc, sed, nq) and of the service table's matching.
 *
 * @module
 */

import assert from "node:assert/strict";
import { RoundRobin } from "../../dataplane/sched/round_robin.ts";
import { WeightedRoundRobin } from "../../dataplane/sched/weighted_round_robin.ts";
import { createScheduler, SCHEDULER_NAMES } from "../../dataplane/sched/registry.ts";
import type { RealSet, Scheduler } from "../../dataplane/sched/scheduler.ts";
import { RealCounter, Service, type ServiceSpec, ServiceTable } from "../../dataplane/service.ts";

/** A RealSet with the given weights (its arrays may be changed in place afterwards). */
function reals(...weights: number[]): RealSet {
  return {
    count: weights.length,
    weight: Int32Array.from(weights),
    active: new Int32Array(weights.length),
    inactive: new Int32Array(weights.length),
    overloaded: new Uint8Array(weights.length),
    addr: Uint32Array.from(weights, (_, i) => 0x0a0a0a0b + i),
    port: new Uint16Array(weights.length).fill(80),
  };
}

/** `n` picks as a string of letters, A for real 0, "-" for none. */
function picks(s: Scheduler, set: RealSet, n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) {
    const r = s.pick(set, 0xc0a80123, 40000 + i, 0xc0a8011f, 80);
    out += r < 0 ? "-" : String.fromCharCode(65 + r);
  }
  return out;
}

function fresh(s: Scheduler, set: RealSet): Scheduler {
  s.reset(set);
  return s;
}

Deno.test("rr cycles evenly through the reals", () => {
  const set = reals(1, 1, 1);
  assert.equal(picks(fresh(new RoundRobin(), set), set, 9), "ABCABCABC");
  // rr ignores how large the weights are, only whether they are 0.
  const uneven = reals(5, 1, 100);
  assert.equal(picks(fresh(new RoundRobin(), uneven), uneven, 6), "ABCABC");
});

Deno.test("rr skips drained reals and resumes after the last pick", () => {
  const set = reals(1, 0, 1, 1);
  const rr = fresh(new RoundRobin(), set);
  assert.equal(picks(rr, set, 6), "ACDACD");
  // Draining the next real in line moves on to the one after it.
  set.weight[0] = 0;
  assert.equal(picks(rr, set, 4), "CDCD");
  set.weight[1] = 1;
  assert.equal(picks(rr, set, 3), "BCD");
  set.weight.fill(0);
  assert.equal(picks(rr, set, 3), "---");
  set.weight[3] = 2;
  assert.equal(picks(rr, set, 2), "DD");
});

Deno.test("rr with no reals, and reset after the set shrank", () => {
  const none = reals();
  assert.equal(picks(fresh(new RoundRobin(), none), none, 2), "--");
  const big = reals(1, 1, 1, 1);
  const rr = fresh(new RoundRobin(), big);
  assert.equal(picks(rr, big, 4), "ABCD");
  const small = reals(1, 1);
  rr.reset(small);
  assert.equal(picks(rr, small, 3), "ABA");
});

Deno.test("wrr 2:1 gives A A B repeating, 20:10 over 30", () => {
  const set = reals(2, 1);
  const wrr = fresh(new WeightedRoundRobin(), set);
  const seq = picks(wrr, set, 30);
  assert.equal(seq, "AAB".repeat(10));
  assert.equal(seq.replaceAll("B", "").length, 20);
});

Deno.test("wrr 4:3:2 matches IPVS's gcd-stepped interleaving", () => {
  // IPVS: cw starts at 0; whenever the index wraps to 0, cw -= gcd (here 1), and from <= 0 it
  // restarts at the max (4). A real is picked when its weight >= cw.
  //   cw=4: A        (B 3, C 2 are below 4)
  //   cw=3: A B      (C below)
  //   cw=2: A B C
  //   cw=1: A B C
  const set = reals(4, 3, 2);
  const wrr = fresh(new WeightedRoundRobin(), set);
  assert.equal(picks(wrr, set, 27), "AABABCABC".repeat(3));
});

Deno.test("wrr steps by the weights' gcd", () => {
  // gcd 2, max 6: cw=6: A; cw=4: A B; cw=2: A B C. The same as 3:2:1.
  const set = reals(6, 4, 2);
  assert.equal(picks(fresh(new WeightedRoundRobin(), set), set, 12), "AABABC".repeat(2));
  const same = reals(3, 2, 1);
  assert.equal(picks(fresh(new WeightedRoundRobin(), same), same, 12), "AABABC".repeat(2));
  // gcd 5 with one real of weight 5 and one of 10: cw=10: B; cw=5: A B.
  const fives = reals(5, 10);
  assert.equal(picks(fresh(new WeightedRoundRobin(), fives), fives, 9), "BAB".repeat(3));
  // Equal weights are plain round robin.
  const equal = reals(7, 7, 7);
  assert.equal(picks(fresh(new WeightedRoundRobin(), equal), equal, 6), "ABCABC");
});

Deno.test("wrr never picks a weight-0 real, and all-zero gives -1", () => {
  // cw=3: A; cw=2: A; cw=1: A C. B (0) and D (0) never.
  const set = reals(3, 0, 1, 0);
  const wrr = fresh(new WeightedRoundRobin(), set);
  const seq = picks(wrr, set, 40);
  assert.equal(seq, "AAAC".repeat(10));
  const zero = reals(0, 0, 0);
  assert.equal(picks(fresh(new WeightedRoundRobin(), zero), zero, 3), "---");
  const none = reals();
  assert.equal(picks(fresh(new WeightedRoundRobin(), none), none, 2), "--");
});

Deno.test("wrr follows weight changes after reset, restarting the sequence", () => {
  const set = reals(2, 1);
  const wrr = fresh(new WeightedRoundRobin(), set);
  assert.equal(picks(wrr, set, 4), "AABA");
  set.weight[0] = 1;
  set.weight[1] = 3;
  wrr.reset(set);
  // cw=3: B; cw=2: B; cw=1: A B.
  assert.equal(picks(wrr, set, 8), "BBAB".repeat(2));
  set.weight[1] = 0;
  wrr.reset(set);
  assert.equal(picks(wrr, set, 3), "AAA");
  set.weight[0] = 0;
  wrr.reset(set);
  assert.equal(picks(wrr, set, 2), "--");
  // Draining to zero and coming back.
  set.weight[0] = 1;
  set.weight[1] = 1;
  wrr.reset(set);
  assert.equal(picks(wrr, set, 4), "ABAB");
});

Deno.test("wrr long-run shares match the weights exactly over whole cycles", () => {
  const weights = [5, 3, 0, 8, 1, 2];
  const set = reals(...weights);
  const wrr = fresh(new WeightedRoundRobin(), set);
  const total = weights.reduce((a, b) => a + b, 0);
  const counts = new Array(weights.length).fill(0);
  for (let i = 0; i < total * 50; i++) counts[wrr.pick(set, 1, i, 2, 80)]++;
  assert.deepEqual(counts, weights.map((w) => w * 50));
});

Deno.test("the registry makes a fresh scheduler per name", () => {
  assert.deepEqual([...SCHEDULER_NAMES], [
    "rr",
    "wrr",
    "lc",
    "wlc",
    "sed",
    "nq",
    "lblc",
    "lblcr",
    "dh",
    "sh",
    "fo",
    "ovf",
    "mh",
  ]);
  for (const name of SCHEDULER_NAMES) {
    const a = createScheduler(name);
    const b = createScheduler(name);
    assert.equal(a.name, name);
    assert.notEqual(a, b);
  }
  assert.ok(createScheduler("rr") instanceof RoundRobin);
  assert.ok(createScheduler("wrr") instanceof WeightedRoundRobin);
});

// --- ServiceTable ---------------------------------------------------------------------------------

const TCP = 6;
const UDP = 17;
const VIP1 = 0xc0a8011f; // 192.168.1.31
const VIP2 = 0xc0a80120; // 192.168.1.32

function spec(protocol: number, vip: number, port: number, name = `${protocol}/${port}`) {
  return {
    name,
    protocol,
    vip,
    port,
    scheduler: "rr",
    schedulerFlags: { port: false, fallback: false },
    forward: "nat",
    reals: [{ addr: 0x0a0a0a0b, port: 8080, weight: 1, upperThreshold: 0, lowerThreshold: 0 }],
  } satisfies ServiceSpec;
}

Deno.test("ServiceTable matches by protocol, VIP and port", () => {
  const table = new ServiceTable([
    spec(TCP, VIP1, 80),
    spec(UDP, VIP1, 53),
    spec(TCP, VIP1, 443),
    spec(TCP, VIP2, 80),
    spec(UDP, VIP1, 80),
  ]);
  assert.equal(table.match(TCP, VIP1, 80), 0);
  assert.equal(table.match(UDP, VIP1, 53), 1);
  assert.equal(table.match(TCP, VIP1, 443), 2);
  assert.equal(table.match(TCP, VIP2, 80), 3);
  assert.equal(table.match(UDP, VIP1, 80), 4);
  // Other port, protocol or VIP.
  assert.equal(table.match(TCP, VIP1, 81), -1);
  assert.equal(table.match(TCP, VIP1, 53), -1);
  assert.equal(table.match(UDP, VIP2, 80), -1);
  assert.equal(table.match(1, VIP1, 80), -1);
  assert.equal(table.match(TCP, VIP1 + 2, 80), -1);
  assert.equal(table.match(TCP, 0, 80), -1);
  assert.equal(table.match(TCP, VIP2, 443), -1);
  assert.equal(table.services[3].spec.vip, VIP2);
  assert.equal(table.services[3].index, 3);
});

Deno.test("ServiceTable.isVip knows exactly the VIPs", () => {
  const table = new ServiceTable([spec(TCP, VIP1, 80), spec(UDP, VIP1, 53), spec(TCP, 0, 1)]);
  assert.equal(table.isVip(VIP1), true);
  assert.equal(table.isVip(0), true);
  assert.equal(table.isVip(VIP2), false);
  assert.equal(table.isVip(0x0a0a0a0b), false, "a real's address is no VIP");
  assert.equal(table.isVip(0xffffffff), false);
  const empty = new ServiceTable([]);
  assert.equal(empty.isVip(VIP1), false);
  assert.equal(empty.isVip(0), false);
  assert.equal(empty.match(TCP, VIP1, 80), -1);
});

Deno.test("ServiceTable with many services finds each one and nothing else", () => {
  const specs: ServiceSpec[] = [];
  // 600 services over 40 VIPs that differ in one bit here and there, both protocols.
  for (let i = 0; i < 600; i++) {
    specs.push(spec(i % 3 ? TCP : UDP, 0x0a000000 + (i % 40) * 0x101, 1000 + Math.floor(i / 3)));
  }
  const table = new ServiceTable(specs);
  const vips = new Set(specs.map((s) => s.vip));
  assert.equal(vips.size, 40);
  specs.forEach((s, i) => {
    assert.equal(table.match(s.protocol, s.vip, s.port), i, s.name);
    assert.equal(table.isVip(s.vip), true);
  });
  const key = new Set(specs.map((s) => `${s.protocol} ${s.vip} ${s.port}`));
  let misses = 0;
  for (let vipIndex = 0; vipIndex < 45; vipIndex++) {
    const vip = 0x0a000000 + vipIndex * 0x101;
    assert.equal(table.isVip(vip), vips.has(vip));
    for (let port = 990; port < 1210; port++) {
      for (const proto of [TCP, UDP]) {
        const hit = table.match(proto, vip, port);
        if (key.has(`${proto} ${vip} ${port}`)) {
          const s = table.services[hit].spec;
          assert.deepEqual([s.protocol, s.vip, s.port], [proto, vip, port]);
        } else {
          assert.equal(hit, -1);
          misses++;
        }
      }
    }
  }
  assert.ok(misses > 10000);
});

Deno.test("a service never matches the other protocol, even where their slots collide", () => {
  // One service per table: across many tables, some UDP probes land on the TCP service's slot.
  for (let i = 0; i < 2000; i++) {
    const vip = (0x0a000000 + i * 7919) >>> 0;
    const table = new ServiceTable([spec(TCP, vip, 80 + (i % 50))]);
    assert.equal(table.match(TCP, vip, 80 + (i % 50)), 0);
    assert.equal(table.match(UDP, vip, 80 + (i % 50)), -1, `vip ${vip}`);
    assert.equal(table.match(1, vip, 80 + (i % 50)), -1, `vip ${vip}`);
  }
});

Deno.test("Service compiles reals into arrays and keeps per-real counters apart", () => {
  const s = new Service(
    {
      ...spec(TCP, VIP1, 80),
      scheduler: "wrr",
      reals: [
        { addr: 0x0a0a0a0b, port: 8080, weight: 2, upperThreshold: 0, lowerThreshold: 0 },
        { addr: 0x0a0a0a0c, port: 8081, weight: 1, upperThreshold: 0, lowerThreshold: 0 },
      ],
    },
    7,
  );
  assert.equal(s.index, 7);
  assert.equal(s.count, 2);
  assert.deepEqual([...s.addr], [0x0a0a0a0b, 0x0a0a0a0c]);
  assert.deepEqual([...s.port], [8080, 8081]);
  assert.deepEqual([...s.weight], [2, 1]);
  assert.equal(s.scheduler.name, "wrr");
  // The compiled scheduler is reset for the weights already.
  assert.equal(picks(s.scheduler, s, 6), "AABAAB");
  s.count1(1, RealCounter.IN_BYTES, 100);
  s.count1(1, RealCounter.IN_BYTES, 23);
  s.count1(0, RealCounter.OUT_PACKETS, 1);
  assert.equal(s.counter(1, RealCounter.IN_BYTES), 123);
  assert.equal(s.counter(0, RealCounter.IN_BYTES), 0);
  assert.equal(s.counter(0, RealCounter.OUT_PACKETS), 1);
  assert.equal(s.counter(1, RealCounter.OUT_PACKETS), 0);
});

/** A RealSet with weights and [active, inactive] connection counts per real. */
function loaded(weights: number[], conns: [number, number][]): RealSet {
  const set = reals(...weights);
  conns.forEach(([a, i], r) => {
    set.active[r] = a;
    set.inactive[r] = i;
  });
  return set;
}

/** Picks `n` times, counting each pick as a new inactive connection on its real, as the engine does. */
function schedule(s: Scheduler, set: RealSet, n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) {
    const r = s.pick(set, 0xc0a80123, 40000 + i, 0xc0a8011f, 80);
    if (r >= 0) set.active[r]++;
    out += r < 0 ? "-" : String.fromCharCode(65 + r);
  }
  return out;
}

Deno.test("lc: the lowest active×256 + inactive wins, weights only gate", () => {
  const lc = createScheduler("lc");
  // 1 active (256) outweighs 255 inactive, but not 257.
  assert.equal(lc.pick(loaded([1, 1], [[1, 0], [0, 255]]), 0, 0, 0, 0), 1);
  assert.equal(lc.pick(loaded([1, 1], [[1, 0], [0, 257]]), 0, 0, 0, 0), 0);
  // A big weight does not attract more connections under lc; weight 0 drains.
  assert.equal(lc.pick(loaded([100, 1], [[3, 0], [2, 0]]), 0, 0, 0, 0), 1);
  assert.equal(lc.pick(loaded([1, 0], [[9, 0], [0, 0]]), 0, 0, 0, 0), 0);
  assert.equal(lc.pick(loaded([0, 0], [[0, 0], [0, 0]]), 0, 0, 0, 0), -1);
  // Ties go to the first real; under steady load it fills the reals evenly.
  assert.equal(schedule(lc, loaded([1, 1, 1], [[0, 0], [0, 0], [0, 0]]), 6), "ABCABC");
});

Deno.test("wlc: least overhead per weight, compared without rounding", () => {
  const wlc = createScheduler("wlc");
  // Overheads 512/2 = 256 vs 300/1: real A is cheaper.
  assert.equal(wlc.pick(loaded([2, 1], [[2, 0], [1, 44]]), 0, 0, 0, 0), 0);
  // 768/2 = 384 vs 300/1: real B is cheaper.
  assert.equal(wlc.pick(loaded([2, 1], [[3, 0], [1, 44]]), 0, 0, 0, 0), 1);
  // Exact ties keep the earlier real.
  assert.equal(wlc.pick(loaded([2, 1], [[2, 0], [1, 0]]), 0, 0, 0, 0), 0);
  // Weights 3:1 from empty: connections spread 3:1.
  const set = loaded([3, 1], [[0, 0], [0, 0]]);
  const seq = schedule(wlc, set, 40);
  assert.equal(set.active[0], 30, seq);
  assert.equal(set.active[1], 10, seq);
  assert.equal(wlc.pick(loaded([0, 0], [[0, 0], [0, 0]]), 0, 0, 0, 0), -1);
  assert.equal(createScheduler("wlc").name, "wlc");
});

Deno.test("sed: the smallest (active + 1) / weight; nq: an idle real first", () => {
  const sed = createScheduler("sed");
  const nq = createScheduler("nq");
  // sed: (0+1)/1 = 1 vs (1+1)/3 = 0.67: the heavier real B, although A is idle.
  const set = () => loaded([1, 3], [[0, 0], [1, 0]]);
  assert.equal(sed.pick(set(), 0, 0, 0, 0), 1);
  // nq never lets a connection queue while a real is idle.
  assert.equal(nq.pick(set(), 0, 0, 0, 0), 0);
  // Inactive connections do not count for either.
  assert.equal(sed.pick(loaded([1, 1], [[0, 900], [1, 0]]), 0, 0, 0, 0), 0);
  // Without idle reals nq behaves as sed.
  const busy = () => loaded([1, 3], [[1, 0], [2, 0]]);
  assert.equal(nq.pick(busy(), 0, 0, 0, 0), sed.pick(busy(), 0, 0, 0, 0));
  assert.equal(nq.pick(busy(), 0, 0, 0, 0), 1);
  // Drained reals are skipped by both, even when idle.
  assert.equal(nq.pick(loaded([0, 1], [[0, 0], [5, 0]]), 0, 0, 0, 0), 1);
  assert.equal(sed.pick(loaded([0, 0], [[0, 0], [0, 0]]), 0, 0, 0, 0), -1);
});
