/**
 * Seed 001 (LVS-DR): a client behind a router; the router, the director and two reals on one
 * segment; the reals carry the VIP on `lo` with arp_ignore=1/arp_announce=2 and answer the
 * client through the router. The director sends each request unchanged to the real's MAC
 * through its packet socket, and sees none of the replies.
 */
import assert from "node:assert/strict";
import { startBoundUdpEcho } from "../../lab/bypass_reals.ts";
import { startAppliance } from "../../lab/appliance.ts";
import { Lab, pollUntil } from "../../lab/netns.ts";
import { curl, startHttpServer, udpRequest } from "../../lab/servers.ts";
import { buildSeed001, type Seed001 } from "../../lab/topology.ts";
import {
  downloadDigest,
  e2eOptions,
  listConnections,
  randomBytes,
  type ServicesView,
  sha256Hex,
  whoAnswers,
  withAppliance,
  writeConfig,
} from "./harness.ts";

const opts = e2eOptions("seed 001 DR tests");
let lab: Lab;
let topo: Seed001;
let config: string;
let bigDigest: string;
const BIG_SIZE = 64 * 1024 * 1024;
const UDP_PORT = 9000;

async function rxBytes(role: string, iface: string): Promise<number> {
  const r = await lab.exec(role, ["cat", `/sys/class/net/${iface}/statistics/rx_bytes`]);
  return Number(r.stdout.trim());
}

Deno.test({ name: "seed 001: build the DR segment", ...opts }, async () => {
  lab = await Lab.create("dr");
  topo = await buildSeed001(lab);
  const big = randomBytes(BIG_SIZE, 0x5eed0001);
  bigDigest = await sha256Hex(big);
  // Short neighbour timers on the director (before any entry exists), so that the kernel
  // notices within seconds, not a minute, that a real's old MAC is gone.
  for (const [key, value] of [["base_reachable_time_ms", 1000], ["delay_first_probe_time", 1]]) {
    await lab.sysctl("director", `net.ipv4.neigh.${topo.directorIf}.${key}`, value);
  }
  for (const real of topo.reals) {
    await startHttpServer(lab, real.name, {
      port: 80,
      body: `${real.name} ${real.addr}\n`,
      files: { "big.bin": big },
    });
    await startBoundUdpEcho(lab, real.name, topo.vip, UDP_PORT, `${real.name}:`);
  }
  // As the seed checks: the reals answer for the VIP locally but never ARP it.
  for (const real of topo.reals) {
    assert.equal(await lab.readSysctl(real.name, "net.ipv4.conf.lo.arp_ignore"), "1");
    assert.equal(await lab.readSysctl(real.name, "net.ipv4.conf.all.arp_announce"), "2");
    const lo = await lab.exec(real.name, ["ip", "-4", "-o", "addr", "show", "dev", "lo"]);
    assert.match(lo.stdout, /inet 172\.10\.0\.9\/32 brd 172\.10\.0\.9 scope global lo:0/);
  }
  // ipvsadm -a ... -r 192.168.60.9:80 -g, then 192.168.60.8:80, as the seed adds them.
  const reals = [...topo.reals].reverse().map((r) => ({ address: r.addr }));
  config = await writeConfig(await lab.makeTempDir("configs"), "dr", [
    { name: "web", vip: topo.vip, scheduler: "rr", settings: ["port: 80", "forward: dr"], reals },
    {
      name: "echo",
      protocol: "udp",
      vip: topo.vip,
      scheduler: "rr",
      settings: [`port: ${UDP_PORT}`, "forward: dr"],
      reals,
    },
  ], ["host:", `  uplink: ${topo.directorIf}`]);
});

