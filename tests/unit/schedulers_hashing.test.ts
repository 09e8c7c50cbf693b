/**
 * Unit tests of the IPVS schedulers beyond the round-robin and least-connection
 * families: sh, dh, mh (hashing), lblc, lblcr (locality), fo and ovf (weight
 * ranking), each against the kernel's definition.
 *
 * @module
 */

import assert from "node:assert/strict";
import { prng } from "../fixtures/prng.ts";
import { DestinationHashing } from "../../dataplane/sched/destination_hashing.ts";
import { LocalityBasedLeastConnection } from "../../dataplane/sched/locality_least_connection.ts";
import {
  CHECK_INTERVAL_MS,
  ENTRY_TIMEOUT_MS,
  FULL_CHECK_INTERVAL_MS,
} from "../../dataplane/sched/locality_table.ts";
import { MAGLEV_TABLE_SIZE, MaglevHashing } from "../../dataplane/sched/maglev_hashing.ts";
import { createScheduler, SCHEDULER_NAMES } from "../../dataplane/sched/registry.ts";
import { ReplicatedLocalityBasedLeastConnection } from "../../dataplane/sched/replicated_locality_least_connection.ts";
import type { RealSet, Scheduler, SchedulerFlags } from "../../dataplane/sched/scheduler.ts";
import { SourceHashing } from "../../dataplane/sched/source_hashing.ts";
import { WeightedFailover } from "../../dataplane/sched/weighted_failover.ts";
import { WeightedOverflow } from "../../dataplane/sched/weighted_overflow.ts";

/** A RealSet with addresses, as the dataplane's Service passes one. */
interface Reals extends RealSet {
  weight: Int32Array;
  active: Int32Array;
  inactive: Int32Array;
  overloaded: Uint8Array;
  addr: Uint32Array;
  port: Uint16Array;
}

const BASE = 0x0a0a0a00; // 10.10.10.0

/** Reals of the given weights at 10.10.10.(id):8080, ids 1, 2, … unless given. */
function reals(weights: number[], ids = weights.map((_, i) => i + 1)): Reals {
  const n = weights.length;
  return {
    count: n,
    weight: Int32Array.from(weights),
    active: new Int32Array(n),
    inactive: new Int32Array(n),
    overloaded: new Uint8Array(n),
    addr: Uint32Array.from(ids, (id) => BASE + id),
    port: new Uint16Array(n).fill(8080),
  };
}

function fresh<S extends Scheduler>(s: S, set: RealSet): S {
  s.reset(set);
  return s;
}

const FLAGS = {
  none: { port: false, fallback: false },
  port: { port: true, fallback: false },
  fallback: { port: false, fallback: true },
} satisfies Record<string, SchedulerFlags>;

const VIP = 0xc0a8011f;

/** `n` distinct pseudo-random client addresses. */
function clients(n: number, seed: number): Uint32Array {
  const rand = prng(seed);
  const seen = new Set<number>();
  const out = new Uint32Array(n);
  for (let i = 0; i < n;) {
    const a = rand();
    if (seen.has(a)) continue;
    seen.add(a);
    out[i++] = a;
  }
  return out;
}

/** Picks per real over `addrs` as clients (port 40000), and how many got nothing. */
function shares(s: Scheduler, set: RealSet, addrs: Uint32Array): { per: number[]; none: number } {
  const per = new Array(set.count).fill(0);
  let none = 0;
  for (const a of addrs) {
    const r = s.pick(set, a, 40000, VIP, 80);
    if (r < 0) none++;
    else per[r]++;
  }
  return { per, none };
}

/** Positions where two equally long arrays differ (a count, where a diff would be huge). */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

function count(values: ArrayLike<number>, v: number): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === v) n++;
  return n;
}

// --- sh --------------------------------------------------------------------------------------------

