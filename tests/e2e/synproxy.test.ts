/**
 * The SYN proxy end to end in seed 000's NAT lab: curl and a 32 MB transfer through a synproxied
 * service, a real still holding the client's tuples in TIME_WAIT, then a SYN flood from spoofed sources (hping3, bounded in time and rate) while a
 * second client makes 100 requests — with the proxy, and without it for comparison.
 */
import assert from "node:assert/strict";
import type { ApplianceProcess } from "../../lab/appliance.ts";
import { Lab, OutputCollector } from "../../lab/netns.ts";
import { curl, startHttpServer, waitForTcp, waitReady } from "../../lab/servers.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";
import {
  downloadDigest,
  e2eOptions,
  type FixedPortResult,
  randomBytes,
  requestsFromPorts,
  type ServicesView,
  sha256Hex,
  whoAnswers,
  withAppliance,
  writeConfig,
} from "./harness.ts";

const opts = e2eOptions("synproxy end-to-end tests");

let lab: Lab;
let topo: Seed000;
let configDir: string;
let bigDigest: string;
const BIG_SIZE = 32 * 1024 * 1024;
let smallDigest: string;
const SMALL_SIZE = 1024 * 1024;
/** The reals' port for the flood: a server with a 1024-connection backlog. */
const FLOOD_PORT = 8080;

/** Counters of the appliance, by name. */
async function countersOf(app: ApplianceProcess): Promise<ServicesView & { connections: number }> {
  return await app.api("/api/v1/services") as ServicesView & { connections: number };
}

async function config(name: string, synproxy: boolean, realPort: number): Promise<string> {
  return await writeConfig(configDir, name, [{
    vip: topo.vip,
    scheduler: "rr",
    settings: ["port: 80", ...(synproxy ? ["synproxy: true"] : [])],
    reals: topo.reals.map((r) => ({ address: r.addr, port: realPort })),
  }], ["synproxy:", "  mss: 1460", "  key_rotation: 60"]);
}

Deno.test({ name: "synproxy: build seed 000's lab and servers", ...opts }, async () => {
  lab = await Lab.create("synproxy");
  topo = await buildSeed000(lab);
  configDir = await lab.makeTempDir("configs");
  const big = randomBytes(BIG_SIZE, 0x5a5a0007);
  bigDigest = await sha256Hex(big);
  const small = randomBytes(SMALL_SIZE, 0x5a5a0008);
  smallDigest = await sha256Hex(small);
  for (const real of topo.reals) {
    await startHttpServer(lab, real.name, {
      port: 80,
      files: { "big.bin": big, "small.bin": small },
    });
  }
});

Deno.test({ name: "synproxy: curl and 32 MB arrive intact through cookies", ...opts }, async () => {
  await withAppliance(lab, await config("synproxy", true, 80), async (app) => {
    const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 4);
    assert.deepEqual(answers, ["web01", "web02", "web01", "web02"]);
    const started = performance.now();
    assert.equal(await downloadDigest(lab, "client", `http://${topo.vip}/big.bin`), bigDigest);
    const seconds = (performance.now() - started) / 1000;
    const c = (await countersOf(app)).counters;
    console.log(
      `synproxy bulk: ${BIG_SIZE >> 20} MB in ${seconds.toFixed(2)} s ` +
        `(${(BIG_SIZE * 8 / seconds / 1e6).toFixed(0)} Mbit/s); ` +
        `syns_answered=${c.synproxy_syns_answered} validated=${c.synproxy_cookies_validated} ` +
        `completed=${c.synproxy_handshakes_completed} failed=${c.synproxy_handshakes_failed}`,
    );
    // Five connections, each opened through a cookie and a completed handshake with its real.
    assert.ok(c.synproxy_syns_answered >= 5);
    assert.equal(c.synproxy_cookies_validated, 5);
    assert.equal(c.synproxy_handshakes_completed, 5);
    assert.equal(c.synproxy_handshakes_failed, 0);
    assert.equal(c.synproxy_cookies_rejected, 0);
    // The real's sockets saw the client itself (NAT), through complete handshakes.
    const seen = await lab.exec("web01", ["ss", "-Htn", "state", "time-wait"]);
    assert.match(seen.stdout, new RegExp(topo.clientAddr.replaceAll(".", "\\.")));
  });
});

