/**
 * Seed 003 over an IPIP tunnel: the reals sit in subnets of their own behind a router; the
 * director encapsulates each request from its own address to the real's, clamping the SYN's MSS
 * for the 20 bytes the tunnel takes, and the reals answer the client straight from the VIP.
 * Their kernel has no `tunl0` here: the lab's decapsulator stands in for it.
 */
import assert from "node:assert/strict";
import { startBoundUdpEcho } from "../../lab/bypass_reals.ts";
import { Lab } from "../../lab/netns.ts";
import { startHttpServer, udpRequest } from "../../lab/servers.ts";
import { buildSeed003Tunnel, type Seed003 } from "../../lab/topology.ts";
import {
  downloadDigest,
  e2eOptions,
  listConnections,
  randomBytes,
  type ServicesView,
  sha256Hex,
  whoAnswers,
  withAppliance,
  withEmptyAppliance,
  writeConfig,
} from "./harness.ts";

const opts = e2eOptions("seed 003 tunnel tests");
let lab: Lab;
let topo: Seed003;
let config: string;
let bigDigest: string;
const BIG_SIZE = 64 * 1024 * 1024;
const UDP_PORT = 9000;

// Sends one datagram of `size` bytes with DF from a connected socket, twice, and prints what
// the socket then knows about the path MTU (IP_MTU) and whether the second send was refused.
const DF_PROBE_PY = `
import errno, json, socket, sys, time
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.connect((sys.argv[1], int(sys.argv[2])))
size = int(sys.argv[3])
s.send(b"x" * size)
time.sleep(0.5)
refused = False
try:
    s.send(b"x" * size)
except OSError as e:
    refused = e.errno == errno.EMSGSIZE
print(json.dumps({"mtu": s.getsockopt(socket.IPPROTO_IP, IP_MTU), "refused": refused}))
`;

// A TCP sink: reads until the client shuts its side, answers with the SHA-256 of what came.
const SINK_PY = `
import hashlib, socket, threading
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8000))
srv.listen(16)
print("ready", flush=True)
def serve(c):
    h = hashlib.sha256()
    while True:
        data = c.recv(1 << 16)
        if not data:
            break
        h.update(data)
    c.sendall(h.hexdigest().encode())
    c.close()
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
`;

// Sends argv[3] bytes (a fixed pattern) to argv[1]:argv[2], then prints the peer's answer.
const UPLOAD_PY = `
import hashlib, socket, sys
data = bytes(range(256)) * (int(sys.argv[3]) // 256)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
answer = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
print(answer.decode(), hashlib.sha256(data).hexdigest())
`;

Deno.test({ name: "seed 003: build the routed tunnel topology", ...opts }, async () => {
  lab = await Lab.create("tunnel");
  topo = await buildSeed003Tunnel(lab);
  const big = randomBytes(BIG_SIZE, 0x5eed0003);
  bigDigest = await sha256Hex(big);
  for (const real of topo.reals) {
    await startHttpServer(lab, real.name, {
      port: 80,
      body: `${real.name} ${real.addr}\n`,
      files: { "big.bin": big },
    });
    await startBoundUdpEcho(lab, real.name, topo.vip, UDP_PORT, `${real.name}:`);
    const sink = lab.spawn(real.name, ["/usr/bin/python3", "-c", SINK_PY], {
      stdout: "piped",
      stderr: "inherit",
    });
    // Read up to "ready", then keep draining: closing the pipe could reach the sink before its
    // print's write (EPIPE killed it, and the upload test found no sink).
    const reader = sink.stdout.getReader();
    let said = "";
    while (!said.includes("ready\n")) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the sink on ${real.name} exited: ${said}`);
      said += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    sink.stdout.pipeTo(new WritableStream()).catch(() => {});
  }
  const reals = topo.reals.map((r) => ({ address: r.addr }));
  config = await writeConfig(await lab.makeTempDir("configs"), "tunnel", [
    {
      name: "web",
      vip: topo.vip,
      scheduler: "rr",
      settings: ["port: 80", "forward: tunnel"],
      reals,
    },
    {
      name: "sink",
      vip: topo.vip,
      scheduler: "rr",
      settings: ["port: 8000", "forward: tunnel"],
      reals,
    },
    {
      name: "echo",
      protocol: "udp",
      vip: topo.vip,
      scheduler: "rr",
      settings: [`port: ${UDP_PORT}`, "forward: tunnel"],
      reals,
    },
  ]);
});

Deno.test(
  { name: "seed 003: the tunnel alternates (rr) and clamps the MSS", ...opts },
  async () => {
    await withAppliance(lab, config, async (app) => {
      const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 6);
      assert.deepEqual(answers, ["rs1", "rs2", "rs1", "rs2", "rs1", "rs2"]);
      const connections = await listConnections(app, "service=web");
      assert.equal(connections.length, 6);
      assert.ok(connections.every((c) => c.forward === "Tunnel"));
      // Each real saw three SYNs from the client, from the director's address, MSS 1500 - 60.
      for (const decap of topo.decaps) {
        const syns = decap.syns();
        assert.equal(syns.length, 3, decap.logs());
        for (const syn of syns) {
          assert.match(syn.syn, new RegExp(`^${topo.clientAddr.replaceAll(".", "\\.")}:\\d+$`));
          assert.equal(syn.outer, topo.directorAddr);
          assert.equal(syn.mss, 1440);
        }
      }
      // Every client SYN (MSS 1460) was clamped.
      const view = await app.api("/api/v1/services") as ServicesView;
      assert.equal(view.counters.mss_clamped, 6);
      assert.match(
        app.logs(),
        /real link service=web real=10\.0\.3\.62 source=10\.0\.2\.10 mtu=1500/,
      );

      const udp = [];
      for (let i = 0; i < 4; i++) {
        const r = await udpRequest(lab, "client", topo.vip, UDP_PORT, `q${i}`);
        assert.equal(r.from, topo.vip);
        udp.push(r.reply);
      }
      assert.deepEqual(udp, ["rs1:q0", "rs2:q1", "rs1:q2", "rs2:q3"]);
    });
  },
);

Deno.test({ name: "seed 003: 64 MB arrive intact through the tunnel", ...opts }, async () => {
  await withAppliance(lab, config, async (app) => {
    assert.equal(await downloadDigest(lab, "client", `http://${topo.vip}/big.bin`), bigDigest);
    const view = await app.api("/api/v1/services") as ServicesView;
    for (const real of view.services.find((s) => s.name === "web")!.reals) {
      assert.equal(real.forward, "Tunnel");
      assert.equal(real.outPackets, 0, "the reals answered the client themselves");
    }
  });
});

