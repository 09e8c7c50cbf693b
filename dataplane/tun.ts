/**
 * A Linux TUN device opened through FFI: raw IPv4 packets in and out, in
 * batches, over one preallocated buffer. With offloads (IFF_VNET_HDR and
 * TUNSETOFFLOAD, see tun_offloads.ts) every packet read or written has a
 * virtio_net_hdr in front.
 */
import { Errno, errno, libc, size, strerror } from "./libc.ts";
import type { Outbox } from "./outbox.ts";
import { negotiateOffloads } from "./tun_offloads.ts";
import { VNET_HDR_LEN } from "./wire/virtio_net_hdr.ts";

const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFF_MULTI_QUEUE = 0x0100;
const O_RDWR = 0o2;
const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const POLLIN = 0x001;
const IFNAMSIZ = 16;

/** The largest IPv4 packet; one batch slot holds exactly one, after its virtio_net_hdr. */
export const MAX_PACKET = 65535;

/** Bytes of a batch slot: room for a virtio_net_hdr, then for the largest IPv4 packet. */
export const SLOT_BYTES = VNET_HDR_LEN + MAX_PACKET;

/** Why a TUN device could not be opened, in words an operator can act on. */
export class TunError extends Error {
  /** Creates the error; `code` is the errno behind it, 0 if none. */
  constructor(message: string, readonly code: number) {
    super(message);
    this.name = "TunError";
  }
}

/**
 * Packets of one read or write round: `count` slots of `SLOT_BYTES` bytes in one
 * buffer, with each slot's length. A slot holds what one read gives: the
 * virtio_net_hdr (on a TUN with offloads), then the packet; the length counts both.
 * Slot pointers are made once so the per-packet FFI calls allocate nothing.
 */
export class PacketBatch {
  /** All slots, back to back. */
  readonly buf: Uint8Array;
  /** Length of the packet in each slot; a negative length means "do not write". */
  readonly lengths: Int32Array;
  /** Number of filled slots. */
  count = 0;
  readonly #pointers: Deno.PointerObject[];

  /** Where the `extraBytes` behind the slots start in `buf`. */
  readonly extraOffset: number;

  /**
   * Allocates `slots` packet slots, and `extraBytes` behind them for packets the engine makes
   * from the slots' (GSO segments: copied within one buffer, they move at memmove's speed).
   */
  constructor(readonly slots: number, extraBytes = 0) {
    this.extraOffset = slots * SLOT_BYTES;
    this.buf = new Uint8Array(slots * SLOT_BYTES + extraBytes);
    this.lengths = new Int32Array(slots);
    const base = Deno.UnsafePointer.of(this.buf)!;
    this.#pointers = Array.from(
      { length: slots },
      (_, i) => Deno.UnsafePointer.offset(base, i * SLOT_BYTES)!,
    );
  }

  /** Byte offset of slot `i` in `buf`. */
  offset(i: number): number {
    return i * SLOT_BYTES;
  }

  /** Pointer to slot `i`, for FFI calls. */
  pointer(i: number): Deno.PointerObject {
    return this.#pointers[i];
  }
}

/** What a batch write did. */
export interface WriteResult {
  written: number;
  failed: number;
}

/** Another way to read and write a TUN's batches (io_uring: tun_uring_io.ts). */
export interface TunBatchIo {
  /** Reads packets into `batch` until the queue is empty or the batch is full; never blocks. */
  readBatch(batch: PacketBatch): number;
  /** Writes every slot of `batch` from `from` up to `to` with a positive length. */
  writeBatch(batch: PacketBatch, from: number, to: number): WriteResult;
  /** Releases what it holds (not the TUN descriptor). */
  close(): void;
}

/** How `TunDevice.open` sets the device up. */
export interface TunOptions {
  /** Ask for IFF_VNET_HDR and offloads (default false). */
  offloads?: boolean;
  /**
   * Queues of the device (default 1): more than 1 opens it with IFF_MULTI_QUEUE, one descriptor
   * per queue, for one dataplane worker each (docs/workers.md).
   */
  queues?: number;
  /** TUNSETOFFLOAD on `fd`: 0 or the errno (a seam for tests; default the ioctl). */
  setOffload?: (fd: number, flags: number) => number;
}

/**
 * An open TUN device (IFF_TUN | IFF_NO_PI, IFF_VNET_HDR with offloads) with a non-blocking
 * descriptor.
 */