Deno.test({
  name: "synproxy: a real that refuses or never answers gets the client reset",
  ...opts,
}, async () => {
  // web01 listens on nothing at port 9 (it answers RST); 10.10.10.99 is nobody (no answer).
  const refusing = await writeConfig(configDir, "refusing", [{
    vip: topo.vip,
    scheduler: "rr",
    settings: ["port: 80", "synproxy: true"],
    reals: [{ address: topo.reals[0].addr, port: 9 }],
  }]);
  await withAppliance(lab, refusing, async (app) => {
    const r = await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 10 });
    assert.equal(r.code, 0);
    assert.match(r.stderr, /reset by peer/i);
    const c = (await countersOf(app)).counters;
    assert.equal(c.synproxy_handshakes_failed, 1);
    assert.equal((await countersOf(app)).connections, 0);
  });
  const silent = await writeConfig(configDir, "silent", [{
    vip: topo.vip,
    scheduler: "rr",
    settings: ["port: 80", "synproxy: true"],
    reals: [{ address: "10.10.10.99", port: 80 }],
  }]);
  await withAppliance(lab, silent, async (app) => {
    const started = performance.now();
    const r = await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 10 });
    const seconds = (performance.now() - started) / 1000;
    console.log(`a silent real: the client was reset after ${seconds.toFixed(1)} s`);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /reset by peer/i);
    // The handshake timeout is 3 s; the worker's timer wheel ticks every 250 ms.
    assert.ok(seconds >= 2.5 && seconds < 6, `reset after ${seconds} s`);
    const view = await countersOf(app);
    assert.equal(view.counters.synproxy_handshakes_failed, 1);
    assert.equal(view.connections, 0);
  });
});

async function fromFixedPorts(ports: number[], dst: string, path: string, dport = 80) {
  return await requestsFromPorts(lab, "client", topo.clientAddr, ports, dst, path, dport);
}

/** Every connection succeeded within a second and brought small.bin intact. */
function assertQuickAndIntact(results: FixedPortResult[]): void {
  for (const r of results) {
    assert.equal(r.error, undefined, `port ${r.port}: ${r.error}`);
    assert.match(r.status!, / 200 /);
    assert.equal(r.length, SMALL_SIZE, `port ${r.port}`);
    assert.equal(r.sha256, smallDigest, `port ${r.port}`);
    assert.ok(r.seconds < 1, `port ${r.port} took ${r.seconds.toFixed(2)} s`);
  }
}

Deno.test({
  name: "synproxy: a real holding the client's tuple in TIME_WAIT still answers at once",
  ...opts,
}, async () => {
  // The client talks to web01 straight (through the director's routing) from fixed ports; web01
  // closes first and keeps each tuple in TIME_WAIT. Then the same ports go through the VIP. The
  // SYN the proxy sends web01 carries the client's ISN for the VIP and the proxy's timestamp,
  // unrelated to the direct connections' clocks: web01's TIME_WAIT turns down about half of them
  // with an ACK of the old connection. Sixteen ports, so that some surely are.
  const ports = Array.from({ length: 16 }, (_, i) => 61_100 + i);
  const cfg = await writeConfig(configDir, "time-wait", [{
    vip: topo.vip,
    scheduler: "rr",
    settings: ["port: 80", "synproxy: true"],
    reals: [{ address: topo.reals[0].addr, port: 80 }],
  }]);
  await withAppliance(lab, cfg, async (app) => {
    const direct = await fromFixedPorts(ports, topo.reals[0].addr, "/");
    for (const r of direct) assert.match(r.status ?? r.error ?? "", / 200 /, `direct ${r.port}`);
    const waiting = await lab.exec("web01", ["ss", "-Htn", "state", "time-wait"]);
    for (const port of ports) {
      assert.ok(
        waiting.stdout.includes(`${topo.clientAddr}:${port}`),
        `web01 holds ${port} in TIME_WAIT:\n${waiting.stdout}`,
      );
    }
    const proxied = await fromFixedPorts(ports, topo.vip, "/small.bin");
    const c = (await countersOf(app)).counters;
    const slowest = Math.max(...proxied.map((r) => r.seconds));
    console.log(
      `TIME_WAIT reuse through synproxy: ${proxied.length} connections, slowest ` +
        `${(slowest * 1000).toFixed(0)} ms; real_stale_acks=${c.synproxy_real_stale_acks} ` +
        `syns_resent=${c.synproxy_syns_resent} completed=${c.synproxy_handshakes_completed} ` +
        `failed=${c.synproxy_handshakes_failed}`,
    );
    assertQuickAndIntact(proxied);
    // Some SYNs met the TIME_WAIT (else this tested nothing), and each was reset and resent.
    assert.ok(c.synproxy_real_stale_acks >= 1, "no SYN met a TIME_WAIT");
    assert.equal(c.synproxy_syns_resent, c.synproxy_real_stale_acks);
    assert.equal(c.synproxy_handshakes_completed, ports.length);
    assert.equal(c.synproxy_handshakes_failed, 0);
  });
});

