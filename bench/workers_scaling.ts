/**
 * Scaling from 1 to 2 dataplane workers (docs/workers.md): seed 000's NAT lab, the client on
 * four addresses, each running iperf3 against its own iperf3 server on web01 (one server serves
 * one test at a time) through the VIP. Bulk TCP (-P 8 per address, so 32 streams) and 64-byte
 * UDP (-u -l 64 -b 0), 5 s, best of 3, with `dataplane.workers` 1 and 2.
 *
 * Run as root: deno run -A bench/workers_scaling.ts [--seconds 5] [--rounds 3] [--clients 4]
 */
import { startAppliance } from "../lab/appliance.ts";
import { Lab } from "../lab/netns.ts";
import { buildSeed000 } from "../lab/topology.ts";
import { mixAddress } from "../dataplane/owner.ts";

/** The value after `--name` on the command line, or `fallback`. */
function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 3);
const CLIENTS = balancedClients(arg("clients", 4), 2);

/**
 * `count` client addresses from 192.168.1.40 on, taken so that each of `workers` workers owns
 * as many (the owner is a hash of the client address: a handful of consecutive addresses can
 * all hash to one worker, which would measure one worker twice).
 */
function balancedClients(count: number, workers: number): string[] {
  const picked: string[] = [];
  const perWorker = new Array(workers).fill(0);
  for (let host = 40; host < 250 && picked.length < count; host++) {
    const owner = mixAddress(((192 << 24) | (168 << 16) | (1 << 8) | host) >>> 0) % workers;
    if (perWorker[owner] >= Math.ceil(count / workers)) continue;
    perWorker[owner]++;
    picked.push(`192.168.1.${host}`);
  }
  return picked;
}
const PORTS = CLIENTS.map((_, i) => 5201 + i);

const lab = await Lab.create("wscale");
try {
  const topo = await buildSeed000(lab);
  for (const a of CLIENTS) await lab.addAddress("client", "eth0", `${a}/24`);
  for (const p of PORTS) {
    lab.spawn("web01", ["iperf3", "-s", "-p", String(p)], { stdout: "null", stderr: "null" });
  }
  console.log(`clients: ${CLIENTS.join(" ")}`);
  const dir = await lab.makeTempDir("configs");
  const results: Record<string, number>[] = [];
  // 1, 2, 1, 2: the machine's other load drifts, so each setting is measured twice apart.
  for (const workers of [1, 2, 1, 2]) {
    const config = `${dir}/w${workers}-${results.length}.yaml`;
    const service = (proto: string) => [
      `  - name: iperf-${proto}`,
      `    protocol: ${proto}`,
      `    vip: ${topo.vip}`,
      "    scheduler: rr",
      `    ports: [${PORTS.join(", ")}]`,
      "    persistence: { timeout: 60 }",
      "    reals:",
      "      - { address: 10.10.10.11 }",
    ];
    await Deno.writeTextFile(
      config,
      [
        "admin:",
        "  listen: 127.0.0.1:9180",
        "dataplane:",
        "  tun: tunvs0",
        `  workers: ${workers}`,
        "services:",
        ...service("tcp"),
        ...service("udp"),
      ].join("\n") + "\n",
    );
    const app = await startAppliance(lab, "director", config);
    try {
      const run = async (extra: string[]): Promise<number> => {
        const outs = await Promise.all(CLIENTS.map((a, i) =>
          lab.exec("client", [
            "iperf3",
            "-c",
            topo.vip,
            "-p",
            String(PORTS[i]),
            "-B",
            a,
            "-t",
            String(SECONDS),
            "-J",
            ...extra,
          ], { allowFail: true })
        ));
        let sum = 0;
        for (const o of outs) {
          const j = JSON.parse(o.stdout || "{}");
          const end = j.end ?? {};
          // TCP: what the server received. UDP: what the client sent less what the server reports
          // lost. (The workers' own packet counts are no measure of datagrams: GRO on the
          // director's uplink can merge small datagrams into one USO super-packet.)
          if (extra.includes("-u")) {
            const s = end.sum ?? {};
            sum += ((s.packets ?? 0) - (s.lost_packets ?? 0)) / (s.seconds || SECONDS);
          } else sum += end.sum_received?.bits_per_second ?? 0;
        }
        return sum;
      };
      let tcp = 0;
      let udp = 0;
      for (let r = 0; r < ROUNDS; r++) {
        tcp = Math.max(tcp, await run(["-P", "8"]));
        udp = Math.max(udp, await run(["-u", "-l", "64", "-b", "0"]));
      }
      const metrics = (await app.request("GET", "/metrics")).body;
      const lines = metrics.split("\n").filter((l) => /^tunvs_worker_/.test(l));
      results.push({
        workers,
        tcpGbits: tcp / 1e9,
        udpKpps: udp / 1e3,
      });
      console.log(
        `workers=${workers}: TCP ${(tcp / 1e9).toFixed(2)} Gbit/s, ` +
          `UDP 64 B ${(udp / 1e3).toFixed(0)} kpps\n  ${lines.join("\n  ")}`,
      );
    } finally {
      await app.stop();
    }
  }
  console.log(JSON.stringify(results));
} finally {
  await lab.destroy();
}
