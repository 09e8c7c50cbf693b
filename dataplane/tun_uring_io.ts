/**
 * Batch I/O on a TUN device through io_uring: the same `readBatch` / `writeBatch` as TunDevice,
 * with one `io_uring_enter` per batch instead of one read(2) or write(2) per packet.
 *
 * Reads are READ SQEs with RWF_NOWAIT: on an empty queue each returns −EAGAIN at once, so one
 * enter does what TunDevice's read-until-EAGAIN loop does. Without RWF_NOWAIT the kernel arms a
 * poll for a read that finds nothing, even on an O_NONBLOCK descriptor, and the read would land in
 * a batch slot later, while the engine works on it.
 *
 * @module
 */
import { Errno, strerror } from "./libc.ts";
import { addressHalves, IoUring, IoUringOp } from "./io_uring.ts";
import { type PacketBatch, SLOT_BYTES, type TunDevice, TunError, type WriteResult } from "./tun.ts";

/** RWF_NOWAIT: fail with EAGAIN instead of waiting (include/uapi/linux/fs.h). */
const RWF_NOWAIT = 0x8;
/** Fewest reads a batch asks for after a batch that found the queue short. */
const MIN_READS = 4;

/** TUN batch I/O through one io_uring; one per thread that reads or writes the device. */
export class TunUringIo {
  /** Slot addresses of the batch last used, as u32 halves (a batch's slots never move). */
  #batch: PacketBatch | null = null;
  #addrLo = new Uint32Array(0);
  #addrHi = new Uint32Array(0);
  /** Reads the next batch asks for first: as many as the last batch found. */
  #reads: number;
  /**
   * What SQEs name the device by: its descriptor, not a registered file. A registered file is a
   * reference the ring holds, and the kernel drops it only when it tears the ring down, which it
   * does asynchronously even after the process exits: the TUN interface then outlives tunvs for a
   * moment, and a restart finds its name taken. The per-SQE descriptor lookup it would save is
   * small against the packet's own cost.
   */
  readonly #fd: number;
  readonly #sqeFlags = 0;

  private constructor(readonly tun: TunDevice, readonly ring: IoUring) {
    this.#reads = ring.sqEntries;
    this.#fd = tun.fd;
  }

  /** Sets up a ring of `entries` slots for `tun`; throws IoUringError if io_uring is refused. */
  static open(tun: TunDevice, entries = 64): TunUringIo {
    return new TunUringIo(tun, IoUring.setup(entries));
  }

  /**
   * Reads packets into `batch` until the queue is empty or the batch is full; returns how many
   * were read. Never blocks.
   *
   * Every read that finds the queue empty costs a failed SQE (about as much as a read(2)), so a
   * call does not ask for all slots at once: it starts with as many reads as the last call found
   * packets (at least MIN_READS), and doubles the ask in a further enter while every read of the
   * last one found a packet.
   */
  readBatch(batch: PacketBatch): number {
    this.#addresses(batch);
    const ring = this.ring;
    const lengths = batch.lengths;
    let n = 0;
    let ask = this.#reads;
    for (;;) {
      const want = Math.min(ask, batch.slots - n, ring.sqEntries);
      for (let i = n; i < n + want; i++) {
        const lo = this.#addrLo[i];
        const hi = this.#addrHi[i];
        ring.prepare(IoUringOp.READ, this.#sqeFlags, this.#fd, lo, hi, SLOT_BYTES, i, RWF_NOWAIT);
      }
      this.#complete(want);
      let failure = 0;
      const done = ring.completions();
      for (let k = 0; k < done; k++) {
        const res = ring.completionResult(k);
        lengths[ring.completionUserData(k)] = res > 0 ? res : -1;
        if (res < 0 && res !== -Errno.EAGAIN && res !== -Errno.EINTR) failure = -res;
      }
      ring.consume(done);
      if (failure !== 0) {
        throw new TunError(`read from ${this.tun.name} failed: ${strerror(failure)}`, failure);
      }
      // Reads ran in submission order, so packets are in slot order; one that arrived after an
      // earlier read found the queue empty leaves a gap, closed here by moving it down.
      const end = n + want;
      let got = 0;
      for (let i = n; i < end; i++) {
        if (lengths[i] < 0) continue;
        const to = n + got;
        if (i !== to) {
          batch.buf.copyWithin(batch.offset(to), batch.offset(i), batch.offset(i) + lengths[i]);
          lengths[to] = lengths[i];
        }
        got++;
      }
      n += got;
      if (got < want || n === batch.slots) break;
      ask = 2 * want;
    }
    this.#reads = Math.max(MIN_READS, n);
    batch.count = n;
    return n;
  }

  /** Writes every slot of `batch` from `from` up to `to` with a positive length. */
  writeBatch(batch: PacketBatch, from = 0, to = batch.count): WriteResult {
    this.#addresses(batch);
    const ring = this.ring;
    const lengths = batch.lengths;
    let written = 0;
    let failed = 0;
    let i = from;
    while (i < to) {
      let queued = 0;
      for (; i < to && queued < ring.sqEntries; i++) {
        const len = lengths[i];
        if (len <= 0) continue;
        const lo = this.#addrLo[i];
        const hi = this.#addrHi[i];
        ring.prepare(IoUringOp.WRITE, this.#sqeFlags, this.#fd, lo, hi, len, i);
        queued++;
      }
      if (queued === 0) break;
      this.#complete(queued);
      const done = ring.completions();
      for (let k = 0; k < done; k++) {
        if (ring.completionResult(k) === lengths[ring.completionUserData(k)]) written++;
        else failed++;
      }
      ring.consume(done);
    }
    return { written, failed };
  }

  /** Closes the ring (not the TUN device). */
  close(): void {
    this.ring.close();
  }

  /**
   * Submits the `n` prepared SQEs and returns once all `n` have completed: the slots they name
   * must not be touched by the kernel after the call returns.
   */
  #complete(n: number): void {
    const ring = this.ring;
    ring.submit(0);
    // TUN reads with RWF_NOWAIT and TUN writes complete within the submitting enter; this waits
    // only if one was punted to the kernel's worker threads.
    while (ring.completions() < n) ring.submit(n - ring.completions());
  }

  /** Caches the slot addresses of `batch` as u32 halves, once per batch. */
  #addresses(batch: PacketBatch): void {
    if (this.#batch === batch) return;
    this.#batch = batch;
    this.#addrLo = new Uint32Array(batch.slots);
    this.#addrHi = new Uint32Array(batch.slots);
    for (let i = 0; i < batch.slots; i++) {
      [this.#addrLo[i], this.#addrHi[i]] = addressHalves(batch.pointer(i));
    }
  }
}
