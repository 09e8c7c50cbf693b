/**
 * Seed 004 (FULLNAT): the reals listen on 8080 in two subnets behind a router
 * and have no route to the client; requests reach them from the local address
 * 10.0.3.1 with a local port, and replies come back to the client from VIP:80.
 * Also: a local port that comes round while the real still holds its tuple in
 * TIME_WAIT is taken at once (FULLNAT's timestamps are the director's clock, and
 * so are the ISNs of clients without timestamps).
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
  requestsFromPorts,
  type ServicesView,
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

/** Ports FULLNAT hands out: 1024..65535 on one worker. */
const LOCAL_PORTS = 65536 - 1024;

/** web1's TIME_WAIT tuples towards the local address: local port → seconds left. */
async function timeWaitsOnWeb1(): Promise<Map<number, number>> {
  const r = await lab.exec("web1", ["ss", "-Htno", "state", "time-wait"]);
  const left = new Map<number, number>();
  const peer = topo.localAddress.replaceAll(".", "\\.");
  const line = new RegExp(`${peer}:(\\d+)\\s+timer:\\(timewait,(?:(\\d+)min)?(?:(\\d+)sec)?`);
  for (const l of r.stdout.split("\n")) {
    const m = line.exec(l);
    if (m) left.set(Number(m[1]), Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0));
  }
  return left;
}

/** hping3 SYNs from the client to VIP:`dport`, source ports from `base` on, one per `us`. */
async function syns(dport: number, base: number, count: number, us: number): Promise<void> {
  if (count <= 0) return;
  await lab.exec("client", [
    "hping3",
    "-q",
    "-S",
    "-p",
    String(dport),
    "-s",
    String(base),
    "-c",
    String(count),
    "-i",
    `u${us}`,
    topo.vip,
  ], { allowFail: true });
}

/** Ports from `from` to `to` (FULLNAT's ports, 1024..65535, wrapping). */
function portsBetween(from: number, to: number): number {
  return (((to - from) % LOCAL_PORTS) + LOCAL_PORTS) % LOCAL_PORTS;
}

Deno.test({
  name:
    "seed 004: a local port that comes round to a real holding it in TIME_WAIT is taken at once",
  ...opts,
}, () => localPortComesRound());

Deno.test({
  name: "seed 004: ... and so it is for a client that sends no timestamps",
  ...opts,
}, async () => {
  // Without timestamps web1 decides by sequence number, so this tests FULLNAT's ISN clock.
  const key = "net.ipv4.tcp_timestamps";
  const was = (await lab.exec("client", ["sysctl", "-n", key])).stdout.trim();
  await lab.sysctl("client", key, 0);
  try {
    await localPortComesRound();
  } finally {
    await lab.sysctl("client", key, was);
  }
});

/**
 * Leaves 16 tuples in TIME_WAIT on web1, brings FULLNAT's local ports round to them and checks
 * that every one is taken at once.
 */
