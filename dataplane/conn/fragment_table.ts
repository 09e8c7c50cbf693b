/**
 * The fragment table: what the first fragment of a translated datagram was rewritten to, keyed
 * by the datagram's (source, destination, IP id, protocol) as it arrived, so that its later
 * fragments, which carry no ports, get the same addresses.
 *
 * Fixed size and set-associative: a key hashes to a set of `WAYS` slots; a new entry takes a
 * free or timed-out slot of its set, or else the one closest to timing out. An entry ends when
 * its datagram has been seen whole (every byte up to the end the last fragment names), or when
 * it times out (as the kernel gives up reassembling after `ipfrag_time`, 30 s by default).
 */

/** How long an entry lives after its first fragment, in ms (Linux's default ipfrag_time). */
export const FRAGMENT_TIMEOUT_MS = 30_000;

/** Slots of one set, searched in a row. */
const WAYS = 4;

/** Fixed-capacity map from a datagram's identity to the rewrite its first fragment got. */
export class FragmentTable {
  /** Slots in all; a power of two. */
  readonly capacity: number;
  /** Source address the later fragments get. */
  readonly newSrc: Uint32Array;
  /** Destination address the later fragments get. */
  readonly newDst: Uint32Array;
  /** Index of the service the datagram's connection belongs to. */
  readonly service: Uint16Array;
  /** Index of the real within that service. */
  readonly real: Uint16Array;
  /** 1 when the datagram travels in the reply direction (real → client). */
  readonly reply: Uint8Array;
  /** Entries that had to make room for another before their datagram ended. */
  evictions = 0;

  readonly #src: Uint32Array;
  readonly #dst: Uint32Array;
  /** IP id << 8 | protocol. */
  readonly #idProto: Uint32Array;
  /** Absolute time the entry times out; 0 for a free slot. */
  readonly #expires: Float64Array;
  /** Payload bytes seen so far, the first fragment's included. */
  readonly #seen: Uint32Array;
  /** Payload bytes of the whole datagram once its last fragment was seen; 0 until then. */
  readonly #end: Uint32Array;
  readonly #setMask: number;
  readonly #timeoutMs: number;

  /** Allocates room for about `capacity` datagrams in flight (rounded up to a power of two). */
  constructor(capacity = 4096, timeoutMs = FRAGMENT_TIMEOUT_MS) {
    if (!Number.isInteger(capacity) || capacity < WAYS || capacity > 1 << 24) {
      throw new RangeError(`fragment table capacity must be ${WAYS}..16777216, got ${capacity}`);
    }
    if (!(timeoutMs > 0)) throw new RangeError(`fragment timeout must be > 0, got ${timeoutMs}`);
    let n = WAYS;
    while (n < capacity) n <<= 1;
    this.capacity = n;
    this.#setMask = n / WAYS - 1;
    this.#timeoutMs = timeoutMs;
    this.newSrc = new Uint32Array(n);
    this.newDst = new Uint32Array(n);
    this.service = new Uint16Array(n);
    this.real = new Uint16Array(n);
    this.reply = new Uint8Array(n);
    this.#src = new Uint32Array(n);
    this.#dst = new Uint32Array(n);
    this.#idProto = new Uint32Array(n);
    this.#expires = new Float64Array(n);
    this.#seen = new Uint32Array(n);
    this.#end = new Uint32Array(n);
  }

  /**
   * Records the first fragment (`bytes` of payload) of datagram (`proto`, `src`, `dst`, `id`),
   * rewritten to `newSrc` → `newDst` for connection (`service`, `real`). A first fragment seen
   * again replaces its entry. Returns the slot.
   */
  record(
    proto: number,
    src: number,
    dst: number,
    id: number,
    now: number,
    newSrc: number,
    newDst: number,
    service: number,
    real: number,
    reply: boolean,
    bytes: number,
  ): number {
    const key = ((id & 0xffff) << 8 | (proto & 0xff)) >>> 0;
    const base = this.#set(src, dst, key);
    let slot = -1;
    let free = -1;
    let oldest = base;
    for (let i = base; i < base + WAYS; i++) {
      // The same datagram's entry first: a second live entry for one key could resurface later.
      if (this.#matches(i, src, dst, key)) slot = i;
      if (free < 0 && this.#expires[i] <= now) free = i;
      if (this.#expires[i] < this.#expires[oldest]) oldest = i;
    }
    if (slot < 0) slot = free;
    if (slot < 0) {
      slot = oldest;
      this.evictions++;
    }
    this.#src[slot] = src;
    this.#dst[slot] = dst;
    this.#idProto[slot] = key;
    this.#expires[slot] = now + this.#timeoutMs;
    this.newSrc[slot] = newSrc;
    this.newDst[slot] = newDst;
    this.service[slot] = service;
    this.real[slot] = real;
    this.reply[slot] = reply ? 1 : 0;
    this.#seen[slot] = bytes;
    this.#end[slot] = 0;
    return slot;
  }

  /** The slot of a live entry for datagram (`proto`, `src`, `dst`, `id`), or -1. */
  find(proto: number, src: number, dst: number, id: number, now: number): number {
    const key = ((id & 0xffff) << 8 | (proto & 0xff)) >>> 0;
    const base = this.#set(src, dst, key);
    for (let i = base; i < base + WAYS; i++) {
      if (this.#expires[i] > now && this.#matches(i, src, dst, key)) return i;
    }
    return -1;
  }

  /**
   * Counts a later fragment of `bytes` payload bytes at byte `offset` of its datagram, `last`
   * when it has more-fragments clear. Frees the entry once every byte up to the end has been
   * seen, and returns whether it did.
   */
  account(slot: number, offset: number, bytes: number, last: boolean): boolean {
    this.#seen[slot] += bytes;
    if (last) this.#end[slot] = offset + bytes;
    const end = this.#end[slot];
    if (end === 0 || this.#seen[slot] < end) return false;
    this.#expires[slot] = 0;
    return true;
  }

  /** Live entries at `now` (control rate: walks every slot). */
  size(now: number): number {
    let n = 0;
    for (let i = 0; i < this.capacity; i++) if (this.#expires[i] > now) n++;
    return n;
  }

  #matches(slot: number, src: number, dst: number, key: number): boolean {
    return this.#idProto[slot] === key && this.#src[slot] === src && this.#dst[slot] === dst;
  }

  #set(src: number, dst: number, key: number): number {
    let h = Math.imul(src ^ 0x2545f491, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ dst, 0x85ebca77);
    h = Math.imul(h ^ (h >>> 13) ^ key, 0xc2b2ae3d);
    h ^= h >>> 16;
    return (h & this.#setMask) * WAYS;
  }
}