Deno.test("sh fills its 256 buckets round the reals, weight buckets at a time", () => {
  const sh = fresh(new SourceHashing(), reals([3, 1]));
  assert.deepEqual([...sh.buckets.subarray(0, 8)], [0, 0, 0, 1, 0, 0, 0, 1]);
  assert.deepEqual([count(sh.buckets, 0), count(sh.buckets, 1)], [192, 64]);
  // IPVS gives a weight-0 real one bucket per round: its clients find it drained.
  sh.reset(reals([2, 0, 1]));
  assert.deepEqual([...sh.buckets.subarray(0, 8)], [0, 0, 1, 2, 0, 0, 1, 2]);
  assert.deepEqual([0, 1, 2].map((r) => count(sh.buckets, r)), [128, 64, 64]);
  // A weight larger than the table leaves later reals out, as in IPVS.
  sh.reset(reals([300, 1]));
  assert.equal(count(sh.buckets, 0), 256);
  sh.reset(reals([]));
  assert.equal(count(sh.buckets, -1), 256);
  assert.equal(sh.pick(reals([]), 1, 2, VIP, 80), -1);
});

Deno.test("sh: a client keeps its real, across resets and instances; shares follow weights", () => {
  const set = reals([1, 2, 5]);
  const sh = fresh(new SourceHashing(), set);
  const other = fresh(new SourceHashing(), reals([1, 2, 5]));
  const addrs = clients(40000, 0x5a1);
  const first = Array.from(addrs, (a) => sh.pick(set, a, 1000, VIP, 80));
  // Another port, another VIP port, a reset with the same reals: still the same real.
  sh.reset(set);
  addrs.forEach((a, i) => {
    assert.equal(sh.pick(set, a, 65000, VIP, 443), first[i]);
    assert.equal(other.pick(set, a, 1, VIP, 80), first[i]);
  });
  // Buckets 32:64:160 of 256, so 12.5 %, 25 %, 62.5 % of the clients.
  const { per, none } = shares(sh, set, addrs);
  assert.equal(none, 0);
  [0.125, 0.25, 0.625].forEach((want, r) => {
    assert.ok(Math.abs(per[r] / addrs.length - want) < 0.015, `real ${r}: ${per}`);
  });
});

Deno.test("sh-port: the client's port joins the hash", () => {
  const set = reals([1, 1, 1, 1]);
  const plain = fresh(new SourceHashing(FLAGS.none), set);
  const ported = fresh(new SourceHashing(FLAGS.port), set);
  const rand = prng(0x5b2);
  for (let c = 0; c < 200; c++) {
    const client = rand();
    const plainReals = new Set<number>();
    const portedReals = new Set<number>();
    for (let port = 1024; port < 1064; port++) {
      plainReals.add(plain.pick(set, client, port, VIP, 80));
      portedReals.add(ported.pick(set, client, port, VIP, 80));
      // The same address and port always land on the same real.
      assert.equal(ported.pick(set, client, port, VIP, 80), ported.pick(set, client, port, 0, 0));
    }
    assert.equal(plainReals.size, 1);
    // 40 ports over 4 equal reals: every real is hit (a miss has odds 4·(3/4)^40 ≈ 4e-5).
    assert.equal(portedReals.size, 4, `client ${client}`);
  }
});

Deno.test("sh without fallback: clients of a drained or overloaded real get nothing", () => {
  const set = reals([1, 1, 1, 1]);
  const sh = fresh(new SourceHashing(), set);
  const addrs = clients(4000, 0x5c3);
  const before = Array.from(addrs, (a) => sh.pick(set, a, 0, VIP, 80));
  assert.ok(before.every((r) => r >= 0));
  // Weight 0 still holds one bucket per round, so with equal weights the table is unchanged.
  set.weight[1] = 0;
  sh.reset(set);
  set.overloaded[2] = 1;
  addrs.forEach((a, i) => {
    const want = before[i] === 1 || before[i] === 2 ? -1 : before[i];
    assert.equal(sh.pick(set, a, 0, VIP, 80), want);
  });
  assert.ok(before.filter((r) => r === 1).length > 800);
  set.overloaded[2] = 0;
  addrs.forEach((a, i) =>
    assert.equal(sh.pick(set, a, 0, VIP, 80), before[i] === 1 ? -1 : before[i])
  );
});

