/**
 * The forwarding paths the forwarding benchmark compares, each set up in the bench topology's
 * director one at a time and torn down again: plain kernel routing (the client talks to the real
 * itself), nftables DNAT, HAProxy in TCP mode, and the tunvs appliance in NAT, FULLNAT and tunnel
 * mode, NAT and FULLNAT also with the SYN proxy.
 *
 * @module
 */

import { type ApplianceOptions, startAppliance } from "../lab/appliance.ts";
import { BENCH_LOCAL_NET, BENCH_PORTS, type BenchTopology } from "../lab/bench_topology.ts";
import { startHaproxy } from "../lab/haproxy.ts";
import type { Lab } from "../lab/netns.ts";
import { addNftDnat } from "../lab/nft_dnat.ts";

/** A path while it is set up: where the client sends its traffic. */
export interface RunningPath {
  /** Address the client connects to (the VIP, or the real itself for plain routing). */
  host: string;
  /** iperf3's port (TCP and UDP). */
  iperfPort: number;
  httpPort: number;
  /** The appliance's non-zero counters (tunvs paths only). */
  counters?(): Promise<Record<string, number>>;
  /** Undoes the set-up. */
  stop(): Promise<void>;
}

/** One way through the director. */
export interface ForwardingPath {
  /** Key in the tables and the JSON. */
  name: string;
  /** One line saying what it is. */
  description: string;
  /** Whether the UDP test runs on it (HAProxy has no UDP; the SYN proxy changes nothing there). */
  udp: boolean;
  /** Sets it up in `topo`'s director; tunvs paths start the appliance with `appliance`. */
  start(lab: Lab, topo: BenchTopology, appliance?: ApplianceOptions): Promise<RunningPath>;
}

/** The names of every path, in the order the tables list them. */
export const PATH_NAMES = [
  "direct",
  "nft",
  "haproxy",
  "nat",
  "nat+synproxy",
  "fullnat",
  "fullnat+synproxy",
  "tunnel",
] as const;

/** A path's name. */
export type PathName = typeof PATH_NAMES[number];

/** Makes the director a plain router (the lab builds it not forwarding); returns the undo. */
async function enableForwarding(lab: Lab, topo: BenchTopology): Promise<() => Promise<void>> {
  await lab.sysctl(topo.directorRole, "net.ipv4.ip_forward", 1);
  return () => lab.sysctl(topo.directorRole, "net.ipv4.ip_forward", 0);
}

/** Makes the VIP a local address of the director (so it answers ARP and HAProxy can bind it). */
async function addLocalVip(lab: Lab, topo: BenchTopology): Promise<() => Promise<void>> {
  await lab.ip(topo.directorRole, "addr", "add", `${topo.vip}/32`, "dev", "lo");
  return async () => {
    await lab.ip(topo.directorRole, "addr", "del", `${topo.vip}/32`, "dev", "lo");
  };
}