export class TunDevice {
  readonly #pollfd = new Uint8Array(8);
  #closed = false;
  /**
   * Descriptors of the device's other queues (IFF_MULTI_QUEUE), queue 1 first; empty for a
   * single-queue device. Each worker but the first reads one; `close` closes them all.
   */
  queueFds: number[] = [];
  /** Where batches go instead of read(2)/write(2) per packet, once `useBatchIo` set it. */
  #batchIo: TunBatchIo | null = null;

  /**
   * Wraps `fd`; `offloads` are the TUN_F bits the kernel took (0: none, and then no
   * virtio_net_hdr in front of packets).
   */
  private constructor(
    readonly fd: number,
    readonly name: string,
    readonly offloads: number = 0,
  ) {
    const view = new DataView(this.#pollfd.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, POLLIN, true);
  }

  /** Bytes of virtio_net_hdr in front of every packet read or written: 10 with offloads, else 0. */
  get vnetHeader(): number {
    return this.offloads === 0 ? 0 : VNET_HDR_LEN;
  }

  /**
   * Creates (or fails clearly to create) the TUN interface `name`. With `options.offloads` it
   * asks for the offloads the kernel takes, and falls back to none (a plain TUN) if it takes none.
   */
  static open(name: string, options: TunOptions = {}): TunDevice {
    const queues = options.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1) {
      throw new TunError(`a TUN device needs 1 or more queues, not ${queues}`, Errno.EINVAL);
    }
    const multiQueue = queues > 1;
    let dev: TunDevice | null = null;
    if (options.offloads) {
      const tun = TunDevice.#open(name, true, multiQueue);
      const setOffload = options.setOffload ?? setOffloadIoctl;
      const offloads = negotiateOffloads((flags) => setOffload(tun.fd, flags));
      if (offloads !== 0) dev = new TunDevice(tun.fd, name, offloads);
      // No offloads: a header on every packet would buy nothing. Closing the descriptor removes
      // the (non-persistent) interface, so the name is free again for a plain one.
      else tun.close();
    }
    dev ??= TunDevice.#open(name, false, multiQueue);
    try {
      // The other queues attach to the interface queue 0 made; offloads are the device's.
      for (let q = 1; q < queues; q++) {
        dev.queueFds.push(TunDevice.#attach(name, dev.offloads !== 0, true));
      }
    } catch (err) {
      dev.close();
      throw err;
    }
    return dev;
  }

  static #open(name: string, vnetHeader: boolean, multiQueue = false): TunDevice {
    validateInterfaceName(name);
    if (interfaceExists(name)) {
      throw new TunError(
        `cannot create TUN device ${name}: an interface named ${name} already exists ` +
          `(another tunvs running, or choose another dataplane.tun name)`,
        Errno.EBUSY,
      );
    }
    return new TunDevice(TunDevice.#attach(name, vnetHeader, multiQueue), name);
  }

  /** Opens /dev/net/tun and binds it to (a new queue of) interface `name`; the descriptor. */
  static #attach(name: string, vnetHeader: boolean, multiQueue: boolean): number {
    const c = libc();
    const fd = c.open(cString("/dev/net/tun"), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
      const e = errno();
      if (e === Errno.ENOENT || e === Errno.ENODEV) {
        throw new TunError(
          "cannot open /dev/net/tun: no such device; load the tun module (modprobe tun) " +
            "or create the node (mkdir -p /dev/net && mknod /dev/net/tun c 10 200)",
          e,
        );
      }
      if (e === Errno.EACCES || e === Errno.EPERM) {
        throw new TunError(
          "cannot open /dev/net/tun: permission denied; tunvs needs root or CAP_NET_ADMIN",
          e,
        );
      }
      throw new TunError(`cannot open /dev/net/tun: ${strerror(e)}`, e);
    }
    const ifr = new Uint8Array(40);
    ifr.set(new TextEncoder().encode(name));
    const ifrFlags = IFF_TUN | IFF_NO_PI | (vnetHeader ? IFF_VNET_HDR : 0) |
      (multiQueue ? IFF_MULTI_QUEUE : 0);
    new DataView(ifr.buffer).setInt16(IFNAMSIZ, ifrFlags, true);
    if (c.ioctl(fd, BigInt(TUNSETIFF), ifr) < 0) {
      const e = errno();
      c.close(fd);
      if (e === Errno.EPERM || e === Errno.EACCES) {
        throw new TunError(
          `cannot create TUN device ${name}: operation not permitted; ` +
            "tunvs needs root or CAP_NET_ADMIN",
          e,
        );
      }
      if (e === Errno.EBUSY || e === Errno.EINVAL) {
        throw new TunError(
          `cannot create TUN device ${name}: the name is already in use (${strerror(e)})`,
          e,
        );
      }
      throw new TunError(`cannot create TUN device ${name}: ${strerror(e)}`, e);
    }
    const flags = c.fcntl(fd, F_GETFL, 0);
    if (flags < 0 || c.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      const e = errno();
      c.close(fd);
      throw new TunError(`cannot make ${name} non-blocking: ${strerror(e)}`, e);
    }
    return fd;
  }