Deno.test("sh-fallback: clients of an unavailable real go to the next available one", () => {
  const set = reals([1, 1, 1, 1]);
  const sh = fresh(new SourceHashing(FLAGS.fallback), set);
  const addrs = clients(4000, 0x5d4);
  const before = Array.from(addrs, (a) => sh.pick(set, a, 0, VIP, 80));
  set.overloaded[1] = 1;
  addrs.forEach((a, i) => {
    // Buckets go A B C D A B …: the bucket after B's is C's.
    assert.equal(sh.pick(set, a, 0, VIP, 80), before[i] === 1 ? 2 : before[i]);
  });
  set.overloaded[2] = 1;
  addrs.forEach((a, i) => {
    const want = before[i] === 1 || before[i] === 2 ? 3 : before[i];
    assert.equal(sh.pick(set, a, 0, VIP, 80), want);
  });
  set.weight.fill(0);
  addrs.forEach((a) => assert.equal(sh.pick(set, a, 0, VIP, 80), -1));
});

// --- dh --------------------------------------------------------------------------------------------

Deno.test("dh: one bucket per real in turn, weights ignored as in IPVS", () => {
  const dh = fresh(new DestinationHashing(), reals([5, 1, 1]));
  assert.deepEqual([...dh.buckets.subarray(0, 6)], [0, 1, 2, 0, 1, 2]);
  assert.deepEqual([0, 1, 2].map((r) => count(dh.buckets, r)), [86, 85, 85]);
});

Deno.test("dh: the destination address, not the client, picks the real", () => {
  const set = reals([1, 1, 1]);
  const dh = fresh(new DestinationHashing(), set);
  const dests = clients(30000, 0xd15);
  const per = [0, 0, 0];
  const rand = prng(0xd16);
  for (const d of dests) {
    const r = dh.pick(set, rand(), rand() & 0xffff, d, 80);
    assert.equal(dh.pick(set, rand(), 1, d, 443), r);
    per[r]++;
  }
  per.forEach((n) => assert.ok(Math.abs(n / dests.length - 1 / 3) < 0.02, `${per}`));
  // An unavailable real leaves its destinations without a real: dh has no fallback.
  const home = dh.pick(set, 1, 1, VIP, 80);
  set.overloaded[home] = 1;
  assert.equal(dh.pick(set, 1, 1, VIP, 80), -1);
  set.overloaded[home] = 0;
  set.weight[home] = 0;
  assert.equal(dh.pick(set, 1, 1, VIP, 80), -1);
  set.weight[home] = 1;
  assert.equal(dh.pick(set, 2, 2, VIP, 80), home);
});

// --- mh --------------------------------------------------------------------------------------------

/** Slots per real position in an mh table. */
function slotCounts(mh: MaglevHashing, n: number): number[] {
  const per = new Array(n).fill(0);
  for (const r of mh.lookup) per[r]++;
  return per;
}

Deno.test("mh fills every slot, each real's share in proportion to its weight", () => {
  const cases: [number[], number[]][] = [
    // [weights, turns per round as IPVS computes them]
    [[1, 2, 3, 4], [1, 2, 3, 4]],
    [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]],
    [[100, 300, 200], [1, 3, 2]], // divided by their gcd
    [[1000, 1], [250, 1]], // 1000 needs 10 bits, 8 allowed: shifted right by 2
    [[1000, 3], [250, 1]], // 3 >> 2 is 0, but a weighted real keeps a turn
    [[5, 0, 5], [1, 0, 1]], // a real added with weight 0 holds nothing
  ];
  for (const [weights, turns] of cases) {
    const mh = fresh(new MaglevHashing(), reals(weights));
    assert.equal(mh.size, MAGLEV_TABLE_SIZE);
    assert.equal(count(mh.lookup, -1), 0, `${weights}: every slot filled`);
    const per = slotCounts(mh, weights.length);
    const total = turns.reduce((a, b) => a + b, 0);
    per.forEach((slots, r) => {
      // Reals take their turns round by round; only the last round is cut short.
      const want = MAGLEV_TABLE_SIZE * turns[r] / total;
      assert.ok(Math.abs(slots - want) <= turns[r] + 1, `${weights}: real ${r} ${slots} ≉ ${want}`);
    });
  }
});

