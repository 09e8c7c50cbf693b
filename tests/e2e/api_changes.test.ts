/**
 * Changing the running appliance over the admin API in seed 000's NAT lab: a new service on a
 * new VIP is served at once (the host learns its route, proxy ARP and reply rules without a
 * restart), a removed one leaves the host, the changes are in appliance.yaml, and a restart on
 * that file serves exactly the same rules.
 */
import assert from "node:assert/strict";
import { startAppliance } from "../../lab/appliance.ts";
import { Lab } from "../../lab/netns.ts";
import { curl, startHttpServer } from "../../lab/servers.ts";
import { buildSeed000 } from "../../lab/topology.ts";
import { ANY, e2eOptions, whoAnswers, writeConfig } from "./harness.ts";

const NEW_VIP = "192.168.1.32";

/** The host state the appliance manages for `vip` in the director: route, proxy ARP, rules. */
async function hostStateFor(lab: Lab, vip: string): Promise<string[]> {
  const routes = (await lab.exec("director", ["ip", "route", "show", `${vip}/32`])).stdout.trim();
  const proxies = (await lab.exec("director", ["ip", "neigh", "show", "proxy"])).stdout;
  const rules = (await lab.exec("director", ["ip", "rule", "show"])).stdout;
  return [
    ...(routes === "" ? [] : [`route ${routes}`]),
    ...proxies.split("\n").filter((l) => l.startsWith(`${vip} `)).map((l) => `proxy ${l}`),
    ...rules.split("\n").filter((l) => l.includes("sport 8080")).map((l) => `rule ${l.trim()}`),
  ];
}

Deno.test({
  name: "api changes: a new VIP served without restart, removed, restored on restart",
  ...e2eOptions("api change tests"),
}, async () => {
  const lab = await Lab.create("apichg");
  try {
    const topo = await buildSeed000(lab);
    for (const real of topo.reals) {
      await startHttpServer(lab, real.name, { port: 80 });
      await startHttpServer(lab, real.name, { port: 8080, body: `${real.name} alt\n` });
    }
    const config = await writeConfig(await lab.makeTempDir("configs"), "appliance", [{
      name: "web",
      vip: topo.vip,
      scheduler: "rr",
      settings: ["port: 80"],
      reals: topo.reals.map((r) => ({ address: r.addr, port: 80 })),
    }]);
    const original = await Deno.readTextFile(config);
    let listing = "";
    let app = await startAppliance(lab, "director", config);
    try {
      assert.deepEqual(await hostStateFor(lab, NEW_VIP), []);
      const created = await app.request("POST", "/api/v1/services", {
        name: "alt",
        vip: NEW_VIP,
        port: 8080,
        scheduler: "rr",
        forward: "nat",
        reals: topo.reals.map((r) => ({ address: r.addr })),
      }, ANY);
      assert.equal(created.status, 201, created.body);
      const state = await hostStateFor(lab, NEW_VIP);
      assert.ok(state.some((l) => l.startsWith(`route ${NEW_VIP} dev`)), state.join("\n"));
      assert.ok(state.some((l) => l.startsWith("proxy")), state.join("\n"));
      assert.equal(state.filter((l) => l.startsWith("rule")).length, 2, state.join("\n"));

      const answers = await whoAnswers(lab, "client", `http://${NEW_VIP}:8080/`, 4);
      assert.deepEqual(new Set(answers), new Set(topo.reals.map((r) => r.name)), answers.join());
      assert.deepEqual(
        await whoAnswers(lab, "client", `http://${topo.vip}/`, 2).then((a) => a.length),
        2,
      );

      const file = await Deno.readTextFile(config);
      assert.ok(
        file.startsWith(original.trimEnd()),
        "the operator's text is kept, the service appended",
      );
      assert.match(file, /name: alt[^]*vip: 192\.168\.1\.32/);

      const removed = await app.request("DELETE", "/api/v1/services/alt", undefined, ANY);
      assert.equal(removed.status, 200, removed.body);
      assert.deepEqual(await hostStateFor(lab, NEW_VIP), [], "the host forgets the VIP");
      const gone = await curl(lab, "client", `http://${NEW_VIP}:8080/`, { timeoutSec: 2 });
      assert.notEqual(gone.code, 200);
      assert.equal(await Deno.readTextFile(config), original, "back to the very file");

      const again = await app.request("POST", "/api/v1/services", {
        name: "alt",
        vip: NEW_VIP,
        port: 8080,
        scheduler: "wrr",
        forward: "nat",
        reals: [{ address: topo.reals[0].addr, weight: 3 }, { address: topo.reals[1].addr }],
      }, ANY);
      assert.equal(again.status, 201, again.body);
      listing = JSON.stringify(
        (await app.api("/api/v1/config") as { effective: unknown }).effective,
      );
    } finally {
      const { code } = await app.stop();
      assert.equal(code, 0, app.logs());
    }
    assert.deepEqual(await hostStateFor(lab, NEW_VIP), [], "all undone on exit");

    app = await startAppliance(lab, "director", config);
    try {
      const restored = JSON.stringify(
        (await app.api("/api/v1/config") as { effective: unknown }).effective,
      );
      assert.equal(restored, listing, "a restart serves the same rules");
      const answers = await whoAnswers(lab, "client", `http://${NEW_VIP}:8080/`, 4);
      assert.equal(answers.filter((a) => a === topo.reals[0].name).length, 3, answers.join());
    } finally {
      const { code } = await app.stop();
      assert.equal(code, 0, app.logs());
    }
  } finally {
    await lab.destroy();
  }
});
