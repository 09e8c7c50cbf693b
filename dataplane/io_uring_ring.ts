/**
 * The index arithmetic of an io_uring ring, kept apart from the memory it runs on so that it can
 * be tested without a kernel.
 *
 * The kernel's head and tail are free-running unsigned 32-bit counters: they only ever grow and
 * wrap at 2^32, and a slot is `counter & mask`. Entries in a ring are therefore `tail - head`
 * taken modulo 2^32, which stays right across the wrap as long as the ring never holds more than
 * its size.
 *
 * @module
 */

/** Entries between `head` and `tail` of a free-running 32-bit ring (tail − head, mod 2^32). */
export function ringUsed(head: number, tail: number): number {
  return (tail - head) >>> 0;
}

/** Entries that can still be queued in a ring of `entries` slots holding `tail − head`. */
export function ringFree(head: number, tail: number, entries: number): number {
  return entries - ringUsed(head, tail);
}

/** The counter after `n` more entries: `counter + n` wrapped to 32 bits. */
export function ringAdvance(counter: number, n: number): number {
  return (counter + n) >>> 0;
}

/** The slot a free-running `counter` names in a ring whose size is `mask + 1` (a power of two). */
export function ringSlot(counter: number, mask: number): number {
  return (counter & mask) >>> 0;
}
