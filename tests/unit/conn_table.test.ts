/**
 * Unit tests of the connection table: two-direction hashing, the free list and the timer wheel,
 * driven by a plain-number clock.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnFlag, ConnTable, Dir } from "../../dataplane/conn/table.ts";
import { prng } from "../fixtures/prng.ts";

const TCP = 6;
const UDP = 17;
/** The wheel's resolution and span, restated so the tests notice if they change. */
const TICK = 250;
const SPAN = 1024 * TICK;

/** A connection's tuples: client → VIP on the way in, client → real on the way out. */
interface Tuple {
  proto: number;
  client: number;
  cport: number;
  vip: number;
  vport: number;
  real: number;
  rport: number;
}

/** Allocates, fills and links a connection; returns its id. */
function add(t: ConnTable, c: Tuple, expires: number, now: number, flags = 0): number {
  const id = t.allocate();
  assert.ok(id >= 0, "table unexpectedly full");
  t.protocol[id] = c.proto;
  t.inSrc[id] = c.client;
  t.inSrcPort[id] = c.cport;
  t.inDst[id] = c.vip;
  t.inDstPort[id] = c.vport;
  t.outSrc[id] = c.client;
  t.outSrcPort[id] = c.cport;
  t.outDst[id] = c.real;
  t.outDstPort[id] = c.rport;
  t.flags[id] = flags;
  t.link(id, expires, now);
  return id;
}

/** The entry a client's packet of connection `c` finds. */
function lookupIn(t: ConnTable, c: Tuple): number {
  return t.lookup(c.proto, c.client, c.cport, c.vip, c.vport);
}

/** The entry a real's reply of connection `c` finds. */
function lookupReply(t: ConnTable, c: Tuple): number {
  return t.lookup(c.proto, c.real, c.rport, c.client, c.cport);
}

const VIP = 0xc0a8011f;
const REAL = 0x0a0a0a0b;

function tuple(i: number, proto = TCP): Tuple {
  return {
    proto,
    client: 0xc0a80100 + (i >>> 12),
    cport: 1024 + (i & 0xfff),
    vip: VIP,
    vport: 80,
    real: REAL + (i % 3),
    rport: 8080,
  };
}

/** Records when each connection expired, by id. */
function recorder(): { handler: (id: number) => boolean; at: Map<number, number>; now: number } {
  const rec = {
    at: new Map<number, number>(),
    now: 0,
    handler: (id: number) => {
      assert.ok(!rec.at.has(id), `connection ${id} expired twice`);
      rec.at.set(id, rec.now);
      return true;
    },
  };
  return rec;
}

Deno.test("lookup finds the original by its in-tuple and the reply by the reversed out-tuple", () => {
  const t = new ConnTable(16, 1234);
  const c = tuple(1);
  const id = add(t, c, 1000, 0);
  assert.equal(t.size, 1);
  assert.equal(lookupIn(t, c), (id << 1) | Dir.ORIGINAL);
  assert.equal(lookupReply(t, c), (id << 1) | Dir.REPLY);
  // The tuples as they must not match: reversed in-tuple, unreversed out-tuple, other protocol,
  // other ports, other addresses.
  assert.equal(t.lookup(TCP, c.vip, c.vport, c.client, c.cport), -1);
  assert.equal(t.lookup(TCP, c.client, c.cport, c.real, c.rport), -1);
  assert.equal(t.lookup(UDP, c.client, c.cport, c.vip, c.vport), -1);
  assert.equal(t.lookup(UDP, c.real, c.rport, c.client, c.cport), -1);
  assert.equal(t.lookup(TCP, c.client, c.cport + 1, c.vip, c.vport), -1);
  assert.equal(t.lookup(TCP, c.client, c.cport, c.vip, c.vport + 1), -1);
  assert.equal(t.lookup(TCP, c.client + 1, c.cport, c.vip, c.vport), -1);
  assert.equal(t.lookup(TCP, c.real, c.rport, c.client, c.cport + 1), -1);
  assert.equal(t.lookup(TCP, c.real + 1, c.rport, c.client, c.cport), -1);

  t.remove(id);
  assert.equal(t.size, 0);
  assert.equal(lookupIn(t, c), -1);
  assert.equal(lookupReply(t, c), -1);
});

Deno.test("NO_REPLY connections have no reply entry and remove cleanly", () => {
  const t = new ConnTable(8, 99);
  const a = tuple(1);
  const b = tuple(2);
  const ia = add(t, a, 1000, 0, ConnFlag.NO_REPLY);
  const ib = add(t, b, 1000, 0);
  assert.equal(lookupIn(t, a), ia << 1);
  assert.equal(lookupReply(t, a), -1);
  assert.equal(lookupReply(t, b), (ib << 1) | 1);
  t.remove(ia);
  assert.equal(lookupIn(t, a), -1);
  assert.equal(lookupIn(t, b), ib << 1);
  assert.equal(lookupReply(t, b), (ib << 1) | 1);
  assert.equal(t.size, 1);
});

