/**
 * SYN cookies: the initial sequence number the appliance answers a client's SYN with encodes
 * everything needed to open the connection later, so that nothing is stored for a SYN.
 *
 * A cookie is `MAC[31:4] | generation parity (bit 3) | MSS index (bits 2-0)`, the MAC being
 * SipHash-2-4 under the generation's key over the client's address and port, the VIP and port,
 * the client's initial sequence number, the generation and the MSS index. A generation is a time
 * slice of `key_rotation` seconds with its own random key; cookies of the current and the
 * previous generation are accepted, so a cookie lives between one and two slices. A cookie from
 * an older slice meets a key that has been replaced since and fails like a forged one.
 *
 * The client's other SYN options do not fit in the 32-bit sequence number. As Linux
 * (cookie_init_timestamp), they ride in the low 6 bits of the timestamp value the SYN-ACK
 * carries, which the client echoes in every segment: window scale (4 bits, 15 = none), SACK
 * permitted, ECN. A client without timestamps keeps its MSS only; the SYN-ACK then offers
 * neither window scaling nor SACK, which the connection does without.
 *
 * @module
 */
import { sipHash24 } from "./siphash.ts";

/**
 * MSS values a cookie can carry (3 bits), ascending: the client's MSS is rounded down to one of
 * them. Linux's table has 536, 1300, 1440 and 1460; the extra steps keep common tunnel and PPPoE
 * paths (1360-1452) from falling far.
 */
export const COOKIE_MSS_TABLE: readonly number[] = [536, 1200, 1300, 1360, 1400, 1440, 1452, 1460];

const MSS_BITS = 0x7;
const PARITY_BIT = 0x8;
const MAC_MASK = 0xfffffff0;

/** What `check` returns for a cookie that is not one of ours (forged, or too old). */
export const COOKIE_INVALID = -1;

/** The index in COOKIE_MSS_TABLE of the largest value not above `mss` (0 below the first). */
export function cookieMssIndex(mss: number): number {
  let i = COOKIE_MSS_TABLE.length - 1;
  while (i > 0 && COOKIE_MSS_TABLE[i] > mss) i--;
  return i;
}

/** Fills `key` with random words: the only source of the cookies' secrecy. */
export type KeySource = (key: Uint32Array) => void;

/** Keys from the system's CSPRNG. */
export const RANDOM_KEYS: KeySource = (key) => {
  crypto.getRandomValues(key);
};

/** Makes and checks SYN cookies with keys that rotate every period. */
export class SynCookies {
  /** Two keys of four words: the key of generation g is the one at parity g & 1. */
  readonly #keys = new Uint32Array(8);
  readonly #key0 = this.#keys.subarray(0, 4);
  readonly #key1 = this.#keys.subarray(4, 8);
  readonly #msg = new Uint32Array(6);
  readonly #out = new Uint32Array(2);
  #periodMs: number;
  #generation: number;

