/**
 * Where the time goes on a forwarding path: runs one load of the forwarding benchmark (bulk TCP 1
 * or 8 streams, 64-byte UDP, new connections/s) through a path of the bench lab while `perf
 * record -a` samples every CPU, then splits the samples by who spent them — the client's load
 * generator, the director's forwarder (tunvs' threads or HAProxy), the real's servers, kernel
 * threads, idle — and shows the forwarder's kernel/user split and its hottest symbols. tunvs runs
 * with V8's perf map so its JIT frames have names. docs/performance.md quotes its output.
 *
 * Run as root: deno run -A bench/profile.ts [--paths nat,nft] [--loads bulk1,bulk8,udp,conns]
 * [--seconds 5] [--symbols 12] [--spread] (`--spread`: the client's connections from 8 addresses,
 * as the benchmark's "from 8 client addresses" figures)
 *
 * @module
 */
import { buildBenchTopology, freshClientAddress, spreadClients } from "../lab/bench_topology.ts";
import { runIperf3 } from "../lab/iperf3.ts";
import { Lab } from "../lab/netns.ts";
import { runWrk } from "../lab/wrk.ts";
import { type PathName, PATHS } from "./forwarding_paths.ts";

/** The loads this tool runs, as the forwarding benchmark runs them. */
const LOADS = ["bulk1", "bulk8", "udp", "conns"] as const;
type Load = typeof LOADS[number];

const PERF_BIN = "/usr/bin/perf";
/** Sampling frequency per CPU: enough samples in a few seconds, little overhead. */
const SAMPLE_HZ = 499;
/** wrk's connections, as in the forwarding benchmark. */
const WRK_CONNECTIONS = 32;

/** Who a sampled thread worked for. */
type Role = "client" | "director" | "real" | "kernel threads" | "idle" | "other";

/** Parsed flags. */
interface ProfileArgs {
  paths: PathName[];
  loads: Load[];
  seconds: number;
  symbols: number;
  spread: boolean;
}

