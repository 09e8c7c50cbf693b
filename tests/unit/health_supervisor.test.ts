import assert from "node:assert/strict";
import { FakeClock } from "../fixtures/fake_clock.ts";
import { stringify } from "yaml";
import { type ApplianceConfig, parseConfig } from "../../control/config.ts";
import type { Checker } from "../../control/health/checker.ts";
import { HealthMonitor } from "../../control/health/monitor.ts";
import { runNotifyCommand } from "../../control/health/notify.ts";
import { initialQuorumUp, nextQuorumUp } from "../../control/health/quorum.ts";
import {
  type HealthEvent,
  HealthNotFoundError,
  HealthSupervisor,
  NoHealthCheckError,
  type RealStateEvent,
  type ServiceStateEvent,
} from "../../control/health/supervisor.ts";

type Obj = Record<string, unknown>;

const CHECK = { type: "tcp", interval: 6, timeout: 3, retry: 0 };

/** A service named `name` on 10.10.10.1:80 checked every 6 s, fall 1, with `reals`. */
function service(name: string, reals: Obj[], extra: Obj = {}, vipLast = 1): Obj {
  return { name, vip: `10.10.10.${vipLast}`, port: 80, health_check: CHECK, ...extra, reals };
}

function real(last: number, extra: Obj = {}): Obj {
  return { address: `10.0.0.${last}`, port: 80, ...extra };
}

function config(...services: Obj[]): ApplianceConfig {
  return parseConfig(stringify({ services }), "t.yaml");
}

/** Every check's answer is scripted per "address:port"; unscripted targets pass. */
function harness(cfg: ApplianceConfig, notifyTimeoutMs?: number) {
  const clock = new FakeClock();
  const down = new Set<string>();
  const weights = new Map<string, number>();
  const probes: { target: string; at: number }[] = [];
  const checker: Checker = (target) => {
    const k = `${target.address}:${target.port}`;
    probes.push({ target: k, at: clock.now() });
    const ok = !down.has(k);
    const weight = weights.get(k);
    return Promise.resolve({
      ok,
      latencyMs: 2.5,
      reason: ok ? "connected" : "connection refused",
      ...(weight === undefined ? {} : { weight }),
    });
  };
  const reapplies: { reason: string; cut: boolean }[] = [];
  const events: HealthEvent[] = [];
  const logs: { message: string; fields: Obj }[] = [];
  const supervisor = new HealthSupervisor({
    clock,
    reapply: (reason, cut) => reapplies.push({ reason, cut }),
    onEvent: (e) => events.push(e),
    log: (message, fields) => logs.push({ message, fields }),
    createMonitor: (options) =>
      new HealthMonitor({ ...options, random: () => 0, checkerFor: () => checker }),
    ...(notifyTimeoutMs === undefined ? {} : { notifyTimeoutMs }),
  });
  supervisor.sync(cfg);
  const reals = (c: ApplianceConfig, name = "web") =>
    supervisor.effective(c).services.find((s) => s.name === name)!.reals.map((r) =>
      `${r.address}:${r.port}/${r.weight}`
    );
  const realEvents = () => events.filter((e): e is RealStateEvent => e.kind === "real");
  const serviceEvents = () => events.filter((e): e is ServiceStateEvent => e.kind === "service");
  return {
    clock,
    down,
    weights,
    probes,
    reapplies,
    events,
    logs,
    supervisor,
    reals,
    realEvents,
    serviceEvents,
  };
}

Deno.test("supervisor: a failed real leaves its service; it comes back when it passes", async () => {
  const cfg = config(service("web", [real(11), real(12, { weight: 3 })]));
  const h = harness(cfg);
  await h.clock.advance(0);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1", "10.0.0.12:80/3"]);
  assert.equal(h.reapplies.length, 0, "all up as configured: nothing to re-apply");

  h.down.add("10.0.0.11:80");
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.12:80/3"]);
  assert.equal(h.reapplies.length, 1);
  assert.equal(h.reapplies[0].cut, false, "connections drain by default");
  assert.match(h.reapplies[0].reason, /web 10\.0\.0\.11:80 down: tcp check: connection refused/);

  h.down.delete("10.0.0.11:80");
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1", "10.0.0.12:80/3"]);
  assert.equal(h.reapplies.length, 2);
  h.supervisor.stop();
});

