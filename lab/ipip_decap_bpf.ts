/**
 * The real server's end of an IPIP tunnel in the kernel, for the benchmark: a tcx classifier on the
 * real's interface strips the outer IPv4 header of protocol-4 packets (`bpf_skb_adjust_room`), and
 * the inner packet goes on up the stack as received there, to the VIP on `lo` — what `tunl0`
 * does on kernels with the `ipip` module, which this one lacks. The Python decapsulator
 * (lab/ipip_decap.ts) copies every packet through user space twice and is the tunnel path's limit
 * in the benchmark; this one costs the real about what `tunl0` would. It does not report SYNs: the
 * tests that read the clamped MSS keep the Python one.
 *
 * As a module: `startBpfIpipDecap`. As a script, run in the real's namespace: loads and attaches the
 * program, prints `{"ready": IFNAME}`, and holds the link until killed.
 *
 * @module
 */
import { BpfAssembler } from "../dataplane/steering/bpf_assembler.ts";
import {
  attachTcxIngress,
  BpfProgType,
  closeBpf,
  loadProgram,
} from "../dataplane/steering/bpf_syscall.ts";
import { type Lab, OutputCollector, stopProcess } from "./netns.ts";

/** enum bpf_func_id: bpf_skb_adjust_room(skb, len_diff, mode, flags). */
const BPF_FUNC_SKB_ADJUST_ROOM = 50;
/** Room adjusted right behind the MAC header: the outer IP header goes. */
const BPF_ADJ_ROOM_MAC = 1;
const ETH_HEADER_BYTES = 14;
/** TC_ACT_OK: the packet goes on. */
const PASS = 0;

/** The classifier: IPv4 with a 20-byte header and protocol 4 loses that header; all else passes. */
export function ipipDecapProgram(): Uint8Array {
  const a = new BpfAssembler();
  a.mov64(6, 1);
  a.loadAbs("h", 12).jump("ne", 0, 0x0800, "pass");
  a.loadAbs("b", ETH_HEADER_BYTES).jump("ne", 0, 0x45, "pass");
  a.loadAbs("b", ETH_HEADER_BYTES + 9).jump("ne", 0, 4, "pass");
  a.mov64(1, 6).alu("mov", 2, -20).alu("mov", 3, BPF_ADJ_ROOM_MAC).alu("mov", 4, 0);
  a.call(BPF_FUNC_SKB_ADJUST_ROOM);
  a.label("pass").alu("mov", 0, PASS).exit();
  return a.assemble();
}

/** A running in-kernel decapsulator. */
export interface BpfIpipDecap {
  role: string;
  /** Detaches it (the link closes with its process). */
  stop(): Promise<void>;
}

/**
 * Attaches the decapsulator to `dev` in `role`'s namespace (through a process there that holds the
 * link) and turns reverse-path filtering off on it: inner packets come from clients the real routes
 * elsewhere. Throws when the kernel refuses the program or the link.
 */
export async function startBpfIpipDecap(
  lab: Lab,
  role: string,
  dev = "eth0",
): Promise<BpfIpipDecap> {
  const child = lab.spawn(role, [Deno.execPath(), "run", "-A", import.meta.filename!, dev], {
    stdout: "piped",
    stderr: "piped",
  });
  const stdout = new OutputCollector(child.stdout, 64 << 10);
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  while (!stdout.text().includes('"ready"')) {
    if (exited || Date.now() > deadline) {
      if (!exited) await stopProcess(child, "SIGKILL");
      await stderr.done;
      throw new Error(`bpf ipip decapsulator in ${lab.nsName(role)}: ${stderr.text().trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await lab.sysctl(role, `net.ipv4.conf.${dev}.rp_filter`, 0);
  let stopping: Promise<void> | null = null;
  return {
    role,
    stop: () => {
      stopping ??= stopProcess(child).then(() => stderr.done);
      return stopping;
    },
  };
}

if (import.meta.main) {
  const dev = Deno.args[0] ?? "eth0";
  const ifindex = Number((await Deno.readTextFile(`/sys/class/net/${dev}/ifindex`)).trim());
  const prog = loadProgram(BpfProgType.SCHED_CLS, ipipDecapProgram(), "tunvs_ipip_dec");
  const link = attachTcxIngress(prog, ifindex);
  closeBpf(prog);
  console.log(JSON.stringify({ ready: dev, link }));
  // The link lives as long as this process: it waits to be killed.
  setInterval(() => {}, 1 << 30);
}
