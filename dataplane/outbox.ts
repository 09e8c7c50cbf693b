/**
 * Packets the engine makes besides the one in the batch slot it was given: a SYN proxy's RST made
 * while the timers run, the segments a GSO packet is cut into for a tunnel. Fixed slots in one
 * buffer, which the worker writes to the TUN and then clears. No allocation.
 *
 * Each slot keeps VNET_HDR_LEN zero bytes in front of its packet: a TUN opened with
 * IFF_VNET_HDR takes a virtio_net_hdr with every packet, and an all-zero one says "finished
 * checksums, no GSO", which is what these packets are.
 *
 * @module
 */
import { VNET_HDR_LEN } from "./wire/virtio_net_hdr.ts";

/** Default packet room of a slot: any packet the engine makes on a timer (a 40-byte RST). */
export const OUTBOX_SLOT_BYTES = 64;

/** A fixed number of packet slots, filled in order. */
export class Outbox {
  readonly buf: Uint8Array;
  readonly lengths: Int32Array;
  /** Slots filled since the last `clear`. */
  count = 0;
  /** Bytes of a slot: the zero header room, then `packetBytes`. */
  readonly slotBytes: number;
  /** FFI pointers to the slots, made by the TUN device that writes them (once). */
  pointers: Deno.PointerObject[] | null = null;
  /** The virtio_net_hdr length `pointers` were made for. */
  pointersHeader = -1;

  /** Where the first slot starts in `buf`. */
  readonly #base: number;

  /**
   * `slots` slots, each holding a packet of up to `packetBytes`: in a buffer of their own, or
   * from `base` on in `buffer` (at least `Outbox.bytesFor(slots, packetBytes)` bytes there).
   */
  constructor(
    readonly slots: number,
    readonly packetBytes = OUTBOX_SLOT_BYTES,
    buffer?: Uint8Array,
    base = 0,
  ) {
    this.slotBytes = VNET_HDR_LEN + packetBytes;
    const bytes = Outbox.bytesFor(slots, packetBytes);
    if (buffer !== undefined && base + bytes > buffer.length) {
      throw new RangeError(`an outbox of ${bytes} bytes does not fit at ${base}`);
    }
    this.buf = buffer ?? new Uint8Array(bytes);
    this.#base = buffer === undefined ? 0 : base;
    this.lengths = new Int32Array(slots);
  }

  /** Bytes `slots` slots of `packetBytes` take. */
  static bytesFor(slots: number, packetBytes: number): number {
    return slots * (VNET_HDR_LEN + packetBytes);
  }

  /** Byte offset of slot `i`'s packet in `buf` (its header room is the VNET_HDR_LEN before). */
  offset(i: number): number {
    return this.#base + i * this.slotBytes + VNET_HDR_LEN;
  }

  /** Whether every slot is taken (the caller tries again after the next `clear`). */
  get full(): boolean {
    return this.count === this.slots;
  }

  /** Byte offset of the next free slot's packet; fill it, then `commit` its length. */
  next(): number {
    return this.offset(this.count);
  }

  /** Takes the next slot, holding a packet of `len` bytes. */
  commit(len: number): void {
    this.lengths[this.count++] = len;
  }

  /** Forgets every packet (after they were written). */
  clear(): void {
    this.count = 0;
  }
}
