/**
 * Seed 000 (LVS NAT mode) end to end: a client, a director running tunvs, two
 * real servers, all in network namespaces; real HTTP/UDP servers and clients.
 */
import assert from "node:assert/strict";
import { type ApplianceProcess, startAppliance } from "../../lab/appliance.ts";
import {
  downloadDigest,
  e2eOptions,
  randomBytes,
  type ServiceDef,
  sha256Hex,
  whoAnswers,
  withAppliance as runAppliance,
  writeConfig as writeServices,
} from "./harness.ts";
import { Lab } from "../../lab/netns.ts";
import { curl, startHttpServer, startUdpEchoServer, udpRequest } from "../../lab/servers.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";

const opts = e2eOptions("seed 000 NAT end-to-end tests");

let lab: Lab;
let topo: Seed000;
let configDir: string;
const BIG_SIZE = 100 * 1024 * 1024;
let bigDigest: string;

function service(
  name: string,
  protocol: "tcp" | "udp",
  port: number,
  scheduler: string,
  reals: { address: string; port: number; weight: number }[],
): ServiceDef {
  return { name, protocol, vip: topo.vip, scheduler, settings: [`port: ${port}`], reals };
}

async function writeConfig(name: string, svc: ServiceDef): Promise<string> {
  return await writeServices(configDir, name, [svc], [
    "admin:",
    "  listen: 127.0.0.1:9180",
    "dataplane:",
    "  tun: tunvs0",
  ]);
}

function withAppliance(config: string, fn: (app: ApplianceProcess) => Promise<void>) {
  return runAppliance(lab, config, fn);
}

async function hostState(): Promise<Record<string, string>> {
  const sh = (cmd: string) => lab.exec("director", ["sh", "-c", cmd]).then((r) => r.stdout.trim());
  return {
    links: await sh("ip -o link show | awk -F': ' '{print $2}' | sort"),
    routes: await sh("ip route show table all | grep -v '^local\\|^broadcast\\|^multicast' | sort"),
    rules: await sh("ip rule show"),
    proxy: await sh("ip neigh show proxy"),
    ipForward: await sh("cat /proc/sys/net/ipv4/ip_forward"),
    proxyDelay: await sh("cat /proc/sys/net/ipv4/neigh/up0/proxy_delay"),
    rpFilter: await sh("grep . /proc/sys/net/ipv4/conf/*/rp_filter"),
  };
}

Deno.test({ name: "seed 000: build the topology and real servers", ...opts }, async () => {
  lab = await Lab.create("seed000");
  topo = await buildSeed000(lab);
  configDir = await lab.makeTempDir("configs");
  const big = randomBytes(BIG_SIZE, 0x2545f491);
  bigDigest = await sha256Hex(big);
  for (const real of topo.reals) {
    const files: Record<string, Uint8Array | string> = {};
    if (real.name === "web01") files["big.bin"] = big;
    await startHttpServer(lab, real.name, { port: 80, files });
    await startUdpEchoServer(lab, real.name, { port: 5353, reply: `${real.name} ` });
  }
  // The real servers answer the director; through the VIP nothing answers yet.
  assert.equal((await curl(lab, "director", "http://10.10.10.11/", { timeoutSec: 3 })).code, 200);
  assert.equal((await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 2 })).code, 0);
});

Deno.test({ name: "seed 000: rr alternates between web01 and web02", ...opts }, async () => {
  // Hosts often filter by reverse path everywhere; the appliance must cope and restore it.
  await lab.sysctl("director", "net.ipv4.conf.all.rp_filter", "1");
  try {
    const before = await hostState();
    // The repository's default configuration is seed 000's rr service.
    await withAppliance(new URL("../../appliance.yaml", import.meta.url).pathname, async (app) => {
      const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 10);
      // The client's SYN queued while the VIP did not resolve may be released by the
      // gratuitous ARP and take the first turn, so alternation may start at either real.
      for (let i = 1; i < answers.length; i++) assert.notEqual(answers[i], answers[i - 1]);
      assert.deepEqual([...new Set(answers)].sort(), ["web01", "web02"]);
      const api = await app.api("/api/v1/services") as {
        services: { name: string; reals: { address: string; connections: number }[] }[];
      };
      const counts = api.services[0].reals.map((r) => r.connections);
      assert.ok(counts.every((n) => n === 5 || n === 6), `connections per real: ${counts}`);
    });
    assert.deepEqual(await hostState(), before, "host state after the appliance stopped");
  } finally {
    await lab.sysctl("director", "net.ipv4.conf.all.rp_filter", "0");
  }
});