Deno.test("supervisor: inhibit_on_failure keeps a failed real at weight 0; a real overrides it", async () => {
  const cfg = config(
    service("web", [real(11), real(12, { inhibit_on_failure: false })], {
      inhibit_on_failure: true,
    }),
    service("api", [real(21), real(22, { inhibit_on_failure: true })], {}, 2),
  );
  const h = harness(cfg);
  for (const a of ["10.0.0.11:80", "10.0.0.12:80", "10.0.0.21:80", "10.0.0.22:80"]) h.down.add(a);
  await h.clock.advance(0);
  // No sorry server: a service without quorum keeps what health leaves it.
  assert.deepEqual(h.reals(cfg, "web"), ["10.0.0.11:80/0"]);
  assert.deepEqual(h.reals(cfg, "api"), ["10.0.0.22:80/0"]);
  h.supervisor.stop();
});

Deno.test("supervisor: expire_on_failure cuts the connections of reals that leave", async () => {
  const cfg = config(
    service("web", [real(11), real(12)], { expire_on_failure: true }),
    service("api", [real(21), real(22)], { expire_on_failure: true, inhibit_on_failure: true }, 2),
  );
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(0);
  assert.deepEqual(h.reapplies.map((r) => r.cut), [true]);
  h.down.add("10.0.0.21:80");
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg, "api"), ["10.0.0.21:80/0", "10.0.0.22:80/1"]);
  assert.deepEqual(h.reapplies.map((r) => r.cut), [true, false], "weight 0 keeps connections");
  h.supervisor.stop();
});

Deno.test("supervisor: with expire_on_failure the sorry server's exit drains, reals' exits cut", async () => {
  const cfg = config(service("web", [real(11), real(12, { weight: 2 })], {
    expire_on_failure: true,
    quorum: 2,
    sorry_server: { address: "10.0.0.99" },
  }));
  const h = harness(cfg);
  h.down.add("10.0.0.12:80");
  await h.clock.advance(0);
  // Live weight 1 < 2: .12 failed and the live .11 leaves for the sorry server.
  assert.deepEqual(h.reals(cfg), ["10.0.0.99:80/1"]);
  h.down.delete("10.0.0.12:80");
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1", "10.0.0.12:80/2"]);
  assert.deepEqual(h.reapplies.map((r) => r.cut), [true, false]);
  h.supervisor.stop();
});

Deno.test("supervisor: a dynamic exec check's weight replaces the configured one", async () => {
  const exec = { type: "exec", interval: 6, exec: { command: "/bin/true", dynamic: true } };
  const cfg = config(service("web", [real(11, { weight: 5 }), real(12)], { health_check: exec }));
  const h = harness(cfg);
  h.weights.set("10.0.0.11:80", 7);
  await h.clock.advance(0);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/7", "10.0.0.12:80/1"]);
  assert.equal(h.reapplies.length, 1);
  const w = h.events.find((e) => e.kind === "weight");
  assert.deepEqual(w, {
    kind: "weight",
    service: "web",
    address: "10.0.0.11",
    port: 80,
    weight: 7,
    previous: 5,
    at: 0,
  });
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).dynamicWeight, 7);
  await h.clock.advance(6000);
  assert.equal(h.reapplies.length, 1, "the same weight again changes nothing");
  h.supervisor.stop();
});

Deno.test("supervisor: the sorry server alone takes over when every real is down", async () => {
  const cfg = config(
    service("web", [real(11), real(12)], { sorry_server: { address: "10.0.0.99" } }),
    service("inh", [real(21), real(22)], {
      sorry_server: { address: "10.0.0.98", port: 8080 },
      inhibit_on_failure: true,
    }, 2),
  );
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(0);
  assert.deepEqual(h.reals(cfg), ["10.0.0.12:80/1"]);
  assert.equal(h.supervisor.serviceStatus()[0].sorryActive, false);

  h.down.add("10.0.0.12:80");
  for (const a of ["10.0.0.21:80", "10.0.0.22:80"]) h.down.add(a);
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.99:80/1"], "port defaults to the service's");
  assert.deepEqual(h.reals(cfg, "inh"), ["10.0.0.21:80/0", "10.0.0.22:80/0", "10.0.0.98:8080/1"]);
  const [web] = h.supervisor.serviceStatus();
  assert.equal(web.state, "down");
  assert.equal(web.sorryActive, true);
  assert.equal(web.upReals, 0);
  const lost = h.serviceEvents().find((e) => e.service === "web")!;
  assert.equal(lost.state, "down");
  assert.equal(lost.sorryActive, true);
  assert.equal(lost.liveWeight, 0);
  assert.equal(lost.previousForMs, 6000);

  h.down.delete("10.0.0.12:80");
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.12:80/1"], "the sorry server leaves with the quorum");
  assert.equal(h.supervisor.serviceStatus()[0].sorryActive, false);
  assert.deepEqual(
    h.supervisor.counts().services.find((s) => s.service === "web"),
    { service: "web", up: 1, down: 1 },
  );
  h.supervisor.stop();
});