Deno.test("mh: a client keeps its real across resets and instances; client shares follow slots", () => {
  const set = reals([1, 2, 3, 4]);
  const mh = fresh(new MaglevHashing(), set);
  const addrs = clients(50000, 0x3a61);
  const first = Array.from(addrs, (a) => mh.pick(set, a, 1, VIP, 80));
  const again = fresh(new MaglevHashing(), reals([1, 2, 3, 4]));
  mh.reset(set);
  addrs.forEach((a, i) => {
    assert.equal(mh.pick(set, a, 2, VIP, 80), first[i]);
    assert.equal(again.pick(set, a, 3, VIP, 8080), first[i]);
  });
  const { per, none } = shares(mh, set, addrs);
  assert.equal(none, 0);
  per.forEach((n, r) => assert.ok(Math.abs(n / addrs.length - (r + 1) / 10) < 0.01, `${per}`));
});

/** The address of the real each client gets, 0 for none. */
function realAddrs(mh: Scheduler, set: Reals, addrs: Uint32Array): Uint32Array {
  return Uint32Array.from(addrs, (a) => {
    const r = mh.pick(set, a, 0, VIP, 80);
    return r < 0 ? 0 : set.addr[r];
  });
}

Deno.test("mh: removing one of N reals moves its clients and few others; adding it back restores", () => {
  const addrs = clients(20000, 0x3a62);
  for (let n = 5; n <= 10; n++) {
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const weights = ids.map((id) => 1 + (id % 3));
    const full = reals(weights, ids);
    const before = realAddrs(fresh(new MaglevHashing(), full), full, addrs);
    const gone = Math.floor(n / 2);
    const keep = ids.filter((_, i) => i !== gone);
    const less = reals(weights.filter((_, i) => i !== gone), keep);
    // A fresh scheduler, as a reconfigured service builds: positions behind the removed real shift.
    const after = realAddrs(fresh(new MaglevHashing(), less), less, addrs);
    let onGone = 0;
    let moved = 0;
    addrs.forEach((_, i) => {
      assert.notEqual(after[i], 0);
      if (before[i] === BASE + ids[gone]) {
        onGone++;
        assert.notEqual(after[i], before[i], "the removed real's clients all move");
      } else if (after[i] !== before[i]) moved++;
    });
    assert.ok(onGone > 0);
    const disruption = moved / (addrs.length - onGone);
    assert.ok(
      disruption < 0.05,
      `N=${n}: ${(disruption * 100).toFixed(2)} % of other clients moved`,
    );
    // Back in its place, the table is exactly what it was.
    const back = realAddrs(fresh(new MaglevHashing(), full), full, addrs);
    assert.equal(differing(back, before), 0);
  }
});

Deno.test("mh: a drained real keeps its slots (IPVS last_weight); mh-fallback rehashes its clients", () => {
  const set = reals([2, 2, 2, 2, 2]);
  const plain = fresh(new MaglevHashing(FLAGS.none), set);
  const fallback = fresh(new MaglevHashing(FLAGS.fallback), set);
  const table = plain.lookup.slice();
  const addrs = clients(20000, 0x3a64);
  const before = Array.from(addrs, (a) => plain.pick(set, a, 0, VIP, 80));
  set.weight[3] = 0;
  plain.reset(set);
  fallback.reset(set);
  assert.equal(differing(plain.lookup, table), 0, "draining reshuffles nothing");
  const landed = new Set<number>();
  addrs.forEach((a, i) => {
    const r = plain.pick(set, a, 0, VIP, 80);
    const f = fallback.pick(set, a, 0, VIP, 80);
    if (before[i] === 3) {
      assert.equal(r, -1);
      assert.ok(f >= 0 && f !== 3);
      assert.equal(fallback.pick(set, a, 0, VIP, 80), f, "fallback is deterministic");
      landed.add(f);
    } else {
      assert.equal(r, before[i]);
      assert.equal(f, before[i]);
    }
  });
  // Rehashing spreads the drained real's clients rather than piling them on one neighbour.
  assert.equal(landed.size, 4);
  // An overloaded real is skipped the same way, without a reset.
  set.overloaded[0] = 1;
  addrs.forEach((a, i) => {
    const f = fallback.pick(set, a, 0, VIP, 80);
    assert.ok(f === 1 || f === 2 || f === 4);
    if (before[i] !== 0 && before[i] !== 3) assert.equal(f, before[i]);
    if (before[i] === 0) assert.equal(plain.pick(set, a, 0, VIP, 80), -1);
  });
  // Back to weight 2: the same table and the same clients as before.
  set.weight[3] = 2;
  set.overloaded[0] = 0;
  plain.reset(set);
  assert.equal(differing(plain.lookup, table), 0);
  addrs.forEach((a, i) => assert.equal(plain.pick(set, a, 0, VIP, 80), before[i]));
  // Nothing available: fallback gives up at once.
  set.weight.fill(0);
  fallback.reset(set);
  assert.equal(fallback.pick(set, addrs[0], 0, VIP, 80), -1);
});