Deno.test({
  name: "seed 003: a DF datagram too big for the tunnel brings the client frag-needed",
  ...opts,
}, async () => {
  await withAppliance(lab, config, async (app) => {
    // 1472 bytes of payload fill a 1500-byte packet: 20 too many for the tunnel.
    const r = await lab.exec("client", [
      "/usr/bin/python3",
      "-c",
      DF_PROBE_PY,
      topo.vip,
      String(UDP_PORT),
      "1472",
    ]);
    assert.deepEqual(JSON.parse(r.stdout), { mtu: 1480, refused: true });
    const route = await lab.exec("client", ["ip", "route", "get", topo.vip]);
    assert.match(route.stdout, /mtu 1480/);
    const view = await app.api("/api/v1/services") as ServicesView;
    assert.equal(view.counters.frag_needed_sent, 1);
    // A datagram that fits the tunnel still goes through.
    const fits = await udpRequest(lab, "client", topo.vip, UDP_PORT, "x".repeat(1400));
    assert.equal(fits.from, topo.vip);
  });
});

Deno.test({
  name: "seed 003: an upload in full-size segments finds the tunnel's MTU through frag-needed",
  ...opts,
}, async () => {
  await withAppliance(lab, config, async (app) => {
    // The real's SYN-ACK (MSS 1460) does not pass the director, so the client starts with
    // 1500-byte segments; frag-needed from the VIP teaches it the tunnel's 1480. (Forget what
    // the datagram test taught it first.)
    await lab.exec("client", ["ip", "route", "flush", "cache"]);
    assert.doesNotMatch((await lab.exec("client", ["ip", "route", "get", topo.vip])).stdout, /mtu/);
    const r = await lab.exec("client", [
      "/usr/bin/python3",
      "-c",
      UPLOAD_PY,
      topo.vip,
      "8000",
      String(8 << 20),
    ]);
    const [theirs, ours] = r.stdout.trim().split(" ");
    assert.equal(theirs, ours, "the real got every byte");
    const view = await app.api("/api/v1/services") as ServicesView;
    assert.ok(view.counters.frag_needed_sent >= 1, JSON.stringify(view.counters));
    const route = await lab.exec("client", ["ip", "route", "get", topo.vip]);
    assert.match(route.stdout, /mtu 1480/);
  });
});

Deno.test({
  name:
    "seed 003: Dserver.sh's ipvsadm lines with -i (tunnel) build the service on a live appliance",
  ...opts,
}, async () => {
  await withEmptyAppliance(lab, async (ipvsadm) => {
    const [rs1, rs2] = topo.reals;
    // 003:86-89 ($ipv -C; -A -t $vip:80 -s wrr; -a … -r $rs1:80 -g -w 3; … $rs2:80 -g -w 1),
    // forwarding by -i over this lab's routed tunnel.
    for (
      const line of [
        "-C",
        `-A -t ${topo.vip}:80 -s wrr`,
        `-a -t ${topo.vip}:80 -r ${rs1.addr}:80 -i -w 3`,
        `-a -t ${topo.vip}:80 -r ${rs2.addr}:80 -i -w 1`,
      ]
    ) await ipvsadm(line);
    const row = (addr: string, weight: number) =>
      `  -> ${`${addr}:80`.padEnd(28)} Tunnel  ${String(weight).padEnd(6)} 0          0         `;
    assert.deepEqual((await ipvsadm("-Ln")).split("\n").slice(3), [
      `TCP  ${topo.vip}:80 wrr`,
      ...[[rs1.addr, 3], [rs2.addr, 1]].sort().map(([a, w]) => row(a as string, w as number)),
      "",
    ]);
    // --tun-info: upstream's `  -> %-28s %-7s %-13s %-6d %-10u %-10u`.
    assert.ok(
      (await ipvsadm("-Ln --tun-info")).includes(
        `  -> ${`${rs1.addr}:80`.padEnd(28)} Tunnel  ${"ipip".padEnd(13)} 3      0          0`,
      ),
    );
    const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 8);
    assert.equal(answers.filter((a) => a === rs1.name).length, 6, answers.join(" "));
    assert.equal(answers.filter((a) => a === rs2.name).length, 2, answers.join(" "));
  });
});

Deno.test({ name: "seed 003: tear down", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