Deno.test("addresses and ports at the edges of their ranges round-trip", () => {
  const t = new ConnTable(4, 7);
  const c: Tuple = {
    proto: UDP,
    client: 0xffffffff,
    cport: 0xffff,
    vip: 0,
    vport: 0,
    real: 0x80000000,
    rport: 65535,
  };
  const id = add(t, c, 10, 0);
  assert.equal(lookupIn(t, c), id << 1);
  assert.equal(lookupReply(t, c), (id << 1) | 1);
});

Deno.test("a full table refuses to allocate, and freed entries are reused", () => {
  const t = new ConnTable(5, 5);
  const ids = [0, 1, 2, 3, 4].map((i) => add(t, tuple(i), 1000, 0));
  assert.deepEqual([...ids].sort(), [0, 1, 2, 3, 4]);
  assert.equal(t.size, 5);
  assert.equal(t.allocate(), -1);
  assert.equal(t.allocate(), -1);
  t.remove(ids[2]);
  assert.equal(t.size, 4);
  // The entry just freed comes back, with its flags and state cleared for the new owner.
  t.flags[ids[2]] = ConnFlag.ACTIVE;
  t.state[ids[2]] = 3;
  const again = t.allocate();
  assert.equal(again, ids[2]);
  assert.equal(t.flags[again], 0);
  assert.equal(t.state[again], 0);
  assert.equal(t.allocate(), -1);
  const c = tuple(77);
  t.protocol[again] = c.proto;
  t.inSrc[again] = c.client;
  t.inSrcPort[again] = c.cport;
  t.inDst[again] = c.vip;
  t.inDstPort[again] = c.vport;
  t.outSrc[again] = c.client;
  t.outSrcPort[again] = c.cport;
  t.outDst[again] = c.real;
  t.outDstPort[again] = c.rport;
  t.link(again, 1000, 0);
  assert.equal(lookupIn(t, c), again << 1);
  assert.equal(lookupIn(t, tuple(2)), -1, "the old owner is gone");
  assert.equal(lookupIn(t, tuple(3)), ids[3] << 1);
});

Deno.test("capacity is validated", () => {
  for (const bad of [0, -1, 1.5, NaN, 0x4000001]) {
    assert.throws(() => new ConnTable(bad), RangeError, String(bad));
  }
  assert.equal(new ConnTable(1).capacity, 1);
});

Deno.test("random inserts and removals in a tiny table agree with a Map model", () => {
  // 8 connections share 16 buckets with 16 hash entries: chains form and are cut in the middle.
  for (const seed of [1, 2, 3, 0x7fffffff]) {
    const t = new ConnTable(8, seed);
    const rand = prng(seed * 7919);
    const live = new Map<number, Tuple>();
    // A small tuple space so the same tuples come back after removal.
    const pool = Array.from({ length: 24 }, (_, i) => tuple(i, i % 2 ? UDP : TCP));
    for (let op = 0; op < 4000; op++) {
      const c = pool[rand() % pool.length];
      const found = lookupIn(t, c);
      const owner = [...live].find(([, v]) => v === c)?.[0];
      assert.equal(found, owner === undefined ? -1 : owner << 1, `op ${op}`);
      if (owner !== undefined) {
        assert.equal(lookupReply(t, c), (owner << 1) | 1);
        if (rand() & 1) {
          t.remove(owner);
          live.delete(owner);
        }
      } else if (live.size < t.capacity) {
        live.set(add(t, c, 1e9, 0), c);
      } else {
        assert.equal(t.allocate(), -1);
      }
      assert.equal(t.size, live.size);
    }
    for (const [id, c] of live) {
      assert.equal(lookupIn(t, c), id << 1);
      assert.equal(lookupReply(t, c), (id << 1) | 1);
    }
    const visited: number[] = [];
    t.forEach((id) => visited.push(id));
    assert.deepEqual(visited.sort(), [...live.keys()].sort());
  }
});

