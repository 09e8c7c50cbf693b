/**
 * Health checks end to end in seed 000's NAT lab: "stop nginx on web01 → only web02 answers"
 * with the detection time measured against interval × fall + timeout, the way back after `rise`
 * passing rounds, inhibit_on_failure keeping the real at weight 0, notify_up/notify_down, and
 * seed 003's keepalived TCP_CHECK imported and run. The other checkers, flapping, the sorry
 * server and the operator's controls are in health_checkers.test.ts.
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { type ApplianceProcess, REPO_ROOT } from "../../lab/appliance.ts";
import { Lab, pollUntil } from "../../lab/netns.ts";
import { curl, type LabServer, startHttpServer } from "../../lab/servers.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";
import { e2eOptions, type ServiceDef, whoAnswers, withAppliance, writeConfig } from "./harness.ts";
import { alternates, HEADER, sleep, waitChecked, waitState } from "./health_harness.ts";

const opts = e2eOptions("health check end-to-end tests");
/** Seed 000's check, with times small enough for a test. */
const TCP = { interval: 1, timeout: 1, rise: 1, fall: 2 };
const TCP_CHECK =
  `health_check: { type: tcp, interval: ${TCP.interval}, timeout: ${TCP.timeout}, ` +
  `retry: 0, rise: ${TCP.rise}, fall: ${TCP.fall} }`;
const WEB01 = "10.10.10.11";

interface Ctx {
  lab: Lab;
  topo: Seed000;
  dir: string;
  /** The reals' HTTP servers by name; replaced when restarted. */
  servers: Map<string, LabServer>;
}

/** Who answers `n` requests from the client to the VIP. */
async function answers(c: Ctx, n: number): Promise<string[]> {
  const who: string[] = [];
  for (let i = 0; i < n; i++) {
    who.push(...await whoAnswers(c.lab, "client", `http://${c.topo.vip}/`, 1));
  }
  return who;
}

function web(c: Ctx, settings: string[]): ServiceDef {
  return {
    vip: c.topo.vip,
    scheduler: "rr",
    settings: ["port: 80", ...settings],
    reals: c.topo.reals.map((r) => ({ address: r.addr, port: 80 })),
  };
}

async function startReal(c: Ctx, name: string): Promise<void> {
  c.servers.set(name, await startHttpServer(c.lab, name, { port: 80 }));
}

/** Makes sure both reals serve, whatever an earlier step left behind. */
async function ensureServing(c: Ctx): Promise<void> {
  for (const real of c.topo.reals) {
    const r = await curl(c.lab, "director", `http://${real.addr}/`, { timeoutSec: 2 });
    if (r.code !== 200) await startReal(c, real.name);
  }
}

/** One request of the client's loop: when it started and ended, who answered or why not. */
interface Shot {
  start: number;
  end: number;
  who: string | null;
  error: string;
}

/** Requests the VIP back to back until `stop()` (at most `max` requests or `maxMs`). */
async function requestLoop(
  c: Ctx,
  stop: () => boolean,
  max = 600,
  maxMs = 15_000,
): Promise<Shot[]> {
  const shots: Shot[] = [];
  const deadline = Date.now() + maxMs;
  while (!stop() && shots.length < max && Date.now() < deadline) {
    const start = Date.now();
    const r = await curl(c.lab, "client", `http://${c.topo.vip}/`, {
      timeoutSec: 2,
      extraArgs: ["--connect-timeout", "1"],
    });
    const ok = r.code === 200;
    shots.push({
      start,
      end: Date.now(),
      who: ok ? r.body.trim().split(" ")[0] : null,
      error: ok ? "" : `curl exit ${r.exitCode} status ${r.code}: ${r.stderr}`,
    });
    await sleep(20);
  }
  return shots;
}