Deno.test(
  { name: "seed 001: DR alternates (rr) with MACs from the neighbour table", ...opts },
  async () => {
    // The director has never talked to the reals: their MACs must be resolved at start.
    const before = await lab.exec("director", ["ip", "-j", "neigh", "show"]);
    assert.deepEqual(JSON.parse(before.stdout), []);
    await withAppliance(lab, config, async (app) => {
      const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 6);
      assert.deepEqual(answers, ["real2", "real1", "real2", "real1", "real2", "real1"]);
      const connections = await listConnections(app, "service=web");
      assert.equal(connections.length, 6);
      for (const c of connections) {
        assert.equal(c.forward, "Route");
        assert.match(c.real, /^192\.168\.60\.[89]:80$/);
      }
      for (const real of topo.reals) {
        const mac = (await lab.exec(real.name, ["cat", "/sys/class/net/eth0/address"])).stdout
          .trim();
        assert.match(
          app.logs(),
          new RegExp(
            `real link service=web real=${real.addr} ifindex=\\d+ ` +
              `mac=${mac} mtu=1500`,
          ),
        );
      }
      // UDP too, answered from the VIP by the real itself.
      const udp = [];
      for (let i = 0; i < 4; i++) {
        const r = await udpRequest(lab, "client", topo.vip, UDP_PORT, `q${i}`);
        assert.equal(r.from, topo.vip);
        udp.push(r.reply);
      }
      assert.deepEqual(udp, ["real2:q0", "real1:q1", "real2:q2", "real1:q3"]);
    });
  },
);

Deno.test(
  { name: "seed 001: 64 MB arrive intact and the replies bypass the director", ...opts },
  async () => {
    await withAppliance(lab, config, async (app) => {
      const directorRx = await rxBytes("director", topo.directorIf);
      const clientRx = await rxBytes("client", "eth0");
      assert.equal(await downloadDigest(lab, "client", `http://${topo.vip}/big.bin`), bigDigest);
      const clientGot = await rxBytes("client", "eth0") - clientRx;
      const directorGot = await rxBytes("director", topo.directorIf) - directorRx;
      assert.ok(clientGot > BIG_SIZE, `client received ${clientGot} bytes`);
      // The director saw the client's ACKs only: a few percent of what the client received.
      assert.ok(directorGot < BIG_SIZE / 10, `director received ${directorGot} bytes`);
      console.log(`client received ${clientGot} bytes, the director ${directorGot}`);
      const view = await app.api("/api/v1/services") as ServicesView;
      const web = view.services.find((s) => s.name === "web")!;
      const served = web.reals.find((x) => x.inPackets > 0)!;
      // The request and the client's ACKs (GRO on the client makes those fewer than segments).
      assert.ok(served.inPackets > 100, `requests and ACKs sent on: ${served.inPackets}`);
      for (const real of web.reals) {
        assert.equal(real.forward, "Route");
        assert.equal(real.outPackets, 0, "no reply passed through the director");
      }
      assert.equal(view.counters.direct_sent, view.counters.forwarded);
      assert.equal(view.counters.drop_direct_send_failed, 0);
    });
  },
);

Deno.test({ name: "seed 001: a real whose MAC changes is followed", ...opts }, async () => {
  const app = await startAppliance(lab, "director", config, {
    env: { TUNVS_LINK_REFRESH_MS: "1000" },
  });
  try {
    const first = await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 5 });
    assert.equal(first.body.split(" ")[0], "real2");
    const mac = "02:00:00:00:60:08";
    await lab.ip("real1", "link", "set", "eth0", "address", mac);
    // Each service's reals are resolved in turn: the echo service may see the new MAC one
    // refresh before the web service does, so wait for the web service's line itself.
    const changed = `real link changed service=web real=192.168.60.8 ifindex=2 mac=${mac}`;
    const followed = await pollUntil(
      () => Promise.resolve(app.logs().includes(changed)),
      30_000,
      200,
    );
    assert.ok(followed, "the new MAC was resolved and posted to the worker");
    const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 4);
    assert.deepEqual([...answers].sort(), ["real1", "real1", "real2", "real2"]);
  } catch (err) {
    console.error(`appliance log:\n${app.logs()}`);
    throw err;
  } finally {
    assert.equal((await app.stop()).code, 0);
  }
});

Deno.test({ name: "seed 001: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