Deno.test("quorum: keepalived's thresholds with hysteresis", () => {
  const q = { quorum: 4, hysteresis: 1 };
  assert.equal(initialQuorumUp(5, q), true);
  assert.equal(initialQuorumUp(4, q), false, "start needs quorum + hysteresis");
  assert.equal(nextQuorumUp(true, 3, q), true, "up stays up down to quorum - hysteresis");
  assert.equal(nextQuorumUp(true, 2, q), false);
  assert.equal(nextQuorumUp(false, 4, q), false, "down stays down below quorum + hysteresis");
  assert.equal(nextQuorumUp(false, 5, q), true);
  assert.equal(nextQuorumUp(true, 0, { quorum: 1, hysteresis: 5 }), false, "0 is always down");
  assert.equal(nextQuorumUp(true, 1, { quorum: 1, hysteresis: 0 }), true);
});

Deno.test("supervisor: quorum with hysteresis raises and clears the service-down state", async () => {
  const cfg = config(service("web", [real(11), real(12, { weight: 2 }), real(13, { weight: 3 })], {
    quorum: 4,
    hysteresis: 1,
    sorry_server: { address: "10.0.0.99" },
  }));
  const h = harness(cfg);
  await h.clock.advance(0);
  assert.equal(h.supervisor.serviceStatus()[0].state, "up");
  assert.equal(h.supervisor.serviceStatus()[0].upThreshold, 5);
  assert.equal(h.supervisor.serviceStatus()[0].downThreshold, 3);

  h.down.add("10.0.0.13:80"); // live weight 3: not below 4 - 1
  await h.clock.advance(6000);
  assert.equal(h.supervisor.serviceStatus()[0].state, "up");
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1", "10.0.0.12:80/2"]);

  h.down.add("10.0.0.12:80"); // live weight 1 < 3: lost
  await h.clock.advance(6000);
  assert.equal(h.supervisor.serviceStatus()[0].state, "down");
  assert.deepEqual(h.reals(cfg), ["10.0.0.99:80/1"], "live reals leave with the sorry server in");

  h.down.delete("10.0.0.12:80"); // live weight 3 < 4 + 1: still down
  await h.clock.advance(6000);
  assert.equal(h.supervisor.serviceStatus()[0].state, "down");
  assert.deepEqual(h.reals(cfg), ["10.0.0.99:80/1"]);

  h.down.delete("10.0.0.13:80"); // live weight 6 ≥ 5: gained
  await h.clock.advance(6000);
  assert.equal(h.supervisor.serviceStatus()[0].state, "up");
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1", "10.0.0.12:80/2", "10.0.0.13:80/3"]);
  assert.deepEqual(h.serviceEvents().map((e) => [e.state, e.liveWeight, e.threshold]), [
    ["down", 1, 3],
    ["up", 6, 5],
  ]);
  h.supervisor.stop();
});

Deno.test("supervisor: a service starts with its quorum down when the live weight is short", () => {
  const cfg = config(service("web", [real(11), real(12)], {
    quorum: 2,
    hysteresis: 1,
    sorry_server: { address: "10.0.0.99" },
  }));
  const h = harness(cfg);
  assert.deepEqual(h.reals(cfg), ["10.0.0.99:80/1"]);
  assert.equal(h.serviceEvents()[0].reason, "starting with quorum down");
  h.supervisor.stop();
});

Deno.test("supervisor: alpha reals start down, so the sorry server serves until checks pass", async () => {
  const cfg = config(service("web", [real(11)], {
    health_check: { ...CHECK, alpha: true, rise: 2 },
    sorry_server: { address: "10.0.0.99" },
  }));
  const h = harness(cfg);
  assert.deepEqual(h.reals(cfg), ["10.0.0.99:80/1"]);
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1"]);
  assert.equal(h.reapplies.length, 1);
  h.supervisor.stop();
});