/** The value of a /metrics sample, or null when the page has no such sample. */
async function metric(app: ApplianceProcess, name: string, labels: string): Promise<number | null> {
  const res = await app.request("GET", "/metrics");
  assert.equal(res.status, 200);
  const line = res.body.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** The health events published so far, replayed from the start of the event stream. */
async function healthEvents(c: Ctx, app: ApplianceProcess): Promise<Record<string, unknown>[]> {
  const r = await c.lab.exec(app.role, [
    "curl",
    "-sN",
    "--max-time",
    "1",
    "-H",
    "Last-Event-ID: 0",
    `${app.admin}/api/v1/events?types=health`,
  ], { allowFail: true });
  return r.stdout.split("\n").filter((l) => l.startsWith("data:")).map((l) =>
    (JSON.parse(l.slice(5)) as { data: Record<string, unknown> }).data
  );
}

/**
 * Seed 000's check: web01's server stops → it leaves scheduling within interval × fall plus one
 * timeout (asserted with one interval of slack); it comes back after `rise` passing rounds.
 */
async function stopAndStart(c: Ctx): Promise<void> {
  const config = await writeConfig(c.dir, "tcp", [web(c, [TCP_CHECK])], HEADER);
  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    alternates(await answers(c, 4));

    let done = false;
    const loop = requestLoop(c, () => done);
    await sleep(500);
    const stopped = Date.now();
    await c.servers.get("web01")!.stop();
    const down = await waitState(app, null, WEB01, "down", 8000);
    // Let the loop run on long enough to show nothing reaches web01 any more.
    await sleep(1500);
    done = true;
    const shots = await loop;

    const detectMs = down.since - stopped;
    const boundMs = (TCP.interval * TCP.fall + TCP.timeout + TCP.interval) * 1000;
    const bad = shots.filter((s) => s.start >= stopped && s.who !== "web02");
    const lastBad = bad.length === 0 ? stopped : Math.max(...bad.map((s) => s.end));
    console.log(
      `tcp check: web01 down ${detectMs} ms after its server stopped (bound ${boundMs} ms); ` +
        `last request to reach it ended ${lastBad - stopped} ms after; ${shots.length} ` +
        `requests, ${shots.filter((s) => s.who === null).length} failed`,
    );
    assert.ok(detectMs > 0 && detectMs <= boundMs, `detected after ${detectMs} ms`);
    // Before the stop, rr alternates and nothing fails.
    const before = shots.filter((s) => s.end < stopped);
    assert.ok(before.length >= 4, `${before.length} requests before the stop`);
    assert.ok(before.every((s) => s.who !== null), JSON.stringify(before));
    // Requests fail only while the real is stopped and still scheduled: in flight at the stop or
    // started before the health change was applied (the change plus APPLY_MS for the re-apply).
    const APPLY_MS = 300;
    for (const s of shots.filter((s) => s.who === null)) {
      assert.ok(
        s.end >= stopped && s.start <= down.since + APPLY_MS,
        `request failed outside the detection window: ${JSON.stringify(s)}`,
      );
    }
    // rr sends every other new connection to web01: at most half of them (plus one) fail.
    const inWindow = shots.filter((s) => s.start >= stopped && s.start <= down.since + APPLY_MS);
    assert.ok(bad.length <= Math.ceil(inWindow.length / 2) + 1, JSON.stringify(inWindow));
    const after = shots.filter((s) => s.start > down.since + APPLY_MS);
    assert.ok(after.length >= 5, `${after.length} requests after the change`);
    assert.ok(after.every((s) => s.who === "web02"), JSON.stringify(after));

    // The API shows why and how fast the last check failed.
    assert.equal(down.checked, "down");
    assert.equal(down.effectiveWeight, null);
    assert.deepEqual(down.transitions, { up: 0, down: 1 });
    assert.ok(down.last !== null && !down.last.ok, JSON.stringify(down.last));
    assert.match(down.last.reason, /connect: .*refused/i);
    assert.ok(down.last.latencyMs >= 0 && down.last.latencyMs < TCP.timeout * 1000);
    assert.ok(down.failures >= TCP.fall);
    const svc = (await app.api("/api/v1/health") as { services: Record<string, unknown>[] })
      .services[0];
    assert.equal(svc.state, "up");
    assert.equal(svc.upReals, 1);
    const labels = `service="web",real="${WEB01}:80"`;
    assert.equal(await metric(app, "tunvs_real_up", labels), 0);
    assert.equal(await metric(app, "tunvs_real_weight", labels), null, "web01 left the dataplane");
    assert.equal(await metric(app, "tunvs_health_transitions_total", `${labels},to="down"`), 1);
    const downEvent = (await healthEvents(c, app)).find((e) =>
      e.kind === "real" && e.address === WEB01 && e.state === "down"
    );
    assert.ok(downEvent, "a health event for web01 going down");
    assert.equal(downEvent.cause, "check");
    assert.match(String(downEvent.reason), /refused/i);

    const started = Date.now();
    await startReal(c, "web01");
    const up = await waitState(app, null, WEB01, "up", 8000);
    const returnMs = up.since - started;
    const returnBoundMs = (TCP.interval * TCP.rise + TCP.timeout + TCP.interval) * 1000;
    console.log(
      `tcp check: web01 up ${returnMs} ms after its server started (bound ${returnBoundMs} ms)`,
    );
    assert.ok(returnMs <= returnBoundMs, `back after ${returnMs} ms`);
    assert.equal(up.last?.ok, true);
    assert.deepEqual(up.transitions, { up: 1, down: 1 });
    await sleep(APPLY_MS);
    alternates(await answers(c, 6));
  });
}