/** Runs the undo steps newest first, all of them even if one fails. */
async function undoAll(steps: Array<() => Promise<void>>): Promise<void> {
  const errors: string[] = [];
  for (const step of steps.reverse()) {
    try {
      await step();
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length > 0) throw new Error(`undoing a path: ${errors.join("; ")}`);
}

const direct: ForwardingPath = {
  name: "direct",
  description: "plain kernel routing: the client talks to the real's own address",
  udp: true,
  async start(lab, topo) {
    const undo = [await enableForwarding(lab, topo)];
    return {
      host: topo.realAddr,
      iperfPort: BENCH_PORTS.iperf,
      httpPort: BENCH_PORTS.http,
      stop: () => undoAll(undo),
    };
  },
};

const nft: ForwardingPath = {
  name: "nft",
  description: "kernel nftables DNAT of VIP to the real, in the director's namespace",
  udp: true,
  async start(lab, topo) {
    const undo = [await enableForwarding(lab, topo), await addLocalVip(lab, topo)];
    undo.push(
      await addNftDnat(lab, topo.directorRole, topo.vip, topo.realAddr, [
        BENCH_PORTS.iperf,
        BENCH_PORTS.http,
      ]),
    );
    return {
      host: topo.vip,
      iperfPort: BENCH_PORTS.iperf,
      httpPort: BENCH_PORTS.http,
      stop: () => undoAll(undo),
    };
  },
};

const haproxy: ForwardingPath = {
  name: "haproxy",
  description: "HAProxy, TCP mode, 2 threads, listening on the VIP in the director",
  udp: false,
  async start(lab, topo) {
    const undo = [await enableForwarding(lab, topo), await addLocalVip(lab, topo)];
    try {
      const proxy = await startHaproxy(lab, topo.directorRole, {
        vip: topo.vip,
        real: topo.realAddr,
        ports: [BENCH_PORTS.iperf, BENCH_PORTS.http],
      });
      undo.push(() => proxy.stop());
    } catch (err) {
      await undoAll(undo);
      throw err;
    }
    return {
      host: topo.vip,
      iperfPort: BENCH_PORTS.iperf,
      httpPort: BENCH_PORTS.http,
      stop: () => undoAll(undo),
    };
  },
};

/** The appliance's configuration for one forwarding method over iperf3's and nginx's ports. */
export function applianceConfig(
  topo: { vip: string; realAddr: string },
  forward: "nat" | "fullnat" | "tunnel",
  synproxy: boolean,
): string {
  // Each FULLNAT path has a local address of its own, so that the real holds no TIME_WAIT
  // socket of the other one's connections.
  const localAddress = `${BENCH_LOCAL_NET}.${synproxy ? 2 : 1}`;
  const iperfPort = forward === "tunnel" ? BENCH_PORTS.iperfVip : BENCH_PORTS.iperf;
  const lines = ["services:"];
  const services: Array<[string, "tcp" | "udp", number]> = [
    ["iperf-tcp", "tcp", iperfPort],
    ["iperf-udp", "udp", iperfPort],
    ["http", "tcp", BENCH_PORTS.http],
  ];
  for (const [name, protocol, port] of services) {
    lines.push(
      `  - name: ${name}`,
      `    protocol: ${protocol}`,
      `    vip: ${topo.vip}`,
      `    port: ${port}`,
      "    scheduler: rr",
      `    forward: ${forward}`,
    );
    if (forward === "fullnat") lines.push(`    local_addresses: [${localAddress}]`);
    if (synproxy && protocol === "tcp") lines.push("    synproxy: true");
    lines.push("    reals:", `      - { address: ${topo.realAddr}, port: ${port} }`);
  }
  return lines.join("\n") + "\n";
}

/** A tunvs path: the appliance runs in the director with one of the configurations above. */
function tunvsPath(forward: "nat" | "fullnat" | "tunnel", synproxy: boolean): ForwardingPath {
  return {
    name: `${forward}${synproxy ? "+synproxy" : ""}`,
    description: `tunvs, ${
      forward === "nat" ? "NAT" : forward === "fullnat" ? "FULLNAT" : "IPIP tunnel"
    }${synproxy ? " with the SYN proxy" : ""}`,
    udp: !synproxy,
    async start(lab, topo, appliance) {
      const dir = await lab.makeTempDir("bench-config");
      const path = `${dir}/appliance.yaml`;
      await Deno.writeTextFile(path, applianceConfig(topo, forward, synproxy));
      const app = await startAppliance(lab, topo.directorRole, path, appliance);
      return {
        host: topo.vip,
        iperfPort: forward === "tunnel" ? BENCH_PORTS.iperfVip : BENCH_PORTS.iperf,
        httpPort: BENCH_PORTS.http,
        async counters() {
          const view = await app.api("/api/v1/services") as { counters?: Record<string, number> };
          return Object.fromEntries(
            Object.entries(view.counters ?? {}).filter(([, v]) => typeof v === "number" && v !== 0),
          );
        },
        async stop() {
          const { code, stderr } = await app.stop();
          if (code !== 0) throw new Error(`appliance exited with ${code}:\n${stderr}`);
        },
      };
    },
  };
}

/** Every path, by name. */
export const PATHS: Readonly<Record<PathName, ForwardingPath>> = {
  direct,
  nft,
  haproxy,
  nat: tunvsPath("nat", false),
  "nat+synproxy": tunvsPath("nat", true),
  fullnat: tunvsPath("fullnat", false),
  "fullnat+synproxy": tunvsPath("fullnat", true),
  tunnel: tunvsPath("tunnel", false),
};