Deno.test("supervisor: effective() does not modify its input", async () => {
  const cfg = config(service("web", [real(11), real(12)], {
    inhibit_on_failure: true,
    sorry_server: { address: "10.0.0.99" },
  }));
  const before = structuredClone(cfg);
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(0);
  const out = h.supervisor.effective(cfg);
  assert.notEqual(out, cfg);
  assert.deepEqual(cfg, before);
  assert.equal(out.services[0].reals[0].weight, 0);
  h.supervisor.stop();
});

Deno.test("supervisor: a flapping real with rise/fall 3 never causes a re-apply", async () => {
  const cfg = config(service("web", [real(11), real(12)], {
    health_check: { ...CHECK, rise: 3, fall: 3 },
  }));
  const h = harness(cfg);
  for (let round = 0; round < 40; round++) {
    if (round % 2 === 0) h.down.add("10.0.0.11:80");
    else h.down.delete("10.0.0.11:80");
    await h.clock.advance(round === 0 ? 0 : 6000);
  }
  assert.equal(h.probes.filter((p) => p.target === "10.0.0.11:80").length, 40);
  assert.equal(h.reapplies.length, 0);
  assert.equal(h.realEvents().length, 0);
  const checks = h.supervisor.counts().checks.find((c) => c.type === "tcp")!;
  assert.deepEqual(checks, { type: "tcp", run: 80, failed: 20, attempts: 80 });
  h.supervisor.stop();
});

Deno.test("supervisor: a reload with the same checks keeps every real's state and counters", async () => {
  const build = (weight12: number) =>
    config(service("web", [real(11), real(12, { weight: weight12 })], {
      health_check: { ...CHECK, fall: 2 },
    }));
  const cfg = build(1);
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.12:80/1"]);
  const before = h.supervisor.realStatus("web", "10.0.0.11", 80);
  assert.equal(before.state, "down");
  const probesBefore = h.probes.length;

  const next = build(4);
  h.supervisor.sync(next);
  const after = h.supervisor.realStatus("web", "10.0.0.11", 80);
  assert.equal(after.state, "down");
  assert.equal(after.failures, before.failures);
  assert.equal(after.since, before.since);
  assert.deepEqual(after.transitions, { up: 0, down: 1 });
  assert.deepEqual(h.reals(next), ["10.0.0.12:80/4"]);
  await h.clock.advance(0);
  assert.equal(h.probes.length, probesBefore, "no extra probe: the schedule is kept");
  await h.clock.advance(6000);
  assert.equal(h.probes.length, probesBefore + 2);
  assert.equal(h.reapplies.length, 1, "sync does not re-apply; the caller applies");
  h.supervisor.stop();
});

Deno.test("supervisor: a changed check re-registers the real, which keeps its state", async () => {
  const cfg = config(service("web", [real(11), real(12)], { health_check: { ...CHECK, fall: 1 } }));
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(1000);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "down");
  const next = config(
    service("web", [real(11, { health_check: { interval: 2, rise: 2 } }), real(12)]),
  );
  const events = h.events.length;
  // The change moves the probe of .11 to a new schedule: a round at once, then every 2 s.
  h.supervisor.sync(next);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "down");
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).failures, 0, "new counters");
  assert.equal(h.events.length, events, "no change reported");
  h.down.delete("10.0.0.11:80");
  await h.clock.advance(0);
  assert.deepEqual(h.probes.filter((p) => p.target === "10.0.0.11:80").map((p) => p.at), [0, 1000]);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "down", "rise 2: one pass");
  await h.clock.advance(2000);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "up");
  assert.equal(h.realEvents().at(-1)?.previousForMs, 3000, "down at 0, up at 3000");
  assert.deepEqual(h.reals(next), ["10.0.0.11:80/1", "10.0.0.12:80/1"]);
  // .12's schedule did not move.
  assert.deepEqual(h.probes.filter((p) => p.target === "10.0.0.12:80").map((p) => p.at), [0]);
  h.supervisor.stop();
});

