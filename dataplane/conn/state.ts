/**
 * Connection states with IPVS's names and default timeouts, IPVS's TCP
 * transition table the engine applies to every segment, and which states count
 * as active.
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
 * Which table a TCP segment is looked up in, as IPVS names the directions: INPUT is client →
 * real (our original direction), OUTPUT real → client (replies), INPUT_ONLY client → real on a
 * connection whose replies do not pass through us (tunnel, direct routing: `ConnFlag.NO_REPLY`).
 */
export const TcpDir = { INPUT: 0, OUTPUT: 1, INPUT_ONLY: 2 } as const;

/** A `TcpDir` value. */
export type TcpDir = typeof TcpDir[keyof typeof TcpDir];

/** Flag classes a segment is sorted into, strongest first: RST, then SYN, FIN, ACK. */
const FLAG_CLASSES = 4;
/** The TCP states the table has a column for (NONE .. SYNACK). */
const TCP_STATES = ConnState.SYNACK + 1;

const {
  ESTABLISHED: ES,
  SYN_SENT: SS,
  SYN_RECV: SR,
  FIN_WAIT: FW,
  TIME_WAIT: TW,
  CLOSE: CL,
  CLOSE_WAIT: CW,
  LAST_ACK: LA,
  LISTEN: LI,
  SYNACK: SA,
} = ConnState;

/**
 * IPVS's transitions (ip_vs_proto_tcp.c, the default table, not the secure_tcp one): for each
 * direction, for each flag class in the order RST, SYN, FIN, ACK, the next state by the
 * current one in `ConnState` order (NO ES SS SR FW TW CL CW LA LI SA).
 */
const TRANSITIONS: readonly (readonly (readonly number[])[])[] = [
  // INPUT
  [
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR], // RST (a client's RST in SYN_RECV is ignored)
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // SYN
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW], // FIN
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // ACK
  ],
  // OUTPUT
  [
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL], // RST
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR], // SYN
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW], // FIN
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES], // ACK
  ],
  // INPUT_ONLY
  [
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL], // RST
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // SYN
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW], // FIN
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // ACK
  ],
];

/** `TRANSITIONS` flattened: index (dir * FLAG_CLASSES + class) * TCP_STATES + state. */
const NEXT = new Uint8Array(3 * FLAG_CLASSES * TCP_STATES);
TRANSITIONS.forEach((byClass, dir) =>
  byClass.forEach((row, cls) =>
    row.forEach((next, state) => NEXT[(dir * FLAG_CLASSES + cls) * TCP_STATES + state] = next)
  )
);

/** 1 for the states IPVS counts as active (tcp_state_active_table); others are inactive. */
const ACTIVE = new Uint8Array(CONN_STATE_NAMES.length);
for (const s of [ES, SS, SR, SA]) ACTIVE[s] = 1;

/**
 * The state a TCP connection in `state` moves to on a segment with `flags` travelling in
 * `dir` (a `TcpDir`), by IPVS's table. A segment with none of RST, SYN, FIN and ACK moves it to
 * CLOSE, as IPVS does; a state outside the TCP table is kept.
 */
export function nextTcpState(state: number, flags: number, dir: number): number {
  const cls = (flags & TCP_RST) !== 0
    ? 0
    : (flags & TCP_SYN) !== 0
    ? 1
    : (flags & TCP_FIN) !== 0
    ? 2
    : (flags & TCP_ACK) !== 0
    ? 3
    : -1;
  if (state >= TCP_STATES || dir < 0 || dir > 2) return state;
  if (cls < 0) return CL;
  return NEXT[(dir * FLAG_CLASSES + cls) * TCP_STATES + state];
}

/**
 * Whether IPVS counts a connection in `state` as active for its real: ESTABLISHED and the
 * handshake states SYN_SENT, SYN_RECV and SYNACK (kernels since 2016; older ones counted
 * ESTABLISHED alone).
 * UDP connections never are.
 */
export function tcpStateActive(state: number): boolean {
  return ACTIVE[state] === 1;
}
