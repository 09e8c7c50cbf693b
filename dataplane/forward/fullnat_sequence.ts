/**
 * FULLNAT's sequence translation, for connections whose client sends no timestamps: the ISN the
 * real sees is the director's ISN clock (TimestampClock.isnAt), and every segment after it is
 * translated the same way for the connection's life: client → real `seq += delta`, real →
 * client `ack -= delta` and every SACK edge `-= delta`.
 *
 * Why: what fullnat_timestamps.ts does for clients with timestamps. A real keeps a tuple it closed
 * in TIME_WAIT while FULLNAT's local ports come round, and without timestamps its TIME_WAIT takes
 * a SYN only when the SYN's sequence number is past the old connection's `rcv_nxt` (Linux's
 * tcp_timewait_state_process). A client's ISN comes from its own tuple with the VIP, unrelated to
 * the earlier connection's, so about half of those SYNs were turned down and sent again a second
 * later. On a clock that outruns what a connection sends, every such SYN is past the old one.
 *
 * Only for SYNs without timestamps: with them the real decides by timestamp, which
 * fullnat_timestamps.ts moves onto the director's clock, and the client's sequence numbers go
 * through untouched. Connections the SYN proxy opened are left to it (it translates sequence
 * numbers itself). DPVS's FULLNAT shifts every connection's sequence numbers in the same way.
 *
 * State per connection in typed arrays indexed by the connection's id; no allocation per packet.
 *
 * @module
 */
import type { TimestampClock } from "../timestamp_clock.ts";
import { get32, set32 } from "../wire/bytes.ts";
import { adjust32 } from "../wire/checksum.ts";
import {
  replaceTcp32,
  setTcpChecksum,
  TCP_ACK,
  TCP_OPT_SACK,
  tcpChecksum,
  tcpFindOption,
  tcpFlags,
} from "../wire/tcp.ts";

/** Offset of the sequence number in the TCP header. */
const SEQ = 4;
/** Offset of the acknowledgment number in the TCP header. */
const ACK = 8;
/** Offset of the flags byte in the TCP header. */
const FLAGS = 13;
/** Offset of the checksum in the TCP header. */
const CHECKSUM = 16;

/** The sequence-number translation of FULLNAT's TCP connections from clients without timestamps. */
export class FullnatSequence {
  /** The ISN clock at the connection's SYN minus the client's ISN. */
  readonly delta: Uint32Array;
  /** 1 while the connection's sequence numbers are translated. */
  readonly translating: Uint8Array;

  /** State for up to `capacity` connections; SYNs take their ISN from `clock`. */
  constructor(capacity: number, readonly clock: TimestampClock) {
    this.delta = new Uint32Array(capacity);
    this.translating = new Uint8Array(capacity);
  }

  /**
   * Connection `id` was opened by the client's SYN with its TCP header at `l4`: unless the SYN
   * has `timestamped` (its timestamps are translated instead), chooses the translation that gives
   * the SYN the ISN clock's value at `now` (engine ms). The segment itself is translated by
   * `translate`.
   */
  begin(b: Uint8Array, l4: number, id: number, now: number, timestamped: boolean): void {
    if (timestamped) {
      this.translating[id] = 0;
      return;
    }
    this.delta[id] = (this.clock.isnAt(now) - get32(b, l4 + SEQ)) >>> 0;
    this.translating[id] = 1;
  }

  /**
   * Translates a segment of connection `id` (TCP header at `l4`): `reply` from the real (ack and
   * SACK edges back to the client's sequence space), else from the client (seq onto the ISN
   * clock's). `partial`: the checksum field holds the pseudo-header sum (NEEDS_CSUM), which the
   * kernel finishes over the TCP header as it then is, so it stays as it is.
   */
  translate(b: Uint8Array, l4: number, id: number, reply: boolean, partial: boolean): void {
    if (this.translating[id] === 0) return;
    const delta = this.delta[id];
    let check = tcpChecksum(b, l4);
    if (!reply) {
      check = replaceTcp32(b, l4, l4 + SEQ, (get32(b, l4 + SEQ) + delta) >>> 0, check);
    } else {
      if ((tcpFlags(b, l4) & TCP_ACK) !== 0) {
        check = replaceTcp32(b, l4, l4 + ACK, (get32(b, l4 + ACK) - delta) >>> 0, check);
      }
      // The real's SACK blocks name the client's bytes as the real numbers them.
      const at = tcpFindOption(b, l4, TCP_OPT_SACK);
      if (at >= 0) {
        const end = at + b[at + 1];
        for (let edge = at + 2; edge + 4 <= end; edge += 4) {
          check = replaceTcp32(b, l4, edge, (get32(b, edge) - delta) >>> 0, check);
        }
      }
    }
    if (!partial) setTcpChecksum(b, l4, check);
  }

  /**
   * An ICMP error about a segment of connection `id` whose quoted TCP header is at `quotedL4`
   * (`quotedLen` bytes of it quoted) gets the numbers its destination sent: `toClient`, the
   * quote is of a client's segment on its way to the real (seq back to the client's), else of
   * a real's segment to the client (ack onto the real's view again). The client's TCP takes an
   * error only for a sequence number in its window (Linux's tcp_v4_err). The quoted checksum,
   * where quoted, follows.
   */
  unshiftQuote(
    b: Uint8Array,
    quotedL4: number,
    quotedLen: number,
    id: number,
    toClient: boolean,
  ): void {
    if (this.translating[id] === 0) return;
    const delta = this.delta[id];
    let at: number;
    let value: number;
    if (toClient) {
      if (quotedLen < SEQ + 4) return;
      at = quotedL4 + SEQ;
      value = (get32(b, at) - delta) >>> 0;
    } else {
      if (quotedLen < FLAGS + 1 || (b[quotedL4 + FLAGS] & TCP_ACK) === 0) return;
      at = quotedL4 + ACK;
      value = (get32(b, at) + delta) >>> 0;
    }
    const old = get32(b, at);
    set32(b, at, value);
    if (quotedLen >= CHECKSUM + 2) {
      setTcpChecksum(b, quotedL4, adjust32(tcpChecksum(b, quotedL4), old, value));
    }
  }

  /** Forgets connection `id`'s translation (it ends). */
  forget(id: number): void {
    this.translating[id] = 0;
  }
}