function parseArgs(args: string[]): ProfileArgs {
  const out: ProfileArgs = {
    paths: ["nat", "nft"],
    loads: [...LOADS],
    seconds: 5,
    symbols: 12,
    spread: false,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--spread") {
      out.spread = true;
      continue;
    }
    const value = args[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--paths") {
      out.paths = value.split(",").map((p) => {
        if (!(p in PATHS)) throw new Error(`unknown path ${p} (${Object.keys(PATHS).join(", ")})`);
        return p as PathName;
      });
    } else if (flag === "--loads") {
      out.loads = value.split(",").map((l) => {
        if (!(LOADS as readonly string[]).includes(l)) {
          throw new Error(`unknown load ${l} (${LOADS.join(", ")})`);
        }
        return l as Load;
      });
    } else if (flag === "--seconds" || flag === "--symbols") {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 2 || n > 60) throw new Error(`${flag} takes 2..60`);
      if (flag === "--seconds") out.seconds = n;
      else out.symbols = n;
    } else throw new Error(`unknown argument ${flag}`);
  }
  return out;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr).trim()}`);
  }
  return new TextDecoder().decode(r.stdout);
}

/** Thread ids of every process in namespace `ns`. */
async function namespaceThreads(ns: string): Promise<number[]> {
  const pids = (await run("ip", ["netns", "pids", ns])).split(/\s+/).filter((s) => /^\d+$/.test(s));
  const tids: number[] = [];
  for (const pid of pids) {
    try {
      for await (const t of Deno.readDir(`/proc/${pid}/task`)) tids.push(Number(t.name));
    } catch {
      // The process ended meanwhile.
    }
  }
  return tids;
}

/** `perf report` lines "  12.34%  key" as [share, key] pairs. */
function reportRows(text: string): Array<[number, string]> {
  const rows: Array<[number, string]> = [];
  for (const line of text.split("\n")) {
    const m = /^\s+([\d.]+)%\s+(.+?)\s*$/.exec(line);
    if (m) rows.push([Number(m[1]), m[2]]);
  }
  return rows;
}

/** Samples per role (percent of all CPUs' samples) and the director's threads. */
function byRole(
  rows: Array<[number, string]>,
  threads: Record<"client" | "director" | "real", Set<number>>,
): { shares: Map<Role, number>; directorComms: Map<string, number> } {
  const shares = new Map<Role, number>();
  const directorComms = new Map<string, number>();
  for (const [share, key] of rows) {
    const m = /^(\d+):(.*)$/.exec(key);
    if (!m) continue;
    const tid = Number(m[1]), comm = m[2];
    let role: Role = "other";
    if (tid === 0) role = "idle";
    else if (threads.director.has(tid)) role = "director";
    else if (threads.client.has(tid)) role = "client";
    else if (threads.real.has(tid)) role = "real";
    else if (/^(ksoftirqd|kworker|migration|rcu_|kdamond)/.test(comm)) role = "kernel threads";
    shares.set(role, (shares.get(role) ?? 0) + share);
    if (role === "director") {
      const name = comm.replace(/\d+$/, "N");
      directorComms.set(name, (directorComms.get(name) ?? 0) + share);
    }
  }
  return { shares, directorComms };
}

function pct(n: number | undefined): string {
  return `${(n ?? 0).toFixed(1)} %`;
}

/** Runs `load` through the running path while perf samples, and prints the split. */
async function profileLoad(
  lab: Lab,
  topo: Awaited<ReturnType<typeof buildBenchTopology>>,
  target: { host: string; iperfPort: number; httpPort: number },
  load: Load,
  opts: ProfileArgs,
  dir: string,
): Promise<void> {
  const data = `${dir}/${load}.perf`;
  const perf = new Deno.Command(PERF_BIN, {
    args: ["record", "-a", "-g", "-F", String(SAMPLE_HZ), "-o", data, "--", "sleep"].concat(
      String(opts.seconds - 1),
    ),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const threads = {
    client: new Set<number>(),
    director: new Set<number>(),
    real: new Set<number>(),
  };
  // The client's generator lives only while it runs: its threads are listed a second in.
  const listing = (async () => {
    await new Promise((r) => setTimeout(r, 1000));
    for (
      const [role, ns] of [["client", topo.clientRole], ["director", topo.directorRole], [
        "real",
        topo.realRole,
      ]] as const
    ) {
      for (const t of await namespaceThreads(lab.nsName(ns))) threads[role].add(t);
    }
  })();
  let figure: string;
  if (load === "conns") {
    const r = await runWrk(lab, topo.clientRole, {
      url: `http://${target.host}:${target.httpPort}/`,
      seconds: opts.seconds,
      connections: WRK_CONNECTIONS,
      close: true,
    });
    figure = `${r.requestsPerSecond.toFixed(0)} connections/s`;
  } else {
    const r = await runIperf3(lab, topo.clientRole, {
      host: target.host,
      port: target.iperfPort,
      seconds: opts.seconds,
      ...(load === "udp" ? { udpPayload: 64 } : { streams: load === "bulk8" ? 8 : 1 }),
    });
    figure = load === "udp"
      ? `${((r.receivedPacketsPerSecond ?? 0) / 1e3).toFixed(1)}k packets/s received`
      : `${(r.bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
  }
  await listing;
  const recorded = await perf.output();
  if (!recorded.success) {
    throw new Error(`perf record: ${new TextDecoder().decode(recorded.stderr).trim()}`);
  }
  const report = (...args: string[]) =>
    run(PERF_BIN, [
      "report",
      "-i",
      data,
      "--stdio",
      "--no-children",
      "--percentage",
      "absolute",
      "-g",
      "none",
      ...args,
    ]);
  const { shares, directorComms } = byRole(reportRows(await report("--sort", "pid")), threads);
  console.log(`  ${load}: ${figure}`);
  const order: Role[] = ["client", "director", "real", "kernel threads", "other", "idle"];
  console.log(
    `    CPU samples (2 CPUs = 100 %): ` +
      order.map((r) => `${r} ${pct(shares.get(r))}`).join(", "),
  );
  if (directorComms.size > 0) {
    console.log(
      `    director threads: ` +
        [...directorComms].sort((a, b) => b[1] - a[1]).slice(0, 5)
          .map(([c, s]) => `${c} ${pct(s)}`).join(", "),
    );
  }
  const tids = [...threads.director].join(",");
  if (tids === "" || (shares.get("director") ?? 0) < 0.5) return;
  // Percentages of all samples. User space is what the symbols name outside the kernel ("[k]");
  // the kernel's share is the rest of the director's, since this perf (older than the kernel)
  // leaves some kernel samples unattributed.
  const symbols = reportRows(await report("--tid", tids, "--sort", "sym"));
  const user = symbols.filter(([, s]) => !s.startsWith("[k]")).reduce((n, [v]) => n + v, 0);
  const js = symbols.filter(([, s]) => /JS:|\[JIT\]/.test(s)).reduce((n, [v]) => n + v, 0);
  const director = shares.get("director") ?? 0;
  console.log(
    `    director: kernel ${pct(director - user)}, user space ${pct(user)} ` +
      `(of which JavaScript ${pct(js)})`,
  );
  console.log(
    `    director's hottest: ` +
      symbols.slice(0, opts.symbols).map(([v, s]) => `${s} ${pct(v)}`).join("; "),
  );
}

async function main(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("run as root: the lab builds network namespaces");
  const opts = parseArgs(Deno.args);
  await run(PERF_BIN, ["--version"]).catch(() => {
    throw new Error(`${PERF_BIN} is missing: apt-get install linux-perf`);
  });
  const lab = await Lab.create("profile");
  try {
    const topo = await buildBenchTopology(lab);
    const dir = await lab.makeTempDir("profile");
    for (const [index, name] of opts.paths.entries()) {
      await freshClientAddress(lab, topo, index);
      const path = PATHS[name];
      // V8's perf map names tunvs' JIT frames; its log goes nowhere.
      const running = await path.start(lab, topo, {
        denoFlags: ["--v8-flags=--perf-basic-prof,--logfile=/dev/null"],
      });
      const unspread = opts.spread ? await spreadClients(lab, topo, index, running.host) : null;
      console.log(`${name}: ${path.description}${opts.spread ? ", from 8 client addresses" : ""}`);
      try {
        for (const load of opts.loads) {
          if (load === "udp" && !path.udp) continue;
          await profileLoad(lab, topo, running, load, opts, dir);
        }
      } finally {
        await unspread?.();
        await running.stop();
      }
    }
  } finally {
    await lab.destroy();
  }
}

if (import.meta.main) await main();