Deno.test("supervisor: a real removed from the config stops being checked", async () => {
  const cfg = config(service("web", [real(11), real(12)]));
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(0);
  const next = config(service("web", [real(12)]));
  h.supervisor.sync(next);
  await h.clock.advance(60_000);
  assert.equal(h.probes.filter((p) => p.target === "10.0.0.11:80").length, 1);
  assert.deepEqual(h.supervisor.status().map((s) => s.address), ["10.0.0.12"]);
  assert.throws(
    () => h.supervisor.force("web", "10.0.0.11", 80, "down"),
    (e) => e instanceof HealthNotFoundError && e.what === "real",
  );
  assert.ok(h.events.some((e) => e.kind === "control" && e.action === "removed"));
  assert.deepEqual(
    h.supervisor.counts().reals.map((r) => [r.address, r.up, r.down]),
    [["10.0.0.11", 0, 1], ["10.0.0.12", 0, 0]],
    "totals of a removed real stay",
  );
  // .11 was checked once; .12 goes on every 6 s: 1 + 11 rounds over the minute.
  const tcp = h.supervisor.counts().checks.find((c) => c.type === "tcp")!;
  assert.deepEqual([tcp.run, tcp.failed], [12, 1]);
  h.supervisor.stop();
});

Deno.test("supervisor: removing a check brings a failed real back; adding one keeps it up", async () => {
  const cfg = config(service("web", [real(11), real(12)]));
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(0);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "down");
  const unchecked = config(
    service("web", [real(11), real(12)], { health_check: { type: "none" } }),
  );
  h.supervisor.sync(unchecked);
  const st = h.supervisor.realStatus("web", "10.0.0.11", 80);
  assert.equal(st.state, "up");
  assert.equal(st.check, "none");
  assert.equal(h.realEvents().at(-1)?.cause, "config");
  h.supervisor.sync(cfg);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "up");
  await h.clock.advance(0);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "down");
  h.supervisor.stop();
});

Deno.test("supervisor: pause, resume and force; typed errors for unknown names", async () => {
  const cfg = config(
    service("web", [real(11), real(12)]),
    { name: "plain", vip: "10.10.10.2", port: 80, reals: [real(21)] },
  );
  const h = harness(cfg);
  await h.clock.advance(0);
  h.supervisor.pause("web", "10.0.0.11", 80);
  await h.clock.advance(30_000);
  assert.equal(h.probes.filter((p) => p.target === "10.0.0.11:80").length, 1);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).paused, true);
  h.supervisor.resume("web", "10.0.0.11", 80);
  await h.clock.advance(0);
  assert.equal(h.probes.filter((p) => p.target === "10.0.0.11:80").length, 2);

  h.supervisor.force("web", "10.0.0.12", 80, "down");
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1"]);
  assert.match(h.reapplies.at(-1)!.reason, /forced down by operator/);
  await h.clock.advance(6000);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1"], "passing checks do not undo a force");
  const forced = h.supervisor.realStatus("web", "10.0.0.12", 80);
  assert.deepEqual([forced.state, forced.checked, forced.forced], ["down", "up", "down"]);
  assert.equal(forced.effectiveWeight, null);
  // The override survives a reload.
  h.supervisor.sync(config(service("web", [real(11), real(12)]), {
    name: "plain",
    vip: "10.10.10.2",
    port: 80,
    reals: [real(21)],
  }));
  assert.equal(h.supervisor.realStatus("web", "10.0.0.12", 80).forced, "down");
  h.supervisor.force("web", "10.0.0.12", 80, null);
  assert.deepEqual(h.reals(cfg), ["10.0.0.11:80/1", "10.0.0.12:80/1"]);

  // A real without a check can be forced, not paused.
  h.supervisor.force("plain", "10.0.0.21", 80, "down");
  assert.deepEqual(h.reals(cfg, "plain"), []);
  assert.throws(() => h.supervisor.pause("plain", "10.0.0.21", 80), NoHealthCheckError);
  assert.throws(
    () => h.supervisor.force("nope", "10.0.0.21", 80, "up"),
    (e) => e instanceof HealthNotFoundError && e.what === "service",
  );
  assert.throws(
    () => h.supervisor.resume("web", "10.0.0.11", 81),
    (e) => e instanceof HealthNotFoundError && e.what === "real",
  );
  const actions = h.events.filter((e) => e.kind === "control").map((e) =>
    e.kind === "control" ? `${e.action}:${e.forced ?? ""}` : ""
  );
  assert.deepEqual(actions, ["pause:", "resume:", "force:down", "force:", "force:down"]);
  h.supervisor.stop();
});

