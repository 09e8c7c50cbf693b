/**
 * Data a client sent with the ACK that completed its cookie handshake, kept while the connection
 * to the real is opened: at most one segment per connection, in a fixed pool of slots (a free
 * list over one buffer), so that holding costs no allocation and a flood of handshakes cannot
 * grow memory. A segment that finds no free slot is not kept; the client sends it again.
 *
 * @module
 */

/** A pool of fixed-size slots for held payloads. */
export class HeldSegments {
  readonly buf: Uint8Array;
  /** Payload bytes held in each slot. */
  readonly length: Uint16Array;
  /** TCP flags (PSH, FIN) of the segment held in each slot. */
  readonly flags: Uint8Array;
  readonly #free: Int32Array;
  #freeTop: number;

  /** `slots` slots of `slotBytes` bytes each (pages are committed only as slots are used). */
  constructor(readonly slots: number, readonly slotBytes: number) {
    this.buf = new Uint8Array(slots * slotBytes);
    this.length = new Uint16Array(slots);
    this.flags = new Uint8Array(slots);
    this.#free = new Int32Array(slots);
    for (let i = 0; i < slots; i++) this.#free[i] = slots - 1 - i;
    this.#freeTop = slots;
  }

  /** Slots in use. */
  get used(): number {
    return this.slots - this.#freeTop;
  }

  /**
   * Copies `len` payload bytes at `at` in `b` (with the segment's `flags`) into a free slot and
   * returns it, or -1 when none is free or the payload does not fit a slot.
   */
  hold(b: Uint8Array, at: number, len: number, flags: number): number {
    if (this.#freeTop === 0 || len > this.slotBytes) return -1;
    const slot = this.#free[--this.#freeTop];
    const start = slot * this.slotBytes;
    const buf = this.buf;
    // A byte loop: a subarray view would be an allocation per handshake.
    for (let i = 0; i < len; i++) buf[start + i] = b[at + i];
    this.length[slot] = len;
    this.flags[slot] = flags;
    return slot;
  }

  /** Copies slot `slot`'s payload to `at` in `b`; returns its length. */
  copyTo(slot: number, b: Uint8Array, at: number): number {
    const len = this.length[slot];
    const start = slot * this.slotBytes;
    const buf = this.buf;
    for (let i = 0; i < len; i++) b[at + i] = buf[start + i];
    return len;
  }

  /** Returns slot `slot` to the pool. */
  release(slot: number): void {
    this.length[slot] = 0;
    this.flags[slot] = 0;
    this.#free[this.#freeTop++] = slot;
  }
}
