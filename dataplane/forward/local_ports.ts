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
const LOCAL_PORT_COUNT = 65536 - LOCAL_PORT_MIN;
/** Ports tried per local address before moving to the next one. */
const PROBES_PER_ADDRESS = 512;

/** Rotating allocation of local ports over a pool of local addresses. */
export class LocalPortAllocator {
  #cursor = Math.floor(Math.random() * LOCAL_PORT_COUNT);
  #nextAddress = 0;
  /** Local address of the last successful `allocate`. */
  address = 0;
  /** Local port of the last successful `allocate`. */
  port = 0;

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
    for (let a = 0; a < pool.length; a++) {
      const laddr = pool[(this.#nextAddress + a) % pool.length];
      for (let probe = 0; probe < PROBES_PER_ADDRESS; probe++) {
        const lport = LOCAL_PORT_MIN + this.#cursor;
        this.#cursor = this.#cursor + 1 === LOCAL_PORT_COUNT ? 0 : this.#cursor + 1;
        if (conns.lookup(proto, real, realPort, laddr, lport) < 0) {
          this.#nextAddress = (this.#nextAddress + a + 1) % pool.length;
          this.address = laddr;
          this.port = lport;
          return true;
        }
      }
    }
    return false;
  }
}
