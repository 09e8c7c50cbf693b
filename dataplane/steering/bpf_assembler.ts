/**
 * A small assembler for eBPF: emits `struct bpf_insn` records (8 bytes each, little-endian:
 * opcode, dst|src<<4, a 16-bit jump offset, a 32-bit immediate) with forward and backward jumps to
 * named labels resolved at the end. Only what tunvs' programs need (the steering program, the lab's IPIP decapsulator): 32-bit ALU, 32-bit
 * conditional jumps (JMP32, Linux 5.1) so that addresses above 2^31 compare as unsigned 32-bit
 * values, the legacy packet loads (LD_ABS/LD_IND) of socket filters and classifiers, loads from the
 * context, stack stores and loads, helper calls, and exit.
 *
 * @module
 */

/** eBPF registers: r0 result, r1-r5 arguments (clobbered by calls and packet loads), r6-r9 kept, r10 frame pointer. */
export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;

/** Operand widths of loads and stores. */
export type Width = "b" | "h" | "w";

/** 32-bit ALU operations (BPF_ALU class), by their eBPF names. */
export type AluOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "or"
  | "and"
  | "lsh"
  | "rsh"
  | "mod"
  | "xor"
  | "mov";

/** Conditional jumps, compared as unsigned 32-bit values (BPF_JMP32 class). */
export type JumpOp = "eq" | "ne" | "gt" | "ge" | "lt" | "le" | "set";

const CLASS_LD = 0x00;
const CLASS_LDX = 0x01;
const CLASS_STX = 0x03;
const CLASS_ALU = 0x04;
const CLASS_JMP = 0x05;
const CLASS_JMP32 = 0x06;
const CLASS_ALU64 = 0x07;
const MODE_ABS = 0x20;
const MODE_IND = 0x40;
const MODE_MEM = 0x60;
const SRC_K = 0x00;
const SRC_X = 0x08;
const WIDTH: Record<Width, number> = { w: 0x00, h: 0x08, b: 0x10 };
const ALU: Record<AluOp, number> = {
  add: 0x00,
  sub: 0x10,
  mul: 0x20,
  div: 0x30,
  or: 0x40,
  and: 0x50,
  lsh: 0x60,
  rsh: 0x70,
  mod: 0x90,
  xor: 0xa0,
  mov: 0xb0,
};
const JUMP: Record<JumpOp, number> = {
  eq: 0x10,
  gt: 0x20,
  ge: 0x30,
  set: 0x40,
  ne: 0x50,
  lt: 0xa0,
  le: 0xb0,
};
const OP_JA = 0x00;
const OP_CALL = 0x80;
const OP_EXIT = 0x90;

/** Longest forward or backward jump an instruction's 16-bit offset reaches. */
const MAX_JUMP = 0x7fff;

/** Builds one eBPF program instruction by instruction. */
export class BpfAssembler {
  #code: number[] = [];
  #regs: number[] = [];
  #offs: number[] = [];
  #imms: number[] = [];
  #labels = new Map<string, number>();
  /** Jumps waiting for their label: instruction index → label. */
  #fixups: Array<[number, string]> = [];

  /** How many instructions have been emitted. */
  get length(): number {
    return this.#code.length;
  }

