/**
 * The SYN proxy of NAT and FULLNAT services (`synproxy: true`): the appliance answers a client's
 * SYN itself with a SYN cookie, keeps nothing until the client's ACK proves the cookie, then
 * opens the connection to the real with the client's own sequence number and options, completes
 * the real's handshake with the client's first ACK (and any data it carried), and from then on
 * shifts sequence numbers, timestamps and windows between the two handshakes' choices.
 *
 * Sequence spaces: the client's sequence numbers reach the real unchanged (the real's SYN
 * carries the client's ISN). The client took the cookie as the server's ISN while the real chose
 * its own, so the real's sequence numbers, and the client's acknowledgments and SACK blocks of
 * them, differ by `delta = cookie - real ISN`: real → client `seq += delta`, client → real
 * `ack -= delta` and every SACK edge `-= delta`. Timestamps likewise: the client saw the cookie
 * timestamp, so real → client `TSval += tsDelta`, client → real `TSecr -= tsDelta`. The real saw
 * a timestamp of the proxy's clock in the SYN rather than the client's (a real still holding the
 * tuple in TIME_WAIT from an earlier connection through this proxy then takes the SYN: see
 * docs/synproxy.md), so client → real `TSval += realTsDelta`, real → client `TSecr -=
 * realTsDelta`. Windows are rescaled where the real's window scale differs from the one the
 * SYN-ACK announced.
 *
 * State per connection lives in typed arrays indexed by the connection's id (O(1), no maps);
 * the engine drives the phases (see engine.ts) and keeps the ConnTable.
 *
 * @module
 */
import type { ConnTable } from "../conn/table.ts";
import { EngineCounter as C } from "../engine_counters.ts";
import { TimestampClock } from "../timestamp_clock.ts";
import { MAX_PACKET } from "../tun.ts";
import { get16, get32, set16, set32 } from "../wire/bytes.ts";
import { adjust16, adjust32 } from "../wire/checksum.ts";
import { ipDst, ipSrc } from "../wire/ipv4.ts";
import {
  replaceTcp32,
  setTcpChecksum,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_MIN_HEADER,
  TCP_OPT_EOL,
  TCP_OPT_NOP,
  TCP_OPT_SACK,
  TCP_OPT_TIMESTAMP,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  tcpAck,
  tcpChecksum,
  tcpDataOffset,
  tcpDstPort,
  tcpFlags,
  tcpSeq,
  tcpSrcPort,
  tcpWindow,
} from "../wire/tcp.ts";
import {
  checkedPeriod,
  COOKIE_INVALID,
  COOKIE_MSS_TABLE,
  cookieMssIndex,
  cookieTimestamp,
  type KeySource,
  RANDOM_KEYS,
  SynCookies,
  timestampEcn,
  timestampSack,
  timestampWscale,
  TS_NO_WSCALE,
} from "./cookie.ts";
import { HeldSegments } from "./held_segments.ts";
import { SEGMENT_OPTIONS_AT, writeSegment } from "./segment.ts";
import { HandshakeOptions, writeHandshakeOptions, writeTimestamps } from "./tcp_options.ts";

/** The SYN proxy's global settings (appliance.yaml `synproxy:`). */
export interface SynproxySpec {
  /** The MSS the cookie SYN-ACK announces to clients. */
  mss: number;
  /** Seconds between cookie key rotations (a cookie is accepted for one to two of them). */
  keyRotationSeconds: number;
}

/** Settings used when the spec names none. */
export const SYNPROXY_DEFAULTS: Readonly<SynproxySpec> = Object.freeze({
  mss: 1460,
  keyRotationSeconds: 60,
});

/** Smallest MSS the SYN-ACK may announce (RFC 879's default). */
export const SYNPROXY_MIN_MSS = 536;
/** Largest MSS the SYN-ACK may announce: a 9000-byte jumbo frame less IPv4 and TCP headers. */
export const SYNPROXY_MAX_MSS = 8960;

/** How long the real has to answer the SYN before the client is reset. */
export const HANDSHAKE_TIMEOUT_MS = 3_000;

/**
 * How long the real has to answer before a client segment makes the proxy send its SYN again
 * (Linux's initial retransmission timeout): the SYN or the real's answer was lost.
 */
