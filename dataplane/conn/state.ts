/**
 * Connection states with IPVS's names and default timeouts, and the TCP
 * transition function the engine applies to every segment.
 */
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from "../wire/tcp.ts";

/** Connection states, numbered as IPVS lists them (`ipvsadm -Lnc`). */
export const ConnState = {
  NONE: 0,
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT: 4,
  TIME_WAIT: 5,
  CLOSE: 6,
  CLOSE_WAIT: 7,
  LAST_ACK: 8,
  LISTEN: 9,
  SYNACK: 10,
  /** Not a TCP state: UDP entries are listed as "UDP" by IPVS. */
  UDP: 11,
} as const;

/** Names of `ConnState` values, for listings and metrics. */
export const CONN_STATE_NAMES: readonly string[] = [
  "NONE",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "SYNACK",
  "UDP",
];

/** The operator-settable timeouts, in seconds (`ipvsadm --set tcp tcpfin udp`). */
export interface Timeouts {
  tcp: number;
  tcpfin: number;
  udp: number;
}

/**
 * Per-state timeouts in ms: IPVS's defaults, with ESTABLISHED, FIN_WAIT and UDP
 * taken from the operator's `timeouts`.
 */
export function stateTimeouts(t: Timeouts): Float64Array {
  const ms = new Float64Array(CONN_STATE_NAMES.length);
  ms[ConnState.NONE] = 2_000;
  ms[ConnState.ESTABLISHED] = t.tcp * 1000;
  ms[ConnState.SYN_SENT] = 120_000;
  ms[ConnState.SYN_RECV] = 60_000;
  ms[ConnState.FIN_WAIT] = t.tcpfin * 1000;
  ms[ConnState.TIME_WAIT] = 120_000;
  ms[ConnState.CLOSE] = 10_000;
  ms[ConnState.CLOSE_WAIT] = 60_000;
  ms[ConnState.LAST_ACK] = 30_000;
  ms[ConnState.LISTEN] = 120_000;
  ms[ConnState.SYNACK] = 120_000;
  ms[ConnState.UDP] = t.udp * 1000;
  return ms;
}

/**
 * The state a TCP connection moves to on a segment with `flags`, seen from the
 * client (`fromClient`) or from the real server. RST wins over SYN, SYN over
 * FIN, FIN over ACK, as IPVS ranks them. Names follow IPVS, which sees the
 * connection from the server's side: the client closing first is CLOSE_WAIT,
 * the real closing first FIN_WAIT, and the second FIN leads to TIME_WAIT.
 */
export function nextTcpState(state: number, flags: number, fromClient: boolean): number {
  const S = ConnState;
  if (flags & TCP_RST) return S.CLOSE;
  if (flags & TCP_SYN) {
    // A stray SYN does not tear down an established connection.
    if (state === S.ESTABLISHED) return state;
    if (fromClient) return (flags & TCP_ACK) ? state : S.SYN_RECV;
    // SYN-ACK from the real: the handshake is half done.
    return state === S.NONE || state === S.SYN_RECV ? S.SYN_RECV : state;
  }
  if (flags & TCP_FIN) {
    switch (state) {
      case S.ESTABLISHED:
      case S.SYN_RECV:
        return fromClient ? S.CLOSE_WAIT : S.FIN_WAIT;
      case S.FIN_WAIT:
        return fromClient ? S.TIME_WAIT : S.FIN_WAIT;
      case S.CLOSE_WAIT:
        return fromClient ? S.CLOSE_WAIT : S.TIME_WAIT;
      default:
        return state;
    }
  }
  if (flags & TCP_ACK) {
    if (state === S.SYN_RECV && fromClient) return S.ESTABLISHED;
    if (state === S.NONE) return S.ESTABLISHED;
  }
  return state;
}
