/**
 * Persistence (seed 000's `-p`) and a firewall-mark-style port group with
 * persistence (seed 002: one client's connections to 80 and 443 stay on one
 * real), with real HTTP servers and curl.
 */
import assert from "node:assert/strict";
import { Lab } from "../../lab/netns.ts";
import { curl, startHttpServer } from "../../lab/servers.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";
import { e2eOptions, listConnections, whoAnswers, withAppliance, writeConfig } from "./harness.ts";

const opts = e2eOptions("persistence tests");

let lab: Lab;
let topo: Seed000;
let configDir: string;
const OTHER_CLIENT = "192.168.1.40";

function config(name: string, settings: string[]): Promise<string> {
  return writeConfig(configDir, name, [{
    vip: topo.vip,
    scheduler: "rr",
    settings,
    reals: topo.reals.map((r) => ({ address: r.addr })),
  }]);
}

async function who(port: number, from = topo.clientAddr): Promise<string> {
  const url = `http://${topo.vip}:${port}/`;
  return (await whoAnswers(lab, "client", url, 1, ["--interface", from]))[0];
}

Deno.test({ name: "persistence: build the topology", ...opts }, async () => {
  lab = await Lab.create("persist");
  topo = await buildSeed000(lab);
  configDir = await lab.makeTempDir("configs");
  await lab.exec("client", ["ip", "addr", "add", `${OTHER_CLIENT}/24`, "dev", "eth0"]);
  for (const real of topo.reals) {
    await startHttpServer(lab, real.name, { port: 80 });
    await startHttpServer(lab, real.name, { port: 443 });
  }
});

Deno.test({
  name: "seed 000: -p keeps a client on one real and lists its NONE template",
  ...opts,
}, async () => {
  await withAppliance(
    lab,
    await config("persist", ["port: 80", "persistence: { timeout: 10 }"]),
    async (app) => {
      const first = await who(80);
      for (let i = 0; i < 5; i++) assert.equal(await who(80), first);
      // rr moves on for the next client, which then sticks to its own real.
      const second = await who(80, OTHER_CLIENT);
      assert.notEqual(second, first);
      for (let i = 0; i < 3; i++) assert.equal(await who(80, OTHER_CLIENT), second);
      const connections = await listConnections(app);
      const templates = connections.filter((c) => c.state === "NONE");
      assert.deepEqual(
        templates.map((t) => [t.client, t.virtual]).sort(),
        [[`${OTHER_CLIENT}:0`, `${topo.vip}:80`], [`${topo.clientAddr}:0`, `${topo.vip}:80`]]
          .sort(),
      );
      assert.equal(connections.filter((c) => c.state === "TIME_WAIT").length, 10);
    },
  );
});

Deno.test({
  name: "seed 002: a port group [80, 443] with persistence keeps one client on one real",
  ...opts,
}, async () => {
  await withAppliance(
    lab,
    await config("group", ["ports: [80, 443]", "persistence: { timeout: 30 }"]),
    async () => {
      const first = await who(80);
      for (let i = 0; i < 3; i++) {
        assert.equal(await who(443), first, "443 follows 80");
        assert.equal(await who(80), first);
      }
      const second = await who(443, OTHER_CLIENT);
      assert.notEqual(second, first);
      assert.equal(await who(80, OTHER_CLIENT), second);
      // Ports outside the group are not the service's.
      const r = await curl(lab, "client", `http://${topo.vip}:8080/`, { timeoutSec: 2 });
      assert.equal(r.code, 0);
    },
  );
});

Deno.test({ name: "persistence: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