export const SYN_RESEND_AFTER_MS = 1_000;

/**
 * The window scale the cookie SYN-ACK announces to a client that offered scaling: Linux's
 * choice for its default receive buffers, so that usually no window needs rescaling.
 */
export const SYNPROXY_WSCALE = 7;

/** Connections whose first data can be held at once while their reals answer. */
const HELD_SLOTS = 1024;

/** The window of a cookie SYN-ACK (SYN windows are never scaled). */
const SYN_ACK_WINDOW = 65535;

/** Room a made handshake segment needs at most: IPv4 and TCP headers and 20 bytes of options. */
export const HANDSHAKE_SEGMENT_MAX = SEGMENT_OPTIONS_AT + 20;

/** Where a connection is in the proxy's handshakes. */
export const SynproxyPhase = {
  NONE: 0,
  /** The SYN went to the real; its SYN-ACK has not come. */
  AWAITING_REAL: 1,
  /** Both handshakes are done: segments are translated. */
  TRANSLATING: 2,
} as const;

/** Per-connection option bits (`optionBits`). */
const Opt = {
  /** The client offered window scaling (its shift is in `clientWscale`). */
  WSCALE: 1,
  SACK: 2,
  /** The client uses timestamps. */
  TIMESTAMPS: 4,
  ECN: 8,
  /** Client and real both use timestamps: they are translated. */
  TRANSLATE_TIMESTAMPS: 16,
} as const;

/** The SYN proxy's keys, settings and per-connection state. */
export class Synproxy {
  readonly cookies: SynCookies;
  /** The MSS cookie SYN-ACKs announce (less TOA's 8 bytes on a TOA service). */
  mss: number;
  readonly phase: Uint8Array;
  /** The cookie: the ISN the client was given. */
  readonly ourIsn: Uint32Array;
  readonly clientIsn: Uint32Array;
  /** Cookie minus the real's ISN. */
  readonly seqDelta: Uint32Array;
  /** Cookie timestamp minus the real's SYN-ACK timestamp. */
  readonly tsDelta: Uint32Array;
  /** The client's timestamp value in its first ACK. */
  readonly clientTsVal: Uint32Array;
  /** The timestamp value of the SYN to the real (the proxy's clock) minus `clientTsVal`. */
  readonly realTsDelta: Uint32Array;
  /** The cookie timestamp (echoed in the client's first ACK). */
  readonly ourTsVal: Uint32Array;
  /** The window field of the client's first ACK. */
  readonly clientWindow: Uint16Array;
  /** The client's MSS, from the cookie. */
  readonly clientMss: Uint16Array;
  readonly clientWscale: Uint8Array;
  readonly optionBits: Uint8Array;
  /** Left shift of client → real window fields (the real did not take scaling, the client did). */
  readonly c2rShift: Int8Array;
  /** Shift of real → client window fields: left when positive, right (rounding up) when negative. */
  readonly r2cShift: Int8Array;
  /** Slot + 1 of the connection's held first data in `heldSegments`; 0 for none. */
  readonly held: Int32Array;
  readonly heldSegments = new HeldSegments(HELD_SLOTS, SYNPROXY_MAX_MSS);
  readonly #opts = new HandshakeOptions();

  /**
   * State for up to `capacity` connections (arrays committed as they are used), `spec`'s
   * settings, keys for the generation of `now`; counts into `counters` (`EngineCounter`). The
   * SYNs to reals take their timestamps from `tsClock`, which FULLNAT's SYNs share.
   */
  constructor(
    capacity: number,
    spec: SynproxySpec,
    now: number,
    readonly counters: Float64Array,
    keys: KeySource = RANDOM_KEYS,
    readonly tsClock: TimestampClock = new TimestampClock(),
  ) {
    this.mss = checkedMss(spec.mss);
    this.cookies = new SynCookies(spec.keyRotationSeconds, now, keys);
    this.phase = new Uint8Array(capacity);
    this.ourIsn = new Uint32Array(capacity);
    this.clientIsn = new Uint32Array(capacity);
    this.seqDelta = new Uint32Array(capacity);
    this.tsDelta = new Uint32Array(capacity);
    this.clientTsVal = new Uint32Array(capacity);
    this.realTsDelta = new Uint32Array(capacity);
    this.ourTsVal = new Uint32Array(capacity);
    this.clientWindow = new Uint16Array(capacity);
    this.clientMss = new Uint16Array(capacity);
    this.clientWscale = new Uint8Array(capacity);
    this.optionBits = new Uint8Array(capacity);
    this.c2rShift = new Int8Array(capacity);
    this.r2cShift = new Int8Array(capacity);
    this.held = new Int32Array(capacity);
  }

