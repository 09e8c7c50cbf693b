/**
 * A minimal io_uring over Deno FFI: one ring, its submission and completion queues mapped into
 * this process, and the two operations the TUN path needs (READ and WRITE of one buffer each),
 * submitted a whole batch per `io_uring_enter`.
 *
 * The syscalls go through glibc's `syscall(2)`, declared once per call shape with fixed integer
 * and pointer parameters so that Deno takes its fast call path (the syscall number and `usize`
 * counts as bigints; a JS number in a 64-bit parameter leaves the fast path). `syscall` is
 * variadic in C; on x86-64 glibc implements it in assembly that moves its six integer registers
 * into the kernel's, so calling it as a fixed-parameter function is sound there (no floating
 * point arguments, so %al, the vector count of a variadic call, is never read).
 *
 * Memory ordering. The rings are memory shared with the kernel; the views below are typed arrays
 * over it (`Deno.UnsafePointerView.getArrayBuffer`), not a SharedArrayBuffer. The ring counters
 * are nonetheless read and written with `Atomics.load`/`Atomics.store`, which ECMAScript allows on
 * any integer typed array: they keep V8 from caching, hoisting or reordering those accesses, and
 * are sequentially consistent, i.e. at least the acquire/release that liburing uses. On x86-64
 * (TSO) the loads are plain moves and a store is one `xchg` per batch. Without SQPOLL the kernel
 * reads the submission queue only inside `io_uring_enter`, a syscall and so a full barrier: the
 * SQEs written before it are visible to the kernel. Completions the kernel posts while the process
 * runs (a deferred read) are published by its release store to the CQ tail; reading the tail with
 * `Atomics.load` before the CQEs, and storing the head only after reading them, is the acquire /
 * release pairing the kernel documents.
 *
 * @module
 */
import { errno, libcSymbols, size, strerror } from "./libc.ts";
import { ringAdvance, ringFree, ringSlot, ringUsed } from "./io_uring_ring.ts";

const SYS_IO_URING_SETUP = 425n;
const SYS_IO_URING_ENTER = 426n;
const SYS_IO_URING_REGISTER = 427n;
const IORING_REGISTER_FILES = 2;

const SYMBOLS = {
  // syscall(SYS_io_uring_setup, entries, params)
  io_uring_setup: { name: "syscall", parameters: ["i64", "u32", "buffer"], result: "i32" },
  // syscall(SYS_io_uring_enter, fd, to_submit, min_complete, flags, sig, sigsz)
  io_uring_enter: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "u32", "u32", "pointer", "usize"],
    result: "i32",
  },
  // syscall(SYS_io_uring_register, fd, opcode, arg, nr_args)
  io_uring_register: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "buffer", "u32"],
    result: "i32",
  },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

const sys = libcSymbols(SYMBOLS);

/** io_uring opcodes used here (include/uapi/linux/io_uring.h). */
export const IoUringOp = { NOP: 0, READ: 22, WRITE: 23 } as const;

/** IOSQE_FIXED_FILE: the SQE's fd is an index into the registered files. */
export const IOSQE_FIXED_FILE = 1;

/**
 * Setup flags, tried in this order until the kernel takes one. SUBMIT_ALL (5.18): keep submitting
 * after an SQE fails. SINGLE_ISSUER (6.0): only this thread submits, which spares the kernel its
 * locking. DEFER_TASKRUN (6.1): completions that need task work run only when this thread enters,
 * not by interrupting it. COOP_TASKRUN (5.19): the same, for kernels without DEFER_TASKRUN.
 */
const SETUP_FLAG_CHOICES = [(1 << 7) | (1 << 12) | (1 << 13), (1 << 7) | (1 << 8), 0] as const;

/** IORING_ENTER_GETEVENTS: wait for `min_complete` completions. */
const IORING_ENTER_GETEVENTS = 1;
/** IORING_FEAT_SINGLE_MMAP: SQ and CQ rings share one mapping. */
export const IORING_FEAT_SINGLE_MMAP = 1;
const IORING_OFF_SQ_RING = 0n;
const IORING_OFF_CQ_RING = 0x8000000n;
const IORING_OFF_SQES = 0x10000000n;
const PROT_READ_WRITE = 0x3;
const MAP_SHARED_POPULATE = 0x01 | 0x8000;
const PARAMS_BYTES = 120;
const SQE_BYTES = 64;
const CQE_BYTES = 16;
const EINTR = 4;
const EINVAL = 22;

/** Why an io_uring could not be set up or used; `code` is the errno. */
export class IoUringError extends Error {
  /** Creates the error; `code` is the errno behind it. */
  constructor(message: string, readonly code: number) {
    super(message);
    this.name = "IoUringError";
  }
}

/** A region of memory the kernel mapped for the ring. */
interface Mapping {
  pointer: Deno.PointerObject;
  bytes: number;
}

/**
 * One io_uring: SQEs are prepared at the local tail with `prepare`, published and handed to the
 * kernel by `submit`, and completions are read with `completions` / `completionUserData` /
 * `completionResult` and released with `consume`. Not safe to share between threads.
 */
