/**
 * Big-endian reads and writes on byte arrays. Reads past the end yield 0 bits
 * and writes past the end are dropped, so header accessors built on these
 * never throw on short input.
 */

/** Reads the 16-bit big-endian value at `at`. */
export function get16(b: Uint8Array, at: number): number {
  return (b[at] << 8) | b[at + 1];
}

/** Reads the 32-bit big-endian value at `at` as an unsigned number. */
export function get32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** Writes `v` as 16 bits big-endian at `at`. */
export function set16(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 8;
  b[at + 1] = v;
}

/** Writes `v` as 32 bits big-endian at `at`. */
export function set32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = v >>> 16;
  b[at + 2] = v >>> 8;
  b[at + 3] = v;
}