Deno.test("mh-port spreads one client's ports; no weighted real leaves the table empty", () => {
  const set = reals([1, 1, 1]);
  const plain = fresh(new MaglevHashing(FLAGS.none), set);
  const ported = fresh(new MaglevHashing(FLAGS.port), set);
  const portedReals = new Set<number>();
  for (let port = 1024; port < 1124; port++) {
    assert.equal(
      plain.pick(set, 0x01020304, port, VIP, 80),
      plain.pick(set, 0x01020304, 1, VIP, 80),
    );
    const r = ported.pick(set, 0x01020304, port, VIP, 80);
    assert.equal(ported.pick(set, 0x01020304, port, VIP, 80), r);
    portedReals.add(r);
  }
  assert.equal(portedReals.size, 3);
  const none = fresh(new MaglevHashing(FLAGS.fallback), reals([0, 0]));
  assert.equal(count(none.lookup, -1), MAGLEV_TABLE_SIZE);
  assert.equal(none.pick(reals([0, 0]), 1, 1, VIP, 80), -1);
  const empty = fresh(new MaglevHashing(), reals([]));
  assert.equal(empty.pick(reals([]), 1, 1, VIP, 80), -1);
});

Deno.test("mh table size must be a prime; a small prime works the same way", () => {
  assert.throws(() => new MaglevHashing(FLAGS.none, 65536), RangeError);
  assert.throws(() => new MaglevHashing(FLAGS.none, 1), RangeError);
  const mh = fresh(new MaglevHashing(FLAGS.none, 251), reals([1, 1, 2]));
  assert.equal(mh.size, 251);
  assert.equal(count(mh.lookup, -1), 0);
  // 1:1:2 over 251 slots, whole rounds of 4 slots: 62 or 63, 62 or 63, 125 or 126.
  const per = slotCounts(mh, 3);
  assert.ok(per[0] >= 62 && per[0] <= 63 && per[1] >= 62 && per[1] <= 63, `${per}`);
  assert.ok(per[2] >= 125 && per[2] <= 126, `${per}`);
});

// --- fo and ovf ------------------------------------------------------------------------------------

/** Picks `n` times, counting each pick as a new active connection on its real. */
function schedule(s: Scheduler, set: RealSet, n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) {
    const r = s.pick(set, 0x0b000001 + i, 40000 + i, VIP, 80);
    if (r >= 0) set.active[r]++;
    out += r < 0 ? "-" : String.fromCharCode(65 + r);
  }
  return out;
}

Deno.test("fo: always the available real of the highest weight, failing over in weight order", () => {
  const set = reals([2, 5, 5, 1]);
  const fo = fresh(new WeightedFailover(), set);
  // The first of the equally heaviest, whatever its load.
  assert.equal(schedule(fo, set, 6), "BBBBBB");
  set.weight[1] = 0;
  assert.equal(schedule(fo, set, 2), "CC");
  set.overloaded[2] = 1;
  assert.equal(schedule(fo, set, 2), "AA");
  set.weight[0] = 0;
  assert.equal(schedule(fo, set, 2), "DD");
  set.overloaded[3] = 1;
  assert.equal(schedule(fo, set, 2), "--");
  set.weight[1] = 5;
  assert.equal(schedule(fo, set, 1), "B");
  assert.equal(fo.pick(reals([]), 1, 1, VIP, 80), -1);
});

