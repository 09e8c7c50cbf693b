/**
 * The checkers that look past the TCP handshake, and what health does to a whole service, end to
 * end in seed 000's NAT lab: an HTTP check that sees status 500 or a body whose digest changed,
 * an exec check that outlives its timeout, a flapping real that must not flap traffic with
 * rise/fall 3, the sorry server taking over when every real is down, and the operator's force,
 * pause and resume.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { ApplianceProcess } from "../../lab/appliance.ts";
import { Lab, pollUntil } from "../../lab/netns.ts";
import {
  curl,
  type HealthEndpointServer,
  startHealthEndpointServer,
  startHttpServer,
} from "../../lab/servers.ts";
import { buildSeed000, SEED000, type Seed000 } from "../../lab/topology.ts";
import type { RealHealthView, ServiceHealthView } from "../../control/health/supervisor.ts";
import { e2eOptions, type ServiceDef, whoAnswers, withAppliance, writeConfig } from "./harness.ts";
import {
  alternates,
  HEADER,
  health,
  healthOf,
  sleep,
  waitChecked,
  waitState,
} from "./health_harness.ts";

const opts = e2eOptions("health checker end-to-end tests");
const WEB01 = "10.10.10.11";
const SORRY = "10.10.10.99";
/** The endpoints the reals' servers answer besides their page. */
const ENDPOINTS = ["health", "content", "flap"];

interface Ctx {
  lab: Lab;
  topo: Seed000;
  dir: string;
  /** The reals' servers by name; replaced when restarted. */
  servers: Map<string, HealthEndpointServer>;
}

/** A `health_check:` line with the timing `t`, no retries, and the settings in `rest`. */
function check(t: { interval: number; timeout: number; rise: number; fall: number }, rest: string) {
  return `health_check: { interval: ${t.interval}, timeout: ${t.timeout}, retry: 0, ` +
    `rise: ${t.rise}, fall: ${t.fall}, ${rest} }`;
}

function service(c: Ctx, name: string, port: number, settings: string[]): ServiceDef {
  return {
    name,
    vip: c.topo.vip,
    scheduler: "rr",
    settings: [`port: ${port}`, ...settings],
    reals: c.topo.reals.map((r) => ({ address: r.addr, port: 80 })),
  };
}

/** A third host on the reals' bridge, at SORRY, for the sorry server. */
async function addSorryHost(lab: Lab): Promise<void> {
  await lab.addNamespace("sorry");
  await lab.sysctl("sorry", "net.ipv6.conf.all.disable_ipv6", 1);
  await lab.sysctl("sorry", "net.ipv6.conf.default.disable_ipv6", 1);
  await lab.link("sorry", "eth0", "director", "rs-sorry");
  await lab.attach("director", "rs-sorry", SEED000.bridge);
  await lab.addAddress("sorry", "eth0", `${SORRY}/${SEED000.prefix}`);
  await lab.defaultRoute("sorry", SEED000.dip);
}

/** Starts (or restarts, keeping its endpoints' modes) a real's server. */
async function startReal(c: Ctx, name: string): Promise<void> {
  const controlDir = c.servers.get(name)?.controlDir;
  c.servers.set(name, await startHealthEndpointServer(c.lab, name, { port: 80, controlDir }));
}

/** Both reals serving with every endpoint healthy, whatever an earlier step left behind. */
async function resetReals(c: Ctx): Promise<void> {
  for (const real of c.topo.reals) {
    const r = await curl(c.lab, "director", `http://${real.addr}/`, { timeoutSec: 2 });
    if (r.code !== 200) await startReal(c, real.name);
    for (const e of ENDPOINTS) await c.servers.get(real.name)!.setMode(e, "ok");
  }
}

function only(who: string, n: number): string[] {
  return Array.from({ length: n }, () => who);
}

/** Who answers `n` requests from the client to the VIP's `port`. */
async function answers(c: Ctx, port: number, n: number): Promise<string[]> {
  const who: string[] = [];
  for (let i = 0; i < n; i++) {
    const url = `http://${c.topo.vip}:${port}/`;
    who.push(...await whoAnswers(c.lab, "client", url, 1));
  }
  return who;
}

function md5(text: string): string {
  return createHash("md5").update(text).digest("hex");
}

/** Fast HTTP checks: a failing status is seen at once, so detection is rounds apart. */
const FAST = { interval: 0.5, timeout: 1, rise: 1, fall: 2 };
/** Exec checks whose failure is the timeout itself. */
const EXEC = { interval: 0.5, timeout: 0.5, rise: 1, fall: 2 };
/** Seed 000's TCP check, as in health.test.ts. */
const TCP = { interval: 1, timeout: 1, rise: 1, fall: 2 };