async function localPortComesRound(): Promise<void> {
  // web1 closes first (HTTP/1.0), so it keeps each (local address:port, web1:8080) in TIME_WAIT
  // for 60 s, while the allocator hands the same port out again after 64,512 connections. A SYN
  // on such a tuple carries the client's ISN and TSval of another tuple: before FULLNAT's
  // timestamps (or, without them, ISNs) were the director's clock web1 turned about half of them
  // down with the old ACK and the client sent its SYN again a second later (docs/performance.md).
  // Here 16 tuples are left in TIME_WAIT, SYNs to a closed port (VIP:81 → web1:8081, each
  // answered by a RST) move the allocator round, and other client ports come back to VIP:80 on
  // the 16 local ports.
  const web1 = topo.reals[0].addr;
  const cfg = await writeConfig(
    await lab.makeTempDir("configs"),
    "fullnat-reuse",
    [80, 81].map(
      (port) => ({
        name: `web${port}`,
        vip: topo.vip,
        scheduler: "rr",
        settings: [`port: ${port}`, "forward: fullnat", `local_addresses: [${topo.localAddress}]`],
        reals: [{ address: web1, port: port === 80 ? 8080 : 8081 }],
      }),
    ),
    // One worker: the test steps the allocator through consecutive ports, and with N workers
    // each hands out only the ports ≡ its index (mod N).
    ["dataplane:", "  workers: 1"],
  );
  await withAppliance(lab, cfg, async (app) => {
    const first = Array.from({ length: 16 }, (_, i) => 60_100 + i);
    const before = await timeWaitsOnWeb1();
    for (const r of await requestsFromPorts(lab, "client", topo.clientAddr, first, topo.vip, "/")) {
      assert.match(r.status ?? r.error ?? "", / 200 /, `first ${r.port}`);
    }
    const left = [...(await timeWaitsOnWeb1()).keys()].filter((p) => !before.has(p));
    assert.equal(left.length, 16, `web1's new TIME_WAITs: ${left}`);
    // Consecutive ports (1024 follows 65535): the first is where the allocator stood.
    const start = left.find((p) => !left.includes(p === 1024 ? 65535 : p - 1))!;
    // The director holds them too (TIME_WAIT, 120 s) until a client port comes back: a SYN from
    // each of the 16 client ports ends its entry (and takes the next port, reset by the client).
    const states = (await listConnections(app)).map((c) => c.state);
    assert.deepEqual([...new Set(states)], ["TIME_WAIT"]);
    await syns(80, first[0], 16, 2_000);
    // The allocator's position: one more connection's port, as web1 sees it.
    const seen = new Set((await timeWaitsOnWeb1()).keys());
    await requestsFromPorts(lab, "client", topo.clientAddr, [60_150], topo.vip, "/");
    const probe = [...(await timeWaitsOnWeb1()).keys()].find((p) => !seen.has(p))!;
    assert.ok(probe !== undefined, "the probe's local port");
    // Most of the way round quickly, the rest at a pace that loses nothing, stopping 20 short.
    const margin = 20;
    const fast = portsBetween(probe + 1, start - margin) - 2_000;
    await syns(81, 1024, fast, 100);
    const seen2 = new Set((await timeWaitsOnWeb1()).keys());
    await requestsFromPorts(lab, "client", topo.clientAddr, [60_151], topo.vip, "/");
    const probe2 = [...(await timeWaitsOnWeb1()).keys()].find((p) => !seen2.has(p))!;
    await syns(81, 1024, portsBetween(probe2 + 1, start - margin), 500);
    const waiting = await timeWaitsOnWeb1();
    for (const port of left) assert.ok(waiting.has(port), `web1 still holds ${port}`);

    const again = Array.from({ length: margin + 16 + 40 }, (_, i) => 60_200 + i);
    const results = await requestsFromPorts(lab, "client", topo.clientAddr, again, topo.vip, "/");
    const after = await timeWaitsOnWeb1();
    const reused = left.filter((p) => (after.get(p) ?? 0) > (waiting.get(p) ?? 60));
    const slow = results.filter((r) => r.error !== undefined || r.seconds >= 1);
    const c = (await app.api("/api/v1/services") as ServicesView).counters;
    console.log(
      `local ports round again: ${reused.length}/16 TIME_WAIT tuples reused by ` +
        `${results.length} connections; ${slow.length} took 1 s or more (slowest ` +
        `${(Math.max(...results.map((r) => r.seconds)) * 1000).toFixed(0)} ms); ` +
        `connections_created=${c.connections_created} drop_no_local_port=${
          c.drop_no_local_port ?? 0
        }`,
    );
    for (const r of results) {
      assert.match(r.status ?? r.error ?? "", / 200 /, `port ${r.port}`);
      assert.ok(r.seconds < 1, `port ${r.port} took ${r.seconds.toFixed(2)} s`);
    }
    // Each of the 16 tuples was taken (its TIME_WAIT is new, not ended by a RST and a SYN
    // sent again from another port), and was met at all, else this tested nothing.
    assert.deepEqual(reused, left, "the 16 local ports came round to web1 and were taken");
  });
}

Deno.test({ name: "seed 004: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
