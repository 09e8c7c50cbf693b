/**
 * The benchmark's topology: seed 000's client ─ director ─ real lab, of which one real (web01)
 * serves every test, so that iperf3's control and data connections always meet the same server.
 * The real is ready for every forwarding method at once: its own address for NAT, FULLNAT and the
 * kernel peers, and the VIP on `lo` with the lab's IPIP decapsulator for the tunnel.
 */
import { addVipOnLoopback } from "./bypass_reals.ts";
import { startIperf3Server } from "./iperf3.ts";
import { startIpipDecap } from "./ipip_decap.ts";
import { startBpfIpipDecap } from "./ipip_decap_bpf.ts";
import type { Lab } from "./netns.ts";
import { startNginx } from "./nginx.ts";
import { buildSeed000, type Seed000 } from "./topology.ts";

/** Ports the real serves on. */
export const BENCH_PORTS = {
  /** iperf3 (TCP and UDP) on every address. */
  iperf: 5201,
  /** iperf3 bound to the VIP: a tunnel's UDP replies must leave from the VIP, and an unbound
   * iperf3 answers UDP from the address its route picks (the real's own). */
  iperfVip: 5202,
  /** nginx. */
  http: 80,
} as const;

/** FULLNAT's local addresses come from this /24: off every subnet of the lab, so the real routes
 * them to the director. Each FULLNAT path takes one of its own (bench/forwarding_paths.ts). */
export const BENCH_LOCAL_NET = "10.10.20";

/** The client's source addresses for the paths: 192.168.1.100, .101, … (seed 000 uses .30–.35). */
const CLIENT_ADDRESS_BASE = 100;
/** Addresses the client's connections are spread over, per path: from 192.168.1.150 on. */
const SPREAD_ADDRESS_BASE = 150;
/** How many addresses `spreadClients` spreads over. */
export const SPREAD_CLIENTS = 8;

/** What {@linkcode buildBenchTopology} made. */
export interface BenchTopology {
  seed: Seed000;
  /** Role and address of the real serving every test. */
  realRole: string;
  realAddr: string;
  vip: string;
  clientRole: string;
  directorRole: string;
  /** Pids of the long-running processes in the real's namespace (servers, decapsulator). */
  realPids(): Promise<number[]>;
  /** How the real decapsulates IPIP: in the kernel (tcx BPF) or in the lab's Python process. */
  decapsulator: "bpf" | "python";
}

/** Builds seed 000's lab and starts iperf3, nginx and the IPIP decapsulator on web01. */
export async function buildBenchTopology(lab: Lab): Promise<BenchTopology> {
  const seed = await buildSeed000(lab);
  const real = seed.reals[0];
  await addVipOnLoopback(lab, real.name, seed.vip);
  await lab.sysctl(real.name, "net.ipv4.conf.all.rp_filter", 0);
  // The in-kernel decapsulator where the kernel takes it (tcx, Linux 6.6), else the Python one,
  // which then bounds the tunnel path's figures.
  const decap = await startBpfIpipDecap(lab, real.name).then(
    (): "bpf" | "python" => "bpf",
    async (err) => {
      console.error(
        `tunvs bench: ${(err as Error).message}; the tunnel uses the Python decapsulator`,
      );
      await startIpipDecap(lab, real.name);
      return "python" as const;
    },
  );
  await startIperf3Server(lab, real.name, BENCH_PORTS.iperf);
  await startIperf3Server(lab, real.name, BENCH_PORTS.iperfVip, seed.vip);
  await startNginx(lab, real.name, { port: BENCH_PORTS.http });
  return {
    seed,
    realRole: real.name,
    realAddr: real.addr,
    vip: seed.vip,
    clientRole: "client",
    directorRole: "director",
    realPids: () => namespacePids(real.ns),
    decapsulator: decap,
  };
}

/**
 * Moves the client to a source address of its own for the path numbered `index`: every path then
 * starts with no TIME_WAIT socket of an earlier path on the real. Without this, a path measured
 * after others meets the real still holding the client's earlier tuples (a minute of TIME_WAIT),
 * and how it copes with that depends on the order the paths ran in, not on the path alone.
 */
export async function freshClientAddress(
  lab: Lab,
  topo: BenchTopology,
  index: number,
): Promise<string> {
  const addr = `192.168.1.${CLIENT_ADDRESS_BASE + index}`;
  const role = topo.clientRole;
  await lab.addAddress(role, "eth0", `${addr}/24`);
  // The preferred source of both routes the client uses: to the VIP (on link) and to the real.
  await lab.ip(
    role,
    "route",
    "replace",
    "192.168.1.0/24",
    "dev",
    "eth0",
    "proto",
    "kernel",
    "scope",
    "link",
    "src",
    addr,
  );
  await lab.ip(role, "route", "replace", "default", "via", topo.seed.directorAddr, "src", addr);
  return addr;
}

/**
 * Makes the client's new connections to `host` leave from SPREAD_CLIENTS addresses of their own
 * for the path numbered `index`, one after the other (nftables `snat to numgen inc mod N map`, in
 * the client's namespace only), as connections from many clients would: tunvs hashes the client
 * address to pick a connection's worker, so one address uses one worker. The same generators
 * then run unchanged for every path. Returns the undo (the addresses stay, unused).
 */
export async function spreadClients(
  lab: Lab,
  topo: BenchTopology,
  index: number,
  host: string,
): Promise<() => Promise<void>> {
  const role = topo.clientRole;
  const addrs = Array.from(
    { length: SPREAD_CLIENTS },
    (_, k) => `192.168.1.${SPREAD_ADDRESS_BASE + index * SPREAD_CLIENTS + k}`,
  );
  for (const a of addrs) await lab.addAddress(role, "eth0", `${a}/24`);
  const map = addrs.map((a, k) => `${k} : ${a}`).join(", ");
  const ruleset = [
    "table ip tunvs_bench_clients {",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip daddr ${host} snat to numgen inc mod ${SPREAD_CLIENTS} map { ${map} }`,
    "  }",
    "}",
  ].join("\n");
  await lab.exec(role, ["nft", "-f", "-"], { stdin: ruleset + "\n" });
  return async () => {
    await lab.exec(role, ["nft", "delete", "table", "ip", "tunvs_bench_clients"]);
  };
}

/** Pids of the processes running in namespace `ns`. */
export async function namespacePids(ns: string): Promise<number[]> {
  const cmd = await new Deno.Command("ip", { args: ["netns", "pids", ns], stdout: "piped" })
    .output();
  return new TextDecoder().decode(cmd.stdout).split(/\s+/).filter((s) => /^\d+$/.test(s))
    .map(Number);
}