/**
 * inhibit_on_failure keeps a failed real in the service at weight 0 (as keepalived edits the
 * IPVS destination instead of deleting it); notify_down and notify_up run once per change with
 * what changed in their environment.
 */
async function inhibitAndNotify(c: Ctx): Promise<void> {
  const log = `${c.dir}/notify.log`;
  const notify =
    `[/bin/sh, -c, 'echo "$TUNVS_STATE|$TUNVS_SERVICE|$TUNVS_REAL|$TUNVS_REASON" >> ${log}']`;
  const config = await writeConfig(c.dir, "inhibit", [
    web(c, [
      TCP_CHECK,
      "inhibit_on_failure: true",
      `notify_up: ${notify}`,
      `notify_down: ${notify}`,
    ]),
  ], HEADER);
  const notified = async () =>
    (await Deno.readTextFile(log).catch(() => "")).split("\n").filter((l) => l !== "");
  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    await c.servers.get("web01")!.stop();
    const down = await waitState(app, null, WEB01, "down", 8000);
    assert.equal(down.effectiveWeight, 0);
    await sleep(300);
    const services = await app.api("/api/v1/services") as {
      services: { reals: { address: string; weight: number; configuredWeight: number }[] }[];
    };
    const listed = services.services[0].reals.find((r) => r.address === WEB01);
    assert.ok(listed, "web01 stays listed");
    assert.equal(listed.weight, 0);
    assert.equal(listed.configuredWeight, 1);
    assert.equal(await metric(app, "tunvs_real_weight", `service="web",real="${WEB01}:80"`), 0);
    assert.deepEqual(await answers(c, 4), ["web02", "web02", "web02", "web02"]);
    assert.ok(await pollUntil(async () => (await notified()).length === 1, 3000, 50));
    const [state, service, real, reason] = (await notified())[0].split("|");
    assert.deepEqual([state, service, real], ["down", "web", `${WEB01}:80`]);
    assert.match(reason, /tcp check: connect: .*refused/i);

    await startReal(c, "web01");
    const up = await waitState(app, null, WEB01, "up", 8000);
    assert.equal(up.effectiveWeight, 1);
    assert.ok(await pollUntil(async () => (await notified()).length === 2, 3000, 50));
    const lines = await notified();
    assert.deepEqual(lines[1].split("|").slice(0, 3), ["up", "web", `${WEB01}:80`]);
    // web02 never changed, so it was never notified.
    assert.ok(lines.every((l) => !l.includes("10.10.10.12")), lines.join("\n"));
  });
}

