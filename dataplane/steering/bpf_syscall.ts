/**
 * The bpf(2) commands the steering program needs, over Deno FFI: load a socket-filter program
 * (with the verifier's log when it refuses one) and run a loaded program on a test packet
 * (BPF_PROG_TEST_RUN), which is how the tests hold the kernel's program to the JavaScript owner
 * function. Not on the packet path: these run at start and at each configuration change.
 *
 * @module
 */
import { errno, libcSymbols, strerror } from "../libc.ts";

/** bpf(2)'s syscall number per architecture (x86-64, arm64). */
const SYS_BPF = Deno.build.arch === "aarch64" ? 280n : 321n;
const BPF_PROG_LOAD = 5;
const BPF_PROG_TEST_RUN = 10;
const BPF_LINK_CREATE = 28;
/** Program types (enum bpf_prog_type). */
export const BpfProgType = {
  /** What TUNSETSTEERINGEBPF takes. */
  SOCKET_FILTER: 1,
  /** tc / tcx classifiers. */
  SCHED_CLS: 3,
} as const;
/** enum bpf_attach_type: tcx on a device's ingress (Linux 6.6). */
const BPF_TCX_INGRESS = 46;
const LINK_CREATE_ATTR_BYTES = 64;
/** Sizes of the leading parts of `union bpf_attr` used here. */
const PROG_LOAD_ATTR_BYTES = 72;
const TEST_RUN_ATTR_BYTES = 80;
const LOG_BYTES = 64 * 1024;
const ETH_HEADER_BYTES = 14;

const SYMBOLS = {
  // syscall(SYS_bpf, cmd, attr, size)
  bpf: { name: "syscall", parameters: ["i64", "i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

const sys = libcSymbols(SYMBOLS);

/** A refusal by bpf(2): the errno and, for a load, the verifier's last lines. */
export class BpfError extends Error {
  /** `message` with the errno's text; `verifierLog` is what the verifier printed, if anything. */
  constructor(message: string, readonly errno: number, readonly verifierLog = "") {
    super(`${message}: ${strerror(errno)}${verifierLog === "" ? "" : `\n${verifierLog}`}`);
  }
}

function address(buf: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/**
 * Loads `insns` (`struct bpf_insn[]`, see BpfAssembler) as a socket-filter program named `name`
 * and returns its descriptor; throws BpfError with the verifier's log when the kernel refuses it.
 */
export function loadSocketFilter(insns: Uint8Array, name: string): number {
  return loadProgram(BpfProgType.SOCKET_FILTER, insns, name);
}

/** Loads `insns` as a program of `type`; as `loadSocketFilter`. */
export function loadProgram(type: number, insns: Uint8Array, name: string): number {
  const license = new TextEncoder().encode("GPL\0");
  const log = new Uint8Array(LOG_BYTES);
  const attr = new Uint8Array(PROG_LOAD_ATTR_BYTES);
  const v = new DataView(attr.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, insns.length / 8, true);
  v.setBigUint64(8, address(insns), true);
  v.setBigUint64(16, address(license), true);
  const first = sys().bpf(SYS_BPF, BPF_PROG_LOAD, attr, PROG_LOAD_ATTR_BYTES);
  if (first >= 0) return first;
  const code = errno();
  // Loaded again with the log on, only to explain the refusal (a log costs the kernel time).
  v.setUint32(24, 1, true);
  v.setUint32(28, LOG_BYTES, true);
  v.setBigUint64(32, address(log), true);
  name.slice(0, 15).split("").forEach((c, i) => attr[48 + i] = c.charCodeAt(0) & 0x7f);
  const again = sys().bpf(SYS_BPF, BPF_PROG_LOAD, attr, PROG_LOAD_ATTR_BYTES);
  if (again >= 0) return again;
  const end = log.indexOf(0);
  const text = new TextDecoder().decode(log.subarray(0, end < 0 ? log.length : end)).trim();
  throw new BpfError(`bpf: loading ${name}`, code, text.split("\n").slice(-12).join("\n"));
}

/**
 * Runs the socket-filter program `fd` on the IP packet `packet` as the kernel runs a TUN's
 * steering program on a packet it sends (data at the network header) and returns its result.
 */
export function testRunSocketFilter(fd: number, packet: Uint8Array): number {
  // BPF_PROG_TEST_RUN takes an Ethernet frame and pulls the 14-byte header before running a
  // socket filter, which leaves the program where the TUN's xmit path does: at the IP header.
  // The kernel refuses an ETH_P_IP frame shorter than an IP header, so a shorter packet goes as
  // IEEE 802's local experimental type (the program does not read the type).
  const frame = new Uint8Array(ETH_HEADER_BYTES + packet.length);
  if (packet.length >= 20) frame[12] = 0x08; // ETH_P_IP
  else frame.set([0x88, 0xb5], 12);
  frame.set(packet, ETH_HEADER_BYTES);
  const attr = new Uint8Array(TEST_RUN_ATTR_BYTES);
  const v = new DataView(attr.buffer);
  v.setUint32(0, fd, true);
  v.setUint32(8, frame.length, true);
  v.setBigUint64(16, address(frame), true);
  v.setUint32(32, 1, true);
  if (sys().bpf(SYS_BPF, BPF_PROG_TEST_RUN, attr, TEST_RUN_ATTR_BYTES) < 0) {
    throw new BpfError("bpf: test run", errno());
  }
  return v.getUint32(4, true);
}

/**
 * Attaches the classifier `prog` to the ingress of interface `ifindex` (of the caller's network
 * namespace) through a tcx link, and returns the link's descriptor: the program stays attached
 * while it is open.
 */
export function attachTcxIngress(prog: number, ifindex: number): number {
  const attr = new Uint8Array(LINK_CREATE_ATTR_BYTES);
  const v = new DataView(attr.buffer);
  v.setUint32(0, prog, true);
  v.setUint32(4, ifindex, true);
  v.setUint32(8, BPF_TCX_INGRESS, true);
  const fd = sys().bpf(SYS_BPF, BPF_LINK_CREATE, attr, LINK_CREATE_ATTR_BYTES);
  if (fd < 0) throw new BpfError(`bpf: tcx link on interface ${ifindex}`, errno());
  return fd;
}

/** Closes a program descriptor (a TUN that took the program keeps its own reference). */
export function closeBpf(fd: number): void {
  sys().close(fd);
}
