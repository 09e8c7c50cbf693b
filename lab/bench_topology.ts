/**
 * The benchmark's topology: seed 000's client ─ director ─ real lab, of which one real (web01)
 * serves every test, so that iperf3's control and data connections always meet the same server.
 * The real is ready for every forwarding method at once: its own address for NAT, FULLNAT and the
 * kernel peers, and the VIP on `lo` with the lab's IPIP decapsulator for the tunnel.
 */
import { addVipOnLoopback } from "./bypass_reals.ts";
import { startIperf3Server } from "./iperf3.ts";
import { startIpipDecap } from "./ipip_decap.ts";
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

/** FULLNAT's local address: off every subnet of the lab, so the real routes it to the director. */
export const BENCH_LOCAL_ADDRESS = "10.10.20.1";

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
}

/** Builds seed 000's lab and starts iperf3, nginx and the IPIP decapsulator on web01. */
export async function buildBenchTopology(lab: Lab): Promise<BenchTopology> {
  const seed = await buildSeed000(lab);
  const real = seed.reals[0];
  await addVipOnLoopback(lab, real.name, seed.vip);
  await lab.sysctl(real.name, "net.ipv4.conf.all.rp_filter", 0);
  await startIpipDecap(lab, real.name);
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
  };
}

/** Pids of the processes running in namespace `ns`. */
export async function namespacePids(ns: string): Promise<number[]> {
  const cmd = await new Deno.Command("ip", { args: ["netns", "pids", ns], stdout: "piped" })
    .output();
  return new TextDecoder().decode(cmd.stdout).split(/\s+/).filter((s) => /^\d+$/.test(s))
    .map(Number);
}