/** Runs `tunvs import --keepalived FILE` and returns the appliance.yaml it prints. */
async function importKeepalived(file: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/mod.ts`, "import", "--keepalived", file],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return text;
}

interface ImportedService {
  vip: string;
  port: number;
  forward: string;
  health_check: Record<string, unknown>;
  reals: { address: string; port: number }[];
}

/**
 * Seed 003's keepalived.conf: its TCP_CHECK blocks import to the equivalent check, and that
 * check, with seed 003's structure kept (retries, delay before retry) and its times scaled down
 * for the lab, takes a stopped real out in the appliance.
 */
async function seed003Import(c: Ctx): Promise<void> {
  const fixture = new URL("../fixtures/keepalived_seed003.conf", import.meta.url).pathname;
  const original = parseYaml(await importKeepalived(fixture)) as { services: ImportedService[] };
  assert.equal(original.services.length, 1);
  assert.deepEqual(original.services[0].health_check, {
    type: "tcp",
    interval: 6, // delay_loop
    timeout: 3, // connect_timeout
    retry: 3, // nb_get_retry
    delay_before_retry: 3,
    port: 80, // connect_port
  });

  // The lab's addresses, NAT (the lab's reals route through the director) and times / 6 or 3.
  const adapted = (await Deno.readTextFile(fixture))
    .replaceAll("10.0.2.99", c.topo.vip)
    .replaceAll("10.0.2.62", WEB01)
    .replaceAll("10.0.2.63", "10.10.10.12")
    .replace("lb_kind DR", "lb_kind NAT")
    .replace("delay_loop 6", "delay_loop 1")
    .replaceAll("connect_timeout 3", "connect_timeout 1")
    .replaceAll("delay_before_retry 3", "delay_before_retry 1");
  await Deno.writeTextFile(`${c.dir}/keepalived.conf`, adapted);
  const yaml = await importKeepalived(`${c.dir}/keepalived.conf`);
  const imported = (parseYaml(yaml) as { services: ImportedService[] }).services[0];
  assert.deepEqual(imported.health_check, {
    type: "tcp",
    interval: 1,
    timeout: 1,
    retry: 3,
    delay_before_retry: 1,
    port: 80,
  });
  assert.equal(imported.forward, "nat");
  assert.equal(imported.vip, c.topo.vip);
  assert.deepEqual(imported.reals.map((r) => r.address), c.topo.reals.map((r) => r.addr));
  const config = `${c.dir}/seed003.yaml`;
  await Deno.writeTextFile(config, `${HEADER.join("\n")}\n${yaml}`);

  await withAppliance(c.lab, config, async (app) => {
    await waitChecked(app);
    alternates(await answers(c, 4));
    const stopped = Date.now();
    await c.servers.get("web01")!.stop();
    const down = await waitState(app, null, WEB01, "down", 10_000);
    // A round fails after its first attempt and `retry` more, `delay_before_retry` apart (refused
    // at once); keepalived acts on the first failed round. Bound: up to one interval until the
    // next round, the round's retries, and one interval of slack.
    const { interval, retry, delay_before_retry } = imported.health_check as Record<string, number>;
    const boundMs = (interval + retry * delay_before_retry + interval) * 1000;
    console.log(
      `seed 003 TCP_CHECK: web01 down ${
        down.since - stopped
      } ms after its server stopped (bound ${boundMs} ms)`,
    );
    assert.ok(down.since - stopped <= boundMs);
    assert.equal(down.last?.attempts, retry + 1, JSON.stringify(down.last));
    await sleep(300);
    assert.deepEqual(await answers(c, 4), ["web02", "web02", "web02", "web02"]);
  });
}

Deno.test({ name: "health checks in seed 000's NAT lab", ...opts }, async (t) => {
  const lab = await Lab.create("health");
  try {
    const c: Ctx = {
      lab,
      topo: await buildSeed000(lab),
      dir: await lab.makeTempDir("health"),
      servers: new Map(),
    };
    for (const real of c.topo.reals) await startReal(c, real.name);
    const steps: [string, (c: Ctx) => Promise<void>][] = [
      ["seed 000: a stopped real leaves scheduling and comes back", stopAndStart],
      ["inhibit_on_failure keeps it at weight 0; notify_down and notify_up run", inhibitAndNotify],
      ["seed 003: keepalived's TCP_CHECK imports and takes a stopped real out", seed003Import],
    ];
    for (const [name, fn] of steps) {
      await t.step(name, async () => {
        await ensureServing(c);
        await fn(c);
      });
    }
  } finally {
    await lab.destroy();
  }
});