Deno.test({ name: "seed 000: wrr 2:1 gives 20:10 over 30 requests", ...opts }, async () => {
  const config = await writeConfig(
    "wrr",
    service("web", "tcp", 80, "wrr", [
      { address: "10.10.10.11", port: 80, weight: 2 },
      { address: "10.10.10.12", port: 80, weight: 1 },
    ]),
  );
  await withAppliance(config, async () => {
    const answers = await whoAnswers(lab, "client", `http://${topo.vip}/`, 30);
    assert.equal(answers.filter((a) => a === "web01").length, 20);
    assert.equal(answers.filter((a) => a === "web02").length, 10);
    // Interleaved as IPVS does it (A A B), not in bursts.
    assert.deepEqual(answers.slice(0, 6), ["web01", "web01", "web02", "web01", "web01", "web02"]);
  });
});

Deno.test({ name: "seed 000: a UDP service works through NAT", ...opts }, async () => {
  const config = await writeConfig(
    "udp",
    service("dns", "udp", 5353, "rr", [
      { address: "10.10.10.11", port: 5353, weight: 1 },
      { address: "10.10.10.12", port: 5353, weight: 1 },
    ]),
  );
  await withAppliance(config, async (app) => {
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      // A new source port each time makes a new connection, so rr alternates.
      const r = await udpRequest(lab, "client", topo.vip, 5353, `ping ${i}`, 3);
      assert.equal(r.from, topo.vip, "the reply must come from the VIP");
      assert.equal(r.fromPort, 5353);
      assert.match(r.reply, new RegExp(`^web0[12] ping ${i}$`));
      seen.add(r.reply.split(" ")[0]);
    }
    assert.deepEqual([...seen].sort(), ["web01", "web02"]);
    const api = await app.api("/api/v1/services") as { connectionsByState: Record<string, number> };
    assert.equal(api.connectionsByState.UDP, 4);
  });
});

Deno.test({
  name: "seed 000: a real's port unreachable reaches the UDP client from the VIP",
  ...opts,
}, async () => {
  // Nothing listens on 5454 at the real: its ICMP error must come back translated.
  const config = await writeConfig(
    "udp-closed",
    service("closed", "udp", 5454, "rr", [{ address: "10.10.10.11", port: 5454, weight: 1 }]),
  );
  await withAppliance(config, async (app) => {
    const probe = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect(("${topo.vip}", 5454))
s.send(b"anyone?")
try:
    s.recv(100)
    print("reply")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
`;
    const r = await lab.exec("client", ["python3", "-c", probe]);
    assert.equal(r.stdout.trim(), "refused");
    const api = await app.api("/api/v1/services") as { counters: Record<string, number> };
    assert.equal(api.counters.icmp_errors_translated, 1);
  });
});

Deno.test({ name: "seed 000: 100 MB over TCP arrive intact", ...opts }, async () => {
  const config = await writeConfig(
    "bulk",
    service("bulk", "tcp", 80, "rr", [{ address: "10.10.10.11", port: 80, weight: 1 }]),
  );
  await withAppliance(config, async (app) => {
    assert.equal(await downloadDigest(lab, "client", `http://${topo.vip}/big.bin`), bigDigest);
    const api = await app.api("/api/v1/services") as {
      services: { reals: { outBytes: number }[] }[];
    };
    assert.ok(api.services[0].reals[0].outBytes > BIG_SIZE, "the bytes went through the engine");
  });
});