Deno.test({
  name: "synproxy: a TIME_WAIT left through the proxy takes the next proxied SYN at once",
  ...opts,
}, async () => {
  // Two synproxied ports of the VIP lead to the same port of web01: the client's connections
  // from one source port to either are one tuple on web01. The client's clocks for the two
  // differ (ISN and timestamp offset are keyed by the whole four-tuple), but the SYN the proxy
  // sends carries the proxy's clock, newer than any timestamp web01 saw through it before:
  // web01's TIME_WAIT takes it without a stale ACK.
  const ports = Array.from({ length: 16 }, (_, i) => 61_200 + i);
  const cfg = await writeConfig(
    configDir,
    "time-wait-proxied",
    [80, 81].map((port) => ({
      name: `web${port}`,
      vip: topo.vip,
      scheduler: "rr",
      settings: [`port: ${port}`, "synproxy: true"],
      reals: [{ address: topo.reals[0].addr, port: 80 }],
    })),
  );
  await withAppliance(lab, cfg, async (app) => {
    assertQuickAndIntact(await fromFixedPorts(ports, topo.vip, "/small.bin", 80));
    const waiting = await lab.exec("web01", ["ss", "-Htn", "state", "time-wait"]);
    for (const port of ports) {
      assert.ok(waiting.stdout.includes(`${topo.clientAddr}:${port}`), `${port} in TIME_WAIT`);
    }
    const again = await fromFixedPorts(ports, topo.vip, "/small.bin", 81);
    const c = (await countersOf(app)).counters;
    console.log(
      `TIME_WAIT left through the proxy: ${again.length} connections, slowest ` +
        `${(Math.max(...again.map((r) => r.seconds)) * 1000).toFixed(0)} ms; ` +
        `real_stale_acks=${c.synproxy_real_stale_acks} completed=${c.synproxy_handshakes_completed}`,
    );
    assertQuickAndIntact(again);
    assert.equal(c.synproxy_real_stale_acks, 0);
    assert.equal(c.synproxy_handshakes_completed, 2 * ports.length);
  });
});

/** A static HTTP server with a listen backlog of 1024, so that a flood visibly fills it. */
const BACKLOG_SERVER_PY = `
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
Server(("0.0.0.0", int(sys.argv[1])), functools.partial(Quiet, directory=sys.argv[2])).serve_forever()
`;

/** Flood settings: hping3 sends one SYN every FLOOD_INTERVAL_US for FLOOD_SECONDS. */
const FLOOD_SECONDS = 5;
const FLOOD_INTERVAL_US = 100;
/** Legitimate requests made during the flood (fewer if the flood ends first). */
const REQUESTS = 100;

/** What one flood run measured. */
interface FloodResult {
  sent: number;
  rate: number;
  requests: number;
  succeeded: number;
  /** Half-open connections on the reals from anyone but the legitimate client, at the peak. */
  realSynRecv: number;
  /** The appliance's connection table, before and at the peak of the flood. */
  tableBefore: number;
  tablePeak: number;
  counters: Record<string, number>;
}

/** Half-open connections in `role` whose peer is not the legitimate client. */
async function synRecvFromOthers(role: string): Promise<number> {
  const r = await lab.exec(role, ["ss", "-Htan", "state", "syn-recv"]);
  return r.stdout.split("\n").filter((l) => l.trim() !== "" && !l.includes(topo.clientAddr + ":"))
    .length;
}

/**
 * Floods the VIP with SYNs from random sources out of the client's namespace while the client
 * makes up to REQUESTS requests; samples the reals and the appliance meanwhile.
 */
async function flood(app: ApplianceProcess): Promise<FloodResult> {
  const before = await countersOf(app);
  const hping = lab.exec("client", [
    "timeout",
    "-s",
    "INT",
    String(FLOOD_SECONDS),
    "hping3",
    "-S",
    "-p",
    "80",
    "--rand-source",
    "-i",
    `u${FLOOD_INTERVAL_US}`,
    topo.vip,
  ], { allowFail: true });
  let done = false;
  hping.then(() => done = true, () => done = true);
  const started = performance.now();
  await new Promise((r) => setTimeout(r, 1000));
  let requests = 0;
  let succeeded = 0;
  let realSynRecv = 0;
  let tablePeak = 0;
  const sample = async () => {
    let n = 0;
    for (const real of topo.reals) n += await synRecvFromOthers(real.name);
    realSynRecv = Math.max(realSynRecv, n);
    tablePeak = Math.max(tablePeak, (await countersOf(app)).connections);
  };
  while (!done && requests < REQUESTS) {
    const r = await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 2 });
    requests++;
    if (r.code === 200) succeeded++;
    if (requests % 20 === 0) await sample();
  }
  const out = await hping;
  // The flood's last SYNs were sent: what they left behind now is at its peak.
  await sample();
  const seconds = (performance.now() - started) / 1000;
  const text = out.stdout + out.stderr;
  const m = /(\d+) packets transmitted/.exec(text);
  assert.ok(m !== null, `hping3 said:\n${text}`);
  const sent = Number(m[1]);
  const after = await countersOf(app);
  const counters: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.counters)) counters[k] = v - (before.counters[k] ?? 0);
  return {
    sent,
    rate: sent / Math.min(seconds, FLOOD_SECONDS),
    requests,
    succeeded,
    realSynRecv,
    tableBefore: before.connections,
    tablePeak,
    counters,
  };
}