  /** Throws RangeError unless `spec`'s settings are in range (checked before a reload). */
  static check(spec: SynproxySpec): void {
    checkedMss(spec.mss);
    checkedPeriod(spec.keyRotationSeconds);
  }

  /** Takes new settings (a reload): the MSS at once, a new rotation period with new keys. */
  configure(spec: SynproxySpec, now: number): void {
    Synproxy.check(spec);
    this.mss = spec.mss;
    this.cookies.setPeriod(spec.keyRotationSeconds, now);
  }

  /** Rotates the cookie keys when their period is over; call from the engine's tick. */
  tick(now: number): void {
    this.cookies.rotate(now);
  }

  /**
   * Turns the client's SYN at `off` (TCP at `l4`) into the cookie SYN-ACK, in place, announcing
   * MSS `mss`. `now` is the clock the cookie timestamp takes. Returns the SYN-ACK's length, or
   * -1 when `b` has no room for it.
   */
  answerSyn(
    b: Uint8Array,
    off: number,
    l4: number,
    mss: number,
    now: number,
    ipId: number,
  ): number {
    if (off + HANDSHAKE_SEGMENT_MAX > b.length) return -1;
    const o = this.#opts;
    o.read(b, l4);
    const src = ipSrc(b, off);
    const dst = ipDst(b, off);
    const sport = tcpSrcPort(b, l4);
    const dport = tcpDstPort(b, l4);
    const isn = tcpSeq(b, l4);
    const ecn = (tcpFlags(b, l4) & (TCP_ECE | TCP_CWR)) === (TCP_ECE | TCP_CWR);
    // A SYN without MSS means 536 (RFC 9293).
    const mssIndex = cookieMssIndex(o.mss === 0 ? COOKIE_MSS_TABLE[0] : o.mss);
    const cookie = this.cookies.make(src, dst, sport, dport, isn, mssIndex);
    let optionsLen: number;
    let flags = TCP_SYN | TCP_ACK;
    if (o.timestamps) {
      const tsVal = cookieTimestamp(now, o.wscale < 0 ? TS_NO_WSCALE : o.wscale, o.sackOk, ecn);
      const wscale = o.wscale < 0 ? -1 : SYNPROXY_WSCALE;
      optionsLen = writeHandshakeOptions(
        b,
        off + SEGMENT_OPTIONS_AT,
        mss,
        wscale,
        o.sackOk,
        true,
        tsVal,
        o.tsVal,
      );
      if (ecn) flags |= TCP_ECE;
    } else {
      // Without timestamps only the MSS survives the cookie: offer nothing the ACK cannot recall.
      optionsLen = writeHandshakeOptions(b, off + SEGMENT_OPTIONS_AT, mss, -1, false, false, 0, 0);
    }
    return writeSegment(
      b,
      off,
      dst,
      src,
      dport,
      sport,
      cookie,
      (isn + 1) >>> 0,
      flags,
      SYN_ACK_WINDOW,
      ipId,
      optionsLen,
      0,
    );
  }

  /**
   * Checks the cookie a client's ACK at `off` (TCP at `l4`) returns: its acknowledgment number
   * less one, for its tuple and sequence number less one. Returns the cookie's MSS index, or -1.
   */
  checkAck(b: Uint8Array, off: number, l4: number): number {
    const index = this.cookies.check(
      ipSrc(b, off),
      ipDst(b, off),
      tcpSrcPort(b, l4),
      tcpDstPort(b, l4),
      (tcpSeq(b, l4) - 1) >>> 0,
      (tcpAck(b, l4) - 1) >>> 0,
    );
    return index === COOKIE_INVALID ? -1 : index;
  }