export class IoUring {
  /** Slots of the submission queue. */
  readonly sqEntries: number;
  /** Slots of the completion queue. */
  readonly cqEntries: number;
  /** IORING_FEAT_* bits the kernel reported. */
  readonly features: number;
  /** IORING_SETUP_* flags the ring was set up with. */
  readonly flags: number;
  readonly #fd: number;
  readonly #mappings: Mapping[];
  /** The SQ ring as u32 words: head, tail, array at their offsets / 4. */
  readonly #sq: Uint32Array;
  readonly #sqHead: number;
  readonly #sqTail: number;
  readonly #sqMask: number;
  /** The SQEs as u32 words, 16 per SQE. */
  readonly #sqes: Uint32Array;
  /** The CQ ring as u32 words; CQEs start at `#cqes` (in words), 4 words each. */
  readonly #cq: Uint32Array;
  readonly #cqI32: Int32Array;
  readonly #cqHead: number;
  readonly #cqTail: number;
  readonly #cqMask: number;
  readonly #cqes: number;
  /** SQEs prepared but not yet published (the kernel's tail is `#tail − #pending`). */
  #tail: number;
  #pending = 0;
  #closed = false;

  private constructor(fd: number, params: DataView, mappings: Mapping[], sqes: Mapping) {
    this.#fd = fd;
    this.#mappings = [...mappings, sqes];
    this.sqEntries = params.getUint32(0, true);
    this.cqEntries = params.getUint32(4, true);
    this.features = params.getUint32(20, true);
    this.flags = params.getUint32(8, true);
    const sqRing = mappings[0];
    const cqRing = mappings[mappings.length - 1];
    this.#sq = new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(sqRing.pointer, sqRing.bytes));
    const cqBuf = Deno.UnsafePointerView.getArrayBuffer(cqRing.pointer, cqRing.bytes);
    this.#cq = new Uint32Array(cqBuf);
    this.#cqI32 = new Int32Array(cqBuf);
    this.#sqes = new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(sqes.pointer, sqes.bytes));
    // struct io_sqring_offsets at 40, struct io_cqring_offsets at 80 (all u32 byte offsets).
    this.#sqHead = params.getUint32(40, true) / 4;
    this.#sqTail = params.getUint32(44, true) / 4;
    this.#sqMask = this.#sq[params.getUint32(48, true) / 4];
    const sqArray = params.getUint32(64, true) / 4;
    this.#cqHead = params.getUint32(80, true) / 4;
    this.#cqTail = params.getUint32(84, true) / 4;
    this.#cqMask = this.#cq[params.getUint32(88, true) / 4];
    this.#cqes = params.getUint32(100, true) / 4;
    // SQE i always sits in array slot i: the indirection is set up once and never changes.
    for (let i = 0; i < this.sqEntries; i++) this.#sq[sqArray + i] = i;
    this.#tail = Atomics.load(this.#sq, this.#sqTail);
  }

  /**
   * Creates a ring of at least `entries` submission slots (a power of two up to 32768), or throws
   * an IoUringError saying why (ENOSYS: no io_uring; EPERM: disabled by sysctl or seccomp).
   */
  static setup(entries: number): IoUring {
    const params = new Uint8Array(PARAMS_BYTES);
    const view = new DataView(params.buffer);
    const s = sys();
    let fd = -1;
    for (const flags of SETUP_FLAG_CHOICES) {
      params.fill(0);
      view.setUint32(8, flags, true);
      fd = s.io_uring_setup(SYS_IO_URING_SETUP, entries, params);
      if (fd >= 0) break;
      const e = errno();
      // EINVAL: a flag this kernel does not know; anything else is a refusal of io_uring itself.
      if (e !== EINVAL || flags === 0) {
        throw new IoUringError(`io_uring_setup refused: ${strerror(e)}`, e);
      }
    }
    const sqEntries = view.getUint32(0, true);
    const cqEntries = view.getUint32(4, true);
    const features = view.getUint32(20, true);
    const sqBytes = view.getUint32(64, true) + sqEntries * 4;
    const cqBytes = view.getUint32(100, true) + cqEntries * CQE_BYTES;
    const mappings: Mapping[] = [];
    try {
      if ((features & IORING_FEAT_SINGLE_MMAP) !== 0) {
        mappings.push(map(fd, Math.max(sqBytes, cqBytes), IORING_OFF_SQ_RING));
      } else {
        mappings.push(map(fd, sqBytes, IORING_OFF_SQ_RING));
        mappings.push(map(fd, cqBytes, IORING_OFF_CQ_RING));
      }
      const sqes = map(fd, sqEntries * SQE_BYTES, IORING_OFF_SQES);
      return new IoUring(fd, view, mappings, sqes);
    } catch (e) {
      for (const m of mappings) s.munmap(m.pointer, size(m.bytes));
      s.close(fd);
      throw e;
    }
  }

