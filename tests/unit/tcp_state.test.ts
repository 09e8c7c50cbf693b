/**
 * IPVS's TCP state machine: rows and cells of the kernel's transition table (ip_vs_proto_tcp.c,
 * tcp_states), the flag classes, and the engine's use of it: directions, active/inactive counts
 * per real (tcp_state_active_table) and per-state timeouts through whole connection lifecycles.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CONN_STATE_NAMES,
  ConnState,
  nextTcpState,
  stateTimeouts,
  TcpDir,
  tcpStateActive,
} from "../../dataplane/conn/state.ts";
import { ConnFlag } from "../../dataplane/conn/table.ts";
import { Engine } from "../../dataplane/engine.ts";
import { PROTO_TCP } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from "../../dataplane/wire/tcp.ts";
import { CLIENT, dataplaneSpec, REAL1, service, VIP } from "../fixtures/dataplane_specs.ts";
import { tcp } from "../fixtures/packet_builders.ts";

const S = ConnState;
const { INPUT, OUTPUT, INPUT_ONLY } = TcpDir;
/** The kernel table's columns, in its order. */
const COLUMNS = [
  S.NONE,
  S.ESTABLISHED,
  S.SYN_SENT,
  S.SYN_RECV,
  S.FIN_WAIT,
  S.TIME_WAIT,
  S.CLOSE,
  S.CLOSE_WAIT,
  S.LAST_ACK,
  S.LISTEN,
  S.SYNACK,
];
const name = (s: number) => CONN_STATE_NAMES[s] ?? `state ${s}`;
const names = (states: number[]) => states.map(name);
/** The next state from every column for one direction and flag set. */
const row = (dir: number, flags: number) => names(COLUMNS.map((s) => nextTcpState(s, flags, dir)));

Deno.test("whole rows of IPVS's table, as ip_vs_proto_tcp.c lists them", () => {
  // INPUT rst: sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sSR
  assert.deepEqual(
    row(INPUT, TCP_RST),
    names([
      S.CLOSE,
      S.CLOSE,
      S.CLOSE,
      S.SYN_RECV,
      S.CLOSE,
      S.CLOSE,
      S.CLOSE,
      S.CLOSE,
      S.LAST_ACK,
      S.LISTEN,
      S.SYN_RECV,
    ]),
  );
  // INPUT syn: sSR sES sES sSR sSR sSR sSR sSR sSR sSR sSR
  assert.deepEqual(
    row(INPUT, TCP_SYN),
    names([S.SYN_RECV, S.ESTABLISHED, S.ESTABLISHED, ...Array(8).fill(S.SYN_RECV)]),
  );
  // OUTPUT fin: sTW sFW sSS sTW sFW sTW sCL sTW sLA sLI sTW
  assert.deepEqual(
    row(OUTPUT, TCP_FIN),
    names([
      S.TIME_WAIT,
      S.FIN_WAIT,
      S.SYN_SENT,
      S.TIME_WAIT,
      S.FIN_WAIT,
      S.TIME_WAIT,
      S.CLOSE,
      S.TIME_WAIT,
      S.LAST_ACK,
      S.LISTEN,
      S.TIME_WAIT,
    ]),
  );
  // OUTPUT ack: sES sES sSS sES sFW sTW sCL sCW sLA sES sES
  assert.deepEqual(
    row(OUTPUT, TCP_ACK),
    names([
      S.ESTABLISHED,
      S.ESTABLISHED,
      S.SYN_SENT,
      S.ESTABLISHED,
      S.FIN_WAIT,
      S.TIME_WAIT,
      S.CLOSE,
      S.CLOSE_WAIT,
      S.LAST_ACK,
      S.ESTABLISHED,
      S.ESTABLISHED,
    ]),
  );
  // INPUT-ONLY fin: sCL sFW sSS sTW sFW sTW sCL sCW sLA sLI sTW
  assert.deepEqual(
    row(INPUT_ONLY, TCP_FIN),
    names([
      S.CLOSE,
      S.FIN_WAIT,
      S.SYN_SENT,
      S.TIME_WAIT,
      S.FIN_WAIT,
      S.TIME_WAIT,
      S.CLOSE,
      S.CLOSE_WAIT,
      S.LAST_ACK,
      S.LISTEN,
      S.TIME_WAIT,
    ]),
  );
  // INPUT-ONLY rst: sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sCL
  assert.deepEqual(
    row(INPUT_ONLY, TCP_RST),
    names([
      S.CLOSE,
      S.CLOSE,
      S.CLOSE,
      S.SYN_RECV,
      S.CLOSE,
      S.CLOSE,
      S.CLOSE,
      S.CLOSE,
      S.LAST_ACK,
      S.LISTEN,
      S.CLOSE,
    ]),
  );
});