Deno.test("many connections in a larger table: every one found in both directions", () => {
  const n = 20000;
  const t = new ConnTable(n, 42);
  for (let i = 0; i < n; i++) add(t, tuple(i, i & 1 ? UDP : TCP), 1e9, 0);
  assert.equal(t.allocate(), -1);
  for (let i = 0; i < n; i++) {
    const c = tuple(i, i & 1 ? UDP : TCP);
    const e = lookupIn(t, c);
    assert.ok(e >= 0 && (e & 1) === 0, `conn ${i}`);
    assert.equal(lookupReply(t, c), e | 1);
    assert.equal(t.inSrcPort[e >> 1], c.cport);
    // The same ports under the other protocol are a different connection.
    assert.equal(lookupIn(t, { ...c, proto: i & 1 ? TCP : UDP }), -1);
  }
  for (let i = 0; i < n; i += 2) t.remove(lookupIn(t, tuple(i)) >> 1);
  assert.equal(t.size, n / 2);
  for (let i = 0; i < n; i++) {
    const c = tuple(i, i & 1 ? UDP : TCP);
    assert.equal(lookupIn(t, c) >= 0, (i & 1) === 1, `conn ${i}`);
  }
});

Deno.test("expiry: each connection expires within one tick after its time, never before", () => {
  const t = new ConnTable(4000, 3);
  const rand = prng(0xe1);
  const rec = recorder();
  const expires = new Map<number, number>();
  let now = 0;
  // Clock steps of 10 ms; connections are added between expire calls at random times, with
  // timeouts from 0 to a bit over a tick up to a minute, so every slot position is exercised.
  const step = 10;
  for (let i = 0; i < 60_000 / step; i++) {
    now += step;
    rec.now = now;
    t.expire(now, rec.handler);
    for (const [id, at] of rec.at) {
      const due = expires.get(id)!;
      assert.ok(at >= due, `conn ${id} expired at ${at}, before ${due}`);
      assert.ok(at <= due + TICK, `conn ${id} due at ${due} expired late at ${at}`);
      expires.delete(id);
      rec.at.delete(id);
    }
    const adds = rand() % 3;
    for (let k = 0; k < adds; k++) {
      const kind = rand() % 4;
      const timeout = kind === 0
        ? rand() % 600
        : kind === 1
        ? (rand() % 5) * TICK
        : rand() % 60_000;
      expires.set(add(t, tuple(rand() & 0xffffff), now + timeout, now), now + timeout);
    }
  }
  // Everything still alive is not yet due.
  assert.equal(t.size, expires.size);
  t.forEach((id) => assert.ok(t.expires[id] > now - TICK, `conn ${id} overdue`));
});

Deno.test("expiry: connections linked before the first expire call are not missed", () => {
  const t = new ConnTable(16, 11);
  const rec = recorder();
  const id = add(t, tuple(1), 2_000, 0);
  const late = add(t, tuple(2), 90_000, 0);
  // The first expire call comes well after the first connection was due.
  rec.now = 10_000;
  assert.equal(t.expire(rec.now, rec.handler), 1);
  assert.equal(rec.at.get(id), 10_000);
  assert.equal(t.size, 1);
  for (rec.now = 10_000; rec.now <= 100_000; rec.now += TICK) t.expire(rec.now, rec.handler);
  assert.equal(rec.at.get(late), 90_000);
});

Deno.test("expiry: touched connections (expires moved later) survive their old time", () => {
  const t = new ConnTable(16, 12);
  const rec = recorder();
  const a = add(t, tuple(1), 5_000, 0);
  const b = add(t, tuple(2), 5_000, 0);
  for (rec.now = 0; rec.now <= 4_000; rec.now += TICK) t.expire(rec.now, rec.handler);
  // Traffic on `a` pushes its expiry out without re-filing it, as the engine does.
  t.expires[a] = 4_000 + 30_000;
  for (; rec.now <= 33_750; rec.now += TICK) t.expire(rec.now, rec.handler);
  assert.equal(rec.at.get(b), 5_000);
  assert.equal(rec.at.has(a), false, "a expired at its old time");
  assert.equal(lookupIn(t, tuple(1)), a << 1);
  for (; rec.now <= 40_000; rec.now += TICK) t.expire(rec.now, rec.handler);
  assert.equal(rec.at.get(a), 34_000);
  assert.equal(t.size, 0);
});

Deno.test("expiry: connections moved earlier with reschedule expire early", () => {
  const t = new ConnTable(16, 13);
  const rec = recorder();
  const a = add(t, tuple(1), 100_000, 0);
  const b = add(t, tuple(2), 100_000, 0);
  rec.now = 1_000;
  t.expire(rec.now, rec.handler);
  t.expires[a] = 3_000;
  t.reschedule(a, rec.now);
  // `b` is moved earlier without reschedule: it is only noticed at its old slot.
  t.expires[b] = 3_000;
  for (; rec.now <= 99_750; rec.now += TICK) t.expire(rec.now, rec.handler);
  assert.equal(rec.at.get(a), 3_000);
  assert.equal(rec.at.has(b), false);
  rec.now = 100_000;
  t.expire(rec.now, rec.handler);
  assert.equal(rec.at.get(b), 100_000);
});