  /**
   * Starts with fresh keys for the generation of `now` (ms), slices of `periodSeconds`;
   * `keys` fills a key (tests pass a deterministic source).
   */
  constructor(periodSeconds: number, now: number, readonly keys: KeySource = RANDOM_KEYS) {
    this.#periodMs = checkedPeriod(periodSeconds);
    this.#generation = Math.floor(now / this.#periodMs);
    this.keys(this.#key0);
    this.keys(this.#key1);
  }

  /** The current generation (time slice number). */
  get generation(): number {
    return this.#generation;
  }

  /** The key rotation period in seconds. */
  get periodSeconds(): number {
    return this.#periodMs / 1000;
  }

  /**
   * Moves to the generation of `now`: its key is drawn anew, replacing the one of two
   * generations ago. After a jump of two or more, both keys are new. Call from the tick.
   */
  rotate(now: number): void {
    const g = Math.floor(now / this.#periodMs);
    if (g <= this.#generation) return;
    if (g === this.#generation + 1) {
      this.keys((g & 1) === 0 ? this.#key0 : this.#key1);
    } else {
      this.keys(this.#key0);
      this.keys(this.#key1);
    }
    this.#generation = g;
  }

  /**
   * Takes a new rotation period; the generations are counted anew, so outstanding cookies
   * become invalid (a reload that changes `key_rotation` costs at most a client's handshake).
   */
  setPeriod(periodSeconds: number, now: number): void {
    const ms = checkedPeriod(periodSeconds);
    if (ms === this.#periodMs) return;
    this.#periodMs = ms;
    this.#generation = Math.floor(now / ms);
    this.keys(this.#key0);
    this.keys(this.#key1);
  }

  /** The cookie for a client's SYN (`src`:`sport` → `dst`:`dport`, sequence `isn`). */
  make(
    src: number,
    dst: number,
    sport: number,
    dport: number,
    isn: number,
    mssIndex: number,
  ): number {
    const g = this.#generation;
    const mac = this.#mac(g, src, dst, sport, dport, isn, mssIndex & MSS_BITS);
    return ((mac & MAC_MASK) | ((g & 1) << 3) | (mssIndex & MSS_BITS)) >>> 0;
  }

  /**
   * Checks `cookie`, the acknowledgment number of a client's ACK minus one, against its tuple
   * and `isn` (its sequence number minus one). Returns the MSS index it carries, or
   * COOKIE_INVALID.
   */
  check(
    src: number,
    dst: number,
    sport: number,
    dport: number,
    isn: number,
    cookie: number,
  ): number {
    const mssIndex = cookie & MSS_BITS;
    const parity = (cookie & PARITY_BIT) >>> 3;
    const g = (this.#generation & 1) === parity ? this.#generation : this.#generation - 1;
    const mac = this.#mac(g, src, dst, sport, dport, isn, mssIndex);
    return ((mac ^ cookie) & MAC_MASK) === 0 ? mssIndex : COOKIE_INVALID;
  }

  #mac(
    g: number,
    src: number,
    dst: number,
    sport: number,
    dport: number,
    isn: number,
    mssIndex: number,
  ): number {
    const m = this.#msg;
    m[0] = src;
    m[1] = dst;
    m[2] = (sport << 16) | dport;
    m[3] = isn;
    m[4] = g;
    m[5] = mssIndex;
    return sipHash24((g & 1) === 0 ? this.#key0 : this.#key1, m, 6, this.#out);
  }
}

/** `seconds` as a rotation period in ms; throws RangeError unless 1..86400 whole seconds. */
export function checkedPeriod(seconds: number): number {
  if (!(Number.isInteger(seconds) && seconds >= 1 && seconds <= 86400)) {
    throw new RangeError(`synproxy key rotation must be 1..86400 seconds, got ${seconds}`);
  }
  return seconds * 1000;
}

/** Window scale value the timestamp bits use for "the client offered no window scaling". */
export const TS_NO_WSCALE = 0xf;
const TS_WSCALE_MASK = 0xf;
const TS_SACK = 0x10;
const TS_ECN = 0x20;
/** The low bits of a cookie timestamp that carry options. */
const TS_OPTION_BITS = 0x3f;

/**
 * The timestamp value for a cookie SYN-ACK at clock `nowMs`: the clock with its low 6 bits
 * replaced by the client's options (`wscale` 0..14, or TS_NO_WSCALE), never ahead of the clock.
 */
export function cookieTimestamp(
  nowMs: number,
  wscale: number,
  sack: boolean,
  ecn: boolean,
): number {
  const options = (wscale & TS_WSCALE_MASK) | (sack ? TS_SACK : 0) | (ecn ? TS_ECN : 0);
  const clock = Math.floor(nowMs) >>> 0;
  let ts = ((clock & ~TS_OPTION_BITS) | options) >>> 0;
  // The value must not run ahead of the clock the later segments' timestamps continue from.
  if (ts > clock) ts = (ts - (TS_OPTION_BITS + 1)) >>> 0;
  return ts;
}

/** The client's window scale from an echoed cookie timestamp: 0..14, or -1 for none. */
export function timestampWscale(tsecr: number): number {
  const ws = tsecr & TS_WSCALE_MASK;
  return ws === TS_NO_WSCALE || ws > 14 ? -1 : ws;
}

/** Whether an echoed cookie timestamp says the client offered SACK. */
export function timestampSack(tsecr: number): boolean {
  return (tsecr & TS_SACK) !== 0;
}

/** Whether an echoed cookie timestamp says the client asked for ECN. */
export function timestampEcn(tsecr: number): boolean {
  return (tsecr & TS_ECN) !== 0;
}
