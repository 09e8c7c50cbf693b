/**
 * Several dataplane workers (`dataplane.workers: 2`, IFF_MULTI_QUEUE) through seed 000's NAT
 * lab, with clients on several addresses: every connection completes, both workers carry
 * traffic, the kernel's steering program queues every packet for its owner (no hand-off), a
 * connection idle for longer than the kernel's TUN
 * flow record (3 s) still works when the server speaks first after it, persistence keeps a
 * client on one real across ports, and FULLNAT replies find the worker that made the
 * connection (docs/workers.md).
 */
import assert from "node:assert/strict";
import { Lab } from "../../lab/netns.ts";
import { curl, startHttpServer, waitForTcp } from "../../lab/servers.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";
import { e2eOptions, withAppliance, writeConfig } from "./harness.ts";

const opts = e2eOptions("multi-worker tests");
let lab: Lab;
let topo: Seed000;
let config: string;
let uringConfig: string;
/** The client's extra addresses: the owner is a hash of the client address. */
const CLIENTS = Array.from({ length: 8 }, (_, i) => `192.168.1.${40 + i}`);
const LOCAL_ADDRESS = "10.0.3.1";

// Answers a line "SECONDS" after that many seconds of silence, then echoes one more line: the
// server speaks first after the idle time, as a server's FIN after a keep-alive timeout would.
const SLOW_SERVER_PY = `
import socket, socketserver, sys, time
class H(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        if not line:
            return
        delay = float(line)
        time.sleep(delay)
        self.wfile.write(b"slept\\n")
        self.wfile.write(b"echo " + self.rfile.readline())
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
`;

// Opens one connection per address in argv[3:] to argv[1]:argv[2] at once, asks for a 4 s
// silence, and prints one line per address: "ADDR ok" or "ADDR fail REASON".
const SLOW_CLIENT_PY = `
import socket, sys, threading
host, port, addrs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = {}
def run(a):
    try:
        s = socket.create_connection((host, port), timeout=12, source_address=(a, 0))
        f = s.makefile("rwb")
        f.write(b"4\\n"); f.flush()
        assert f.readline() == b"slept\\n"
        f.write(b"hello\\n"); f.flush()
        assert f.readline() == b"echo hello\\n"
        out[a] = "ok"
    except Exception as e:
        out[a] = "fail " + repr(e)
ts = [threading.Thread(target=run, args=(a,)) for a in addrs]
[t.start() for t in ts]
[t.join() for t in ts]
for a in addrs: print(a, out[a])
`;

Deno.test(
  { name: "workers: build seed 000 with a client on several addresses", ...opts },
  async () => {
    lab = await Lab.create("workers");
    topo = await buildSeed000(lab);
    for (const a of CLIENTS) await lab.addAddress("client", "eth0", `${a}/24`);
    for (const real of topo.reals) await startHttpServer(lab, real.name, { port: 80 });
    lab.spawn("web01", ["python3", "-c", SLOW_SERVER_PY, "9000"]);
    await waitForTcp(lab, "director", "10.10.10.11", 9000, 5000);
    const dir = await lab.makeTempDir("configs");
    const reals = topo.reals.map((r) => ({ address: r.addr, port: 80 }));
    config = await writeConfig(dir, "workers", [
      { name: "web", vip: topo.vip, scheduler: "rr", settings: ["port: 80"], reals },
      {
        name: "sticky",
        vip: topo.vip,
        scheduler: "rr",
        settings: ["ports: [81, 82]", "persistence: { timeout: 30 }"],
        reals,
      },
      {
        name: "slow",
        vip: topo.vip,
        scheduler: "rr",
        settings: ["port: 9000"],
        reals: [{ address: "10.10.10.11", port: 9000 }],
      },
      {
        name: "full",
        vip: topo.vip,
        scheduler: "rr",
        settings: ["port: 83", "forward: fullnat", `local_addresses: [${LOCAL_ADDRESS}]`],
        reals,
      },
    ], ["admin:", "  listen: 127.0.0.1:9180", "dataplane:", "  tun: tunvs0", "  workers: 2"]);
    const text = await Deno.readTextFile(config);
    uringConfig = `${dir}/workers-io_uring.yaml`;
    await Deno.writeTextFile(
      uringConfig,
      text.replace("  workers: 2\n", "  workers: 2\n  io: io_uring\n"),
    );
  },
);