Deno.test("single cells: handshake, resets, a SYN on an established connection", () => {
  const cases: [number, number, number, number][] = [
    // [state, flags, direction, expected]
    [S.NONE, TCP_SYN, INPUT, S.SYN_RECV], // a client's SYN opens the connection
    [S.NONE, TCP_SYN, OUTPUT, S.SYN_SENT],
    [S.SYN_RECV, TCP_SYN | TCP_ACK, OUTPUT, S.SYN_RECV], // the real's SYN-ACK
    [S.SYN_RECV, TCP_ACK, INPUT, S.ESTABLISHED], // the client's ACK completes it
    [S.SYN_SENT, TCP_ACK, INPUT, S.SYN_SENT],
    [S.NONE, TCP_ACK, INPUT, S.ESTABLISHED], // current kernels (older ones: CLOSE)
    // RST in SYN_RECV: ignored from the client (a spoofed reset cannot end it), final from the real.
    [S.SYN_RECV, TCP_RST, INPUT, S.SYN_RECV],
    [S.SYN_RECV, TCP_RST | TCP_ACK, INPUT, S.SYN_RECV],
    [S.SYN_RECV, TCP_RST, OUTPUT, S.CLOSE],
    [S.SYN_RECV, TCP_RST, INPUT_ONLY, S.SYN_RECV],
    [S.SYNACK, TCP_RST, INPUT, S.SYN_RECV],
    [S.SYNACK, TCP_RST, INPUT_ONLY, S.CLOSE],
    [S.ESTABLISHED, TCP_RST, INPUT, S.CLOSE],
    [S.ESTABLISHED, TCP_RST, OUTPUT, S.CLOSE],
    [S.TIME_WAIT, TCP_RST, OUTPUT, S.TIME_WAIT],
    [S.SYN_SENT, TCP_RST, OUTPUT, S.SYN_SENT],
    [S.LAST_ACK, TCP_RST, INPUT, S.LAST_ACK],
    // A SYN on an established connection leaves it established, both ways.
    [S.ESTABLISHED, TCP_SYN, INPUT, S.ESTABLISHED],
    [S.ESTABLISHED, TCP_SYN, OUTPUT, S.ESTABLISHED],
    [S.ESTABLISHED, TCP_SYN | TCP_ACK, INPUT_ONLY, S.ESTABLISHED],
    // A SYN after the close starts over.
    [S.TIME_WAIT, TCP_SYN, INPUT, S.SYN_RECV],
    [S.CLOSE, TCP_SYN, INPUT, S.SYN_RECV],
    [S.TIME_WAIT, TCP_SYN, OUTPUT, S.SYN_SENT],
    // LISTEN only moves on a client's SYN or a real's ACK.
    [S.LISTEN, TCP_SYN, INPUT, S.SYN_RECV],
    [S.LISTEN, TCP_ACK, OUTPUT, S.ESTABLISHED],
    [S.LISTEN, TCP_FIN, INPUT, S.LISTEN],
    [S.LISTEN, TCP_RST, OUTPUT, S.CLOSE],
    // The last ACK.
    [S.LAST_ACK, TCP_ACK, INPUT, S.CLOSE],
    [S.LAST_ACK, TCP_ACK, OUTPUT, S.LAST_ACK],
    [S.LAST_ACK, TCP_ACK, INPUT_ONLY, S.CLOSE],
  ];
  for (const [state, flags, dir, expected] of cases) {
    assert.equal(
      name(nextTcpState(state, flags, dir)),
      name(expected),
      `${name(state)} + flags ${flags} in direction ${dir}`,
    );
  }
});

