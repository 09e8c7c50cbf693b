/**
 * The hand-off between dataplane workers: a packet read by a worker that does not own its
 * connection (see owner.ts) goes to its owner through the (from, to) ring, and the owner is
 * woken through its eventfd. The owner forwards it and writes it on its own queue, which also
 * teaches the kernel's flow table (drivers/net/tun.c, tun_flow_update) to bring the flow's next
 * packets straight to the owner's queue. docs/workers.md says why and what it costs.
 */
import { Errno, errno, libc, size, strerror } from "./libc.ts";
import { HandoffRing } from "./handoff_ring.ts";
import { PacketOwners } from "./owner.ts";
import type { DataplaneSpec } from "./service.ts";

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

/** What the workers share: one ring per ordered pair, one eventfd per worker. */
export interface HandoffShared {
  /** Ring `from * workers + to`; the diagonal is unused. */
  rings: SharedArrayBuffer[];
  /** Eventfd of each worker: written to wake it. */
  wakeFds: number[];
}

/** Opens an eventfd (non-blocking, close-on-exec); throws on failure. */
export function openEventFd(): number {
  const fd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw new Error(`eventfd failed: ${strerror(errno())}`);
  return fd;
}

/** The rings and eventfds for `workers` workers (each ring `ringBytes` of data). */
export function makeHandoffShared(workers: number, ringBytes?: number): HandoffShared {
  const rings: SharedArrayBuffer[] = [];
  for (let i = 0; i < workers * workers; i++) {
    rings.push(
      Math.floor(i / workers) === i % workers
        ? new SharedArrayBuffer(0)
        : HandoffRing.allocate(ringBytes),
    );
  }
  return { rings, wakeFds: Array.from({ length: workers }, openEventFd) };
}

/** Closes the eventfds of `shared` (once every worker has stopped). */
export function closeHandoffShared(shared: HandoffShared): void {
  for (const fd of shared.wakeFds) libc().close(fd);
}

/** Counters of the hand-off, by index into `Handoff.counters`. */
export const HandoffCounter = { OUT: 0, IN: 1, DROP_FULL: 2 } as const;

/** Metric names of `HandoffCounter`, indexed alike. */
export const HANDOFF_COUNTER_NAMES: readonly string[] = [
  "handoffs_out",
  "handoffs_in",
  "drop_handoff_full",
];

/** One worker's side of the hand-off. */
export class Handoff {
  /** Who owns which packet; rebuilt when the spec changes. */
  owners: PacketOwners;
  /** Packets handed out, taken in, and dropped because the owner's ring was full. */
  readonly counters = new Float64Array(HANDOFF_COUNTER_NAMES.length);
  readonly #out: (HandoffRing | null)[];
  readonly #in: HandoffRing[];
  /** Owners given packets since the last `wakeOwners`: one bit per worker. */
  #toWake = 0;
  /** Where `receive` starts, so that no sender starves the others. */
  #nextIn = 0;
  readonly #wakeValue = new BigUint64Array([1n]);
  readonly #wakeBytes = new Uint8Array(this.#wakeValue.buffer);
  readonly #drain = new Uint8Array(8);
  // Pointers made once: the wake and the drain allocate nothing.
  readonly #wakePointer = Deno.UnsafePointer.of(this.#wakeBytes);
  readonly #drainPointer = Deno.UnsafePointer.of(this.#drain);

  /** Worker `self` of `workers`, over `shared`, forwarding `spec`. */
  constructor(
    readonly self: number,
    readonly workers: number,
    readonly shared: HandoffShared,
    spec: DataplaneSpec,
  ) {
    if (workers > 31) throw new RangeError("at most 31 workers");
    this.owners = new PacketOwners(workers, spec);
    this.#out = Array.from(
      { length: workers },
      (_, to) => to === self ? null : new HandoffRing(shared.rings[self * workers + to]),
    );
    this.#in = [];
    for (let from = 0; from < workers; from++) {
      if (from !== self) this.#in.push(new HandoffRing(shared.rings[from * workers + self]));
    }
  }

  /** Takes a new spec: VIPs, local addresses and netmasks decide ownership. */
  respec(spec: DataplaneSpec): void {
    this.owners = new PacketOwners(this.workers, spec);
  }

  /** The eventfd this worker is woken through. */
  get wakeFd(): number {
    return this.shared.wakeFds[this.self];
  }

  /**
   * Hands the `len` bytes at `off` of `buf` (virtio_net_hdr included), read with `mark`, to
   * worker `owner`; counts a drop when its ring is full.
   */
  send(owner: number, buf: Uint8Array, off: number, len: number, mark: number): void {
    if (this.#out[owner]!.push(buf, off, len, mark)) {
      this.counters[HandoffCounter.OUT]++;
      this.#toWake |= 1 << owner;
    } else {
      this.counters[HandoffCounter.DROP_FULL]++;
    }
  }

  /** Wakes every worker handed a packet since the last call (8 bytes to its eventfd). */
  wakeOwners(): void {
    let w = this.#toWake;
    if (w === 0) return;
    this.#toWake = 0;
    const c = libc();
    const p = this.#wakePointer;
    for (let k = 0; w !== 0; k++, w >>>= 1) {
      // EAGAIN means the counter is near overflow: the owner is awake anyway.
      if ((w & 1) !== 0) c.write(this.shared.wakeFds[k], p, size(8));
    }
  }

  /**
   * Resets this worker's eventfd after a wake-up (the rings are checked afterwards); returns
   * whether a wake-up was pending.
   */
  clearWake(): boolean {
    const r = libc().read(this.wakeFd, this.#drainPointer, size(8));
    if (r < 0) {
      const e = errno();
      if (e !== Errno.EAGAIN && e !== Errno.EINTR) {
        throw new Error(`eventfd read failed: ${strerror(e)}`);
      }
      return false;
    }
    return true;
  }

  /** Whether any ring towards this worker holds a packet. */
  get pending(): boolean {
    for (const r of this.#in) if (!r.empty) return true;
    return false;
  }

  /**
   * Moves up to `slots` handed-in packets into the slots of `slotBytes` bytes of `buf`, their
   * lengths into `lengths` and marks into `marks`, taking from each sender in turn; returns how
   * many.
   */
  receive(
    buf: Uint8Array,
    slotBytes: number,
    lengths: Int32Array,
    marks: Uint32Array,
    slots: number,
  ): number {
    const rings = this.#in;
    let n = 0;
    let idle = 0;
    while (n < slots && idle < rings.length) {
      const ring = rings[this.#nextIn];
      this.#nextIn = this.#nextIn + 1 === rings.length ? 0 : this.#nextIn + 1;
      const len = ring.pop(buf, n * slotBytes);
      if (len < 0) {
        idle++;
        continue;
      }
      idle = 0;
      lengths[n] = len;
      marks[n] = ring.mark;
      n++;
    }
    this.counters[HandoffCounter.IN] += n;
    return n;
  }
}
