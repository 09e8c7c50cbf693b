import assert from "node:assert/strict";
import { FakeClock, flush } from "../fixtures/fake_clock.ts";
import { HealthMonitor } from "../../control/health/monitor.ts";
import type { Checker } from "../../control/health/checker.ts";
import type { CheckResult, HealthCheckConfig } from "../../control/health/types.ts";

function config(over: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return {
    type: "tcp",
    interval: 6,
    timeout: 3,
    retry: 0,
    delayBeforeRetry: 1,
    rise: 1,
    fall: 1,
    alpha: false,
    ...over,
  };
}

const REAL = { address: "10.0.0.1", port: 80 };

/** A checker whose answers a test scripts; records when each attempt started. */
function scripted(answers: (attempt: number) => boolean, clock: FakeClock) {
  const starts: number[] = [];
  const checker: Checker = () => {
    starts.push(clock.now());
    const ok = answers(starts.length - 1);
    return Promise.resolve({ ok, latencyMs: 1, reason: ok ? "fine" : "refused" });
  };
  return { checker, starts };
}

function setup(answers: (attempt: number) => boolean, over: Partial<HealthCheckConfig> = {}) {
  const clock = new FakeClock();
  const { checker, starts } = scripted(answers, clock);
  const changes: { up: boolean; reason: string; at: number }[] = [];
  const monitor = new HealthMonitor({
    clock,
    random: () => 0,
    checkerFor: () => checker,
    onChange: (_s, _r, up, reason) => changes.push({ up, reason, at: clock.now() }),
  });
  const initial = monitor.add("web", REAL, config(over));
  return { clock, starts, changes, monitor, initial };
}

Deno.test("health: first check at once, then every interval; fall 1 takes the real down", async () => {
  const { clock, starts, changes, monitor, initial } = setup((n) => n < 2);
  assert.equal(initial, true);
  await clock.advance(0);
  assert.deepEqual(starts, [0]);
  await clock.advance(12_000);
  assert.deepEqual(starts, [0, 6000, 12000]);
  assert.equal(changes.length, 1);
  assert.equal(changes[0].up, false);
  assert.equal(changes[0].at, 12000);
  assert.match(changes[0].reason, /refused \(1 failing in a row\)/);
  assert.equal(monitor.isUp("web", REAL), false);
  const [st] = monitor.status();
  assert.equal(st.last?.reason, "refused");
  assert.equal(st.last?.latencyMs, 1);
  assert.equal(st.failures, 1);
  monitor.stop();
});

Deno.test("health: retries with delay_before_retry count as one failed round", async () => {
  // Attempts 0..2 fail (one round with retry 2), attempt 3 passes.
  const { clock, starts, changes, monitor } = setup((n) => n >= 3, {
    retry: 2,
    delayBeforeRetry: 2,
    fall: 2,
  });
  await clock.advance(0);
  await clock.advance(4000);
  assert.deepEqual(starts, [0, 2000, 4000]);
  assert.equal(monitor.status()[0].failures, 1);
  assert.equal(monitor.status()[0].last?.attempts, 3);
  assert.equal(changes.length, 0, "one failed round with fall 2 keeps the real up");
  // The next round starts an interval after the last attempt.
  await clock.advance(6000);
  assert.deepEqual(starts, [0, 2000, 4000, 10000]);
  assert.equal(monitor.status()[0].failures, 0);
  assert.equal(monitor.status()[0].successes, 1);
  monitor.stop();
});

Deno.test("health: a passing retry saves the round", async () => {
  const { clock, starts, changes, monitor } = setup((n) => n !== 0, { retry: 1 });
  await clock.advance(1000);
  assert.deepEqual(starts, [0, 1000]);
  assert.equal(changes.length, 0);
  assert.equal(monitor.status()[0].last?.ok, true);
  monitor.stop();
});

Deno.test("health: alpha starts down and rise passes bring it up", async () => {
  const { clock, changes, monitor, initial } = setup(() => true, { alpha: true, rise: 3 });
  assert.equal(initial, false);
  assert.equal(monitor.isUp("web", REAL), false);
  await clock.advance(6000);
  assert.equal(changes.length, 0, "two passes are not enough");
  await clock.advance(6000);
  assert.deepEqual(changes.map((c) => [c.up, c.at]), [[true, 12000]]);
  monitor.stop();
});

Deno.test("health: a target flapping every check never changes state with rise=fall=3", async () => {
  for (const alpha of [false, true]) {
    const { clock, starts, changes, monitor } = setup((n) => n % 2 === 0, {
      rise: 3,
      fall: 3,
      alpha,
    });
    await clock.advance(6000 * 40);
    assert.equal(starts.length, 41);
    assert.equal(changes.length, 0);
    assert.equal(monitor.isUp("web", REAL), !alpha);
    monitor.stop();
  }
});

Deno.test("health: jitter stays within min(maxJitterMs, interval/10)", async () => {
  const clock = new FakeClock();
  const { checker, starts } = scripted(() => true, clock);
  const monitor = new HealthMonitor({
    clock,
    random: () => 0.999,
    maxJitterMs: 1000,
    checkerFor: () => checker,
    onChange: () => {},
  });
  monitor.add("web", REAL, config({ interval: 2 }));
  monitor.add("web", { address: "10.0.0.2", port: 80 }, config({ interval: 60 }));
  await clock.advance(0);
  assert.equal(starts.length, 0, "the first check waits for its jitter");
  await clock.advance(1000);
  // interval 2 → bound 200 ms: first at 199, then 199 + 2000 + 199; interval 60 → 1000 ms.
  assert.deepEqual(starts, [199, 999]);
  await clock.advance(1397);
  assert.deepEqual(starts, [199, 999]);
  await clock.advance(1);
  assert.deepEqual(starts, [199, 999, 2398]);
  assert.equal(monitor.jitterBoundMs(config({ interval: 60 })), 1000);
  monitor.stop();
});