/** Bound of a fast failure's detection: fall rounds `interval` apart, one timeout, one interval. */
function fastBoundMs(t: { interval: number; timeout: number; fall: number }): number {
  return (t.interval * t.fall + t.timeout + t.interval) * 1000;
}

/**
 * HTTP status 500 and a changed body (wrong digest) mark the real down in their service; an exec
 * check that outlives its timeout is killed and marks it down in its own. Three services on the
 * VIP's ports 80, 8080 and 8081 share the reals, so each failure shows in its service alone.
 */
async function httpAndExecCheckers(c: Ctx): Promise<void> {
  const okDigest = md5("ok\n");
  const slow = `${c.dir}/slow-`;
  const sleeper = `[/bin/sh, -c, '[ -e ${slow}$TUNVS_REAL_ADDRESS ] && exec sleep 5; exit 0']`;
  const config = await writeConfig(c.dir, "checkers", [
    service(c, "status", 80, [check(FAST, "type: http, http: { path: /health, status: [200] }")]),
    service(c, "digest", 8080, [
      check(FAST, `type: http, http: { path: /content, digest: ${okDigest} }`),
    ]),
    service(c, "exec", 8081, [check(EXEC, `type: exec, exec: { command: ${sleeper} }`)]),
  ], HEADER);
  const web01 = c.servers.get("web01")!;
  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    for (const port of [80, 8080, 8081]) alternates(await answers(c, port, 4));

    let at = Date.now();
    await web01.setMode("health", "fail");
    const failed = await waitState(app, "status", WEB01, "down", 5000);
    console.log(
      `http: status 500 seen down after ${failed.since - at} ms (bound ${fastBoundMs(FAST)} ms)`,
    );
    assert.ok(failed.since - at <= fastBoundMs(FAST));
    assert.equal(failed.last?.reason, "status 500 not in 200");
    assert.equal((await healthOf(app, "digest", WEB01)).state, "up");
    await sleep(300);
    assert.deepEqual(await answers(c, 80, 4), only("web02", 4));
    alternates(await answers(c, 8080, 4));
    await web01.setMode("health", "ok");
    await waitState(app, "status", WEB01, "up", 5000);

    at = Date.now();
    await web01.setMode("content", "changed");
    const changed = await waitState(app, "digest", WEB01, "down", 5000);
    console.log(
      `http: wrong digest seen down after ${changed.since - at} ms (bound ${fastBoundMs(FAST)} ms)`,
    );
    assert.ok(changed.since - at <= fastBoundMs(FAST));
    assert.equal(changed.last?.reason, `body digest ${md5("changed\n")} != ${okDigest}`);
    await sleep(300);
    assert.deepEqual(await answers(c, 8080, 4), only("web02", 4));
    alternates(await answers(c, 80, 4));

    at = Date.now();
    await Deno.writeTextFile(`${slow}${WEB01}`, "");
    const hung = await waitState(app, "exec", WEB01, "down", 5000);
    // Each failing round lasts the timeout before the next waits its interval.
    const boundMs = (EXEC.fall * (EXEC.interval + EXEC.timeout) + EXEC.interval) * 1000;
    console.log(
      `exec: timed-out check seen down after ${hung.since - at} ms (bound ${boundMs} ms)`,
    );
    assert.ok(hung.since - at <= boundMs);
    assert.equal(hung.last?.reason, "timed out; killed");
    const latency = hung.last!.latencyMs;
    assert.ok(
      latency >= EXEC.timeout * 1000 - 20 && latency < EXEC.timeout * 1000 + 500,
      `${latency}`,
    );
    assert.equal((await healthOf(app, "exec", "10.10.10.12")).state, "up");
    await sleep(300);
    assert.deepEqual(await answers(c, 8081, 4), only("web02", 4));
    await Deno.remove(`${slow}${WEB01}`);
    await waitState(app, "exec", WEB01, "up", 5000);
  });
}

/** Flapping is judged with keepalived-style thresholds of 3 at twice the flip rate. */
const FLAP = { interval: 0.5, timeout: 0.4, rise: 3, fall: 3 };

/** What {@linkcode watchFlapping} saw of web01 and of the traffic. */
interface FlapWatch {
  /** Who answered each request, in order. */
  who: string[];
  /** Rounds seen to fail and to pass. */
  failing: number;
  passing: number;
  /** The longest runs of failing and of passing rounds seen. */
  maxFailures: number;
  maxSuccesses: number;
}

/**
 * For `ms`, requests the service back to back and samples web01's health often enough to see
 * every round; asserts web01 stays in `state` throughout.
 */
