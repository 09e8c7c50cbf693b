/**
 * FULLNAT's local address pool: picks the (local address, port) a new
 * connection leaves from. A pair is free when no live connection's reply
 * tuple (real:port → local:port) uses it — the connection table itself is the
 * record, so a port comes back only after its connection has expired, and the
 * allocator needs no memory per connection.
 */
import type { ConnTable } from "../conn/table.ts";

/** Lowest local port handed out; below are the well-known and registered-by-convention ports. */
export const LOCAL_PORT_MIN = 1024;
/** Ports tried per local address before moving to the next one. */
const PROBES_PER_ADDRESS = 512;

/**
 * Rotating allocation of local ports over a pool of local addresses. With several workers, worker
 * k of N hands out only ports ≡ k (mod N), so a reply's destination port names its owner (as
 * DPVS partitions ports per lcore).
 */
export class LocalPortAllocator {
  /** The lowest port of this allocator's share. */
  readonly #first: number;
  /** How many ports the share holds. */
  readonly #count: number;
  #cursor: number;
  #nextAddress = 0;
  /** Local address of the last successful `allocate`. */
  address = 0;
  /** Local port of the last successful `allocate`. */
  port = 0;

  /** An allocator of the ports p ≥ LOCAL_PORT_MIN with p mod `stride` = `residue`. */
  constructor(readonly stride = 1, readonly residue = 0) {
    if (!(stride >= 1 && residue >= 0 && residue < stride)) {
      throw new RangeError(`bad local port share ${residue} mod ${stride}`);
    }
    this.#first = LOCAL_PORT_MIN + ((residue - (LOCAL_PORT_MIN % stride)) + stride) % stride;
    this.#count = Math.floor((65535 - this.#first) / stride) + 1;
    this.#cursor = Math.floor(Math.random() * this.#count);
  }

  /**
   * Finds a free (local address, port) towards `real`:`realPort` for `proto`;
   * sets `address` and `port` and returns true, or false when the pool is exhausted
   * within its probe budget.
   */
  allocate(
    conns: ConnTable,
    proto: number,
    pool: Uint32Array,
    real: number,
    realPort: number,
  ): boolean {
    const addresses = pool.length;
    if (this.#nextAddress >= addresses) this.#nextAddress = 0;
    // Every address takes the same port before the cursor moves on, so each (address, port)
    // pair comes round only after addresses × ports connections: an address added to the pool
    // lengthens the time before a pair is reused, which the real's TIME_WAIT needs. (Moving the
    // cursor on every try would tie each address to a fixed fraction of the ports whenever the
    // pool's size divides their number.)
    for (let probe = addresses * PROBES_PER_ADDRESS; probe > 0; probe--) {
      const laddr = pool[this.#nextAddress];
      const lport = this.#first + this.#cursor * this.stride;
      if (++this.#nextAddress === addresses) {
        this.#nextAddress = 0;
        this.#cursor = this.#cursor + 1 === this.#count ? 0 : this.#cursor + 1;
      }
      if (conns.lookup(proto, real, realPort, laddr, lport) < 0) {
        this.address = laddr;
        this.port = lport;
        return true;
      }
    }
    return false;
  }
}