Deno.test("ovf: fills the heaviest real until its active connections exceed its weight", () => {
  const set = reals([2, 3, 1]);
  const ovf = fresh(new WeightedOverflow(), set);
  // IPVS skips a real when active > weight, so B (3) takes 4, A (2) 3 and C (1) 2.
  assert.equal(schedule(ovf, set, 10), "BBBBAAACC-");
  // A closing connection on B makes room there first.
  set.active[1]--;
  assert.equal(schedule(ovf, set, 2), "B-");
  // Equal weights: the first one fills first.
  const equal = reals([2, 2]);
  assert.equal(schedule(fresh(new WeightedOverflow(), equal), equal, 7), "AAABBB-");
  // Drained and overloaded reals are skipped; inactive connections do not count.
  const gated = reals([9, 4, 1]);
  gated.weight[0] = 0;
  gated.overloaded[1] = 1;
  gated.inactive[2] = 100;
  assert.equal(schedule(fresh(new WeightedOverflow(), gated), gated, 3), "CC-");
});

// --- lblc and lblcr --------------------------------------------------------------------------------

/** A settable clock in ms. */
function clock(): { now: () => number; t: number } {
  const c = { t: 1_000, now: () => c.t };
  return c;
}

const DEST1 = 0xc0a80a01;
const DEST2 = 0xc0a80a02;

Deno.test("lblc: a destination keeps its real until IPVS's locality rule calls it overloaded", () => {
  const set = reals([4, 4]);
  const lblc = fresh(new LocalityBasedLeastConnection({ now: clock().now }), set);
  // First pick for DEST1 is wlc's: A (both idle, first wins).
  assert.equal(lblc.pick(set, 1, 1, DEST1, 80), 0);
  // A stays, even though wlc would now prefer the idle B.
  set.active[0] = 4;
  assert.equal(lblc.pick(set, 2, 2, DEST1, 80), 0);
  // Over its weight, but B (3 active, weight 4) is not below half its weight: A stays.
  set.active[0] = 5;
  set.active[1] = 2;
  assert.equal(lblc.pick(set, 3, 3, DEST1, 80), 0);
  // B at 1 active is below half its weight: A counts as overloaded, wlc picks B and the entry follows.
  set.active[1] = 1;
  assert.equal(lblc.pick(set, 4, 4, DEST1, 80), 1);
  set.active[0] = 0;
  set.active[1] = 3;
  assert.equal(lblc.pick(set, 5, 5, DEST1, 80), 1, "the entry now names B");
  // Another destination gets its own wlc pick: A, now idle.
  assert.equal(lblc.pick(set, 6, 6, DEST2, 80), 0);
  assert.equal(lblc.entries, 2);
});

Deno.test("lblc: drained, over-threshold or removed reals are replaced; the entry follows a moved real", () => {
  const set = reals([1, 1, 1], [1, 2, 3]);
  const lblc = fresh(new LocalityBasedLeastConnection({ now: clock().now }), set);
  set.active[0] = 1;
  assert.equal(lblc.pick(set, 1, 1, DEST1, 80), 1);
  set.weight[1] = 0;
  set.active[1] = 0;
  assert.equal(lblc.pick(set, 1, 1, DEST1, 80), 2);
  set.weight[1] = 1;
  set.active[2] = 1;
  assert.equal(lblc.pick(set, 1, 1, DEST1, 80), 2, "still cached");
  set.overloaded[2] = 1;
  assert.equal(lblc.pick(set, 1, 1, DEST1, 80), 1);
  // Real 10.10.10.2 moves to the end of the list: the entry moves with it.
  // (All idle, wlc alone would pick the first real.)
  const reordered = reals([1, 1, 1], [3, 1, 2]);
  lblc.reset(reordered);
  assert.equal(lblc.pick(reordered, 1, 1, DEST1, 80), 2);
  // And once it is removed the destination is scheduled anew.
  const without = reals([1, 1], [3, 1]);
  without.active[0] = 1;
  lblc.reset(without);
  assert.equal(lblc.pick(without, 1, 1, DEST1, 80), 1);
  assert.equal(lblc.pick(reals([0, 0]), 1, 1, DEST2, 80), -1);
});

