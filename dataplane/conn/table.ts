/**
 * The connection table: struct-of-arrays storage for up to `capacity`
 * connections, two hash entries per connection (one per direction, chained
 * through typed arrays), and a timer wheel for expiry.
 *
 * A connection records the tuple it arrived with (`in*`: client → virtual
 * service) and the tuple it leaves with after translation (`out*`: e.g.
 * client → real for NAT). Direction 0 is looked up by the `in` tuple as seen on
 * the wire; direction 1 (replies) by the `out` tuple reversed.
 */

/** Index of the direction a packet travels in, as returned by `lookup` (entry & 1). */
export const Dir = { ORIGINAL: 0, REPLY: 1 } as const;

/** Sentinel for "no entry" in chains, wheels and free lists. */
const NIL = -1;

/** Milliseconds per timer-wheel tick. */
const TICK_MS = 250;
/** Timer-wheel slots; a timeout longer than the span is carried over when its slot comes round. */
const WHEEL_SLOTS = 1024;

/** Connection entry flags. */
export const ConnFlag = {
  /** Replies do not come back through us (tunnel, DR): no reply-direction hash entry. */
  NO_REPLY: 1,
  /** The connection is counted as active (ESTABLISHED) for its real. */
  ACTIVE: 2,
  /** Not findable by the client's tuple: templates, and one-packet entries waiting for a reply. */
  NO_ORIGINAL: 4,
  /** A persistence template (IPVS's IP_VS_CONN_F_TEMPLATE), listed but never matched by packets. */
  TEMPLATE: 8,
  /** One-packet scheduling (-o): the entry lives only until the reply to its one datagram. */
  ONE_PACKET: 16,
  /** A template whose timer fired while it still controlled connections: its timeout is now 60 s. */
  TEMPLATE_REARMED: 32,
  /**
   * TOA: the real's SYN-ACK has passed and nothing else from it yet, so its socket may still be
   * created by the client's next segment, which must carry the client's address.
   */
  TOA_PENDING: 64,
  /**
   * A SYN proxy opened the connection (synproxy/synproxy.ts): its handshakes are the proxy's,
   * and its segments' sequence numbers are translated.
   */
  SYNPROXY: 128,
} as const;

/** Called for each expiring connection; returns false to keep it (and reschedules it itself). */
export type ExpireHandler = (id: number) => boolean;

/** Fixed-capacity connection table with allocation-free lookup, insert, delete and expiry. */
export class ConnTable {
  readonly protocol: Uint8Array;
  readonly state: Uint8Array;
  readonly flags: Uint8Array;
  readonly service: Uint16Array;
  readonly real: Uint16Array;
  readonly inSrc: Uint32Array;
  readonly inDst: Uint32Array;
  readonly outSrc: Uint32Array;
  readonly outDst: Uint32Array;
  readonly inSrcPort: Uint16Array;
  readonly inDstPort: Uint16Array;
  readonly outSrcPort: Uint16Array;
  readonly outDstPort: Uint16Array;
  /** Absolute expiry time in ms (the engine's clock). */
  readonly expires: Float64Array;
  /** 1 while the entry holds a linked connection: listings walk ids in order by it. */
  readonly live: Uint8Array;
  /** For a connection under persistence: its template's id + 1 (0: none), IPVS's `cp->control`. */
  readonly control: Int32Array;
  /** For a template: how many connections it controls, IPVS's `n_control`. */
  readonly controlled: Int32Array;

  readonly #buckets: Int32Array;
  readonly #chain: Int32Array;
  readonly #mask: number;
  readonly #seed: number;
  readonly #wheelHead: Int32Array;
  readonly #wheelNext: Int32Array;
  readonly #wheelPrev: Int32Array;
  readonly #wheelSlot: Int32Array;
  readonly #free: Int32Array;
  #freeTop: number;
  /** One past the highest id ever allocated: no live entry lies at or beyond it. */
  #highWater = 0;
  #size = 0;
  #wheelTick = -1;