async function watchFlapping(app: ApplianceProcess, c: Ctx, state: "up" | "down", ms: number) {
  const end = Date.now() + ms;
  const w: FlapWatch = { who: [], failing: 0, passing: 0, maxFailures: 0, maxSuccesses: 0 };
  const requests = (async () => {
    while (Date.now() < end && w.who.length < 300) {
      w.who.push(...await answers(c, 80, 1));
      await sleep(50);
    }
  })();
  let lastAt = 0;
  try {
    while (Date.now() < end) {
      const view = await healthOf(app, "web", WEB01);
      assert.equal(view.state, state, JSON.stringify(view));
      if (view.last !== null && view.last.at !== lastAt) {
        lastAt = view.last.at;
        if (view.last.ok) w.passing++;
        else w.failing++;
      }
      w.maxFailures = Math.max(w.maxFailures, view.failures);
      w.maxSuccesses = Math.max(w.maxSuccesses, view.successes);
      await sleep(100);
    }
  } finally {
    await requests;
  }
  return w;
}

/**
 * A real whose health endpoint flips every second, checked every 0.5 s with rise and fall 3,
 * never sees three equal rounds in a row: an up real stays up and rr keeps alternating; a down
 * real stays down and takes no traffic.
 */
async function flapping(c: Ctx): Promise<void> {
  const config = await writeConfig(c.dir, "flap", [
    service(c, "web", 80, [check(FLAP, "type: http, http: { path: /flap }")]),
  ], HEADER);
  const web01 = c.servers.get("web01")!;
  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    await web01.setMode("flap", "flap");
    const fromUp = await watchFlapping(app, c, "up", 6000);
    // It did flap, and the checks saw it: failing rounds, never `fall` of them in a row.
    assert.ok(fromUp.failing >= 3 && fromUp.passing >= 3, JSON.stringify(fromUp));
    assert.ok(fromUp.maxFailures >= 1 && fromUp.maxFailures < FLAP.fall, JSON.stringify(fromUp));
    assert.ok(fromUp.who.length >= 20, `${fromUp.who.length} requests`);
    alternates(fromUp.who);

    await web01.setMode("flap", "fail");
    await waitState(app, "web", WEB01, "down", 5000);
    await web01.setMode("flap", "flap");
    const fromDown = await watchFlapping(app, c, "down", 4000);
    assert.ok(fromDown.passing >= 2, JSON.stringify(fromDown));
    assert.ok(fromDown.maxSuccesses < FLAP.rise, JSON.stringify(fromDown));
    assert.ok(fromDown.who.length >= 10, `${fromDown.who.length} requests`);
    assert.deepEqual(fromDown.who, only("web02", fromDown.who.length));

    const all = await health(app);
    console.log(
      `flapping: from up ${fromUp.who.length} requests, ${fromUp.failing} failing rounds, at ` +
        `most ${fromUp.maxFailures} in a row; from down ${fromDown.passing} passing rounds, ` +
        `at most ${fromDown.maxSuccesses} in a row; transitions ${
          JSON.stringify(all.reals.map((r) => r.transitions))
        }`,
    );
    // The one transition is the forced failure's; flapping added none.
    assert.deepEqual(all.reals.map((r) => [r.address, r.transitions.up, r.transitions.down]), [
      [WEB01, 0, 1],
      ["10.10.10.12", 0, 0],
    ]);
  });
}

/**
 * Every real down: the service loses its quorum and the sorry server takes new connections; a
 * real that comes back takes them again.
 */
async function sorryServer(c: Ctx): Promise<void> {
  const config = await writeConfig(c.dir, "sorry", [
    service(c, "web", 80, [
      check(FAST, "type: http, http: { path: /health }"),
      `sorry_server: { address: ${SORRY}, port: 80 }`,
    ]),
  ], HEADER);
  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    alternates(await answers(c, 80, 4));
    const at = Date.now();
    for (const real of c.topo.reals) await c.servers.get(real.name)!.setMode("health", "fail");
    let svc: ServiceHealthView | undefined;
    assert.ok(
      await pollUntil(
        async () => {
          svc = (await health(app)).services[0];
          return svc.state === "down";
        },
        5000,
        50,
      ),
      JSON.stringify(svc),
    );
    console.log(`sorry server: service down ${svc!.since - at} ms after both reals failed`);
    assert.ok(svc!.since - at <= fastBoundMs(FAST));
    assert.deepEqual([svc!.upReals, svc!.sorryActive], [0, true]);
    assert.deepEqual(svc!.sorryServer, { address: SORRY, port: 80 });
    await sleep(300);
    assert.deepEqual(await answers(c, 80, 4), only("sorry", 4));

    await c.servers.get("web02")!.setMode("health", "ok");
    await waitState(app, "web", "10.10.10.12", "up", 5000);
    svc = (await health(app)).services[0];
    assert.deepEqual([svc.state, svc.sorryActive], ["up", false]);
    await sleep(300);
    assert.deepEqual(await answers(c, 80, 4), only("web02", 4));
    await c.servers.get("web01")!.setMode("health", "ok");
    await waitState(app, "web", WEB01, "up", 5000);
    await sleep(300);
    alternates(await answers(c, 80, 4));
  });
}