Deno.test("lblc forgets idle destinations on IPVS's schedule and never outgrows its table", () => {
  const c = clock();
  const set = reals([1, 1]);
  const lblc = fresh(
    new LocalityBasedLeastConnection({ now: c.now, maxEntries: 4, expiration: 60 * 60_000 }),
    set,
  );
  for (let d = 0; d < 10; d++) assert.ok(lblc.pick(set, 1, 1, DEST1 + d, 80) >= 0);
  // Twice maxEntries at most; the rest are scheduled but not cached.
  assert.equal(lblc.entries, 8);
  // Within the first check interval nothing is collected, however idle.
  c.t += CHECK_INTERVAL_MS - 1;
  lblc.pick(set, 1, 1, DEST1, 80);
  assert.equal(lblc.entries, 8);
  // Past 6 idle minutes, a check trims (8 - 4)·4/3 = 5, capped at maxEntries / 2 = 2.
  c.t += ENTRY_TIMEOUT_MS;
  lblc.pick(set, 1, 1, DEST1, 80);
  assert.equal(lblc.entries, 6);
  // The full check (half-hourly) drops every entry unused for the expiration (1 h here).
  c.t += 1000;
  lblc.pick(set, 1, 1, DEST1, 80);
  c.t += 60 * 60_000 - 1;
  assert.ok(c.t > FULL_CHECK_INTERVAL_MS);
  lblc.pick(set, 1, 1, DEST1, 80);
  assert.equal(lblc.entries, 1, "all but DEST1, used 1 h - 1 ms ago");
  assert.equal(lblc.pick(set, 1, 1, DEST1 + 1, 80) >= 0, true);
  assert.equal(lblc.entries, 2);
});

Deno.test("lblcr: a destination's set grows when its least loaded member is overloaded", () => {
  const set = reals([4, 4, 4]);
  const lblcr = fresh(new ReplicatedLocalityBasedLeastConnection({ now: clock().now }), set);
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 0);
  assert.deepEqual(lblcr.members(DEST1), [0]);
  // Loaded but not overloaded by the locality rule: the set stays {A}.
  set.active[0] = 4;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 0);
  set.active[0] = 5;
  set.active[1] = 2;
  set.active[2] = 3;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 0);
  // B drops below half its weight: A is overloaded, wlc picks B and B joins.
  set.active[1] = 1;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  assert.deepEqual(lblcr.members(DEST1), [0, 1]);
  // Now the least loaded member (per weight) serves: B, then A once B is busier.
  set.active[1] = 3;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  set.active[1] = 6;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 0);
  // C is never used while it is outside the set, although it is the least loaded.
  assert.deepEqual(lblcr.members(DEST1), [0, 1]);
  // Drained and over-threshold members are passed over inside the set.
  set.overloaded[0] = 1;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  // With both members unusable, wlc brings in C.
  set.weight[1] = 0;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 2);
  assert.deepEqual(lblcr.members(DEST1), [0, 1, 2]);
  assert.equal(lblcr.pick(reals([0]), 1, 1, DEST2, 80), -1);
});

Deno.test("lblcr: an unchanged set sheds its most loaded member after the expiration", () => {
  const c = clock();
  const set = reals([2, 2]);
  const lblcr = fresh(
    new ReplicatedLocalityBasedLeastConnection({ now: c.now, expiration: 10_000 }),
    set,
  );
  lblcr.pick(set, 1, 1, DEST1, 80);
  set.active[0] = 3;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  assert.deepEqual(lblcr.members(DEST1), [0, 1]);
  set.active[0] = 1;
  set.active[1] = 2;
  // Not yet expired: the set keeps both.
  c.t += 10_000;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 0);
  assert.deepEqual(lblcr.members(DEST1), [0, 1]);
  // Expired: A, now the most loaded, leaves; the pick (B) was made from both before that.
  c.t += 1;
  set.active[0] = 2;
  set.active[1] = 1;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  assert.deepEqual(lblcr.members(DEST1), [1]);
  // A set of one never sheds its last member.
  c.t += 100_000;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  assert.deepEqual(lblcr.members(DEST1), [1]);
});