Deno.test("expiry: timeouts longer than the wheel's span expire on time", () => {
  const t = new ConnTable(16, 14);
  const rec = recorder();
  const timeouts = [SPAN - TICK, SPAN, SPAN + TICK, SPAN + 1, 3.5 * SPAN + 100, 2 * 3600_000];
  const ids = timeouts.map((timeout, i) => add(t, tuple(i), 500 + timeout, 500));
  for (rec.now = 500; rec.now <= 2 * 3600_000 + 2_000; rec.now += TICK) {
    t.expire(rec.now, rec.handler);
  }
  ids.forEach((id, i) => {
    const due = 500 + timeouts[i];
    const at = rec.at.get(id);
    assert.ok(at !== undefined && at >= due && at < due + TICK, `${timeouts[i]}: ${at}`);
  });
});

Deno.test("expiry: after a stall of hours everything due goes in one call, the rest on time", () => {
  const t = new ConnTable(4096, 15);
  const rand = prng(0x57a1);
  const rec = recorder();
  const due = new Map<number, number>();
  for (let i = 0; i < 3000; i++) {
    const expires = 1_000 + (rand() % (8 * 3600)) * 1000 + (rand() % 1000);
    due.set(add(t, tuple(i), expires, 0), expires);
  }
  rec.now = 0;
  t.expire(0, rec.handler);
  const stallEnd = 4 * 3600_000 + 123;
  rec.now = stallEnd;
  const expired = t.expire(stallEnd, rec.handler);
  const overdue = [...due.values()].filter((e) => e <= stallEnd).length;
  assert.ok(overdue > 1000 && overdue < 2000);
  assert.equal(expired, overdue);
  assert.equal(t.size, 3000 - overdue);
  for (const [id, at] of rec.at) assert.ok(due.get(id)! <= at);
  // Back to normal ticks: the rest expire on time, none early, none missed.
  // Expire calls on tick boundaries again, so "on time" means within one tick.
  for (rec.now = stallEnd - 123 + TICK; rec.now <= 8 * 3600_000 + 2_000; rec.now += TICK) {
    t.expire(rec.now, rec.handler);
  }
  assert.equal(t.size, 0);
  for (const [id, expires] of due) {
    const at = rec.at.get(id)!;
    if (expires <= stallEnd) assert.equal(at, stallEnd);
    else assert.ok(at >= expires && at < expires + TICK, `due ${expires}, expired ${at}`);
  }
});

Deno.test("expiry: a handler returning false keeps the connection", () => {
  const t = new ConnTable(16, 16);
  const a = add(t, tuple(1), 1_000, 0);
  const b = add(t, tuple(2), 1_000, 0);
  const calls: [number, number][] = [];
  let now = 0;
  let keepA = true;
  const handler = (id: number): boolean => {
    calls.push([id, now]);
    if (id === a) return !keepA;
    // `b` is kept by pushing its expiry out and re-filing it itself.
    t.expires[b] = now + 10_000;
    t.reschedule(b, now);
    return false;
  };
  for (now = 0; now <= 1_000; now += TICK) t.expire(now, handler);
  assert.deepEqual(calls.map(([id]) => id).sort(), [a, b].sort());
  assert.equal(t.size, 2);
  assert.equal(lookupIn(t, tuple(1)), a << 1);
  assert.equal(lookupReply(t, tuple(2)), (b << 1) | 1);
  // `a`, still due, is offered again on the next tick; `b` only at its new time.
  calls.length = 0;
  now = 1_250;
  t.expire(now, handler);
  assert.deepEqual(calls, [[a, 1_250]]);
  keepA = false;
  now = 1_500;
  assert.equal(t.expire(now, handler), 1);
  assert.equal(lookupIn(t, tuple(1)), -1);
  calls.length = 0;
  for (now = 1_750; now < 11_000; now += TICK) t.expire(now, handler);
  assert.deepEqual(calls, []);
  t.expire(11_000, handler);
  assert.equal(t.size, 1);
  assert.deepEqual(calls, [[b, 11_000]]);
});

Deno.test("removing a connection takes it off the wheel", () => {
  const t = new ConnTable(4, 17);
  const rec = recorder();
  const a = add(t, tuple(1), 1_000, 0);
  const b = add(t, tuple(2), 1_000, 0);
  t.remove(a);
  for (rec.now = 0; rec.now <= 2_000; rec.now += TICK) t.expire(rec.now, rec.handler);
  assert.deepEqual([...rec.at.keys()], [b]);
  let visited = 0;
  t.forEach(() => visited++);
  assert.equal(visited, 0);
});
