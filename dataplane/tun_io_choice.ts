/**
 * Which path a TUN's batches take: one read(2) / write(2) per packet through FFI, or one
 * io_uring_enter per batch (tun_uring_io.ts). The syscalls are the default: on 64-byte packets
 * io_uring wrote 1.15–1.25× and read 1.05–1.15× the packets per second (bench/tun_io.ts, figures
 * in docs/performance.md), short of a clear win, and a read that finds the queue empty costs it
 * four times as much. With io_uring chosen, a kernel or sandbox that refuses it gets the syscalls,
 * said in the log.
 *
 * @module
 */
import { IoUringError } from "./io_uring.ts";
import type { TunDevice } from "./tun.ts";
import { TunUringIo } from "./tun_uring_io.ts";

/** The values of `dataplane.io`. */
export const TUN_IO_CHOICES = ["syscalls", "io_uring"] as const;

/** How a TUN's batches are read and written. */
export type TunIoChoice = typeof TUN_IO_CHOICES[number];

/** `dataplane.io` when the configuration leaves it out. */
export const DEFAULT_TUN_IO: TunIoChoice = "syscalls";

/**
 * Sets up `choice` for `tun`'s batches in this thread (the thread that reads and writes it: a
 * ring serves one thread), falls back to syscalls when io_uring is refused, logs which path it
 * took, and returns `tun`.
 */
export function useTunIo(
  tun: TunDevice,
  choice: TunIoChoice = DEFAULT_TUN_IO,
  log: (line: string) => void = console.error,
): TunDevice {
  if (choice === "syscalls") {
    log(`tunvs: ${tun.name} batch I/O: syscalls (one read/write per packet, as configured)`);
    return tun;
  }
  try {
    const io = TunUringIo.open(tun);
    tun.useBatchIo(io);
    log(`tunvs: ${tun.name} batch I/O: io_uring (one io_uring_enter per batch)`);
  } catch (e) {
    if (!(e instanceof IoUringError)) throw e;
    log(`tunvs: ${tun.name} batch I/O: syscalls, io_uring unavailable (${e.message})`);
  }
  return tun;
}
