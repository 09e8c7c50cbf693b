/**
 * FULLNAT's timestamp translation: the TSval of a FULLNAT connection's SYN is moved onto the
 * director's own clock (timestamp_clock.ts), and every segment after it is translated the same
 * way for the connection's life: client → real `TSval += delta`, real → client `TSecr -= delta`.
 *
 * Why: a real sees FULLNAT connections as (local address:port ↔ real), and local ports come round
 * in seconds at high connection rates while the real keeps a tuple it closed in TIME_WAIT for 60
 * s. A SYN on such a tuple is taken only when it is newer than the last segment of the earlier
 * connection (Linux's tcp_timewait_state_process: a newer TSval, or a sequence number past
 * `rcv_nxt`). The client's TSval and ISN come from its own clocks for its own tuple, unrelated to
 * the earlier connection's, so the real turned down about half of those SYNs, answering with the
 * old connection's ACK; the client reset it and sent its SYN again a second later
 * (docs/performance.md). On the director's clock, which only increases, every such SYN is newer.
 *
 * Connections the SYN proxy opened are not translated here: the proxy's SYN already carries the
 * same clock and its `shift` translates their timestamps. A client that sends no timestamps has
 * its sequence numbers translated instead (fullnat_sequence.ts), since its ISN then decides.
 *
 * State per connection in typed arrays indexed by the connection's id; no allocation per packet.
 *
 * @module
 */
import type { TimestampClock } from "../timestamp_clock.ts";
import { get32, set32 } from "../wire/bytes.ts";
import {
  replaceTcp32,
  setTcpChecksum,
  TCP_OPT_TIMESTAMP,
  tcpChecksum,
  tcpFindOption,
} from "../wire/tcp.ts";

/** Length of the timestamps option: kind, length, TSval, TSecr. */
const TIMESTAMPS_LENGTH = 10;

/** The timestamp translation of FULLNAT's TCP connections. */
export class FullnatTimestamps {
  /** The director's clock minus the client's TSval in the connection's SYN. */
  readonly delta: Uint32Array;
  /** 1 while the connection's timestamps are translated (its SYN carried the option). */
  readonly translating: Uint8Array;

  /** State for up to `capacity` connections; SYNs take their TSval from `clock`. */
  constructor(capacity: number, readonly clock: TimestampClock) {
    this.delta = new Uint32Array(capacity);
    this.translating = new Uint8Array(capacity);
  }

  /**
   * Connection `id` was opened by the client's SYN with its TCP header at `l4`: chooses the
   * translation that gives that SYN the clock's value at `now` (engine ms), or none when the SYN
   * has no timestamps. The segment itself is translated by `request`.
   */
  begin(b: Uint8Array, l4: number, id: number, now: number): void {
    const at = tcpFindOption(b, l4, TCP_OPT_TIMESTAMP);
    if (at < 0 || b[at + 1] !== TIMESTAMPS_LENGTH) {
      this.translating[id] = 0;
      return;
    }
    this.delta[id] = (this.clock.at(now) - get32(b, at + 2)) >>> 0;
    this.translating[id] = 1;
  }

  /**
   * Translates the timestamps of a segment of connection `id` (TCP header at `l4`): `reply` from
   * the real (TSecr back to the client's clock), else from the client (TSval onto the director's).
   * `partial`: the checksum field holds the pseudo-header sum (NEEDS_CSUM), which the kernel
   * finishes over the TCP header as it then is, so it stays as it is.
   */
  translate(b: Uint8Array, l4: number, id: number, reply: boolean, partial: boolean): void {
    if (this.translating[id] === 0) return;
    const at = tcpFindOption(b, l4, TCP_OPT_TIMESTAMP);
    if (at < 0 || b[at + 1] !== TIMESTAMPS_LENGTH) return;
    // TSval of the client's segments, TSecr (the echo of one) of the real's.
    const field = reply ? at + 6 : at + 2;
    const old = get32(b, field);
    const value = (reply ? old - this.delta[id] : old + this.delta[id]) >>> 0;
    if (partial) {
      set32(b, field, value);
      return;
    }
    setTcpChecksum(b, l4, replaceTcp32(b, l4, field, value, tcpChecksum(b, l4)));
  }

  /** Forgets connection `id`'s translation (it ends). */
  forget(id: number): void {
    this.translating[id] = 0;
  }
}