Deno.test({
  name: "seed 000: with the director's checksum offload off, offloaded TCP and UDP arrive intact",
  ...opts,
}, async () => {
  // The TUN hands tunvs packets whose checksums the kernel finishes later (and TCP/UDP
  // super-packets). Over veth they would stay unfinished all the way, and a receiver trusts
  // them; with tx checksumming off on the director's own interfaces the kernel finishes and cuts
  // them in software there, and the client and the real verify every checksum.
  const ethtool = await lab.exec("director", ["sh", "-c", "command -v ethtool"]).catch(() => null);
  assert.ok(ethtool !== null, "ethtool is needed (apt-get install ethtool; ./dev installs it)");
  const links = (await lab.exec("director", ["ls", "/sys/class/net"])).stdout.split(/\s+/)
    .filter((l) => l !== "" && l !== "lo");
  const config = await writeServices(configDir, "offloads-verified", [
    // Other ports than the reals': the port rewrite must stay out of the partial sums.
    service("bulk", "tcp", 8080, "rr", [{ address: "10.10.10.11", port: 80, weight: 1 }]),
    service("echo", "udp", 5354, "rr", [{ address: "10.10.10.11", port: 5353, weight: 1 }]),
  ], ["dataplane:", "  tun: tunvs0", "  offloads: true"]);
  // Ten datagrams in one send (UDP_SEGMENT): a UDP super-packet, each datagram echoed.
  const uso = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(17, 103, 1000)
s.settimeout(3)
s.connect(("${topo.vip}", 5354))
s.send(bytes(range(250)) * 40)
got = 0
try:
    while True:
        s.recv(65535)
        got += 1
except socket.timeout:
    pass
print(got)
`;
  for (const l of links) await lab.exec("director", ["ethtool", "-K", l, "tx", "off"]);
  try {
    await withAppliance(config, async (app) => {
      assert.match(app.logs(), /offloads="csum tso4/);
      const url = `http://${topo.vip}:8080/big.bin`;
      assert.equal(await downloadDigest(lab, "client", url, 60), bigDigest);
      assert.equal((await lab.exec("client", ["python3", "-c", uso])).stdout.trim(), "10");
      const api = await app.api("/api/v1/services") as { counters: Record<string, number> };
      assert.equal(api.counters.drop_offload, 0);
    });
  } finally {
    for (const l of links) await lab.exec("director", ["ethtool", "-K", l, "tx", "on"]);
  }
});

Deno.test({
  name: "seed 000: traffic from a real server to a non-client passes through unchanged",
  ...opts,
}, async () => {
  await startHttpServer(lab, "client", { port: 8080, body: "client-side server\n" });
  // Traffic from a real's service port is what the appliance steers into its TUN.
  const config = await writeConfig(
    "passthrough",
    service("alt", "tcp", 8081, "rr", [{ address: "10.10.10.11", port: 8081, weight: 1 }]),
  );
  await withAppliance(config, async (app) => {
    const url = `http://${topo.clientAddr}:8080/`;
    for (const localPort of ["8081", ""]) {
      const extraArgs = localPort ? ["--local-port", localPort] : [];
      const r = await curl(lab, "web01", url, { timeoutSec: 5, extraArgs });
      assert.equal(r.code, 200, `from port ${localPort || "any"}: ${r.stderr}`);
      assert.equal(r.body, "client-side server\n");
    }
    const api = await app.api("/api/v1/services") as { counters: Record<string, number> };
    assert.ok(api.counters.passed_through >= 3, "the packets crossed the TUN untouched");
    assert.equal(api.counters.connections_created, 0);
  });
});

Deno.test({
  name: "seed 000: path-MTU discovery works through NAT (frag-needed reaches the real)",
  ...opts,
}, async () => {
  const config = await writeConfig(
    "pmtu",
    service("bulk", "tcp", 80, "rr", [{ address: "10.10.10.11", port: 80, weight: 1 }]),
  );
  // A narrower link towards the client: the director's kernel answers the real's full-size
  // replies (DF, source = VIP after translation) with fragmentation-needed addressed to the VIP.
  await lab.exec("director", ["ip", "link", "set", "up0", "mtu", "1280"]);
  try {
    await withAppliance(config, async (app) => {
      const r = await lab.exec("client", [
        "sh",
        "-c",
        `curl -sS --fail -m 30 http://${topo.vip}/big.bin | head -c 2000000 | wc -c`,
      ]);
      assert.equal(r.stdout.trim(), "2000000");
      const api = await app.api("/api/v1/services") as { counters: Record<string, number> };
      assert.ok(api.counters.icmp_errors_translated > 0, "frag-needed was translated to the real");
    });
  } finally {
    await lab.exec("director", ["ip", "link", "set", "up0", "mtu", "1500"]);
  }
});

Deno.test({ name: "seed 000: a VIP that is a local address is refused", ...opts }, async () => {
  const before = await hostState();
  await lab.exec("director", ["ip", "addr", "add", `${topo.vip}/32`, "dev", "lo"]);
  try {
    const app = await startAppliance(lab, "director", configDir + "/wrr.yaml").then(
      (a) => ({ app: a, error: "" }),
      (err: Error) => ({ app: null, error: err.message }),
    );
    if (app.app) await app.app.stop();
    assert.equal(app.app, null, "the appliance must not start");
    assert.match(app.error, /VIP 192\.168\.1\.31 is a local address/);
  } finally {
    await lab.exec("director", ["ip", "addr", "del", `${topo.vip}/32`, "dev", "lo"]);
  }
  assert.deepEqual(await hostState(), before);
});

Deno.test({ name: "seed 000: tear down the lab", ...opts }, async () => {
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
