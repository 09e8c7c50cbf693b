/**
 * Seed 000's persistence story in real time: `-p 10`, two curls, and the NONE
 * template that outlives its 10 s while TIME_WAIT connections remain, gets 60 s
 * more each time it runs out, and goes at about 2×60+10 = 130 s — after which
 * the client may be scheduled to the other real.
 */
import assert from "node:assert/strict";
import { Lab } from "../../lab/netns.ts";
import { startHttpServer } from "../../lab/servers.ts";
import { buildSeed000 } from "../../lab/topology.ts";
import { e2eOptions, listConnections, whoAnswers, withAppliance, writeConfig } from "./harness.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test({
  name: "seed 000: the -p 10 template lives 2×60+10 s while its TIME_WAIT connections do",
  ...e2eOptions("the persistence lifetime test"),
}, async () => {
  const lab = await Lab.create("plife");
  try {
    const topo = await buildSeed000(lab);
    for (const real of topo.reals) await startHttpServer(lab, real.name, { port: 80 });
    const config = await writeConfig(await lab.makeTempDir("configs"), "p10", [{
      vip: topo.vip,
      scheduler: "rr",
      settings: ["port: 80", "persistence: { timeout: 10 }"],
      reals: topo.reals.map((r) => ({ address: r.addr })),
    }]);
    await withAppliance(lab, config, async (app) => {
      const who = async () => (await whoAnswers(lab, "client", `http://${topo.vip}/`, 1))[0];
      const listing = () => listConnections(app);
      const template = async () => (await listing()).find((c) => c.state === "NONE");

      const start = Date.now();
      const first = await who();
      assert.equal(await who(), first);
      const at0 = await template();
      assert.ok(at0, "a NONE template exists");
      assert.equal(at0.client, `${topo.clientAddr}:0`);
      assert.ok(at0.expires <= 10, `template expires in ${at0.expires} s`);
      assert.equal((await listing()).filter((c) => c.state === "TIME_WAIT").length, 2);

      // Past its 10 s the template is still there, re-armed for 60 s, and still sticky.
      await sleep(13_000 - (Date.now() - start));
      const at13 = await template();
      assert.ok(at13, "the template outlives its timeout while connections remain");
      assert.ok(at13.expires > 40 && at13.expires <= 60, `re-armed: ${at13.expires} s left`);

      // At 125 s the TIME_WAIT connections (120 s) are gone, the template is not yet.
      await sleep(125_000 - (Date.now() - start));
      const at125 = await listing();
      assert.equal(at125.filter((c) => c.state === "TIME_WAIT").length, 0);
      assert.ok(at125.some((c) => c.state === "NONE"), "the template lives until about 130 s");

      // After 2×60+10 s nothing is left, and rr hands the client to the other real.
      await sleep(132_000 - (Date.now() - start));
      assert.deepEqual(await listing(), []);
      assert.notEqual(await who(), first);
    });
  } finally {
    await lab.destroy();
  }
});
