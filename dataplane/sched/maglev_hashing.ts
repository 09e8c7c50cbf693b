import { mix32, mixKey, mixPair } from "./integer_hash.ts";
import { realKeys, remapPositions } from "./real_identity.ts";
import {
  available,
  NO_FLAGS,
  type RealSet,
  type Scheduler,
  type SchedulerFlags,
} from "./scheduler.ts";

/** Lookup table size by default: a prime, as Maglev needs, large enough for fine weights. */
export const MAGLEV_TABLE_SIZE = 65537;

// Seeds for the two permutation hashes (IPVS keys two hsiphash instances apart).
const OFFSET_SEED = 0x2545f491;
const SKIP_SEED = 0x6a09e667;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/**
 * IPVS `mh`, Maglev hashing: a lookup table of a prime number of slots, each
 * naming a real, is populated by letting the reals take turns claiming their
 * next preferred free slot, each walking its own permutation of the slots
 * (start and step hashed from the real's address and port). The client's
 * address (and port, with `mh-port`) picks a slot. Removing one of N reals moves
 * little more than its own clients, unlike sh's table.
 *
 * Weights: as IPVS, a real claims `weight / gcd` slots per turn, shifted right
 * until the largest fits in half the table size's bits; a real keeps its slots at
 * its last non-zero weight while drained (weight 0), so draining moves no other
 * client, and its own clients get nothing unless `mh-fallback` rehashes them onto
 * other slots until one names an available real.
 */
export class MaglevHashing implements Scheduler {
  readonly name = "mh";
  readonly #size: number;
  readonly #turnBits: number;
  readonly #lookup: Int32Array;
  readonly #port: boolean;
  readonly #fallback: boolean;
  /** Keys (address·port) of the reals at the last reset, by position. */
  #keys: Float64Array = new Float64Array(0);
  /** Each real's last non-zero weight (IPVS's `last_weight`), by position. */
  #lastWeight = new Int32Array(0);
  /** Slots held per real, by position. */
  #slots = new Int32Array(0);

  /** `flags` as sh's; `size` must be a prime (65537 unless told). */
  constructor(flags: SchedulerFlags = NO_FLAGS, size = MAGLEV_TABLE_SIZE) {
    if (!isPrime(size)) throw new RangeError(`Maglev table size must be a prime (got ${size})`);
    this.#size = size;
    // IPVS caps a real's turns at half the table size's bits (6 for its 4093 ≈ 2^12 slots).
    this.#turnBits = Math.round(Math.log2(size)) >> 1;
    this.#lookup = new Int32Array(size).fill(-1);
    this.#port = flags.port;
    this.#fallback = flags.fallback;
  }

  /** The real of the client's slot, or with fallback of the first rehashed slot that can take it. */
  pick(reals: RealSet, client: number, clientPort: number, _vip: number, _vport: number): number {
    const key = this.#port ? mixPair(client, clientPort) : mix32(client);
    const home = key % this.#size;
    const real = this.#lookup[home];
    if (real < 0 || real >= reals.count) return -1;
    if (available(reals, real)) return real;
    if (!this.#fallback || !this.#anyAvailableSlot(reals)) return -1;
    // As IPVS: rehash the client with growing offsets until a slot's real can take it.
    for (let step = 0; step < this.#size; step++) {
      const r = this.#lookup[mix32((key + home + step) | 0) % this.#size];
      if (r < reals.count && available(reals, r)) return r;
    }
    return -1;
  }

  /** Whether some available real holds a slot, so fallback's rehashing ends soon. */
  #anyAvailableSlot(reals: RealSet): boolean {
    const n = Math.min(reals.count, this.#slots.length);
    for (let i = 0; i < n; i++) if (this.#slots[i] > 0 && available(reals, i)) return true;
    return false;
  }

  /** Repopulates the lookup table for the current reals and weights. */
  reset(reals: RealSet): void {
    const n = reals.count;
    const keys = realKeys(reals);
    const previous = remapPositions(this.#keys, keys);
    const lastWeight = new Int32Array(n);
    for (let i = 0; i < n; i++) lastWeight[i] = reals.weight[i] > 0 ? reals.weight[i] : 0;
    // A drained real keeps its last non-zero weight, as IPVS's `last_weight`.
    previous.forEach((now, before) => {
      if (now >= 0 && reals.weight[now] === 0) lastWeight[now] = this.#lastWeight[before];
    });
    this.#keys = keys;
    this.#lastWeight = lastWeight;
    this.#slots = new Int32Array(n);
    this.#populate(keys, this.#turns(lastWeight));
  }

  /** Slots each real claims per turn: weight / gcd, shifted down if the largest is too big. */
  #turns(lastWeight: Int32Array): Int32Array {
    let g = 0;
    let max = 0;
    for (const w of lastWeight) {
      if (w <= 0) continue;
      g = g > 0 ? gcd(w, g) : w;
      if (w > max) max = w;
    }
    const turns = new Int32Array(lastWeight.length);
    if (g === 0) return turns;
    const bits = 32 - Math.clz32(max / g);
    const shift = Math.max(0, bits - this.#turnBits);
    lastWeight.forEach((w, i) => {
      // A real whose weight shifts to nothing still gets a turn, as IPVS's `?: (lw != 0)`.
      turns[i] = w > 0 ? Math.max(1, (w / g) >> shift) : 0;
    });
    return turns;
  }

  /** Maglev population: reals take turns claiming the next free slot of their permutation. */
  #populate(keys: Float64Array, turns: Int32Array): void {
    const size = this.#size;
    const lookup = this.#lookup;
    const n = keys.length;
    let takers = 0;
    for (let i = 0; i < n; i++) if (turns[i] > 0) takers++;
    lookup.fill(-1);
    if (takers === 0) return;
    const next = new Int32Array(n);
    const skip = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = mixKey(keys[i], OFFSET_SEED) % size;
      skip[i] = (mixKey(keys[i], SKIP_SEED) % (size - 1)) + 1;
    }
    const taken = new Uint8Array(size);
    let filled = 0;
    while (filled < size) {
      for (let i = 0; i < n && filled < size; i++) {
        for (let t = 0; t < turns[i] && filled < size; t++) {
          // A prime size makes every skip coprime to it: the walk visits every slot.
          let slot = next[i];
          while (taken[slot] === 1) {
            slot += skip[i];
            if (slot >= size) slot -= size;
          }
          next[i] = slot;
          taken[slot] = 1;
          lookup[slot] = i;
          this.#slots[i]++;
          filled++;
        }
      }
    }
  }

  /** The lookup table, by slot: a real's position or -1 (read-only view, for inspection). */
  get lookup(): Int32Array {
    return this.#lookup;
  }

  /** Slots per table. */
  get size(): number {
    return this.#size;
  }
}