  /**
   * Connection `id` was created for the client's ACK at `off` (`total` bytes, TCP at `l4`), whose
   * cookie carried `mssIndex`: records what the handshakes need, holds the data the ACK carried,
   * and turns the ACK into the SYN to the real, in place, its timestamp the proxy's clock at
   * `now` (engine clock, ms). Returns its length, or -1 when `b` has no room for it.
   */
  open(
    b: Uint8Array,
    off: number,
    l4: number,
    total: number,
    id: number,
    mssIndex: number,
    t: ConnTable,
    now: number,
    ipId: number,
  ): number {
    if (off + HANDSHAKE_SEGMENT_MAX > b.length) return -1;
    const o = this.#opts;
    o.read(b, l4);
    const flags = tcpFlags(b, l4);
    this.ourIsn[id] = (tcpAck(b, l4) - 1) >>> 0;
    this.clientIsn[id] = (tcpSeq(b, l4) - 1) >>> 0;
    this.clientMss[id] = COOKIE_MSS_TABLE[mssIndex];
    this.clientWindow[id] = tcpWindow(b, l4);
    this.seqDelta[id] = 0;
    this.tsDelta[id] = 0;
    this.realTsDelta[id] = 0;
    this.c2rShift[id] = 0;
    this.r2cShift[id] = 0;
    let bits = 0;
    this.clientWscale[id] = 0;
    if (o.timestamps) {
      // The client echoes the cookie timestamp: its low bits are the options of its SYN.
      bits |= Opt.TIMESTAMPS;
      const ws = timestampWscale(o.tsEcr);
      if (ws >= 0) {
        bits |= Opt.WSCALE;
        this.clientWscale[id] = ws;
      }
      if (timestampSack(o.tsEcr)) bits |= Opt.SACK;
      if (timestampEcn(o.tsEcr)) bits |= Opt.ECN;
      this.ourTsVal[id] = o.tsEcr;
      this.clientTsVal[id] = o.tsVal;
      this.realTsDelta[id] = (this.tsClock.at(now) - o.tsVal) >>> 0;
    }
    this.optionBits[id] = bits;
    this.held[id] = 0;
    const dataAt = l4 + tcpDataOffset(b, l4);
    const dataLen = off + total - dataAt;
    if (dataLen > 0 || (flags & TCP_FIN) !== 0) {
      const slot = this.heldSegments.hold(b, dataAt, dataLen, flags & (TCP_PSH | TCP_FIN));
      if (slot >= 0) {
        this.held[id] = slot + 1;
        this.counters[C.SYNPROXY_DATA_HELD]++;
      } else {
        // The real never acknowledges it, so the client sends it again.
        this.counters[C.SYNPROXY_DATA_NOT_HELD]++;
      }
    }
    this.phase[id] = SynproxyPhase.AWAITING_REAL;
    return this.synToReal(b, off, id, t, ipId);
  }

  /**
   * Holds the data of a client segment at `off` (`total` bytes, TCP at `l4`) that arrives while
   * connection `id`'s real has not answered (typically the request right behind a pure ACK):
   * when it is the connection's first data and nothing is held yet. Returns whether it did.
   */
  holdFirstData(b: Uint8Array, off: number, l4: number, total: number, id: number): boolean {
    if (this.held[id] !== 0) return false;
    if (tcpSeq(b, l4) !== ((this.clientIsn[id] + 1) >>> 0)) return false;
    const flags = tcpFlags(b, l4);
    const dataAt = l4 + tcpDataOffset(b, l4);
    const dataLen = off + total - dataAt;
    if (dataLen <= 0 && (flags & TCP_FIN) === 0) return false;
    const slot = this.heldSegments.hold(b, dataAt, dataLen, flags & (TCP_PSH | TCP_FIN));
    if (slot < 0) {
      this.counters[C.SYNPROXY_DATA_NOT_HELD]++;
      return false;
    }
    this.held[id] = slot + 1;
    this.counters[C.SYNPROXY_DATA_HELD]++;
    return true;
  }