  /**
   * Wraps a descriptor opened elsewhere in this process (a worker taking over the device), with
   * the `offloads` it was opened with.
   */
  static adopt(fd: number, name: string, offloads = 0): TunDevice {
    return new TunDevice(fd, name, offloads);
  }

  /**
   * Reads packets into `batch` until the queue is empty or the batch is full;
   * returns how many were read. Never blocks.
   */
  readBatch(batch: PacketBatch): number {
    if (this.#batchIo !== null) return this.#batchIo.readBatch(batch);
    const c = libc();
    let n = 0;
    while (n < batch.slots) {
      const r = c.read(this.fd, batch.pointer(n), size(SLOT_BYTES));
      if (r < 0) {
        const e = errno();
        if (e === Errno.EAGAIN || e === Errno.EINTR) break;
        throw new TunError(`read from ${this.name} failed: ${strerror(e)}`, e);
      }
      if (r === 0) break;
      batch.lengths[n++] = r;
    }
    batch.count = n;
    return n;
  }

  /** Writes every slot of `batch` from `from` up to `to` with a positive length. */
  writeBatch(batch: PacketBatch, from = 0, to = batch.count): WriteResult {
    if (this.#batchIo !== null) return this.#batchIo.writeBatch(batch, from, to);
    const c = libc();
    let written = 0;
    let failed = 0;
    for (let i = from; i < to; i++) {
      const len = batch.lengths[i];
      if (len <= 0) continue;
      if (c.write(this.fd, batch.pointer(i), size(len)) === len) written++;
      else failed++;
    }
    return { written, failed };
  }

  /**
   * Writes the packets of `outbox` (packets the engine made besides its batch slots) and clears
   * it. Slot pointers are made once per outbox, to the zero header room in front of each packet
   * when this TUN takes a virtio_net_hdr.
   */
  writeOutbox(outbox: Outbox): WriteResult {
    const header = this.vnetHeader;
    if (outbox.pointers === null || outbox.pointersHeader !== header) {
      const base = Deno.UnsafePointer.of(outbox.buf as Uint8Array<ArrayBuffer>)!;
      outbox.pointers = Array.from(
        { length: outbox.slots },
        (_, i) => Deno.UnsafePointer.offset(base, outbox.offset(i) - header)!,
      );
      outbox.pointersHeader = header;
    }
    const pointers = outbox.pointers;
    const c = libc();
    let written = 0;
    let failed = 0;
    for (let i = 0; i < outbox.count; i++) {
      const len = outbox.lengths[i] + header;
      if (c.write(this.fd, pointers[i], size(len)) === len) written++;
      else failed++;
    }
    outbox.clear();
    return { written, failed };
  }

  /**
   * Reads and writes batches through `io` from now on (it was set up on this descriptor, in
   * this thread); `close` closes it too.
   */
  useBatchIo(io: TunBatchIo): void {
    this.#batchIo = io;
  }

  /** Waits off-thread until a packet is readable or `timeoutMs` passes. */
  async waitReadable(timeoutMs: number): Promise<boolean> {
    const r = await libc().poll(this.#pollfd, 1n, timeoutMs);
    return r > 0;
  }

  /** Closes the descriptor; the kernel removes the (non-persistent) interface with it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.queueFds) libc().close(fd);
    this.#batchIo?.close();
    libc().close(this.fd);
  }
}

/** Throws a TunError unless `name` is a valid Linux interface name. */
export function validateInterfaceName(name: string): void {
  if (
    name.length === 0 || new TextEncoder().encode(name).length >= IFNAMSIZ ||
    name === "." || name === ".." || /[\s/:]/.test(name)
  ) {
    throw new TunError(
      `invalid interface name ${JSON.stringify(name)}: 1-15 bytes, no '/', ':' or spaces`,
      Errno.EINVAL,
    );
  }
}

/** TUNSETOFFLOAD through the ioctl: 0, or the errno of its refusal. */
function setOffloadIoctl(fd: number, flags: number): number {
  // The argument is the flags themselves, not a pointer to them.
  return libc().ioctlValue(fd, BigInt(TUNSETOFFLOAD), BigInt(flags)) < 0 ? errno() : 0;
}

function interfaceExists(name: string): boolean {
  try {
    Deno.statSync(`/sys/class/net/${name}`);
    return true;
  } catch {
    return false;
  }
}

function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}
