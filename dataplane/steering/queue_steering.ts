/**
 * Puts the owner function's steering program on a multi-queue TUN (TUNSETSTEERINGEBPF), so the
 * kernel queues each packet for the worker that owns its connection (docs/workers.md). Without
 * it the kernel's flow table picks queues and packets read by the wrong worker are handed over,
 * which can reorder a handshake's ACK behind the data that follows it.
 *
 * @module
 */
import { errno, libc, strerror } from "../libc.ts";
import type { PacketOwners } from "../owner.ts";
import { BpfAssembler } from "./bpf_assembler.ts";
import { closeBpf, loadSocketFilter } from "./bpf_syscall.ts";
import { ownerProgram } from "./owner_program.ts";

/** _IOR('T', 224, int): set (or, with -1, remove) the device's steering program. */
const TUNSETSTEERINGEBPF = 0x800454e0n;

let supported: boolean | null = null;

/**
 * Whether this kernel and process can load a steering program (bpf(2) allowed, 32-bit jumps
 * known to the verifier): tried once with a two-instruction program.
 */
export function steeringSupported(): boolean {
  if (supported !== null) return supported;
  try {
    const probe = new BpfAssembler().alu("mov", 0, 0).jump("eq", 0, 0, "end").label("end").exit();
    closeBpf(loadSocketFilter(probe.assemble(), "tunvs_probe"));
    supported = true;
  } catch {
    supported = false;
  }
  return supported;
}

/** The steering program of one multi-queue TUN, replaced as the configuration changes. */
export class QueueSteering {
  /** Instructions of the attached program; 0 while none is attached. */
  instructions = 0;
  /** Why the last attach failed, or "" after a success. */
  lastError = "";

  /** Steers the TUN whose queue `fd` is (any queue of it: the program is per device). */
  constructor(readonly fd: number) {}

  /**
   * Builds the program for `owners` and attaches it in place of the previous one (the kernel
   * swaps them under RCU); returns false, with `lastError` set, if the kernel refuses it, in
   * which case the previous program, if any, stays.
   */
  update(owners: PacketOwners): boolean {
    let prog = -1;
    try {
      const insns = ownerProgram(owners);
      prog = loadSocketFilter(insns, "tunvs_owner");
      const arg = new Int32Array([prog]);
      if (libc().ioctl(this.fd, TUNSETSTEERINGEBPF, new Uint8Array(arg.buffer)) < 0) {
        throw new Error(`TUNSETSTEERINGEBPF: ${strerror(errno())}`);
      }
      this.instructions = insns.length / 8;
      this.lastError = "";
      return true;
    } catch (err) {
      this.lastError = String((err as Error)?.message ?? err);
      return false;
    } finally {
      // The device holds its own reference to the program.
      if (prog >= 0) closeBpf(prog);
    }
  }
}