  /**
   * Registers `fd` as the ring's only fixed file, index 0: SQEs with IOSQE_FIXED_FILE and fd 0
   * then skip the kernel's per-request descriptor lookup and reference count. The ring holds the
   * file until it is torn down (asynchronously, after its descriptor closes), so a registered TUN
   * outlives its own close. Returns false if the kernel refuses.
   */
  registerFile(fd: number): boolean {
    const fds = new Int32Array([fd]);
    const r = sys().io_uring_register(
      SYS_IO_URING_REGISTER,
      this.#fd,
      IORING_REGISTER_FILES,
      new Uint8Array(fds.buffer),
      1,
    );
    return r >= 0;
  }

  /** SQEs that can still be prepared before the next `submit`. */
  sqFree(): number {
    return ringFree(Atomics.load(this.#sq, this.#sqHead), this.#tail, this.sqEntries);
  }

  /**
   * Prepares one SQE at the local tail: `opcode` with IOSQE flags `sqeFlags` on `fd` with the buffer at address
   * `addrLo + addrHi·2^32` of `len` bytes, at file offset −1 (the file's own position: TUN has
   * none), with `rwFlags` (RWF_*), tagged with `userData`. The caller checks `sqFree` first.
   */
  prepare(
    opcode: number,
    sqeFlags: number,
    fd: number,
    addrLo: number,
    addrHi: number,
    len: number,
    userData: number,
    rwFlags = 0,
  ): void {
    const w = ringSlot(this.#tail, this.#sqMask) * 16;
    const q = this.#sqes;
    q[w] = opcode | (sqeFlags << 8); // opcode, flags, ioprio 0
    q[w + 1] = fd;
    q[w + 2] = 0xffffffff; // off = -1
    q[w + 3] = 0xffffffff;
    q[w + 4] = addrLo;
    q[w + 5] = addrHi;
    q[w + 6] = len;
    q[w + 7] = rwFlags;
    q[w + 8] = userData;
    q[w + 9] = 0;
    // Words 10..15 (buf_index, personality, splice_fd_in, addr3) stay zero from the mapping.
    this.#tail = ringAdvance(this.#tail, 1);
    this.#pending++;
  }

  /**
   * Publishes the prepared SQEs and enters the kernel once: submits them all and, when `waitFor`
   * is positive, waits until that many completions are in the CQ. Returns how many SQEs the
   * kernel took; throws an IoUringError on a failed enter other than EINTR.
   */
  submit(waitFor = 0): number {
    Atomics.store(this.#sq, this.#sqTail, this.#tail);
    const toSubmit = this.#pending;
    const flags = waitFor > 0 ? IORING_ENTER_GETEVENTS : 0;
    const r = sys().io_uring_enter(
      SYS_IO_URING_ENTER,
      this.#fd,
      toSubmit,
      waitFor,
      flags,
      null,
      0n,
    );
    if (r < 0) {
      const e = errno();
      if (e === EINTR) return 0;
      throw new IoUringError(`io_uring_enter failed: ${strerror(e)}`, e);
    }
    // Without SQPOLL the kernel consumes the SQ within the call; what it did not take stays
    // pending for the next call.
    this.#pending -= r;
    return r;
  }

  /** Completions waiting in the CQ. */
  completions(): number {
    return ringUsed(this.#cq[this.#cqHead], Atomics.load(this.#cq, this.#cqTail));
  }

  /** The low 32 bits of the user data of the `k`-th waiting completion. */
  completionUserData(k: number): number {
    return this.#cq[this.#cqes + ringSlot(this.#cq[this.#cqHead] + k, this.#cqMask) * 4];
  }

  /** The result (bytes, or −errno) of the `k`-th waiting completion. */
  completionResult(k: number): number {
    return this.#cqI32[this.#cqes + ringSlot(this.#cq[this.#cqHead] + k, this.#cqMask) * 4 + 2];
  }

  /** Releases the first `n` waiting completions to the kernel. */
  consume(n: number): void {
    Atomics.store(this.#cq, this.#cqHead, ringAdvance(this.#cq[this.#cqHead], n));
  }

  /** Unmaps the rings and closes the ring's descriptor. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = sys();
    for (const m of this.#mappings) s.munmap(m.pointer, size(m.bytes));
    s.close(this.#fd);
  }
}

/** Maps `bytes` of the ring `fd` at the kernel's magic `offset`, or throws. */
function map(fd: number, bytes: number, offset: bigint): Mapping {
  const p = sys().mmap(null, BigInt(bytes), PROT_READ_WRITE, MAP_SHARED_POPULATE, fd, offset);
  // MAP_FAILED is (void *)-1.
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === 0xffffffffffffffffn) {
    const e = errno();
    throw new IoUringError(`mmap of the io_uring failed: ${strerror(e)}`, e);
  }
  return { pointer: p, bytes };
}

/** The address of `pointer` as two u32 halves, for an SQE's `addr` without a bigint. */
export function addressHalves(pointer: Deno.PointerObject): [lo: number, hi: number] {
  const a = Number(Deno.UnsafePointer.value(pointer));
  return [a % 0x100000000, Math.floor(a / 0x100000000)];
}