  #emit(code: number, dst: number, src: number, off: number, imm: number): this {
    this.#code.push(code);
    this.#regs.push((dst & 0x0f) | ((src & 0x0f) << 4));
    this.#offs.push(off);
    this.#imms.push(imm | 0);
    return this;
  }

  /** Names the next instruction. */
  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.#labels.set(name, this.#code.length);
    return this;
  }

  /** `dst = dst op imm` on the low 32 bits (the upper 32 are zeroed). */
  alu(op: AluOp, dst: Reg, imm: number): this {
    return this.#emit(CLASS_ALU | ALU[op] | SRC_K, dst, 0, 0, imm);
  }

  /** `dst = dst op src` on the low 32 bits (the upper 32 are zeroed). */
  aluReg(op: AluOp, dst: Reg, src: Reg): this {
    return this.#emit(CLASS_ALU | ALU[op] | SRC_X, dst, src, 0, 0);
  }

  /** `dst = src` on all 64 bits (a context pointer must be copied whole). */
  mov64(dst: Reg, src: Reg): this {
    return this.#emit(CLASS_ALU64 | ALU.mov | SRC_X, dst, src, 0, 0);
  }

  /** `r0 = packet[offset]` in host order; a read past the packet ends the program with 0. */
  loadAbs(width: Width, offset: number): this {
    return this.#emit(CLASS_LD | MODE_ABS | WIDTH[width], 0, 0, 0, offset);
  }

  /** `r0 = packet[base + offset]` in host order; a read past the packet ends the program with 0. */
  loadInd(width: Width, base: Reg, offset: number): this {
    return this.#emit(CLASS_LD | MODE_IND | WIDTH[width], 0, base, 0, offset);
  }

  /** `dst = *(width *)(src + off)`: the context (`struct __sk_buff`) or the stack. */
  loadMem(width: Width, dst: Reg, src: Reg, off: number): this {
    return this.#emit(CLASS_LDX | MODE_MEM | WIDTH[width], dst, src, off, 0);
  }

  /** `*(width *)(dst + off) = src`: the stack. */
  storeMem(width: Width, dst: Reg, off: number, src: Reg): this {
    return this.#emit(CLASS_STX | MODE_MEM | WIDTH[width], dst, src, off, 0);
  }

  /** `if (dst op imm) goto label`, unsigned 32-bit. */
  jump(op: JumpOp, dst: Reg, imm: number, label: string): this {
    this.#fixups.push([this.#code.length, label]);
    return this.#emit(CLASS_JMP32 | JUMP[op] | SRC_K, dst, 0, 0, imm);
  }

  /** `if (dst op src) goto label`, unsigned 32-bit. */
  jumpReg(op: JumpOp, dst: Reg, src: Reg, label: string): this {
    this.#fixups.push([this.#code.length, label]);
    return this.#emit(CLASS_JMP32 | JUMP[op] | SRC_X, dst, src, 0, 0);
  }

  /** `goto label`. */
  goto(label: string): this {
    this.#fixups.push([this.#code.length, label]);
    return this.#emit(CLASS_JMP | OP_JA, 0, 0, 0, 0);
  }

  /** `r0 = helper(r1, …, r5)`, the kernel helper numbered `helper` (enum bpf_func_id). */
  call(helper: number): this {
    return this.#emit(CLASS_JMP | OP_CALL, 0, 0, 0, helper);
  }

  /** `return r0`. */
  exit(): this {
    return this.#emit(CLASS_JMP | OP_EXIT, 0, 0, 0, 0);
  }

  /** The program as `struct bpf_insn[]`, every jump resolved; throws on an unknown label. */
  assemble(): Uint8Array {
    for (const [at, name] of this.#fixups) {
      const target = this.#labels.get(name);
      if (target === undefined) throw new Error(`jump to undefined label ${name}`);
      const off = target - at - 1;
      if (off < -MAX_JUMP - 1 || off > MAX_JUMP) {
        throw new RangeError(`jump to ${name} spans ${off} instructions (at most ${MAX_JUMP})`);
      }
      this.#offs[at] = off;
    }
    const out = new Uint8Array(this.#code.length * 8);
    const view = new DataView(out.buffer);
    for (let i = 0; i < this.#code.length; i++) {
      view.setUint8(i * 8, this.#code[i]);
      view.setUint8(i * 8 + 1, this.#regs[i]);
      view.setInt16(i * 8 + 2, this.#offs[i], true);
      view.setInt32(i * 8 + 4, this.#imms[i], true);
    }
    return out;
  }
}
