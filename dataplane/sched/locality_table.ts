/**
 * The destination-address cache of IPVS's `lblc` and `lblcr`: entries keyed by
 * destination address, in typed arrays, with IPVS's garbage collection run
 * lazily from the scheduler's clock instead of a kernel timer.
 *
 * @module
 */

import { mix32 } from "./integer_hash.ts";

/** How often the table looks for stale entries, ms (IPVS's CHECK_EXPIRE_INTERVAL). */
export const CHECK_INTERVAL_MS = 60_000;
/** How often every entry unused for `expiration` is dropped, ms (IPVS: every 30th check). */
export const FULL_CHECK_INTERVAL_MS = 30 * CHECK_INTERVAL_MS;
/** Idle time after which an entry may be trimmed while the table is too big, ms (ENTRY_TIMEOUT). */
export const ENTRY_TIMEOUT_MS = 6 * 60_000;
/** Entries above which idle ones are trimmed (IPVS: its 1024 buckets × 16). */
export const DEFAULT_MAX_ENTRIES = 1024 * 16;
/** How long an unused entry lives, ms (IPVS's lblc_expiration and lblcr_expiration sysctls). */
export const DEFAULT_EXPIRATION_MS = 24 * 60 * 60_000;

/** Tuning of a locality scheduler; every field has IPVS's default. */
export interface LocalityOptions {
  /** Monotonic clock in ms, read once per pick. */
  now?: () => number;
  /** Entries above which idle ones are trimmed; the table holds at most twice as many. */
  maxEntries?: number;
  /** Ms an unused entry lives (lblcr: also how long a set keeps an extra member). */
  expiration?: number;
}

/**
 * Destination address → entry id, open addressing over an index of entry ids.
 * Entry ids stay put while the entry lives, so schedulers keep their payload
 * (a real, a set of reals) in their own arrays indexed by entry id.
 */
export class LocalityTable {
  /** Entries the table can hold at all: twice `maxEntries`, since IPVS's limit is soft. */
  readonly capacity: number;
  /** Entries above which idle ones are trimmed. */
  readonly maxEntries: number;
  /** Ms an unused entry lives. */
  readonly expiration: number;
  /** Destination address per entry id. */
  readonly address: Uint32Array;
  /** Clock value of the entry's last use, per entry id. */
  readonly lastUse: Float64Array;
  readonly #live: Uint8Array;
  readonly #free: Int32Array;
  #freeCount: number;
  readonly #index: Int32Array;
  readonly #mask: number;
  #size = 0;
  #nextCheck = NaN;
  #nextFull = NaN;
  #rover = 0;

  /** An empty table with IPVS's limits unless told otherwise. */
  constructor(maxEntries = DEFAULT_MAX_ENTRIES, expiration = DEFAULT_EXPIRATION_MS) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`maxEntries must be a positive integer (got ${maxEntries})`);
    }
    this.maxEntries = maxEntries;
    this.expiration = expiration;
    this.capacity = maxEntries * 2;
    this.address = new Uint32Array(this.capacity);
    this.lastUse = new Float64Array(this.capacity);
    this.#live = new Uint8Array(this.capacity);
    this.#free = new Int32Array(this.capacity);
    this.#freeCount = 0;
    // At most half full, so probe runs stay short.
    let slots = 2;
    while (slots < this.capacity * 2) slots *= 2;
    this.#index = new Int32Array(slots).fill(-1);
    this.#mask = slots - 1;
    this.clear();
  }

  /** Live entries. */
  get size(): number {
    return this.#size;
  }

  /** Whether entry id `entry` holds a destination. */
  isLive(entry: number): boolean {
    return this.#live[entry] === 1;
  }

  /** The entry of destination `addr`, or -1. */
  find(addr: number): number {
    const key = addr >>> 0;
    for (let s = mix32(key) & this.#mask;; s = (s + 1) & this.#mask) {
      const e = this.#index[s];
      if (e < 0) return -1;
      if (this.address[e] === key) return e;
    }
  }

  /** Adds destination `addr` (not present yet); its entry id, or -1 when the table is full. */
  add(addr: number, now: number): number {
    if (this.#freeCount === 0) return -1;
    const e = this.#free[--this.#freeCount];
    this.address[e] = addr >>> 0;
    this.lastUse[e] = now;
    this.#live[e] = 1;
    this.#size++;
    this.#insert(e);
    return e;
  }

  /** Drops every entry. */
  clear(): void {
    this.#live.fill(0);
    this.#index.fill(-1);
    this.#size = 0;
    // Lowest ids come out first, which keeps tests readable.
    for (let i = 0; i < this.capacity; i++) this.#free[i] = this.capacity - 1 - i;
    this.#freeCount = this.capacity;
  }

  /**
   * IPVS's periodic check, run from the clock of a pick: every minute, if the
   * table holds more than `maxEntries`, drop entries idle for 6 minutes (a third
   * more than the excess, at most half of `maxEntries`); every half hour drop
   * every entry unused for `expiration`. A no-op between checks.
   */
  collect(now: number): void {
    if (now < this.#nextCheck) return;
    if (Number.isNaN(this.#nextCheck)) {
      this.#nextCheck = now + CHECK_INTERVAL_MS;
      this.#nextFull = now + FULL_CHECK_INTERVAL_MS;
      return;
    }
    this.#nextCheck = now + CHECK_INTERVAL_MS;
    if (now >= this.#nextFull) {
      this.#nextFull = now + FULL_CHECK_INTERVAL_MS;
      this.#dropIdle(now, this.expiration, this.capacity);
    } else if (this.#size > this.maxEntries) {
      const goal = Math.min(
        Math.floor((this.#size - this.maxEntries) * 4 / 3),
        this.maxEntries >> 1,
      );
      this.#dropIdle(now, ENTRY_TIMEOUT_MS, goal);
    }
  }

  /** Drops up to `goal` entries idle for `idle` ms, resuming where the last sweep stopped. */
  #dropIdle(now: number, idle: number, goal: number): void {
    let dropped = 0;
    let e = this.#rover;
    for (let seen = 0; seen < this.capacity && dropped < goal; seen++) {
      e = e + 1 === this.capacity ? 0 : e + 1;
      if (this.#live[e] === 1 && now - this.lastUse[e] >= idle) {
        this.#live[e] = 0;
        this.#free[this.#freeCount++] = e;
        this.#size--;
        dropped++;
      }
    }
    this.#rover = e;
    if (dropped === 0) return;
    // Linear probing cannot simply blank a slot; rebuilding is O(table) once a minute at most.
    this.#index.fill(-1);
    for (let i = 0; i < this.capacity; i++) if (this.#live[i] === 1) this.#insert(i);
  }

  #insert(e: number): void {
    let s = mix32(this.address[e]) & this.#mask;
    while (this.#index[s] >= 0) s = (s + 1) & this.#mask;
    this.#index[s] = e;
  }
}