Deno.test("supervisor: every change is an event and a log line with reason and timing", async () => {
  const cfg = config(service("web", [real(11), real(12)]));
  const h = harness(cfg);
  await h.clock.advance(0);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(12_000);
  assert.deepEqual(h.realEvents(), [{
    kind: "real",
    service: "web",
    address: "10.0.0.11",
    port: 80,
    state: "down",
    reason: "tcp check: connection refused (1 failing in a row)",
    cause: "check",
    at: 6000,
    previousForMs: 6000,
    latencyMs: 2.5,
  }]);
  const line = h.logs.find((l) => l.message === "real server down")!;
  assert.equal(line.fields.after_ms, 6000);
  assert.equal(line.fields.latency_ms, 2.5);
  assert.equal(line.fields.real, "10.0.0.11:80");
  const view = h.supervisor.realStatus("web", "10.0.0.11", 80);
  assert.deepEqual(view.last, {
    ok: false,
    latencyMs: 2.5,
    reason: "connection refused",
    attempts: 1,
    at: 12_000,
  });
  assert.equal(view.since, 6000);
  assert.equal(view.failures, 2);
  assert.deepEqual(
    h.supervisor.counts().reals.find((r) => r.address === "10.0.0.11"),
    { service: "web", address: "10.0.0.11", port: 80, up: 0, down: 1 },
  );
  h.supervisor.stop();
});

Deno.test("supervisor: notify_up/notify_down run with the service, real and state", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-notify-" });
  try {
    const file = `${dir}/notes`;
    const script = `${dir}/notify.sh`;
    await Deno.writeTextFile(
      script,
      '#!/bin/sh\necho "$1 $TUNVS_SERVICE $TUNVS_REAL $TUNVS_STATE" >> "$2"\n',
    );
    await Deno.chmod(script, 0o755);
    const cfg = config(service("web", [
      real(11, {
        notify_down: ["/bin/sh", "-c", `echo "down-list $TUNVS_REAL $TUNVS_STATE" >> ${file}`],
      }),
      real(12),
    ], { notify_up: `${script} up-line ${file}`, notify_down: `${script} svc-down ${file}` }));
    const h = harness(cfg);
    h.down.add("10.0.0.11:80");
    h.down.add("10.0.0.12:80");
    await h.clock.advance(0);
    await h.supervisor.idle();
    h.down.delete("10.0.0.11:80");
    await h.clock.advance(6000);
    await h.supervisor.idle();
    const lines = (await Deno.readTextFile(file)).trim().split("\n").sort();
    assert.deepEqual(lines, [
      "down-list 10.0.0.11:80 down",
      "svc-down web 10.0.0.12:80 down",
      "up-line web 10.0.0.11:80 up",
    ]);
    assert.equal(h.logs.filter((l) => l.message === "notify command ran").length, 3);
    h.supervisor.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("notify: a failing command's exit and stderr are reported; a hung one is killed", async () => {
  const failed = await runNotifyCommand(
    ["/bin/sh", "-c", 'echo "no route to $TUNVS_REAL" >&2; exit 3'],
    { TUNVS_REAL: "10.0.0.11:80" },
    5000,
  );
  assert.equal(failed.code, 3);
  assert.equal(failed.stderr, "no route to 10.0.0.11:80");
  assert.equal(failed.timedOut, false);

  const hung = await runNotifyCommand(["/bin/sleep", "10"], {}, 100);
  assert.equal(hung.timedOut, true);
  assert.equal(hung.code, null);
  assert.equal(hung.signal, "SIGKILL");
  assert.ok(hung.ms < 5000);

  const missing = await runNotifyCommand(["/nonexistent/notify"], {}, 1000);
  assert.equal(missing.code, null);
  assert.match(missing.error ?? "", /No such file|not found/i);
});

Deno.test("supervisor: a failing notify command is logged and does not hold up checks", async () => {
  const cfg = config(service("web", [real(11, {
    notify_down: ["/bin/sh", "-c", "echo broken >&2; sleep 0.3; exit 1"],
  })]));
  const h = harness(cfg);
  h.down.add("10.0.0.11:80");
  await h.clock.advance(0);
  h.down.delete("10.0.0.11:80");
  await h.clock.advance(6000);
  assert.equal(h.supervisor.realStatus("web", "10.0.0.11", 80).state, "up", "checks went on");
  await h.supervisor.idle();
  const line = h.logs.find((l) => l.message === "notify command failed")!;
  assert.equal(line.fields.exit, 1);
  assert.equal(line.fields.stderr, "broken");
  h.supervisor.stop();
});
