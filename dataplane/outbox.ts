/**
 * Packets the engine makes outside `process`, while its timers run (a SYN proxy's RST to a
 * client whose real never answered): a few fixed slots in one buffer, which the worker writes
 * to the TUN after each tick and then clears. No allocation.
 *
 * @module
 */

/** Slot size: room for any packet the engine makes on a timer (a 40-byte RST). */
export const OUTBOX_SLOT_BYTES = 64;

/** A fixed number of small packet slots, filled in order. */
export class Outbox {
  readonly buf: Uint8Array;
  readonly lengths: Int32Array;
  /** Slots filled since the last `clear`. */
  count = 0;

  /** `slots` slots of OUTBOX_SLOT_BYTES. */
  constructor(readonly slots: number) {
    this.buf = new Uint8Array(slots * OUTBOX_SLOT_BYTES);
    this.lengths = new Int32Array(slots);
  }

  /** Byte offset of slot `i` in `buf`. */
  offset(i: number): number {
    return i * OUTBOX_SLOT_BYTES;
  }

  /** Whether every slot is taken (the caller tries again after the next `clear`). */
  get full(): boolean {
    return this.count === this.slots;
  }

  /** Byte offset of the next free slot; fill it, then `commit` its length. */
  next(): number {
    return this.count * OUTBOX_SLOT_BYTES;
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
