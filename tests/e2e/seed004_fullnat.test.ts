/**
 * Seed 004 (FULLNAT): the reals listen on 8080 in two subnets behind a router
 * and have no route to the client; requests reach them from the local address
 * 10.0.3.1 with a local port, and replies come back to the client from VIP:80.
 */
import assert from "node:assert/strict";
import { Lab } from "../../lab/netns.ts";
import { startHttpServer } from "../../lab/servers.ts";
import { buildSeed004, type Seed004 } from "../../lab/topology.ts";
import {
  downloadDigest,
  e2eOptions,
  listConnections,
  randomBytes,
  sha256Hex,
  whoAnswers,
  withAppliance,
  withEmptyAppliance,
  writeConfig,
} from "./harness.ts";

const opts = e2eOptions("seed 004 FULLNAT tests");
let lab: Lab;
let topo: Seed004;
let config: string;
let bigDigest: string;
const BIG_SIZE = 64 * 1024 * 1024;

Deno.test({ name: "seed 004: build the routed topology", ...opts }, async () => {
  lab = await Lab.create("fullnat");
  topo = await buildSeed004(lab);
  const big = randomBytes(BIG_SIZE, 0x5eed0004);
  bigDigest = await sha256Hex(big);
  for (const real of topo.reals) {
    await startHttpServer(lab, real.name, {
      port: 8080,
      files: real.name === "web1" ? { "big.bin": big } : {},
    });
  }
  // The reals cannot answer the client's network themselves.
  const route = await lab.exec("web1", ["ip", "route", "get", topo.clientAddr], {
    allowFail: true,
  });
  assert.match(route.stdout + route.stderr, /via 10\.0\.4\.1/);
  config = await writeConfig(await lab.makeTempDir("configs"), "fullnat", [{
    name: "web-fullnat",
    vip: topo.vip,
    scheduler: "rr",
    settings: ["port: 80", "forward: fullnat", `local_addresses: [${topo.localAddress}]`],
    reals: topo.reals.map((r) => ({ address: r.addr, port: 8080 })),
  }]);
});

Deno.test({
  name: "seed 004: FULLNAT alternates between reals in other subnets on port 8080",
  ...opts,
}, async () => {
  await withAppliance(lab, config, async (app) => {
    const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 6);
    assert.deepEqual(answers, ["web1", "web2", "web1", "web2", "web1", "web2"]);
    // The listing shows each connection leaving from the pool address.
    const connections = await listConnections(app);
    assert.equal(connections.length, 6);
    for (const c of connections) {
      assert.equal(c.forward, "FullNat");
      assert.match(c.client, new RegExp(`^${topo.clientAddr.replaceAll(".", "\\.")}:\\d+$`));
      assert.match(c.real, /^10\.0\.[45]\.2:8080$/);
    }
    // What the real saw: the local address, not the client.
    const log = await lab.exec("web1", ["sh", "-c", "ss -tn state time-wait"]);
    assert.match(log.stdout, new RegExp(`${topo.localAddress.replaceAll(".", "\\.")}:\\d+`));
    assert.doesNotMatch(log.stdout, new RegExp(topo.clientAddr.replaceAll(".", "\\.")));
  });
});

Deno.test({ name: "seed 004: 64 MB through FULLNAT arrive intact", ...opts }, async () => {
  await withAppliance(lab, config, async () => {
    // rr: the first request goes to web1, which has the file.
    assert.equal(await downloadDigest(lab, "client", `http://${topo.vip}/big.bin`), bigDigest);
  });
});

Deno.test({
  name:
    "seed 004: its ipvsadm commands, in its order (reals --fullnat, then -P -z), on a live appliance",
  ...opts,
}, async () => {
  // The appliance starts with nothing; the tutorial's commands (a picture; 004:131 describes
  // them: clear, add the service, the two reals with Alibaba's -b = DPVS's --fullnat, and last
  // the SNAT address) build the service through the admin API.
  const saved = await withEmptyAppliance(lab, async (ipvsadm) => {
    const [web1, web2] = topo.reals;
    for (
      const line of [
        "-C",
        `-A -t ${topo.vip}:80 -s rr`,
        `-a -t ${topo.vip}:80 -r ${web1.addr}:8080 --fullnat`,
        `-a -t ${topo.vip}:80 -r ${web2.addr}:8080 --fullnat`,
        `-P -t ${topo.vip}:80 --laddr ${topo.localAddress}`,
      ]
    ) await ipvsadm(line);
    assert.deepEqual((await ipvsadm("-Ln")).split("\n").slice(3), [
      `TCP  ${topo.vip}:80 rr`,
      `  -> ${`${web1.addr}:8080`.padEnd(28)} FullNat 1      0          0         `,
      `  -> ${`${web2.addr}:8080`.padEnd(28)} FullNat 1      0          0         `,
      "",
    ]);
    const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 4);
    assert.deepEqual(answers, ["web1", "web2", "web1", "web2"]);
    // What appliance.yaml now holds comes back with the same rules after a restart.
    assert.equal(
      await ipvsadm("-S -n"),
      `-A -t ${topo.vip}:80 -s rr\n` +
        `-a -t ${topo.vip}:80 -r ${web1.addr}:8080 --fullnat -w 1\n` +
        `-a -t ${topo.vip}:80 -r ${web2.addr}:8080 --fullnat -w 1\n` +
        `-P -t ${topo.vip}:80 -z ${topo.localAddress}\n`,
    );
  });
  await withAppliance(lab, saved, async () => {
    assert.deepEqual(await whoAnswers(lab, "client", `http://${topo.vip}/`, 2), ["web1", "web2"]);
  });
});

Deno.test({ name: "seed 004: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