  /**
   * Writes at `off` the SYN to the real of connection `id`: the client's ISN and the options of
   * its SYN as the cookie kept them, the timestamp the proxy's (`open`). Returns its length.
   */
  synToReal(b: Uint8Array, off: number, id: number, t: ConnTable, ipId: number): number {
    const bits = this.optionBits[id];
    const optionsLen = writeHandshakeOptions(
      b,
      off + SEGMENT_OPTIONS_AT,
      this.clientMss[id],
      (bits & Opt.WSCALE) !== 0 ? this.clientWscale[id] : -1,
      (bits & Opt.SACK) !== 0,
      (bits & Opt.TIMESTAMPS) !== 0,
      (this.clientTsVal[id] + this.realTsDelta[id]) >>> 0,
      0,
    );
    // A SYN's window is never scaled: the bytes the client's ACK offered, at most 65535.
    let window = this.clientWindow[id];
    if ((bits & Opt.WSCALE) !== 0) window = scaleWindow(window, this.clientWscale[id]);
    const flags = TCP_SYN | ((bits & Opt.ECN) !== 0 ? TCP_ECE | TCP_CWR : 0);
    return writeSegment(
      b,
      off,
      t.outSrc[id],
      t.outDst[id],
      t.outSrcPort[id],
      t.outDstPort[id],
      this.clientIsn[id],
      0,
      flags,
      window,
      ipId,
      optionsLen,
      0,
    );
  }

  /**
   * The real answered connection `id`'s SYN with the SYN-ACK at `off` (TCP at `l4`; its ack
   * already checked): records the translation and turns the SYN-ACK into the ACK that completes
   * the real's handshake, carrying the client's held data. Returns its length.
   */
  complete(b: Uint8Array, off: number, l4: number, id: number, t: ConnTable, ipId: number): number {
    const o = this.#opts;
    o.read(b, l4);
    this.seqDelta[id] = (this.ourIsn[id] - tcpSeq(b, l4)) >>> 0;
    let bits = this.optionBits[id];
    const clientScales = (bits & Opt.WSCALE) !== 0;
    const realScales = clientScales && o.wscale >= 0;
    // Windows mean bytes << the sender's shift as the receiver learnt it in its own handshake.
    this.c2rShift[id] = clientScales && !realScales ? this.clientWscale[id] : 0;
    this.r2cShift[id] = (realScales ? o.wscale : 0) - (clientScales ? SYNPROXY_WSCALE : 0);
    bits &= ~Opt.TRANSLATE_TIMESTAMPS;
    if ((bits & Opt.TIMESTAMPS) !== 0 && o.timestamps) {
      bits |= Opt.TRANSLATE_TIMESTAMPS;
      this.tsDelta[id] = (this.ourTsVal[id] - o.tsVal) >>> 0;
    }
    this.optionBits[id] = bits;
    this.phase[id] = SynproxyPhase.TRANSLATING;
    return this.ackToReal(b, off, id, t, o.tsVal, ipId);
  }

  /**
   * Writes at `off` the ACK of the real's SYN-ACK for connection `id` (`realTsVal` its
   * timestamp), with the client's held data if any (then released). Returns its length.
   */
  ackToReal(
    b: Uint8Array,
    off: number,
    id: number,
    t: ConnTable,
    realTsVal: number,
    ipId: number,
  ): number {
    const bits = this.optionBits[id];
    let optionsLen = 0;
    if ((bits & Opt.TRANSLATE_TIMESTAMPS) !== 0) {
      const tsVal = (this.clientTsVal[id] + this.realTsDelta[id]) >>> 0;
      writeTimestamps(b, off + SEGMENT_OPTIONS_AT, false, tsVal, realTsVal);
      optionsLen = 12;
    }
    let flags = TCP_ACK;
    let dataLen = 0;
    const slot = this.held[id] - 1;
    if (slot >= 0) {
      const pool = this.heldSegments;
      const at = off + SEGMENT_OPTIONS_AT + optionsLen;
      const len = pool.length[slot];
      if (at + len <= b.length && at - off + len <= MAX_PACKET) {
        dataLen = pool.copyTo(slot, b, at);
        flags |= pool.flags[slot];
        this.counters[C.SYNPROXY_DATA_RELEASED]++;
      } else {
        this.counters[C.SYNPROXY_DATA_NOT_HELD]++;
      }
      pool.release(slot);
      this.held[id] = 0;
    }
    const window = shiftWindow(this.clientWindow[id], this.c2rShift[id]);
    const realIsn = (this.ourIsn[id] - this.seqDelta[id]) >>> 0;
    return writeSegment(
      b,
      off,
      t.outSrc[id],
      t.outDst[id],
      t.outSrcPort[id],
      t.outDstPort[id],
      (this.clientIsn[id] + 1) >>> 0,
      (realIsn + 1) >>> 0,
      flags,
      window,
      ipId,
      optionsLen,
      dataLen,
    );
  }