Deno.test("health: at most maxInFlight checks run at once", async () => {
  const clock = new FakeClock();
  let running = 0;
  let peak = 0;
  const release: (() => void)[] = [];
  const checker: Checker = () => {
    running++;
    peak = Math.max(peak, running);
    return new Promise<CheckResult>((resolve) => {
      release.push(() => {
        running--;
        resolve({ ok: true, latencyMs: 1, reason: "fine" });
      });
    });
  };
  const monitor = new HealthMonitor({
    clock,
    random: () => 0,
    maxInFlight: 4,
    checkerFor: () => checker,
    onChange: () => {},
  });
  for (let i = 0; i < 10; i++) {
    monitor.add("web", { address: `10.0.0.${i + 1}`, port: 80 }, config());
  }
  await clock.advance(0);
  assert.equal(running, 4);
  assert.equal(monitor.inFlight, 4);
  let done = 0;
  while (release.length > 0) {
    release.shift()!();
    done++;
    await flush();
    assert.ok(running <= 4);
  }
  assert.equal(done, 10, "every real got its check");
  assert.equal(peak, 4);
  monitor.stop();
});

Deno.test("health: a check that outlives the timeout is aborted and fails", async () => {
  const clock = new FakeClock();
  const checker: Checker = (_t, signal) =>
    new Promise<CheckResult>((resolve) => {
      signal.addEventListener("abort", () =>
        resolve({ ok: false, latencyMs: 3000, reason: "timed out" }));
    });
  const changes: boolean[] = [];
  const monitor = new HealthMonitor({
    clock,
    random: () => 0,
    checkerFor: () => checker,
    onChange: (_s, _r, up) => changes.push(up),
  });
  monitor.add("web", REAL, config({ timeout: 3 }));
  await clock.advance(2999);
  assert.deepEqual(changes, []);
  await clock.advance(1);
  assert.deepEqual(changes, [false]);
  assert.equal(monitor.status()[0].last?.reason, "timed out");
  monitor.stop();
});

Deno.test("health: pause stops rounds, resume checks at once; force overrides both ways", async () => {
  const { clock, starts, changes, monitor } = setup(() => true);
  await clock.advance(0);
  monitor.pause("web", REAL);
  await clock.advance(60_000);
  assert.deepEqual(starts, [0]);
  assert.equal(monitor.status()[0].paused, true);
  monitor.resume("web", REAL);
  await clock.advance(0);
  assert.deepEqual(starts, [0, 60_000]);

  monitor.force("web", REAL, "down");
  assert.deepEqual(changes.map((c) => [c.up, c.reason]), [[false, "forced down by operator"]]);
  await clock.advance(6000);
  assert.equal(starts.length, 3, "checks go on while forced");
  assert.equal(monitor.isUp("web", REAL), false, "a passing check does not undo the force");
  assert.equal(monitor.status()[0].checkedUp, true);
  monitor.force("web", REAL, null);
  assert.equal(changes.length, 2);
  assert.equal(changes[1].up, true);
  monitor.force("web", REAL, "up");
  assert.equal(changes.length, 2, "forcing to the current state is no change");
  monitor.stop();
});

Deno.test("health: dynamic weights are reported when they change", async () => {
  const clock = new FakeClock();
  const weights: number[] = [];
  let n = 0;
  const answers = [5, 5, 7];
  const checker: Checker = () =>
    Promise.resolve({ ok: true, latencyMs: 1, reason: "exit", weight: answers[n++] });
  const monitor = new HealthMonitor({
    clock,
    random: () => 0,
    checkerFor: () => checker,
    onChange: () => {},
    onWeight: (_s, _r, w) => weights.push(w),
  });
  monitor.add("web", REAL, config({ type: "exec" }));
  await clock.advance(12_000);
  assert.deepEqual(weights, [5, 7]);
  assert.equal(monitor.status()[0].weight, 7);
  monitor.stop();
});

Deno.test("health: checks probe the check's port; initialUp and onRound", async () => {
  const clock = new FakeClock();
  const probed: number[] = [];
  const rounds: { port: number; type: string; ok: boolean; attempts: number }[] = [];
  const changes: boolean[] = [];
  const checker: Checker = (target) => {
    probed.push(target.port);
    return Promise.resolve({ ok: true, latencyMs: 1, reason: "fine" });
  };
  const monitor = new HealthMonitor({
    clock,
    random: () => 0,
    checkerFor: () => checker,
    onChange: (_s, _r, up) => changes.push(up),
    onRound: (_s, real, type, last) =>
      rounds.push({ port: real.port, type, ok: last.ok, attempts: last.attempts }),
  });
  assert.equal(monitor.add("web", REAL, config({ port: 8080, rise: 2 }), false), false);
  await clock.advance(0);
  assert.deepEqual(probed, [8080]);
  assert.deepEqual(rounds, [{ port: 80, type: "tcp", ok: true, attempts: 1 }]);
  assert.equal(monitor.statusOf("web", REAL)?.up, false, "starts down as asked; one pass of 2");
  await clock.advance(6000);
  assert.deepEqual(changes, [true]);
  assert.equal(monitor.statusOf("web", { address: "10.0.0.9", port: 80 }), undefined);
  monitor.stop();
});