function report(label: string, r: FloodResult): void {
  console.log(
    `${label}: flood ${r.sent} SYNs at ${r.rate.toFixed(0)}/s; legitimate ${r.succeeded}/` +
      `${r.requests} (${(100 * r.succeeded / r.requests).toFixed(1)}%); real SYN_RECV from ` +
      `the flood ${r.realSynRecv}; connection table ${r.tableBefore} -> ${r.tablePeak}; ` +
      `syns_answered=${r.counters.synproxy_syns_answered} ` +
      `validated=${r.counters.synproxy_cookies_validated} ` +
      `completed=${r.counters.synproxy_handshakes_completed} ` +
      `connections_created=${r.counters.connections_created}`,
  );
}

Deno.test(
  { name: "synproxy: a SYN flood from spoofed sources, with and without", ...opts },
  async () => {
    const which = await new Deno.Command("sh", { args: ["-c", "command -v hping3"] }).output();
    assert.ok(which.success, "hping3 is needed (apt-get install hping3; ./dev installs it)");
    // Spoofed sources must pass the director's reverse-path check, and its answers to them go
    // back to the client's namespace, which drops them (it does not forward).
    await lab.ip(
      "director",
      "route",
      "replace",
      "default",
      "via",
      topo.clientAddr,
      "dev",
      topo.uplink,
    );
    for (const real of topo.reals) {
      await lab.sysctl(real.name, "net.ipv4.tcp_max_syn_backlog", 1024);
      const dir = await lab.makeTempDir(`${real.name}-backlog`);
      await Deno.writeTextFile(`${dir}/index.html`, `${real.name}\n`);
      const child = lab.spawn(real.name, [
        "python3",
        "-c",
        BACKLOG_SERVER_PY,
        String(FLOOD_PORT),
        dir,
      ], {
        stdout: "null",
        stderr: "piped",
      });
      const stderr = new OutputCollector(child.stderr, 64 << 10);
      await waitReady(
        lab,
        real.name,
        child,
        stderr,
        "backlog server",
        () =>
          waitForTcp(lab, real.name, "127.0.0.1", FLOOD_PORT, 200).then(() => true, () => false),
      );
    }

    let proxied: FloodResult | undefined;
    await withAppliance(lab, await config("flood-synproxy", true, FLOOD_PORT), async (app) => {
      proxied = await flood(app);
    });
    report("with synproxy", proxied!);
    // Let the reals' half-open connections from the first run (none expected) time out of view.
    let plain: FloodResult | undefined;
    await withAppliance(lab, await config("flood-plain", false, FLOOD_PORT), async (app) => {
      plain = await flood(app);
    });
    report("without synproxy", plain!);

    const p = proxied!;
    assert.ok(p.sent >= 10_000, `the flood sent ${p.sent} SYNs`);
    assert.ok(p.requests >= REQUESTS, `only ${p.requests} requests were made during the flood`);
    assert.ok(p.succeeded >= 0.99 * p.requests, `${p.succeeded}/${p.requests} succeeded`);
    assert.equal(p.realSynRecv, 0, "no half-open connection from the flood on the reals");
    // The table holds the legitimate connections only (in TIME_WAIT), not the flood.
    assert.ok(
      p.tablePeak <= p.tableBefore + p.requests,
      `table ${p.tableBefore} -> ${p.tablePeak}`,
    );
    assert.ok(p.counters.synproxy_syns_answered >= 0.9 * p.sent);
    assert.equal(p.counters.synproxy_cookies_validated, p.requests);
    assert.equal(p.counters.synproxy_handshakes_completed, p.requests);

    // Without the proxy the same flood reaches the reals and the table.
    const n = plain!;
    assert.ok(n.realSynRecv >= 500, `the reals' backlogs held only ${n.realSynRecv}`);
    assert.ok(n.tablePeak >= 0.5 * n.sent, `table ${n.tableBefore} -> ${n.tablePeak}`);
  },
);

Deno.test({ name: "synproxy: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