  /** The real's timestamp value in the SYN-ACK at `l4` (0 without one), for `ackToReal`. */
  realTimestamp(b: Uint8Array, l4: number): number {
    this.#opts.read(b, l4);
    return this.#opts.tsVal;
  }

  /** Writes at `off` a RST to the client of connection `id` (40 bytes); returns its length. */
  resetClient(b: Uint8Array, off: number, id: number, t: ConnTable, ipId: number): number {
    return writeSegment(
      b,
      off,
      t.inDst[id],
      t.inSrc[id],
      t.inDstPort[id],
      t.inSrcPort[id],
      (this.ourIsn[id] + 1) >>> 0,
      (this.clientIsn[id] + 1) >>> 0,
      TCP_RST | TCP_ACK,
      0,
      ipId,
      0,
      0,
    );
  }

  /**
   * Turns a client's cookie ACK at `off` (TCP at `l4`) for which no connection could be opened
   * into a RST to the client (40 bytes, in place): the client believes it is connected. Returns
   * its length.
   */
  resetUnopened(b: Uint8Array, off: number, l4: number, ipId: number): number {
    return writeSegment(
      b,
      off,
      ipDst(b, off),
      ipSrc(b, off),
      tcpDstPort(b, l4),
      tcpSrcPort(b, l4),
      tcpAck(b, l4),
      0,
      TCP_RST,
      0,
      ipId,
      0,
      0,
    );
  }

  /**
   * An ICMP error about a segment the real sent on connection `id` goes back to the real: the
   * quoted TCP header at `quotedL4` (`quotedLen` bytes of it quoted) gets the real's sequence
   * number back, so that the real's TCP finds the error in its window (Linux ignores it
   * otherwise), its checksum, where quoted, updated.
   */
  unshiftQuote(b: Uint8Array, quotedL4: number, quotedLen: number, id: number): void {
    if (this.phase[id] !== SynproxyPhase.TRANSLATING || quotedLen < 8) return;
    const old = get32(b, quotedL4 + 4);
    const seq = (old - this.seqDelta[id]) >>> 0;
    set32(b, quotedL4 + 4, seq);
    if (quotedLen >= 18) setTcpChecksum(b, quotedL4, adjust32(tcpChecksum(b, quotedL4), old, seq));
  }

  /**
   * Writes at `off` a RST to the real of connection `id` (40 bytes), for the half-open connection
   * the proxy's SYN made there; returns its length.
   */
  resetReal(b: Uint8Array, off: number, id: number, t: ConnTable, ipId: number): number {
    return this.resetRealAt(b, off, id, t, (this.clientIsn[id] + 1) >>> 0, ipId);
  }

  /**
   * Writes at `off` a RST to the real of connection `id` with sequence number `seq` and nothing
   * else (no ACK, no options; 40 bytes); returns its length. With `seq` the acknowledgment number
   * of a real's unacceptable ACK, it is what RFC 9293 (3.10.7.3) has a TCP in SYN-SENT answer:
   * the real's TIME_WAIT takes a RST at exactly its `rcv_nxt` and ends.
   */
  resetRealAt(
    b: Uint8Array,
    off: number,
    id: number,
    t: ConnTable,
    seq: number,
    ipId: number,
  ): number {
    return writeSegment(
      b,
      off,
      t.outSrc[id],
      t.outDst[id],
      t.outSrcPort[id],
      t.outDstPort[id],
      seq,
      0,
      TCP_RST,
      0,
      ipId,
      0,
      0,
    );
  }

