/**
 * The libc symbols the dataplane calls through Deno FFI, opened once per thread.
 *
 * Every per-packet symbol (read, write, sendto) is synchronous with number and pointer
 * parameters and an i32 result, which is what Deno's fast call path takes.
 *
 * Synchronous symbols run on the calling thread, so `errno()` read right after a
 * failed call belongs to that call. Only `poll` is non-blocking: it runs on
 * Deno's FFI thread pool so that an idle worker waits without holding its thread.
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // ioctl whose argument is a value, not a pointer (TUNSETOFFLOAD).
  ioctlValue: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // ssize_t results fit an i32 for packet-sized transfers; i32 keeps the fast call path. The
  // usize counts are passed as bigints (see `size`): a number there leaves the fast path.
  read: { parameters: ["i32", "pointer", "usize"], result: "i32" },
  write: { parameters: ["i32", "pointer", "usize"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "i32",
  },
  // sendto with the packet as a pointer: precomputed slot pointers keep per-packet sends
  // (direct routing) free of allocation.
  sendtoPointer: {
    name: "sendto",
    parameters: ["i32", "pointer", "usize", "i32", "buffer", "u32"],
    result: "i32",
  },
  // sendmsg with a msghdr built once (direct routing with offloads: header iovec + packet).
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // eventfd(initval, flags): how a worker wakes another from its poll (hand-off).
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** The opened libc library with the symbols above. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * A getter of libc's `symbols`, opened on first use, once per thread (each Worker has its own
 * copy): for modules that declare their own call shapes (io_uring, bpf).
 */
export function libcSymbols<const S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): () => Deno.DynamicLibrary<S>["symbols"] {
  let lib: Deno.DynamicLibrary<S> | null = null;
  return () => (lib ??= Deno.dlopen("libc.so.6", symbols)).symbols;
}

/** Opens libc once for this thread (each Worker has its own copy). */
export const libc: () => Libc = libcSymbols(SYMBOLS);

/** Reads errno of the last failed libc call made on this thread. */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32(0);
}

/** Describes an errno value the way libc does ("Operation not permitted"). */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** Byte counts `size` answers from its table: every length a batch slot can hold. */
const SIZE_TABLE_LENGTH = 65545 + 1;
let sizes: bigint[] | null = null;

/**
 * A byte count for a `usize` parameter, as a bigint. FFI also takes a plain number there, but
 * then leaves the fast call path: measured here, `read` on a bad fd took 304 ns with a number and
 * 170 ns with a bigint, `labs` 88 ns against 7. A bigint made per call would be an allocation, so
 * the bigints of 0..65545 (a slot's virtio_net_hdr and packet) are made once, on first use.
 */
export function size(n: number): bigint {
  if (sizes === null) sizes = Array.from({ length: SIZE_TABLE_LENGTH }, (_, i) => BigInt(i));
  return n >= 0 && n < SIZE_TABLE_LENGTH ? sizes[n] : BigInt(n);
}

/** errno values the dataplane reacts to. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
} as const;