Deno.test("flag classes rank RST over SYN over FIN over ACK; no flag at all closes", () => {
  // From ESTABLISHED, INPUT: rst → CLOSE, syn → ESTABLISHED, fin → CLOSE_WAIT, ack → ESTABLISHED.
  const from = (flags: number) => name(nextTcpState(S.ESTABLISHED, flags, INPUT));
  assert.equal(from(TCP_RST | TCP_SYN | TCP_FIN | TCP_ACK), "CLOSE");
  assert.equal(from(TCP_SYN | TCP_FIN | TCP_ACK), "ESTABLISHED");
  assert.equal(from(TCP_FIN | TCP_ACK | TCP_PSH), "CLOSE_WAIT");
  assert.equal(from(TCP_ACK | TCP_PSH), "ESTABLISHED");
  // With none of the four, IPVS's tcp_state_idx gives up and the connection goes to CLOSE.
  assert.equal(from(TCP_PSH), "CLOSE");
  assert.equal(from(0), "CLOSE");
  assert.equal(name(nextTcpState(S.SYN_RECV, TCP_PSH, OUTPUT)), "CLOSE");
  // States outside the TCP table (UDP) are left alone.
  assert.equal(nextTcpState(S.UDP, TCP_RST, INPUT), S.UDP);
});

Deno.test("both close orders, simultaneous close and a replies-bypass close", () => {
  const walk = (steps: [number, number][]) => {
    let s: number = S.ESTABLISHED;
    return steps.map(([flags, dir]) => name(s = nextTcpState(s, flags, dir)));
  };
  const FA = TCP_FIN | TCP_ACK;
  // The client closes first: IPVS, on the real's side of things, calls that CLOSE_WAIT.
  assert.deepEqual(walk([[FA, INPUT], [TCP_ACK, OUTPUT], [FA, OUTPUT], [TCP_ACK, INPUT]]), [
    "CLOSE_WAIT",
    "CLOSE_WAIT",
    "TIME_WAIT",
    "TIME_WAIT",
  ]);
  // The real closes first.
  assert.deepEqual(walk([[FA, OUTPUT], [TCP_ACK, INPUT], [FA, INPUT], [TCP_ACK, OUTPUT]]), [
    "FIN_WAIT",
    "FIN_WAIT",
    "TIME_WAIT",
    "TIME_WAIT",
  ]);
  // Both FINs cross.
  assert.deepEqual(walk([[FA, INPUT], [FA, OUTPUT]]), ["CLOSE_WAIT", "TIME_WAIT"]);
  // Without replies (tunnel, DR) only the client's segments are seen: its FIN means FIN_WAIT,
  // which nothing but the timeout ends.
  assert.deepEqual(walk([[FA, INPUT_ONLY], [TCP_ACK, INPUT_ONLY], [FA, INPUT_ONLY]]), [
    "FIN_WAIT",
    "FIN_WAIT",
    "FIN_WAIT",
  ]);
});