Deno.test("lblcr: sets follow their reals across reset, and lose removed ones", () => {
  const set = reals([1, 1, 1], [1, 2, 3]);
  const lblcr = fresh(new ReplicatedLocalityBasedLeastConnection({ now: clock().now }), set);
  lblcr.pick(set, 1, 1, DEST1, 80);
  set.active[0] = 2;
  assert.equal(lblcr.pick(set, 1, 1, DEST1, 80), 1);
  assert.deepEqual(lblcr.members(DEST1), [0, 1]);
  const moved = reals([1, 1, 1], [2, 3, 1]);
  lblcr.reset(moved);
  assert.deepEqual(lblcr.members(DEST1), [0, 2]);
  const removed = reals([1, 1], [3, 1]);
  lblcr.reset(removed);
  assert.deepEqual(lblcr.members(DEST1), [1]);
  // Many reals: member bitmaps widen beyond 32 bits.
  const wide = reals(new Array(70).fill(1), Array.from({ length: 70 }, (_, i) => 100 - i));
  wide.active.fill(1);
  wide.active[69] = 0;
  lblcr.reset(wide);
  assert.equal(lblcr.pick(wide, 1, 1, DEST2, 80), 69);
  assert.deepEqual(lblcr.members(DEST2), [69]);
  assert.deepEqual(lblcr.members(DEST1), [], "10.10.10.1 is gone from the wide set");
});

// --- registry --------------------------------------------------------------------------------------

Deno.test("every scheduler name is constructible, fresh each time, and names itself", () => {
  assert.deepEqual(SCHEDULER_NAMES.slice(0, 6), ["rr", "wrr", "lc", "wlc", "sed", "nq"]);
  for (const name of ["lblc", "lblcr", "dh", "sh", "fo", "ovf", "mh"] as const) {
    assert.ok(SCHEDULER_NAMES.includes(name), name);
  }
  const set = reals([1, 2, 3]);
  for (const name of SCHEDULER_NAMES) {
    const a = createScheduler(name);
    const b = createScheduler(name, FLAGS.port);
    assert.equal(a.name, name);
    assert.equal(b.name, name);
    assert.notEqual(a, b);
    a.reset(set);
    const r = a.pick(set, 0x01020304, 5, VIP, 80);
    assert.ok(r >= 0 && r < 3, `${name} picks a real`);
  }
  assert.ok(createScheduler("sh") instanceof SourceHashing);
  assert.ok(createScheduler("mh") instanceof MaglevHashing);
  assert.ok(createScheduler("dh") instanceof DestinationHashing);
  assert.ok(createScheduler("lblcr") instanceof ReplicatedLocalityBasedLeastConnection);
  // The flags reach sh and mh: with the port flag one client's ports spread.
  for (const name of ["sh", "mh"] as const) {
    const ported = fresh(createScheduler(name, FLAGS.port), set);
    const plain = fresh(createScheduler(name, FLAGS.none), set);
    const seen = new Set<number>();
    const plainSeen = new Set<number>();
    for (let port = 1; port < 60; port++) {
      seen.add(ported.pick(set, 0x01020304, port, VIP, 80));
      plainSeen.add(plain.pick(set, 0x01020304, port, VIP, 80));
    }
    assert.equal(seen.size, 3, name);
    assert.equal(plainSeen.size, 1, name);
    const fallback = fresh(createScheduler(name, FLAGS.fallback), set);
    set.overloaded[plain.pick(set, 0x01020304, 1, VIP, 80)] = 1;
    assert.equal(plain.pick(set, 0x01020304, 1, VIP, 80), -1, name);
    assert.ok(fallback.pick(set, 0x01020304, 1, VIP, 80) >= 0, name);
    set.overloaded.fill(0);
  }
});