  /** Allocates every array for `capacity` connections up front (pages stay untouched until used). */
  constructor(readonly capacity: number, seed = (Math.random() * 0x7fffffff) | 0) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 0x4000000) {
      throw new RangeError(`connection table capacity must be 1..67108864, got ${capacity}`);
    }
    this.protocol = new Uint8Array(capacity);
    this.state = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.service = new Uint16Array(capacity);
    this.real = new Uint16Array(capacity);
    this.inSrc = new Uint32Array(capacity);
    this.inDst = new Uint32Array(capacity);
    this.outSrc = new Uint32Array(capacity);
    this.outDst = new Uint32Array(capacity);
    this.inSrcPort = new Uint16Array(capacity);
    this.inDstPort = new Uint16Array(capacity);
    this.outSrcPort = new Uint16Array(capacity);
    this.outDstPort = new Uint16Array(capacity);
    this.expires = new Float64Array(capacity);
    this.live = new Uint8Array(capacity);
    this.control = new Int32Array(capacity);
    this.controlled = new Int32Array(capacity);
    let buckets = 1;
    while (buckets < capacity * 2) buckets <<= 1;
    this.#buckets = new Int32Array(buckets).fill(NIL);
    this.#mask = buckets - 1;
    this.#chain = new Int32Array(capacity * 2).fill(NIL);
    this.#seed = seed;
    this.#wheelHead = new Int32Array(WHEEL_SLOTS).fill(NIL);
    this.#wheelNext = new Int32Array(capacity).fill(NIL);
    this.#wheelPrev = new Int32Array(capacity).fill(NIL);
    this.#wheelSlot = new Int32Array(capacity).fill(NIL);
    this.#free = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.#free[i] = capacity - 1 - i;
    this.#freeTop = capacity;
  }

  /** Number of live connections. */
  get size(): number {
    return this.#size;
  }

  /**
   * Finds the entry for a packet's tuple: `(id << 1) | direction`, or -1.
   */
  lookup(proto: number, src: number, sport: number, dst: number, dport: number): number {
    let e = this.#buckets[this.#hash(proto, src, sport, dst, dport)];
    while (e !== NIL) {
      const id = e >> 1;
      if (this.protocol[id] === proto) {
        if ((e & 1) === 0) {
          if (
            this.inSrc[id] === src && this.inDst[id] === dst &&
            this.inSrcPort[id] === sport && this.inDstPort[id] === dport
          ) return e;
        } else if (
          this.outDst[id] === src && this.outSrc[id] === dst &&
          this.outDstPort[id] === sport && this.outSrcPort[id] === dport
        ) return e;
      }
      e = this.#chain[e];
    }
    return NIL;
  }

  /**
   * Takes a free entry for a new connection; the caller fills in the tuple
   * fields and then calls `link`. Returns -1 when the table is full.
   */
  allocate(): number {
    if (this.#freeTop === 0) return NIL;
    const id = this.#free[--this.#freeTop];
    if (id >= this.#highWater) this.#highWater = id + 1;
    this.flags[id] = 0;
    this.state[id] = 0;
    return id;
  }

  /**
   * One past the highest id ever handed out: ids are taken lowest first and reused first, so a
   * listing stops here rather than scanning a mostly empty table to its capacity.
   */
  get highWater(): number {
    return this.#highWater;
  }

  /** Returns an entry taken with `allocate` that was never linked. */
  release(id: number): void {
    this.#free[this.#freeTop++] = id;
  }

  /**
   * Makes connection `id` findable in both directions (not by the client's tuple with
   * NO_ORIGINAL, not by the reply's with NO_REPLY) and schedules its expiry.
   */
  link(id: number, expires: number, now: number): void {
    if ((this.flags[id] & ConnFlag.NO_ORIGINAL) === 0) {
      this.#insert(
        id << 1,
        this.#hash(
          this.protocol[id],
          this.inSrc[id],
          this.inSrcPort[id],
          this.inDst[id],
          this.inDstPort[id],
        ),
      );
    }
    if ((this.flags[id] & ConnFlag.NO_REPLY) === 0) {
      this.#insert(
        (id << 1) | 1,
        this.#hash(
          this.protocol[id],
          this.outDst[id],
          this.outDstPort[id],
          this.outSrc[id],
          this.outSrcPort[id],
        ),
      );
    }
    this.#size++;
    this.live[id] = 1;
    this.expires[id] = expires;
    this.#schedule(id, now);
  }

  /** Removes connection `id` from the hash and the wheel and frees its entry. */
  remove(id: number): void {
    if ((this.flags[id] & ConnFlag.NO_ORIGINAL) === 0) {
      this.#unhash(
        id << 1,
        this.#hash(
          this.protocol[id],
          this.inSrc[id],
          this.inSrcPort[id],
          this.inDst[id],
          this.inDstPort[id],
        ),
      );
    }
    if ((this.flags[id] & ConnFlag.NO_REPLY) === 0) {
      this.#unhash(
        (id << 1) | 1,
        this.#hash(
          this.protocol[id],
          this.outDst[id],
          this.outDstPort[id],
          this.outSrc[id],
          this.outSrcPort[id],
        ),
      );
    }
    this.#unschedule(id);
    this.live[id] = 0;
    this.#size--;
    this.#free[this.#freeTop++] = id;
  }

  /**
   * Expires every connection whose time has come, visiting only the wheel
   * slots between the last call and `now`. Connections touched since they were
   * scheduled are moved to the slot of their new expiry instead.
   */
  expire(now: number, onExpire: ExpireHandler): number {
    const tick = Math.floor(now / TICK_MS);
    if (this.#wheelTick < 0) this.#wheelTick = tick;
    let expired = 0;
    // After a long stall, one lap covers every slot once.
    const last = Math.min(tick, this.#wheelTick + WHEEL_SLOTS - 1);
    for (let t = this.#wheelTick; t <= last; t++) {
      const slot = t & (WHEEL_SLOTS - 1);
      let id = this.#wheelHead[slot];
      this.#wheelHead[slot] = NIL;
      while (id !== NIL) {
        const next = this.#wheelNext[id];
        this.#wheelSlot[id] = NIL;
        this.#wheelNext[id] = NIL;
        this.#wheelPrev[id] = NIL;
        if (this.expires[id] <= now) {
          if (onExpire(id)) {
            this.remove(id);
            expired++;
          } else if (this.#wheelSlot[id] === NIL) {
            this.#schedule(id, now);
          }
        } else {
          this.#schedule(id, now);
        }
        id = next;
      }
    }
    // After a full lap every connection left was re-filed relative to `now`: the wheel catches up.
    this.#wheelTick = tick + 1;
    return expired;
  }

  /** Re-files connection `id` under its current `expires` (after the caller moved it earlier). */
  reschedule(id: number, now: number): void {
    this.#unschedule(id);
    this.#schedule(id, now);
  }

  /** Calls `visit` for each live connection (control-rate: it walks the whole table). */
  forEach(visit: (id: number) => void): void {
    for (let id = 0; id < this.capacity; id++) if (this.live[id] === 1) visit(id);
  }

  #hash(proto: number, src: number, sport: number, dst: number, dport: number): number {
    let h = this.#seed ^ proto;
    h = Math.imul(h ^ src, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ dst, 0x85ebca77);
    h = Math.imul(h ^ (h >>> 13) ^ ((sport << 16) | dport), 0xc2b2ae3d);
    h ^= h >>> 16;
    return h & this.#mask;
  }

  #insert(entry: number, bucket: number): void {
    this.#chain[entry] = this.#buckets[bucket];
    this.#buckets[bucket] = entry;
  }

  #unhash(entry: number, bucket: number): void {
    let e = this.#buckets[bucket];
    if (e === entry) {
      this.#buckets[bucket] = this.#chain[entry];
    } else {
      while (e !== NIL) {
        const next = this.#chain[e];
        if (next === entry) {
          this.#chain[e] = this.#chain[entry];
          break;
        }
        e = next;
      }
    }
    this.#chain[entry] = NIL;
  }

  #schedule(id: number, now: number): void {
    const nowTick = Math.floor(now / TICK_MS);
    // The wheel starts where the first connection is filed: an expire() that comes later must
    // still visit that connection's slot.
    if (this.#wheelTick < 0) this.#wheelTick = nowTick;
    // The earliest tick whose slot is still to be visited: expire() may be sweeping nowTick's.
    const first = Math.max(nowTick + 1, this.#wheelTick);
    let tick = Math.ceil(this.expires[id] / TICK_MS);
    if (tick < first) tick = first;
    if (tick - first >= WHEEL_SLOTS) tick = first + WHEEL_SLOTS - 1;
    const slot = tick & (WHEEL_SLOTS - 1);
    const head = this.#wheelHead[slot];
    this.#wheelNext[id] = head;
    this.#wheelPrev[id] = NIL;
    if (head !== NIL) this.#wheelPrev[head] = id;
    this.#wheelHead[slot] = id;
    this.#wheelSlot[id] = slot;
  }

  #unschedule(id: number): void {
    const slot = this.#wheelSlot[id];
    if (slot === NIL) return;
    const prev = this.#wheelPrev[id];
    const next = this.#wheelNext[id];
    if (prev === NIL) this.#wheelHead[slot] = next;
    else this.#wheelNext[prev] = next;
    if (next !== NIL) this.#wheelPrev[next] = prev;
    this.#wheelSlot[id] = NIL;
    this.#wheelNext[id] = NIL;
    this.#wheelPrev[id] = NIL;
  }
}