/**
 * The operator's controls: force down takes a healthy real out at once, force null gives it
 * back to its checks, and a paused real keeps its state while its server is stopped.
 */
async function operatorControl(c: Ctx): Promise<void> {
  const config = await writeConfig(c.dir, "operator", [
    service(c, "web", 80, [check(TCP, "type: tcp")]),
  ], HEADER);
  const path = `/api/v1/services/web/reals/${WEB01}/80/health`;
  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    const bad = await app.request("PUT", `${path}/force`, { state: "sideways" });
    assert.equal(bad.status, 400, bad.body);
    const missing = await app.request("GET", "/api/v1/services/web/reals/10.9.9.9/80/health");
    assert.equal(missing.status, 404, missing.body);

    const forced = await app.request("PUT", `${path}/force`, { state: "down" });
    assert.equal(forced.status, 200, forced.body);
    const view = JSON.parse(forced.body) as RealHealthView;
    assert.deepEqual([view.state, view.checked, view.forced], ["down", "up", "down"]);
    // Applied before the next check could have run: well inside one interval.
    await sleep(200);
    assert.deepEqual(await answers(c, 80, 4), only("web02", 4));
    // The checks go on meanwhile and still say up.
    await sleep(TCP.interval * 1000 + 200);
    assert.equal((await healthOf(app, "web", WEB01)).checked, "up");
    assert.equal((await healthOf(app, "web", WEB01)).state, "down");

    const cleared = await app.request("PUT", `${path}/force`, { state: null });
    assert.equal(cleared.status, 200, cleared.body);
    assert.equal((JSON.parse(cleared.body) as RealHealthView).state, "up");
    await sleep(200);
    alternates(await answers(c, 80, 4));

    const paused = await app.request("POST", `${path}/pause`);
    assert.equal(paused.status, 200, paused.body);
    const lastBefore = (JSON.parse(paused.body) as RealHealthView).last;
    await c.servers.get("web01")!.stop();
    // Long enough for fall failed rounds, and more.
    await sleep((TCP.interval * (TCP.fall + 1) + TCP.timeout) * 1000);
    const held = await healthOf(app, "web", WEB01);
    assert.deepEqual([held.state, held.paused], ["up", true]);
    assert.deepEqual(held.last, lastBefore, "no check ran while paused");

    const resumedAt = Date.now();
    const resumed = await app.request("POST", `${path}/resume`);
    assert.equal(resumed.status, 200, resumed.body);
    const down = await waitState(app, "web", WEB01, "down", 8000);
    // A round runs at once on resume, so fall rounds take (fall - 1) intervals.
    const boundMs = (TCP.interval * TCP.fall + TCP.timeout) * 1000;
    console.log(
      `operator: web01 down ${down.since - resumedAt} ms after resume (bound ${boundMs} ms)`,
    );
    assert.ok(down.since - resumedAt <= boundMs);
    assert.equal(down.paused, false);
  });
}

Deno.test({ name: "health checkers, flapping, sorry server, operator", ...opts }, async (t) => {
  const lab = await Lab.create("checkers");
  try {
    const c: Ctx = {
      lab,
      topo: await buildSeed000(lab),
      dir: await lab.makeTempDir("checkers"),
      servers: new Map(),
    };
    await addSorryHost(lab);
    await startHttpServer(lab, "sorry", { port: 80 });
    for (const real of c.topo.reals) await startReal(c, real.name);
    const steps: [string, (c: Ctx) => Promise<void>][] = [
      ["http: status 500 and a wrong digest; exec: a timeout", httpAndExecCheckers],
      ["a flapping real does not flap traffic with rise/fall 3", flapping],
      ["the sorry server takes over when every real is down", sorryServer],
      ["operator: force down, force null, pause and resume", operatorControl],
    ];
    for (const [name, fn] of steps) {
      await t.step(name, async () => {
        await resetReals(c);
        await fn(c);
      });
    }
  } finally {
    await lab.destroy();
  }
});