/** The value of the sample `name{labels}` on a /metrics page; 0 when absent. */
function sample(page: string, name: string, labels: string): number {
  const line = page.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

Deno.test({ name: "workers: io_uring batch I/O forwards NAT and FULLNAT", ...opts }, async () => {
  await withAppliance(lab, uringConfig, async (app) => {
    for (const a of CLIENTS) {
      for (const port of [80, 83]) {
        const r = await curl(lab, "client", `http://${topo.vip}:${port}/`, {
          timeoutSec: 5,
          extraArgs: ["--interface", a],
        });
        assert.equal(r.code, 200, `${a} → :${port}: ${r.stderr}`);
      }
    }
    // Each worker took io_uring (no fallback to syscalls on this kernel).
    const took = app.logs().split("\n").filter((l) => /batch I\/O: io_uring/.test(l));
    assert.equal(took.length, 2, app.logs());
  });
});

Deno.test({
  name: "workers: two workers forward, each packet queued for its owner, state kept",
  ...opts,
}, async () => {
  await withAppliance(lab, config, async (app) => {
    // Every client address, several connections each, NAT and FULLNAT.
    for (const a of CLIENTS) {
      for (let i = 0; i < 3; i++) {
        for (const port of [80, 83]) {
          const r = await curl(lab, "client", `http://${topo.vip}:${port}/`, {
            timeoutSec: 5,
            extraArgs: ["--interface", a],
          });
          assert.equal(r.code, 200, `${a} → :${port}: ${r.stderr}`);
        }
      }
    }
    // Persistence across the ports of a group: each client stays on one real.
    for (const a of CLIENTS) {
      const seen = new Set<string>();
      for (const port of [81, 82, 81, 82]) {
        const r = await curl(lab, "client", `http://${topo.vip}:${port}/`, {
          timeoutSec: 5,
          extraArgs: ["--interface", a],
        });
        assert.equal(r.code, 200, `${a} → :${port}: ${r.stderr}`);
        seen.add(r.body.trim().split(" ")[0]);
      }
      assert.equal(seen.size, 1, `${a} stayed on one real: ${[...seen]}`);
    }
    // Idle longer than the kernel's flow record, then the server speaks first.
    const slow = await lab.exec("client", [
      "python3",
      "-c",
      SLOW_CLIENT_PY,
      topo.vip,
      "9000",
      ...CLIENTS,
    ], { allowFail: true });
    assert.equal(slow.code, 0, slow.stderr);
    for (const line of slow.stdout.trim().split("\n")) assert.match(line, / ok$/, line);

    const metrics = (await app.request("GET", "/metrics")).body;
    for (const worker of ["0", "1"]) {
      assert.ok(
        sample(metrics, "tunvs_worker_packets_total", `worker="${worker}"`) > 20,
        `worker ${worker} carries traffic:\n${metrics}`,
      );
    }
    const out = sample(metrics, "tunvs_worker_handoffs_total", `worker="0",direction="out"`) +
      sample(metrics, "tunvs_worker_handoffs_total", `worker="1",direction="out"`);
    const into = sample(metrics, "tunvs_worker_handoffs_total", `worker="0",direction="in"`) +
      sample(metrics, "tunvs_worker_handoffs_total", `worker="1",direction="in"`);
    // The steering program queues every packet for its owner: nothing is handed over.
    assert.match(app.logs(), /the kernel queues each packet for its owner \(steering program/);
    assert.equal(out, 0, "no packet was handed off");
    assert.equal(into, 0, "no packet was handed in");
    assert.equal(sample(metrics, "tunvs_packets_dropped_total", `reason="handoff_full"`), 0);
    assert.equal(sample(metrics, "tunvs_packets_dropped_total", `reason="no_connection"`), 0);
    // The listing walks both workers' tables.
    const page = await app.api("/api/v1/connections?limit=1000") as {
      connections: unknown[];
      cursor: number | null;
      total: number;
    };
    let listed = page.connections.length;
    let cursor = page.cursor;
    while (cursor !== null) {
      const next = await app.api(`/api/v1/connections?limit=1000&cursor=${cursor}`) as {
        connections: unknown[];
        cursor: number | null;
      };
      listed += next.connections.length;
      cursor = next.cursor;
    }
    assert.equal(listed, page.total);
    assert.ok(listed >= CLIENTS.length * 10, `${listed} connections listed`);
  });
});

Deno.test({ name: "workers: tear down the lab", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
