/**
 * Unit tests of the drop watcher against a fake dataplane: one "drops" event per poll in which
 * drop counters grew, none otherwise; a baseline first; resets; no overlapping polls; stop.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { DataplaneRequester } from "../../control/admin_source.ts";
import { type DropsEventData, DropWatcher } from "../../control/drop_watcher.ts";
import { type BusEvent, EventBus } from "../../control/events.ts";
import type { WorkerStats } from "../../dataplane/stats/requests.ts";

/** A dataplane whose counters the test sets; it counts the requests and those in flight. */
class FakeDataplane {
  counters: Record<string, number> = {
    rx_packets: 0,
    drop_no_service: 0,
    drop_malformed_tcp: 0,
    forwarded: 0,
  };
  requests = 0;
  inFlight = 0;
  maxInFlight = 0;
  /** Milliseconds each answer takes. */
  delayMs = 0;
  failNext = false;

  readonly request = (async (name: string): Promise<WorkerStats> => {
    assert.equal(name, "stats");
    this.requests++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.failNext) {
        this.failNext = false;
        throw new Error("worker busy");
      }
      const stats: WorkerStats = {
        connections: 0,
        connectionsByState: {},
        counters: { ...this.counters },
        writeFailures: 0,
        services: [],
      };
      return stats;
    } finally {
      this.inFlight--;
    }
  }) as DataplaneRequester;
}

function setup(options: { intervalMs?: number } = {}) {
  const dp = new FakeDataplane();
  const bus = new EventBus({ firstId: 1 });
  let clock = 0;
  const errors: unknown[] = [];
  const watcher = new DropWatcher(dp.request, bus, {
    intervalMs: options.intervalMs,
    now: options.intervalMs === undefined ? () => clock : undefined,
    onError: (e) => errors.push(e),
  });
  return { dp, bus, watcher, errors, advance: (ms: number) => clock += ms };
}

Deno.test("drops: the first poll is the baseline; then one event per poll with growth by reason", async () => {
  const { dp, bus, watcher, advance } = setup();
  dp.counters.drop_no_service = 40; // drops from before the watch: not news
  assert.equal(await watcher.poll(), null);
  advance(1000);
  dp.counters.rx_packets = 500; // other counters do not matter
  dp.counters.forwarded = 480;
  assert.equal(await watcher.poll(), null, "nothing dropped: no event");
  assert.equal(bus.lastId, 0);

  advance(1003);
  dp.counters.drop_no_service += 3;
  dp.counters.drop_malformed_tcp += 1;
  const expected: DropsEventData = {
    drops: { no_service: 3, malformed_tcp: 1 },
    total: 4,
    intervalMs: 1003,
  };
  assert.deepEqual(await watcher.poll(), expected);
  const events = bus.retained();
  assert.equal(events.length, 1, "one event for both reasons");
  assert.equal(events[0].type, "drops");
  assert.deepEqual(events[0].data, expected);

  advance(1000);
  assert.equal(await watcher.poll(), null, "no growth since: no event");
  assert.equal(bus.retained().length, 1);
});

Deno.test("drops: a counter that went down (new worker) counts its new value; new reasons count from zero", async () => {
  const { dp, watcher, advance } = setup();
  dp.counters.drop_no_service = 100;
  await watcher.poll();
  advance(1000);
  dp.counters.drop_no_service = 7;
  dp.counters.drop_fragment = 2;
  assert.deepEqual((await watcher.poll())?.drops, { no_service: 7, fragment: 2 });
});

Deno.test("drops: concurrent poll() calls share one request", async () => {
  const { dp, watcher } = setup();
  dp.delayMs = 20;
  const [a, b] = [watcher.poll(), watcher.poll()];
  assert.equal(a, b);
  await a;
  assert.equal(dp.requests, 1);
  assert.equal(dp.maxInFlight, 1);
});

Deno.test("drops: started, it polls on its interval, publishes growth, survives errors, and stop() ends it", async () => {
  const { dp, bus, watcher, errors } = setup({ intervalMs: 10 });
  const sub = bus.subscribe();
  watcher.start();
  watcher.start(); // idempotent
  assert.equal(watcher.running, true);
  await waitFor(() => dp.requests >= 2, "baseline and a first comparison");
  dp.failNext = true;
  await waitFor(() => errors.length === 1, "the error reported");
  dp.counters.drop_no_real = 5;
  const ev = (await sub.next()).value as BusEvent;
  assert.equal(ev.type, "drops");
  assert.deepEqual((ev.data as unknown as DropsEventData).drops, { no_real: 5 });
  assert.match(String(errors[0]), /worker busy/);

  await watcher.stop();
  assert.equal(watcher.running, false);
  const after = dp.requests;
  dp.counters.drop_no_real = 50;
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(dp.requests, after, "no poll after stop");
  assert.equal(bus.lastId, ev.id, "and no event");
  sub.close();
});

Deno.test("drops: a slow dataplane is never asked twice at once; a poll in flight at stop publishes nothing", async () => {
  const { dp, bus, watcher } = setup({ intervalMs: 5 });
  dp.delayMs = 25;
  watcher.start();
  await waitFor(() => dp.requests >= 3, "a few polls");
  assert.equal(dp.maxInFlight, 1);
  await waitFor(() => dp.inFlight === 1, "a poll in flight");
  dp.counters.drop_no_service = 9; // the poll in flight will see it
  await watcher.stop();
  assert.equal(dp.inFlight, 0, "stop waited for it");
  assert.equal(bus.lastId, 0, "stopped: its growth is not published");
});

Deno.test("drops: a bad interval is refused", () => {
  const bus = new EventBus();
  for (const intervalMs of [0, -1, NaN]) {
    assert.throws(
      () => new DropWatcher(new FakeDataplane().request, bus, { intervalMs }),
      /intervalMs must be a positive number/,
    );
  }
});

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
}
