/**
 * `tunvs health` against the admin app's health endpoints, with a health source that records
 * what the operator asked for.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { AdminSource } from "../../control/admin_source.ts";
import { createAdminApp } from "../../control/api.ts";
import { parseConfig } from "../../control/config.ts";
import { HealthNotFoundError, type RealHealthView } from "../../control/health/supervisor.ts";
import { runHealthCli } from "../../control/health_cli.ts";
import type { AdminClient } from "../../control/ipvsadm.ts";

const CONFIG = `services:
  - name: web
    vip: 192.168.1.31
    port: 80
    reals: [ { address: 10.10.10.11 }, { address: 10.10.10.12 } ]
`;

function view(address: string, over: Partial<RealHealthView> = {}): RealHealthView {
  return {
    service: "web",
    address,
    port: 80,
    state: "up",
    checked: "up",
    forced: null,
    paused: false,
    check: "tcp",
    weight: 1,
    effectiveWeight: 1,
    successes: 3,
    failures: 0,
    last: { ok: true, latencyMs: 0.42, reason: "connected", attempts: 1, at: 0 },
    since: 0,
    transitions: { up: 0, down: 0 },
    ...over,
  };
}

function setup() {
  const reals = new Map([
    ["10.10.10.11", view("10.10.10.11")],
    [
      "10.10.10.12",
      view("10.10.10.12", {
        state: "down",
        checked: "down",
        effectiveWeight: null,
        last: { ok: false, latencyMs: 1.5, reason: "connection refused", attempts: 2, at: 0 },
      }),
    ],
  ]);
  const get = (service: string, address: string, port: number) => {
    const r = reals.get(address);
    if (service !== "web" || r === undefined || port !== 80) {
      throw new HealthNotFoundError("real", `no such real: ${service} ${address}:${port}`);
    }
    return r;
  };
  const health: AdminSource["health"] = {
    status: () => [...reals.values()],
    realStatus: get,
    serviceStatus: () => [],
    pause: (s, a, p) => void (get(s, a, p).paused = true),
    resume: (s, a, p) => void (get(s, a, p).paused = false),
    force: (s, a, p, state) => {
      const r = get(s, a, p);
      r.forced = state;
      r.state = state ?? r.checked;
    },
  };
  const config = parseConfig(CONFIG, "test.yaml");
  const app = createAdminApp({
    running: { config, version: "0", text: CONFIG, raw: () => ({}) },
    request: () => Promise.reject(new Error("not used")),
    health,
  });
  const admin: AdminClient = {
    url: "http://test",
    request: async (method, path, body) => {
      const res = await app.request(path, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
        headers: body === undefined ? {} : { "content-type": "application/json" },
      });
      return { status: res.status, body: await res.json() };
    },
  };
  return { admin, reals };
}

Deno.test("tunvs health: the list shows state, checker, weight and the last result", async () => {
  const { admin } = setup();
  const r = await runHealthCli([], admin);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    "SERVICE  REAL            STATE  CHECK  WEIGHT  LAST  LATENCY  REASON\n" +
      "web      10.10.10.11:80  up     tcp    1       ok    0.4ms    connected\n" +
      "web      10.10.10.12:80  down   tcp    -       fail  1.5ms    connection refused\n",
  );
});

Deno.test("tunvs health: force, pause and resume reach the real; mistakes are usage errors", async () => {
  const { admin, reals } = setup();
  const down = await runHealthCli(["force", "down", "web", "10.10.10.11:80"], admin);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /10\.10\.10\.11:80 +down \(forced\)/);
  assert.equal(reals.get("10.10.10.11")!.forced, "down");
  assert.equal((await runHealthCli(["force", "auto", "web", "10.10.10.11:80"], admin)).code, 0);
  assert.equal(reals.get("10.10.10.11")!.forced, null);
  assert.equal((await runHealthCli(["pause", "web", "10.10.10.12:80"], admin)).code, 0);
  assert.equal(reals.get("10.10.10.12")!.paused, true);
  assert.equal((await runHealthCli(["resume", "web", "10.10.10.12:80"], admin)).code, 0);
  assert.equal(reals.get("10.10.10.12")!.paused, false);

  const missing = await runHealthCli(["pause", "web", "10.10.10.13:80"], admin);
  assert.deepEqual([missing.code, missing.stderr], [
    1,
    "tunvs health: no such real: web 10.10.10.13:80\n",
  ]);
  for (
    const args of [
      ["force", "sideways", "web", "10.10.10.11:80"],
      ["pause", "web", "10.10.10.11"],
      ["reboot"],
    ]
  ) {
    const r = await runHealthCli(args, admin);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, /^tunvs health: .*\nusage:/);
  }
  assert.equal(reals.get("10.10.10.11")!.forced, null, "nothing changed by the mistakes");
});
