/**
 * The owner function of dataplane/owner.ts compiled to an eBPF socket-filter program, for
 * TUNSETSTEERINGEBPF: the kernel runs it on every packet it sends into the multi-queue TUN and
 * puts the packet on queue `result % queues`, so each packet reaches the worker that owns its
 * connection and nothing is handed between workers (docs/workers.md).
 *
 * The program is generated from one configuration's `PacketOwners`: the VIPs and local addresses
 * become a balanced tree of 32-bit compares (a few jumps for any number of addresses, no map to
 * keep in step), the client mask and the worker count become immediates. A configuration change
 * builds and attaches a new program; the kernel swaps it under RCU.
 *
 * Registers: r6 the context (the packet loads need it there), r9 the packet length, then r7 the
 * owner's source address, r8 its destination (before that, the IP header length), r9 the
 * destination port; the stack holds the port while r9 still holds the length.
 *
 * @module
 */
import { BpfAssembler } from "./bpf_assembler.ts";
import type { PacketOwners } from "../owner.ts";
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP } from "../wire/ipv4.ts";

/** More addresses than this would stretch the tree's jumps past 16-bit offsets. */
export const MAX_STEERING_ADDRESSES = 4096;

/** ICMP errors whose quote decides the owner, as in owner.ts. */
const QUOTING_ICMP_TYPES = [3, 4, 11, 12] as const;

/** murmur3's finaliser constants, as `mixAddress` in owner.ts. */
const MIX_1 = 0x85ebca6b;
const MIX_2 = 0xc2b2ae35;

/** Stack slots (offsets from r10). */
const SLOT_PORT = -4;
const SLOT_QUOTED_SOURCE = -8;

/** The steering program for `owners` as `struct bpf_insn[]`; throws RangeError past the address cap. */
export function ownerProgram(owners: PacketOwners): Uint8Array {
  const addresses = owners.addressKinds();
  if (addresses.length > MAX_STEERING_ADDRESSES) {
    throw new RangeError(
      `${addresses.length} VIPs and local addresses; a steering program takes at most ` +
        `${MAX_STEERING_ADDRESSES}`,
    );
  }
  const n = owners.workers;
  const a = new BpfAssembler();

  a.mov64(6, 1);
  a.loadMem("w", 9, 1, 0); // __sk_buff.len: the whole packet, from the IP header.
  a.jump("lt", 9, 20, "zero");
  a.loadAbs("b", 0);
  a.aluReg("mov", 7, 0).alu("rsh", 7, 4).jump("ne", 7, 4, "zero");
  a.alu("and", 0, 0x0f).alu("lsh", 0, 2).aluReg("mov", 8, 0);
  a.loadAbs("b", 9).aluReg("mov", 7, 0);

  // An ICMP error is owned as the reverse of the packet it quotes.
  a.jump("ne", 7, PROTO_ICMP, "ports");
  a.loadAbs("h", 6).alu("and", 0, 0x1fff).jump("ne", 0, 0, "ports");
  a.aluReg("mov", 1, 8).alu("add", 1, 28).jumpReg("lt", 9, 1, "ports");
  a.loadInd("b", 8, 0);
  for (const t of QUOTING_ICMP_TYPES) a.jump("eq", 0, t, "quote");
  a.goto("ports");
  a.label("quote");
  a.alu("mov", 1, 0).storeMem("w", 10, SLOT_PORT, 1);
  a.loadInd("b", 8, 8).alu("and", 0, 0x0f).alu("lsh", 0, 2).aluReg("mov", 7, 0);
  a.loadInd("b", 8, 17);
  a.jump("eq", 0, PROTO_TCP, "quoted_port").jump("eq", 0, PROTO_UDP, "quoted_port");
  a.goto("quoted_addresses");
  a.label("quoted_port");
  a.aluReg("mov", 1, 8).aluReg("add", 1, 7).alu("add", 1, 12).jumpReg(
    "lt",
    9,
    1,
    "quoted_addresses",
  );
  a.aluReg("add", 7, 8).loadInd("h", 7, 8).storeMem("w", 10, SLOT_PORT, 0);
  a.label("quoted_addresses");
  a.loadInd("w", 8, 20).storeMem("w", 10, SLOT_QUOTED_SOURCE, 0);
  a.loadInd("w", 8, 24).aluReg("mov", 7, 0);
  a.loadMem("w", 8, 10, SLOT_QUOTED_SOURCE);
  a.loadMem("w", 9, 10, SLOT_PORT);
  a.goto("owner");

  // Anything else: its own addresses, and its destination port if the first fragment has one.
  a.label("ports");
  a.alu("mov", 1, 0).storeMem("w", 10, SLOT_PORT, 1);
  a.jump("eq", 7, PROTO_TCP, "port").jump("eq", 7, PROTO_UDP, "port").goto("addresses");
  a.label("port");
  a.loadAbs("h", 6).alu("and", 0, 0x1fff).jump("ne", 0, 0, "addresses");
  a.aluReg("mov", 1, 8).alu("add", 1, 4).jumpReg("lt", 9, 1, "addresses");
  a.loadInd("h", 8, 2).storeMem("w", 10, SLOT_PORT, 0);
  a.label("addresses");
  a.loadAbs("w", 12).aluReg("mov", 7, 0);
  a.loadAbs("w", 16).aluReg("mov", 8, 0);
  a.loadMem("w", 9, 10, SLOT_PORT);

  // ownerOf(src r7, dst r8, dport r9): the destination's kind into r1, then the rule it picks.
  a.label("owner");
  emitKindTree(a, addresses, 0, addresses.length - 1, { next: 0 });
  // Only kinds some address has: the verifier refuses unreachable instructions.
  for (const kind of new Set(addresses.map((x) => x.kind))) {
    a.label(`kind${kind}`).alu("mov", 1, kind).goto("kind_known");
  }
  a.label("kind_known");
  a.jump("set", 1, 1, "hash_source");
  a.jump("eq", 1, 2, "by_port");
  a.aluReg("mov", 0, 8).goto("hash");
  a.label("hash_source");
  a.aluReg("mov", 0, 7).goto("hash");
  a.label("by_port");
  a.aluReg("mov", 0, 9).alu("mod", 0, n).exit();
  a.label("hash");
  a.alu("and", 0, owners.clientMask);
  a.aluReg("mov", 1, 0).alu("rsh", 1, 16).aluReg("xor", 0, 1).alu("mul", 0, MIX_1);
  a.aluReg("mov", 1, 0).alu("rsh", 1, 13).aluReg("xor", 0, 1).alu("mul", 0, MIX_2);
  a.aluReg("mov", 1, 0).alu("rsh", 1, 16).aluReg("xor", 0, 1);
  a.alu("mod", 0, n).exit();
  a.label("zero");
  a.alu("mov", 0, 0).exit();
  return a.assemble();
}

/** Emits a search of r8 among `addresses[lo..hi]`, jumping to `kind<k>` or, absent, with r1 = 0. */
function emitKindTree(
  a: BpfAssembler,
  addresses: ReadonlyArray<{ address: number; kind: number }>,
  lo: number,
  hi: number,
  names: { next: number },
): void {
  if (lo > hi) {
    a.alu("mov", 1, 0).goto("kind_known");
    return;
  }
  const mid = (lo + hi) >> 1;
  const right = `above${names.next++}`;
  a.jump("eq", 8, addresses[mid].address, `kind${addresses[mid].kind}`);
  a.jump("gt", 8, addresses[mid].address, right);
  emitKindTree(a, addresses, lo, mid - 1, names);
  a.label(right);
  emitKindTree(a, addresses, mid + 1, hi, names);
}