Deno.test("active states are ESTABLISHED and the handshake states, as tcp_state_active_table", () => {
  const active = CONN_STATE_NAMES.filter((_, s) => tcpStateActive(s));
  assert.deepEqual(active, ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"]);
  assert.equal(tcpStateActive(S.UDP), false);
  assert.equal(tcpStateActive(99), false);
});

Deno.test("per-state timeouts: IPVS defaults, tcp/tcpfin/udp from the operator", () => {
  const ms = stateTimeouts({ tcp: 900, tcpfin: 120, udp: 300 });
  const seconds = Object.fromEntries(CONN_STATE_NAMES.map((n, s) => [n, ms[s] / 1000]));
  assert.deepEqual(seconds, {
    NONE: 2,
    ESTABLISHED: 900,
    SYN_SENT: 120,
    SYN_RECV: 60,
    FIN_WAIT: 120,
    TIME_WAIT: 120,
    CLOSE: 10,
    CLOSE_WAIT: 60,
    LAST_ACK: 30,
    LISTEN: 120,
    SYNACK: 120,
    UDP: 300,
  });
  const custom = stateTimeouts({ tcp: 7200, tcpfin: 15, udp: 5 });
  assert.deepEqual([custom[S.ESTABLISHED], custom[S.FIN_WAIT], custom[S.UDP]], [
    7_200_000,
    15_000,
    5_000,
  ]);
});

// --- through the engine ---------------------------------------------------------------------------

/** The web service alone, TCP 80 → 8080 on REAL1 and REAL2. */
const spec = () => dataplaneSpec([service("web", PROTO_TCP, 80, 8080)], 64);

/** Runs one segment through the engine; it must be forwarded. */
function send(engine: Engine, pkt: Uint8Array): void {
  assert.equal(engine.process(pkt, 0, pkt.length), pkt.length);
}

/** [active, inactive] of each real. */
function counts(engine: Engine): number[][] {
  const svc = engine.services.services[0];
  return [0, 1].map((r) => [svc.active[r], svc.inactive[r]]);
}

function stateOf(engine: Engine, port: number): string {
  const e = engine.conns.lookup(PROTO_TCP, CLIENT, port, VIP, 80);
  return e < 0 ? "gone" : name(engine.conns.state[e >> 1]);
}

Deno.test("a whole lifecycle through the engine: states, active/inactive, timeouts", () => {
  const engine = new Engine(spec());
  const c = (flags: number) => send(engine, tcp(CLIENT, 50000, VIP, 80, flags));
  const r = (flags: number) => send(engine, tcp(REAL1, 8080, CLIENT, 50000, flags));
  const steps: [() => void, string, number[]][] = [
    [() => c(TCP_SYN), "SYN_RECV", [1, 0]],
    [() => r(TCP_SYN | TCP_ACK), "SYN_RECV", [1, 0]],
    [() => c(TCP_ACK), "ESTABLISHED", [1, 0]],
    [() => c(TCP_PSH | TCP_ACK), "ESTABLISHED", [1, 0]],
    [() => c(TCP_SYN), "ESTABLISHED", [1, 0]],
    [() => r(TCP_PSH | TCP_ACK), "ESTABLISHED", [1, 0]],
    [() => r(TCP_FIN | TCP_ACK), "FIN_WAIT", [0, 1]],
    [() => c(TCP_ACK), "FIN_WAIT", [0, 1]],
    [() => c(TCP_FIN | TCP_ACK), "TIME_WAIT", [0, 1]],
    [() => r(TCP_ACK), "TIME_WAIT", [0, 1]],
  ];
  for (const [step, state, expected] of steps) {
    step();
    assert.equal(stateOf(engine, 50000), state);
    assert.deepEqual(counts(engine)[0], expected, state);
  }
  // TIME_WAIT lasts 120 s from the last segment, then the connection and its count are gone.
  engine.tick(119_000);
  assert.equal(stateOf(engine, 50000), "TIME_WAIT");
  engine.tick(120_250);
  assert.equal(stateOf(engine, 50000), "gone");
  assert.deepEqual(counts(engine), [[0, 0], [0, 0]]);
});

Deno.test("resets and flagless segments through the engine, with their timeouts", () => {
  const engine = new Engine(spec());
  // A client's RST during the handshake does not end it: still SYN_RECV, still active.
  send(engine, tcp(CLIENT, 51000, VIP, 80, TCP_SYN)); // REAL1
  send(engine, tcp(CLIENT, 51000, VIP, 80, TCP_RST));
  assert.equal(stateOf(engine, 51000), "SYN_RECV");
  assert.deepEqual(counts(engine)[0], [1, 0]);
  // The real's RST does: CLOSE, inactive, gone after 10 s.
  send(engine, tcp(REAL1, 8080, CLIENT, 51000, TCP_RST | TCP_ACK));
  assert.equal(stateOf(engine, 51000), "CLOSE");
  assert.deepEqual(counts(engine)[0], [0, 1]);

  // An established connection hit by a segment without SYN/FIN/ACK/RST goes to CLOSE.
  send(engine, tcp(CLIENT, 51001, VIP, 80, TCP_SYN)); // REAL2
  send(engine, tcp(CLIENT, 51001, VIP, 80, TCP_ACK));
  assert.deepEqual(counts(engine)[1], [1, 0]);
  send(engine, tcp(CLIENT, 51001, VIP, 80, TCP_PSH));
  assert.equal(stateOf(engine, 51001), "CLOSE");
  assert.deepEqual(counts(engine)[1], [0, 1]);
  // An ACK in CLOSE stays CLOSE; a SYN there is a new connection, scheduled anew as IPVS's
  // conn_reuse_mode does (rr's next pick is REAL1).
  send(engine, tcp(CLIENT, 51001, VIP, 80, TCP_ACK));
  assert.equal(stateOf(engine, 51001), "CLOSE");
  send(engine, tcp(CLIENT, 51001, VIP, 80, TCP_SYN));
  assert.equal(stateOf(engine, 51001), "SYN_RECV");
  assert.deepEqual(counts(engine), [[1, 1], [0, 0]]);

  engine.tick(9_000);
  assert.equal(stateOf(engine, 51000), "CLOSE");
  engine.tick(10_250);
  assert.equal(stateOf(engine, 51000), "gone");
  assert.deepEqual(counts(engine)[0], [1, 0]);
  // SYN_RECV: 60 s.
  engine.tick(59_000);
  assert.equal(stateOf(engine, 51001), "SYN_RECV");
  engine.tick(60_250);
  assert.equal(stateOf(engine, 51001), "gone");
  assert.deepEqual(counts(engine), [[0, 0], [0, 0]]);
});

Deno.test("a connection whose replies bypass the engine uses the INPUT-ONLY table", () => {
  const engine = new Engine(spec());
  const svc = engine.services.services[0];
  const t = engine.conns;
  // Made by hand as a tunnel/DR connection would be: no reply-direction entry.
  const id = t.allocate();
  t.protocol[id] = PROTO_TCP;
  t.service[id] = 0;
  t.real[id] = 0;
  t.flags[id] = ConnFlag.NO_REPLY;
  t.inSrc[id] = t.outSrc[id] = CLIENT;
  t.inSrcPort[id] = t.outSrcPort[id] = 52000;
  t.inDst[id] = VIP;
  t.inDstPort[id] = 80;
  t.outDst[id] = REAL1;
  t.outDstPort[id] = 8080;
  t.state[id] = S.NONE;
  svc.bind(0);
  t.link(id, 2_000, 0);
  const c = (flags: number) => send(engine, tcp(CLIENT, 52000, VIP, 80, flags));
  c(TCP_SYN);
  c(TCP_ACK);
  assert.equal(stateOf(engine, 52000), "ESTABLISHED");
  assert.deepEqual(counts(engine)[0], [1, 0]);
  // INPUT would say CLOSE_WAIT here; without replies IPVS calls the client's FIN FIN_WAIT.
  c(TCP_FIN | TCP_ACK);
  assert.equal(stateOf(engine, 52000), "FIN_WAIT");
  assert.deepEqual(counts(engine)[0], [0, 1]);
  // The real's reply is not part of this connection: it finds no entry.
  assert.equal(t.lookup(PROTO_TCP, REAL1, 8080, CLIENT, 52000), -1);
});
