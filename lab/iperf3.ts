/**
 * iperf3 in the lab: a long-running server in a real's namespace, and client runs whose JSON
 * report is parsed into the receiver's figures, with the CPU time the client process used.
 */
import type { Lab } from "./netns.ts";
import { parseProcStat } from "./proc_cpu.ts";
import { type LabServer, startTcpServerProcess } from "./servers.ts";

/** The iperf3 binary Debian installs. */
export const IPERF3_BIN = "/usr/bin/iperf3";

/**
 * Starts `iperf3 -s` on `port` in `role`'s namespace (bound to `address` when given) and waits
 * until it accepts connections.
 */
export async function startIperf3Server(
  lab: Lab,
  role: string,
  port = 5201,
  address?: string,
): Promise<LabServer> {
  const bind = address === undefined ? [] : ["-B", address];
  return await startTcpServerProcess(
    lab,
    role,
    [IPERF3_BIN, "-s", "-p", String(port), ...bind],
    port,
    "iperf3 server",
    300,
    address,
  );
}

/** What one iperf3 client run measured, as its receiver saw it. */
export interface Iperf3Result {
  /** Seconds the receiver counted over. */
  seconds: number;
  /** Payload bytes the receiver got. */
  bytes: number;
  /** Receiver's payload bits per second. */
  bitsPerSecond: number;
  /** UDP only: datagrams sent, lost, and received per second by the receiver. */
  packets?: number;
  lostPackets?: number;
  receivedPacketsPerSecond?: number;
  /** CPU seconds (user + system) the client process used, from its parent's child times. */
  clientCpuSeconds: number;
}

/** Options of one client run. */
export interface Iperf3RunOptions {
  host: string;
  port?: number;
  seconds: number;
  /** Parallel streams (`-P`). */
  streams?: number;
  /** UDP with datagrams of this many payload bytes, sent as fast as possible (`-u -l N -b 0`). */
  udpPayload?: number;
}

// The shell waits for iperf3, then prints its own /proc stat line: fields 16 and 17 (cutime,
// cstime) are then exactly the CPU time of the iperf3 it waited for.
const WRAPPER = 'iperf3 "$@" > "$OUT"; s=$?; cat /proc/$$/stat >&2; exit $s';

/** Runs an iperf3 client in `role`'s namespace and parses its JSON report; throws on errors. */
export async function runIperf3(
  lab: Lab,
  role: string,
  opts: Iperf3RunOptions,
): Promise<Iperf3Result> {
  // `-t 0` would run until killed: every load is bounded.
  if (!(opts.seconds >= 1)) throw new Error(`iperf3 needs at least 1 second, not ${opts.seconds}`);
  // The lab removes its temp dirs when it is destroyed.
  const out = `${await lab.makeTempDir(`${role}-iperf3`)}/report.json`;
  const args = ["-c", opts.host, "-p", String(opts.port ?? 5201), "-t", String(opts.seconds), "-J"];
  if (opts.streams !== undefined) args.push("-P", String(opts.streams));
  if (opts.udpPayload !== undefined) args.push("-u", "-l", String(opts.udpPayload), "-b", "0");
  const res = await lab.exec(role, ["sh", "-c", WRAPPER, "sh", ...args], {
    allowFail: true,
    env: { OUT: out, PATH: "/usr/bin:/bin:/usr/sbin:/sbin" },
  });
  const text = await Deno.readTextFile(out).catch(() => "");
  await Deno.remove(out).catch(() => {});
  let report: Iperf3Report;
  try {
    report = JSON.parse(text);
  } catch {
    throw new Error(`iperf3 ${args.join(" ")}: no JSON report (exit ${res.code}): ${res.stderr}`);
  }
  if (report.error) throw new Error(`iperf3 ${args.join(" ")}: ${report.error}`);
  return parseIperf3Report(report, childCpuSeconds(res.stderr));
}

/** The parts of iperf3's `-J` report this module reads. */
export interface Iperf3Report {
  error?: string;
  end?: {
    sum_received?: { seconds: number; bytes: number; bits_per_second: number };
    sum?: {
      seconds: number;
      bytes: number;
      bits_per_second: number;
      packets?: number;
      lost_packets?: number;
    };
  };
}

/** Turns a report into receiver figures (TCP: `sum_received`; UDP: the server's `sum`). */
export function parseIperf3Report(report: Iperf3Report, clientCpuSeconds: number): Iperf3Result {
  const tcp = report.end?.sum_received;
  const udp = report.end?.sum;
  if (udp?.packets !== undefined && udp.lost_packets !== undefined) {
    // For UDP, `end.sum` carries the server's count of lost datagrams; what arrived is the rest.
    const received = udp.packets - udp.lost_packets;
    return {
      seconds: udp.seconds,
      bytes: udp.bytes,
      bitsPerSecond: udp.bits_per_second,
      packets: udp.packets,
      lostPackets: udp.lost_packets,
      receivedPacketsPerSecond: udp.seconds > 0 ? received / udp.seconds : 0,
      clientCpuSeconds,
    };
  }
  if (!tcp) throw new Error("iperf3 report has no receiver summary");
  return {
    seconds: tcp.seconds,
    bytes: tcp.bytes,
    bitsPerSecond: tcp.bits_per_second,
    clientCpuSeconds,
  };
}

/** CPU seconds of a shell's waited-for children, from the /proc stat line it printed last. */
export function childCpuSeconds(stderr: string): number {
  return parseProcStat(stderr.trim().split("\n").at(-1) ?? "")?.childrenCpuSeconds ?? 0;
}
