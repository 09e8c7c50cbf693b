/**
 * Seed 000's scheduler scenarios with real clients: sh keeps a client on one
 * real (even when that real's server is down, as the seed shows), and lc/wlc
 * spread concurrent connections by connection count and weight.
 */
import assert from "node:assert/strict";
import { Lab } from "../../lab/netns.ts";
import { curl, type LabServer, startHttpServer } from "../../lab/servers.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";
import { e2eOptions, withAppliance, writeConfig } from "./harness.ts";

const opts = e2eOptions("seed 000 scheduler tests");

let lab: Lab;
let topo: Seed000;
let configDir: string;
const servers = new Map<string, LabServer>();
/** Extra client addresses, so that sh sees several clients. */
const CLIENTS = Array.from({ length: 8 }, (_, i) => `192.168.1.${40 + i}`);

function config(name: string, scheduler: string, weights: number[]): Promise<string> {
  return writeConfig(configDir, name, [{
    vip: topo.vip,
    scheduler,
    settings: ["port: 80"],
    reals: topo.reals.map((r, i) => ({ address: r.addr, weight: weights[i] })),
  }]);
}

async function from(addr: string): Promise<string> {
  const r = await curl(lab, "client", `http://${topo.vip}/`, {
    timeoutSec: 5,
    extraArgs: ["--interface", addr],
  });
  return r.code === 200 ? r.body.split(" ")[0] : `error ${r.exitCode}`;
}

interface RealsView {
  services: { reals: { address: string; activeConns: number; inactiveConns: number }[] }[];
}

/** Opens `n` TCP connections to the VIP from the client and keeps them established until killed. */
function holdConnections(n: number): Deno.ChildProcess {
  const script = `
import socket, sys, time
held = []
for i in range(${n}):
    s = socket.create_connection(("${topo.vip}", 80), timeout=5)
    held.append(s)
    time.sleep(0.05)
print("held", flush=True)
time.sleep(60)
`;
  return lab.spawn("client", ["python3", "-c", script], { stdout: "piped", stderr: "piped" });
}

async function waitHeld(child: Deno.ChildProcess): Promise<void> {
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  assert.match(new TextDecoder().decode(value ?? new Uint8Array()), /held/);
}

Deno.test({ name: "seed 000 schedulers: build the topology", ...opts }, async () => {
  lab = await Lab.create("sched");
  topo = await buildSeed000(lab);
  configDir = await lab.makeTempDir("configs");
  for (const addr of CLIENTS) {
    await lab.exec("client", ["ip", "addr", "add", `${addr}/24`, "dev", "eth0"]);
  }
  for (const real of topo.reals) {
    servers.set(real.name, await startHttpServer(lab, real.name, { port: 80 }));
  }
});

Deno.test({ name: "seed 000: sh keeps each client on one real", ...opts }, async () => {
  await withAppliance(lab, await config("sh", "sh", [1, 1]), async () => {
    const first = new Map<string, string>();
    for (const addr of CLIENTS) first.set(addr, await from(addr));
    for (let round = 0; round < 3; round++) {
      for (const addr of CLIENTS) assert.equal(await from(addr), first.get(addr), addr);
    }
    assert.deepEqual([...new Set(first.values())].sort(), ["web01", "web02"]);

    // As the seed shows: with the sticky real's server stopped, that client gets refused —
    // sh has no health check of its own and does not move it.
    const victim = CLIENTS.find((a) => first.get(a) === "web02")!;
    await servers.get("web02")!.stop();
    try {
      assert.equal(await from(victim), "error 7", "connection refused, not moved");
      const other = CLIENTS.find((a) => first.get(a) === "web01")!;
      assert.equal(await from(other), "web01");
    } finally {
      servers.set("web02", await startHttpServer(lab, "web02", { port: 80 }));
    }
    assert.equal(await from(victim), "web02");
  });
});

for (
  const [scheduler, weights, expected] of [
    ["lc", [3, 1], [4, 4]],
    ["wlc", [3, 1], [6, 2]],
  ] as const
) {
  Deno.test({
    name: `seed 000: ${scheduler} spreads 8 concurrent connections ${expected.join(":")} ` +
      `over weights ${weights.join(":")}`,
    ...opts,
  }, async () => {
    await withAppliance(
      lab,
      await config(scheduler, scheduler, [...weights]),
      async (app) => {
        const holder = holdConnections(8);
        try {
          await waitHeld(holder);
          const view = await app.api("/api/v1/services") as RealsView;
          const active = view.services[0].reals.map((r) => r.activeConns);
          assert.deepEqual(active, [...expected]);
          // The next short request goes where the weighted count is lowest.
          const next = await from(topo.clientAddr);
          const cost = active.map((a, i) => (a * 256) / weights[i]);
          const cheapest = scheduler === "lc" ? "web01" : cost[0] <= cost[1] ? "web01" : "web02";
          assert.equal(next, cheapest);
        } finally {
          holder.kill("SIGKILL");
          await holder.status;
          await holder.stdout.cancel().catch(() => {});
          await holder.stderr.cancel().catch(() => {});
        }
      },
    );
  });
}

Deno.test({ name: "seed 000 schedulers: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
