/**
 * A single-producer single-consumer ring of packets in a SharedArrayBuffer: how a worker hands
 * a packet it read to the worker that owns its connection (docs/workers.md). Records are
 * length-prefixed and 8-byte aligned, so a 64 KB GSO packet and a 64-byte datagram take what
 * they need. Only the producer moves `tail`, only the consumer moves `head`; Atomics order the
 * record's bytes before the index that publishes them.
 */

/** Bytes in front of each record: its length (int32; -1 = wrap to the start) and its mark. */
const RECORD_HEADER = 8;
const HEAD = 0;
const TAIL = 1;
/** Bytes of the head/tail indexes in front of the data. */
const INDEX_BYTES = 64;
const WRAP = -1;
/**
 * Records up to this many bytes are copied byte by byte: `set` over a `subarray` would make a view
 * object per packet, which small packets (the pps case) cannot afford; large ones amortise it.
 */
const LOOP_COPY_MAX = 256;

/** Default bytes of data per ring: room for a dozen 64 KB super-packets. */
export const HANDOFF_RING_BYTES = 1 << 20;

/** One direction of hand-off between two workers, over shared memory. */
export class HandoffRing {
  readonly #index: Int32Array;
  readonly #data: Uint8Array;
  readonly #view: DataView;
  readonly #capacity: number;

  /** Views `buffer` (made by `HandoffRing.allocate`) from either side. */
  constructor(readonly buffer: SharedArrayBuffer) {
    this.#index = new Int32Array(buffer, 0, 2);
    this.#data = new Uint8Array(buffer, INDEX_BYTES);
    this.#view = new DataView(buffer, INDEX_BYTES);
    this.#capacity = this.#data.length;
  }

  /** A ring's shared memory with `bytes` of data (rounded up to 8). */
  static allocate(bytes = HANDOFF_RING_BYTES): SharedArrayBuffer {
    return new SharedArrayBuffer(INDEX_BYTES + ((bytes + 7) & ~7));
  }

  /**
   * Producer: appends `len` bytes at `off` of `src` with `mark`. Returns false, changing
   * nothing, when the ring has no room (the caller counts a drop).
   */
  push(src: Uint8Array, off: number, len: number, mark: number): boolean {
    const cap = this.#capacity;
    const need = RECORD_HEADER + ((len + 7) & ~7);
    const head = Atomics.load(this.#index, HEAD);
    let tail = this.#index[TAIL];
    // One record's header of slack keeps a full ring apart from an empty one (head === tail).
    const used = tail >= head ? tail - head : cap - head + tail;
    const wrap = tail + need > cap;
    const spend = wrap ? need + (cap - tail) : need;
    if (used + spend + RECORD_HEADER > cap) return false;
    if (wrap) {
      // The record does not fit before the end: mark the rest as skipped, start over at 0.
      this.#view.setInt32(tail, WRAP, true);
      tail = 0;
    }
    this.#view.setInt32(tail, len, true);
    this.#view.setUint32(tail + 4, mark, true);
    const to = tail + RECORD_HEADER;
    if (len <= LOOP_COPY_MAX) {
      const data = this.#data;
      for (let i = 0; i < len; i++) data[to + i] = src[off + i];
    } else {
      this.#data.set(src.subarray(off, off + len), to);
    }
    tail += need;
    if (tail === cap) tail = 0;
    Atomics.store(this.#index, TAIL, tail);
    return true;
  }

  /** Consumer: whether a record waits. */
  get empty(): boolean {
    return this.#index[HEAD] === Atomics.load(this.#index, TAIL);
  }

  /**
   * Consumer: copies the oldest record to `off` of `dst` and removes it; returns its length
   * (and sets `mark`), or -1 when the ring is empty.
   */
  pop(dst: Uint8Array, off: number): number {
    const tail = Atomics.load(this.#index, TAIL);
    let head = this.#index[HEAD];
    if (head === tail) return -1;
    let len = this.#view.getInt32(head, true);
    if (len === WRAP) {
      head = 0;
      len = this.#view.getInt32(0, true);
    }
    this.mark = this.#view.getUint32(head + 4, true);
    const start = head + RECORD_HEADER;
    if (len <= LOOP_COPY_MAX) {
      const data = this.#data;
      for (let i = 0; i < len; i++) dst[off + i] = data[start + i];
    } else {
      dst.set(this.#data.subarray(start, start + len), off);
    }
    head = start + ((len + 7) & ~7);
    if (head === this.#capacity) head = 0;
    Atomics.store(this.#index, HEAD, head);
    return len;
  }

  /** The mark of the record the last `pop` returned. */
  mark = 0;
}