  /**
   * Translates a segment of connection `id` (TCP at `l4`) between the two handshakes'
   * sequence spaces: `reply` from the real (seq, TSval, window), else from the client (ack,
   * SACK edges, TSecr, window). Checksum updated incrementally.
   */
  shift(b: Uint8Array, l4: number, id: number, reply: boolean): void {
    const delta = this.seqDelta[id];
    const translateTs = (this.optionBits[id] & Opt.TRANSLATE_TIMESTAMPS) !== 0;
    let check = tcpChecksum(b, l4);
    if (reply) {
      check = replaceTcp32(b, l4, l4 + 4, (get32(b, l4 + 4) + delta) >>> 0, check);
      const shift = this.r2cShift[id];
      if (shift !== 0) check = replaceWindow(b, l4, shift, check);
    } else {
      if ((tcpFlags(b, l4) & TCP_ACK) !== 0) {
        check = replaceTcp32(b, l4, l4 + 8, (get32(b, l4 + 8) - delta) >>> 0, check);
      }
      const shift = this.c2rShift[id];
      if (shift !== 0) check = replaceWindow(b, l4, shift, check);
    }
    // One walk over the options for the timestamps and (client → real) the SACK blocks.
    const end = l4 + tcpDataOffset(b, l4);
    let i = l4 + TCP_MIN_HEADER;
    while (i < end) {
      const kind = b[i];
      if (kind === TCP_OPT_EOL) break;
      if (kind === TCP_OPT_NOP) {
        i++;
        continue;
      }
      if (i + 1 >= end) break;
      const len = b[i + 1];
      if (len < 2 || i + len > end) break;
      if (kind === TCP_OPT_TIMESTAMP && len === 10 && translateTs) {
        const tsDelta = this.tsDelta[id];
        const realTsDelta = this.realTsDelta[id];
        if (reply) {
          check = replaceTcp32(b, l4, i + 2, (get32(b, i + 2) + tsDelta) >>> 0, check);
          check = replaceTcp32(b, l4, i + 6, (get32(b, i + 6) - realTsDelta) >>> 0, check);
        } else {
          check = replaceTcp32(b, l4, i + 2, (get32(b, i + 2) + realTsDelta) >>> 0, check);
          check = replaceTcp32(b, l4, i + 6, (get32(b, i + 6) - tsDelta) >>> 0, check);
        }
      } else if (kind === TCP_OPT_SACK && !reply) {
        for (let e = i + 2; e + 4 <= i + len; e += 4) {
          check = replaceTcp32(b, l4, e, (get32(b, e) - delta) >>> 0, check);
        }
      }
      i += len;
    }
    setTcpChecksum(b, l4, check);
  }

  /** Releases what connection `id` holds (it ends, in whatever phase). */
  forget(id: number): void {
    const slot = this.held[id] - 1;
    if (slot >= 0) this.heldSegments.release(slot);
    this.held[id] = 0;
    this.phase[id] = SynproxyPhase.NONE;
  }
}

function checkedMss(mss: number): number {
  if (!(Number.isInteger(mss) && mss >= SYNPROXY_MIN_MSS && mss <= SYNPROXY_MAX_MSS)) {
    throw new RangeError(
      `synproxy mss must be an integer from ${SYNPROXY_MIN_MSS} to ${SYNPROXY_MAX_MSS}, got ${mss}`,
    );
  }
  return mss;
}

/** `window << shift`, at most 65535. */
function scaleWindow(window: number, shift: number): number {
  const bytes = window * 2 ** shift;
  return bytes > 0xffff ? 0xffff : bytes;
}

/** A window field rescaled: `shift` > 0 multiplies (capped), < 0 divides rounding up. */
function shiftWindow(window: number, shift: number): number {
  if (shift >= 0) return scaleWindow(window, shift);
  const unit = 2 ** -shift;
  return Math.ceil(window / unit);
}

/** Rescales the window field of the TCP header at `l4`; returns the updated checksum. */
function replaceWindow(b: Uint8Array, l4: number, shift: number, check: number): number {
  const old = get16(b, l4 + 14);
  const window = shiftWindow(old, shift);
  set16(b, l4 + 14, window);
  return adjust16(check, old, window);
}
