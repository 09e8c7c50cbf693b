/**
 * Unit tests of Engine.process, the per-packet NAT pipeline, fed with scapy's fixtures and small
 * hand-built packets placed at non-zero offsets inside larger buffers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnState } from "../../dataplane/conn/state.ts";
import { DROP, Engine, ENGINE_COUNTER_NAMES, EngineCounter } from "../../dataplane/engine.ts";
import { RealCounter } from "../../dataplane/service.ts";
import { get16, get32, set16, set32 } from "../../dataplane/wire/bytes.ts";
import { checksum } from "../../dataplane/wire/checksum.ts";
import {
  fillIpHeaderChecksum,
  ipDst,
  ipHeaderLength,
  ipSrc,
  ipTotalLength,
  ipTtl,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../dataplane/wire/ipv4.ts";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  tcpDstPort,
  tcpSrcPort,
} from "../../dataplane/wire/tcp.ts";
import { udpChecksum, udpDstPort, udpSrcPort } from "../../dataplane/wire/udp.ts";
import { CLIENT, REAL1, REAL2, VIP, webAndDnsSpec } from "../fixtures/dataplane_specs.ts";
import { assertChecksums, counters, feed, type FeedResult } from "../fixtures/engine_harness.ts";
import { echoRequest, fragment, ipv4, tcp, udp } from "../fixtures/packet_builders.ts";
import { addr, fixture, fixtures, fromHex } from "../fixtures/packets.ts";
import { prng } from "../fixtures/prng.ts";

const C = EngineCounter;
const CLIENT2 = addr("192.168.1.36");
const OTHER = addr("172.16.5.5");

const WEB = 0;
const DNS = 1;

// --- running packets through the engine --------------------------------------------------------

/** Feeds a packet the engine must forward, and checks its checksums afterwards. */
function forward(engine: Engine, pkt: Uint8Array, off = 37): FeedResult {
  const r = feed(engine, pkt, off);
  assert.equal(r.out, ipTotalLength(pkt, 0), "forwarded at its full length");
  assertChecksums(r.buf, r.off);
  return r;
}

/** [active, inactive] of every real of service `s`. */
function conns(engine: Engine, s: number): number[][] {
  const svc = engine.services.services[s];
  return Array.from({ length: svc.count }, (_, r) => [svc.active[r], svc.inactive[r]]);
}

/** State of the connection a client packet of this tuple belongs to, or -1. */
function stateOf(engine: Engine, proto: number, client: number, port: number, vport = 80): number {
  const e = engine.conns.lookup(proto, client, port, VIP, vport);
  return e < 0 ? -1 : engine.conns.state[e >> 1];
}

// --- tests ---------------------------------------------------------------------------------------

Deno.test("a client SYN goes to the first real; later segments match scapy's NAT byte for byte", () => {
  const engine = new Engine(webAndDnsSpec());
  const syn = fixture("tcp_syn_options");
  const r = forward(engine, syn);
  assert.equal(ipSrc(r.pkt, 0), CLIENT);
  assert.equal(ipDst(r.pkt, 0), REAL1);
  assert.equal(tcpSrcPort(r.pkt, 20), 40000);
  assert.equal(tcpDstPort(r.pkt, 20), 8080);
  // Only the destination address, the port and the two checksums changed.
  const changed = [...syn.keys()].filter((i) => syn[i] !== r.pkt[i]);
  const allowed = new Set([10, 11, 16, 17, 18, 19, 22, 23, 36, 37]);
  assert.ok(changed.every((i) => allowed.has(i)), `changed bytes ${changed}`);
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, 40000), ConnState.SYN_RECV);

  // The same client:port with data: scapy built both sides of this rewrite independently.
  for (
    const [before, after] of [["nat_tcp_dnat_before", "nat_tcp_dnat_after"], [
      "nat_tcp_edge_before",
      "nat_tcp_edge_after",
    ], ["nat_tcp_snat_before", "nat_tcp_snat_after"]]
  ) {
    for (const off of [1, 37, 1500]) {
      const r = forward(engine, fixture(before), off);
      assert.deepEqual(r.pkt, fixture(after), `${before}@${off}`);
    }
  }
  assert.equal(engine.conns.size, 1);
  assert.deepEqual(counters(engine), {
    rx_packets: 10,
    forwarded: 10,
    connections_created: 1,
  });
});

Deno.test("handshake: SYN-ACK comes back from VIP:80, the client's ACK establishes", () => {
  const engine = new Engine(webAndDnsSpec());
  const syn = forward(engine, tcp(CLIENT, 40000, VIP, 80, TCP_SYN)).pkt;
  assert.equal(ipDst(syn, 0), REAL1);
  // IPVS counts the handshake states as active (tcp_state_active_table), ESTABLISHED too.
  assert.deepEqual(conns(engine, WEB), [[1, 0], [0, 0]]);

  const synAck = forward(engine, tcp(REAL1, 8080, CLIENT, 40000, TCP_SYN | TCP_ACK)).pkt;
  assert.equal(ipSrc(synAck, 0), VIP);
  assert.equal(tcpSrcPort(synAck, 20), 80);
  assert.equal(ipDst(synAck, 0), CLIENT);
  assert.equal(tcpDstPort(synAck, 20), 40000);
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, 40000), ConnState.SYN_RECV);

  const ack = forward(engine, tcp(CLIENT, 40000, VIP, 80, TCP_ACK)).pkt;
  assert.equal(ipDst(ack, 0), REAL1);
  assert.equal(tcpDstPort(ack, 20), 8080);
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, 40000), ConnState.ESTABLISHED);
  assert.deepEqual(conns(engine, WEB), [[1, 0], [0, 0]]);

  // rr: the next client port goes to the second real, the one after back to the first.
  const second = forward(engine, tcp(CLIENT, 40001, VIP, 80, TCP_SYN)).pkt;
  assert.equal(ipDst(second, 0), REAL2);
  assert.equal(tcpDstPort(second, 20), 8080);
  const third = forward(engine, tcp(CLIENT2, 40000, VIP, 80, TCP_SYN)).pkt;
  assert.equal(ipDst(third, 0), REAL1);
  // A retransmitted SYN stays with its connection.
  assert.equal(ipDst(forward(engine, tcp(CLIENT, 40001, VIP, 80, TCP_SYN)).pkt, 0), REAL2);
  assert.equal(engine.conns.size, 3);
  assert.deepEqual(conns(engine, WEB), [[2, 0], [1, 0]]);
  assert.equal(engine.counters[C.CONNECTIONS_CREATED], 3);
});

Deno.test("connection state and active/inactive counters follow the TCP lifecycle", () => {
  const engine = new Engine(webAndDnsSpec());
  const port = 41000;
  const c = (flags: number) => forward(engine, tcp(CLIENT, port, VIP, 80, flags));
  const s = (flags: number) => forward(engine, tcp(REAL1, 8080, CLIENT, port, flags));
  const state = () => stateOf(engine, PROTO_TCP, CLIENT, port);
  const steps: [() => unknown, number, number[]][] = [
    [() => c(TCP_SYN), ConnState.SYN_RECV, [1, 0]],
    [() => s(TCP_SYN | TCP_ACK), ConnState.SYN_RECV, [1, 0]],
    [() => c(TCP_ACK), ConnState.ESTABLISHED, [1, 0]],
    [() => c(TCP_PSH | TCP_ACK), ConnState.ESTABLISHED, [1, 0]],
    [() => s(TCP_PSH | TCP_ACK), ConnState.ESTABLISHED, [1, 0]],
    // IPVS names states from the director's side: the client closing first is CLOSE_WAIT.
    [() => c(TCP_FIN | TCP_ACK), ConnState.CLOSE_WAIT, [0, 1]],
    [() => s(TCP_ACK), ConnState.CLOSE_WAIT, [0, 1]],
    [() => s(TCP_FIN | TCP_ACK), ConnState.TIME_WAIT, [0, 1]],
    [() => c(TCP_ACK), ConnState.TIME_WAIT, [0, 1]],
  ];
  for (const [send, expected, counts] of steps) {
    send();
    assert.equal(Engine.stateName(state()), Engine.stateName(expected));
    assert.deepEqual(conns(engine, WEB)[0], counts, Engine.stateName(expected));
  }

  // The server closes first.
  const p2 = 41001;
  forward(engine, tcp(CLIENT, p2, VIP, 80, TCP_SYN));
  forward(engine, tcp(REAL2, 8080, CLIENT, p2, TCP_SYN | TCP_ACK));
  forward(engine, tcp(CLIENT, p2, VIP, 80, TCP_ACK));
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, p2), ConnState.ESTABLISHED);
  assert.deepEqual(conns(engine, WEB)[1], [1, 0]);
  forward(engine, tcp(REAL2, 8080, CLIENT, p2, TCP_FIN | TCP_ACK));
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, p2), ConnState.FIN_WAIT);
  assert.deepEqual(conns(engine, WEB)[1], [0, 1]);
  forward(engine, tcp(CLIENT, p2, VIP, 80, TCP_FIN | TCP_ACK));
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, p2), ConnState.TIME_WAIT);

  // A reset ends an established connection.
  const p3 = 41002;
  forward(engine, tcp(CLIENT, p3, VIP, 80, TCP_SYN));
  forward(engine, tcp(CLIENT, p3, VIP, 80, TCP_ACK));
  assert.deepEqual(conns(engine, WEB)[0], [1, 1]);
  forward(engine, tcp(REAL1, 8080, CLIENT, p3, TCP_RST));
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, p3), ConnState.CLOSE);
  assert.deepEqual(conns(engine, WEB), [[0, 2], [0, 1]]);
  assert.equal(engine.conns.size, 3);
});

Deno.test("a SYN on the ports of a connection in TIME_WAIT is scheduled anew (IPVS's conn_reuse_mode)", () => {
  const engine = new Engine(webAndDnsSpec());
  const port = 42000;
  const realOf = (pkt: Uint8Array) => get32(forward(engine, pkt).pkt, 16);
  assert.equal(realOf(tcp(CLIENT, port, VIP, 80, TCP_SYN)), REAL1);
  forward(engine, tcp(REAL1, 8080, CLIENT, port, TCP_SYN | TCP_ACK));
  forward(engine, tcp(CLIENT, port, VIP, 80, TCP_ACK));
  forward(engine, tcp(CLIENT, port, VIP, 80, TCP_FIN | TCP_ACK));
  forward(engine, tcp(REAL1, 8080, CLIENT, port, TCP_FIN | TCP_ACK));
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, port), ConnState.TIME_WAIT);
  // The finished connection was on REAL1; rr's next pick is REAL2.
  assert.equal(realOf(tcp(CLIENT, port, VIP, 80, TCP_SYN)), REAL2, "scheduled anew");
  assert.equal(stateOf(engine, PROTO_TCP, CLIENT, port), ConnState.SYN_RECV);
  assert.deepEqual(conns(engine, WEB), [[0, 0], [1, 0]], "the old entry's counts are gone");
  // A retransmitted SYN of a live connection stays with it.
  assert.equal(realOf(tcp(CLIENT, port, VIP, 80, TCP_SYN)), REAL2);
  assert.equal(engine.conns.size, 1);
});

Deno.test("connections expire after their state's timeout and the counters return to 0", () => {
  const engine = new Engine(webAndDnsSpec());
  // No tick before the first packets: the engine may start with traffic.
  engine.now = 1_000;
  forward(engine, tcp(CLIENT, 42000, VIP, 80, TCP_SYN)); // SYN_RECV, 60 s
  forward(engine, tcp(CLIENT, 42001, VIP, 80, TCP_SYN));
  forward(engine, tcp(CLIENT, 42001, VIP, 80, TCP_ACK)); // ESTABLISHED, 900 s
  forward(engine, udp(CLIENT, 5000, VIP, 53, "q")); // UDP, 300 s
  forward(engine, tcp(CLIENT, 42002, VIP, 80, TCP_SYN));
  forward(engine, tcp(CLIENT, 42002, VIP, 80, TCP_ACK));
  assert.equal(engine.conns.size, 4);
  assert.equal(stateOf(engine, PROTO_UDP, CLIENT, 5000, 53), ConnState.UDP);
  assert.deepEqual(conns(engine, WEB), [[2, 0], [1, 0]]);
  assert.deepEqual(conns(engine, DNS), [[0, 1], [0, 0]]);
  // By now the wheel has filed the established connections far out.
  engine.tick(5_000);
  engine.now = 10_000;
  // FIN_WAIT's 120 s (the real closed first) end well before ESTABLISHED's 900 s would have.
  forward(engine, tcp(REAL1, 8080, CLIENT, 42002, TCP_FIN | TCP_ACK));
  assert.deepEqual(conns(engine, WEB), [[1, 1], [1, 0]]);

  const live = () =>
    [[PROTO_TCP, 42000, 80], [PROTO_TCP, 42001, 80], [PROTO_UDP, 5000, 53], [
      PROTO_TCP,
      42002,
      80,
    ]].map(([proto, port, vport]) => stateOf(engine, proto, CLIENT, port, vport) >= 0);
  const at = (now: number) => {
    engine.tick(now);
    return live();
  };
  assert.deepEqual(at(60_000), [true, true, true, true]);
  assert.deepEqual(at(61_000), [false, true, true, true]);
  assert.deepEqual(conns(engine, WEB), [[0, 1], [1, 0]]);
  assert.deepEqual(at(129_999), [false, true, true, true]);
  assert.deepEqual(at(130_000), [false, true, true, false]);
  assert.deepEqual(conns(engine, WEB), [[0, 0], [1, 0]]);
  // Traffic keeps the UDP connection alive past its first deadline.
  engine.now = 200_000;
  forward(engine, udp(REAL1, 8053, CLIENT, 5000, "a"));
  assert.deepEqual(at(301_000), [false, true, true, false]);
  assert.deepEqual(at(499_999), [false, true, true, false]);
  assert.deepEqual(at(500_000), [false, true, false, false]);
  assert.deepEqual(conns(engine, DNS), [[0, 0], [0, 0]]);
  assert.deepEqual(at(900_999), [false, true, false, false]);
  assert.deepEqual(at(901_000), [false, false, false, false]);
  assert.deepEqual(conns(engine, WEB), [[0, 0], [0, 0]]);
  assert.equal(engine.conns.size, 0);
  assert.equal(engine.counters[C.CONNECTIONS_EXPIRED], 4);
  // The tuples are free again: a new SYN makes a new connection.
  engine.now = 902_000;
  forward(engine, tcp(CLIENT, 42001, VIP, 80, TCP_SYN));
  assert.equal(engine.counters[C.CONNECTIONS_CREATED], 5);
});

Deno.test("a non-SYN segment to the VIP without a connection is dropped and counted", () => {
  const engine = new Engine(webAndDnsSpec());
  assert.equal(feed(engine, fixture("tcp_data_odd")).out, DROP);
  assert.equal(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_ACK)).out, DROP);
  assert.equal(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_SYN | TCP_ACK)).out, DROP);
  assert.equal(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_FIN | TCP_ACK)).out, DROP);
  assert.equal(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_RST)).out, DROP);
  assert.deepEqual(counters(engine), { rx_packets: 5, drop_no_connection: 5 });
  assert.equal(engine.conns.size, 0);
  assert.deepEqual(conns(engine, WEB), [[0, 0], [0, 0]]);
});

Deno.test("packets to a VIP without a matching service are dropped, not passed back", () => {
  const engine = new Engine(webAndDnsSpec());
  const gre = ipv4(47, CLIENT, VIP, new Uint8Array(8));
  for (
    const pkt of [
      tcp(CLIENT, 40000, VIP, 443, TCP_SYN),
      tcp(CLIENT, 40000, VIP, 53, TCP_SYN), // 53 is a UDP service
      udp(CLIENT, 40000, VIP, 80, "x"), // 80 is a TCP service
      fixture("udp_ip_options"), // UDP to VIP:9
      gre,
    ]
  ) assert.equal(feed(engine, pkt).out, DROP);
  assert.deepEqual(counters(engine), { rx_packets: 5, drop_no_service: 5 });
  // An ICMP error to the VIP about no connection of ours is not handled either.
  assert.equal(feed(engine, fixture("icmp_frag_needed")).out, DROP);
  assert.equal(engine.counters[C.DROP_ICMP_UNTRACKED], 1);
  // A later fragment to the VIP has no ports to match; the first one must not loop back either.
  assert.equal(feed(engine, fixture("fragment_last")).out, DROP);
  assert.equal(engine.counters[C.DROP_FRAGMENT], 1);
  assert.equal(feed(engine, fixture("fragment_first")).out, DROP);
  assert.equal(engine.counters[C.FORWARDED] + engine.counters[C.PASSED_THROUGH], 0);
});

Deno.test("traffic that is not for a VIP or a connection passes through byte for byte", () => {
  const engine = new Engine(webAndDnsSpec());
  const fragment = fixture("fragment_last");
  set32(fragment, 16, OTHER);
  fillIpHeaderChecksum(fragment, 0);
  const packets = [
    fixture("nat_tcp_snat_before"), // from REAL1:8080 to a client without a connection
    fixture("nat_tcp_snat_addr_before"),
    fixture("nat_udp_snat_before"),
    tcp(REAL2, 8080, OTHER, 1234, TCP_ACK),
    tcp(REAL1, 22, CLIENT, 50000, TCP_SYN), // a SYN that is no service's
    tcp(CLIENT, 40000, OTHER, 80, TCP_SYN), // port 80, but not on a VIP
    udp(CLIENT, 5353, OTHER, 53, "q"),
    echoRequest(CLIENT, OTHER, 1, 1),
    ipv4(47, REAL1, OTHER, new Uint8Array(12)),
    fragment,
  ];
  for (const pkt of packets) {
    const r = feed(engine, pkt, 61);
    assert.equal(r.out, pkt.length);
    assert.deepEqual(r.pkt, pkt);
  }
  assert.deepEqual(counters(engine), { rx_packets: 10, passed_through: 10 });
  assert.equal(engine.conns.size, 0);
});

Deno.test("every malformed fixture is dropped and counted under its reason", () => {
  const engine = new Engine(webAndDnsSpec());
  const reasons: Record<string, number> = {
    ipv4: C.DROP_MALFORMED_IPV4,
    tcp: C.DROP_MALFORMED_TCP,
    udp: C.DROP_MALFORMED_UDP,
    icmp: C.DROP_MALFORMED_ICMP,
  };
  let checked = 0;
  for (const [name, f] of Object.entries(fixtures)) {
    const bad = Object.entries(f.parse ?? {}).find(([, v]) => v !== "ok");
    if (bad === undefined) continue;
    const before = engine.counters.slice();
    for (const off of [0, 5, 37]) assert.equal(feed(engine, fromHex(f.hex), off).out, DROP, name);
    const diff = ENGINE_COUNTER_NAMES.filter((_, i) => engine.counters[i] !== before[i]);
    assert.deepEqual(diff, ["rx_packets", ENGINE_COUNTER_NAMES[reasons[bad[0]]]], name);
    assert.equal(engine.counters[reasons[bad[0]]] - before[reasons[bad[0]]], 3, name);
    checked++;
  }
  assert.ok(checked >= 15, `only ${checked} malformed fixtures`);
  // A valid packet cut short in flight (len below its total length) is malformed too.
  const syn = fixture("tcp_syn_options");
  const before = engine.counters[C.DROP_MALFORMED_IPV4];
  assert.equal(feed(engine, syn, 37, syn.length - 1).out, DROP);
  assert.equal(feed(engine, syn, 37, 0).out, DROP);
  assert.equal(feed(engine, syn, 37, -5).out, DROP);
  // The buffer ends before the packet does, whatever `len` claims.
  const cut = new Uint8Array(50);
  cut.set(syn.subarray(0, 50));
  assert.equal(engine.process(cut, 0, syn.length), DROP);
  assert.equal(engine.process(cut, 45, 60), DROP);
  assert.equal(engine.process(cut, 500, 60), DROP);
  assert.equal(engine.counters[C.DROP_MALFORMED_IPV4] - before, 6);
  assert.equal(engine.conns.size, 0);
});

Deno.test("an ICMP echo request to a VIP is answered by the VIP", () => {
  const engine = new Engine(webAndDnsSpec());
  for (
    const [pkt, off] of [[fixture("icmp_echo_request"), 37], [
      echoRequest(OTHER, VIP, 9, 3, { ttl: 5 }),
      2,
    ]] as const
  ) {
    // The reply built independently: addresses swapped, TTL 64, type 0, full checksums.
    const expected = pkt.slice();
    set32(expected, 12, ipDst(pkt, 0));
    set32(expected, 16, ipSrc(pkt, 0));
    expected[8] = 64;
    fillIpHeaderChecksum(expected, 0);
    const ihl = ipHeaderLength(pkt, 0);
    expected[ihl] = 0;
    set16(expected, ihl + 2, 0);
    set16(expected, ihl + 2, checksum(expected, ihl, expected.length - ihl));
    const r = forward(engine, pkt, off);
    assert.equal(ipSrc(r.pkt, 0), VIP);
    assert.equal(ipDst(r.pkt, 0), ipSrc(pkt, 0));
    assert.equal(r.pkt[ihl], 0, "echo reply");
    assert.equal(ipTtl(r.pkt, 0), 64);
    assert.deepEqual(r.pkt, expected);
  }
  assert.deepEqual(counters(engine), { rx_packets: 2, echo_replies: 2 });
  assert.equal(engine.conns.size, 0);
});

Deno.test("UDP NAT both ways, including datagrams without a checksum", () => {
  const engine = new Engine(webAndDnsSpec());
  for (
    const [before, after] of [
      ["nat_udp_dnat_before", "nat_udp_dnat_after"],
      ["nat_udp_snat_before", "nat_udp_snat_after"],
      ["nat_udp_nocsum_before", "nat_udp_nocsum_after"],
      ["nat_udp_edge_before", "nat_udp_edge_after"],
    ]
  ) {
    const r = forward(engine, fixture(before), 19);
    assert.deepEqual(r.pkt, fixture(after), before);
  }
  assert.equal(udpChecksum(fixture("nat_udp_nocsum_after"), 20), 0);
  assert.equal(engine.conns.size, 1);
  // Built datagrams: a checksum-less query and its checksum-less answer from the real.
  const q = forward(engine, udp(CLIENT2, 6000, VIP, 53, "no sum", { checksum: false })).pkt;
  assert.equal(ipDst(q, 0), REAL2);
  assert.equal(udpDstPort(q, 20), 8053);
  assert.equal(udpChecksum(q, 20), 0);
  const a = forward(engine, udp(REAL2, 8053, CLIENT2, 6000, "answer", { checksum: false })).pkt;
  assert.equal(ipSrc(a, 0), VIP);
  assert.equal(udpSrcPort(a, 20), 53);
  assert.equal(udpChecksum(a, 20), 0);
  const a2 = forward(engine, udp(REAL2, 8053, CLIENT2, 6000, "answer with sum")).pkt;
  assert.notEqual(udpChecksum(a2, 20), 0);
  assert.equal(stateOf(engine, PROTO_UDP, CLIENT2, 6000, 53), ConnState.UDP);
  // UDP connections count as inactive, as IPVS lists them.
  assert.deepEqual(conns(engine, DNS), [[0, 1], [0, 1]]);
});

Deno.test("per-real and engine counters count packets and bytes in each direction", () => {
  const engine = new Engine(webAndDnsSpec());
  const inbound = [
    tcp(CLIENT, 43000, VIP, 80, TCP_SYN),
    tcp(CLIENT, 43000, VIP, 80, TCP_ACK),
    tcp(CLIENT, 43000, VIP, 80, TCP_PSH | TCP_ACK, "GET / HTTP/1.0\r\n\r\n"),
  ];
  const outbound = [
    tcp(REAL1, 8080, CLIENT, 43000, TCP_SYN | TCP_ACK),
    tcp(REAL1, 8080, CLIENT, 43000, TCP_PSH | TCP_ACK, "HTTP/1.0 200 OK\r\n\r\nhello"),
  ];
  for (const p of [inbound[0], outbound[0], inbound[1], inbound[2], outbound[1]]) {
    forward(engine, p);
  }
  forward(engine, tcp(CLIENT, 43001, VIP, 80, TCP_SYN)); // to REAL2
  const svc = engine.services.services[WEB];
  const sum = (ps: Uint8Array[]) => ps.reduce((n, p) => n + p.length, 0);
  assert.deepEqual(
    [
      RealCounter.CONNS,
      RealCounter.IN_PACKETS,
      RealCounter.IN_BYTES,
      RealCounter.OUT_PACKETS,
      RealCounter.OUT_BYTES,
    ].map((c) => [svc.counter(0, c), svc.counter(1, c)]),
    [[1, 1], [3, 1], [sum(inbound), 40], [2, 0], [sum(outbound), 0]],
  );
  assert.deepEqual(counters(engine), { rx_packets: 6, forwarded: 6, connections_created: 2 });
});

Deno.test("trailing bytes after the IPv4 total length are not written back", () => {
  const engine = new Engine(webAndDnsSpec());
  const syn = tcp(CLIENT, 44000, VIP, 80, TCP_SYN);
  const padded = new Uint8Array(syn.length + 6);
  padded.set(syn);
  const r = feed(engine, padded, 11);
  assert.equal(r.out, syn.length);
  assertChecksums(r.buf, r.off);
  assert.equal(ipDst(r.pkt, 0), REAL1);
});

Deno.test("no real to take a connection, or a full table: dropped and counted", () => {
  const drained = webAndDnsSpec();
  for (const r of drained.services[WEB].reals) r.weight = 0;
  const engine = new Engine(drained);
  assert.equal(feed(engine, tcp(CLIENT, 45000, VIP, 80, TCP_SYN)).out, DROP);
  assert.equal(engine.counters[C.DROP_NO_REAL], 1);
  assert.equal(engine.conns.size, 0);

  const small = new Engine(webAndDnsSpec(2));
  forward(small, tcp(CLIENT, 45000, VIP, 80, TCP_SYN));
  forward(small, udp(CLIENT, 45000, VIP, 53, "q"));
  assert.equal(feed(small, tcp(CLIENT, 45001, VIP, 80, TCP_SYN)).out, DROP);
  assert.equal(small.counters[C.DROP_TABLE_FULL], 1);
  // Existing connections keep working.
  forward(small, tcp(CLIENT, 45000, VIP, 80, TCP_ACK));
  assert.equal(small.conns.size, 2);
  // A refused SYN did not use up a scheduling turn: once there is room, rr goes on to REAL2.
  small.tick(1_000_000);
  assert.equal(small.conns.size, 0);
  const next = forward(small, tcp(CLIENT, 45002, VIP, 80, TCP_SYN));
  assert.equal(ipDst(next.buf, next.off), REAL2);
  assert.equal(Engine.stateName(ConnState.TIME_WAIT), "TIME_WAIT");
  assert.equal(Engine.stateName(99), "UNKNOWN");
});

Deno.test("a first UDP fragment is NAT-ed, a first fragment of passing traffic passes", () => {
  const engine = new Engine(webAndDnsSpec());
  // The first 24 bytes of a 1408-byte datagram: its UDP length counts the whole datagram.
  const firstFragment = (src: number, sport: number, dst: number, dport: number) => {
    const data = "0123456789abcdef".padEnd(1400, ".");
    return fragment(udp(src, sport, dst, dport, data, { checksum: false }), 24)[0];
  };
  const toVip = feed(engine, firstFragment(CLIENT, 5353, VIP, 53));
  assert.notEqual(toVip.out, DROP);
  assert.equal(ipDst(toVip.buf, toVip.off), REAL1);
  const passing = firstFragment(REAL1, 9999, OTHER, 4444);
  const r = feed(engine, passing);
  assert.equal(r.out, passing.length);
  assert.deepEqual(r.pkt, passing);
  assert.equal(engine.counters[C.DROP_MALFORMED_UDP], 0);
});

// --- robustness ---------------------------------------------------------------------------------

Deno.test("100,000 mutated packets never throw, and the engine keeps working", () => {
  const engine = new Engine(webAndDnsSpec(1 << 16));
  const rand = prng(0xf022);
  const sources: Uint8Array[] = Object.values(fixtures).map((f) => fromHex(f.hex));
  for (let p = 0; p < 40; p++) {
    sources.push(tcp(CLIENT, 30000 + p, VIP, 80, TCP_SYN));
    sources.push(tcp(REAL1, 8080, CLIENT, 30000 + p, TCP_SYN | TCP_ACK));
    sources.push(tcp(CLIENT, 30000 + p, VIP, 80, TCP_FIN | TCP_ACK));
    sources.push(udp(CLIENT, 30000 + p, VIP, 53, "fuzz"));
    sources.push(udp(REAL2, 8053, CLIENT, 30000 + p, "zz", { checksum: p % 2 === 0 }));
    sources.push(echoRequest(CLIENT, VIP, p, p));
  }
  const buf = new Uint8Array(4096);
  let forwarded = 0;
  for (let i = 0; i < 100_000; i++) {
    const src = sources[rand() % sources.length];
    const off = rand() % 128;
    for (let j = 0; j < 200; j++) buf[off + src.length + j] = rand();
    buf.set(src, off);
    let len = src.length;
    const pkt = buf.subarray(off);
    switch (rand() % 7) {
      case 0: // bit flips anywhere
        for (let k = 1 + (rand() % 4); k > 0; k--) {
          pkt[rand() % Math.max(1, len)] ^= 1 << (rand() % 8);
        }
        break;
      case 1: // truncation
        len = rand() % (len + 1);
        break;
      case 2: // a length that has nothing to do with the packet
        len = (rand() % (buf.length + 256)) - 64;
        break;
      case 3: // random bytes
        for (let k = 1 + (rand() % 8); k > 0; k--) pkt[rand() % Math.max(1, len)] = rand();
        break;
      case 4: // header bytes changed with a valid header checksum, so L4 parsing is reached
        for (let k = 1 + (rand() % 3); k > 0; k--) pkt[rand() % 40] = rand();
        fillIpHeaderChecksum(pkt, 0);
        if (rand() & 1) len = rand() % 100;
        break;
      case 5: // random bytes behind a plausible header
        for (let k = 0; k < 80; k++) pkt[k] = rand();
        pkt[0] = 0x45;
        pkt[9] = [PROTO_TCP, PROTO_UDP, PROTO_ICMP][rand() % 3];
        if (rand() & 1) set32(pkt, 16, VIP);
        set16(pkt, 2, 20 + (rand() % 70));
        fillIpHeaderChecksum(pkt, 0);
        len = 20 + (rand() % 80);
        break;
      default: // unchanged, to build up connections
        break;
    }
    const out = engine.process(buf, off, len);
    if (out !== DROP) {
      forwarded++;
      assert.ok(out >= 20 && out <= len && out <= buf.length - off, `iteration ${i}: ${out}`);
    }
    if (i % 500 === 0) engine.tick(engine.now += 250 + (rand() % 5_000));
  }
  assert.ok(forwarded > 10_000, `only ${forwarded} forwarded`);
  assert.ok(engine.counters[C.CONNECTIONS_CREATED] > 100);

  // Bookkeeping stayed consistent: every live connection is counted once, nothing negative.
  let counted = 0;
  for (const svc of engine.services.services) {
    for (let r = 0; r < svc.count; r++) {
      assert.ok(svc.active[r] >= 0 && svc.inactive[r] >= 0, `${svc.spec.name}/${r}`);
      counted += svc.active[r] + svc.inactive[r];
    }
  }
  assert.equal(counted, engine.conns.size);
  let visited = 0;
  engine.conns.forEach(() => visited++);
  assert.equal(visited, engine.conns.size);

  // A clean SYN from a fresh client is still translated correctly.
  const syn = tcp(addr("198.51.100.7"), 1234, VIP, 80, TCP_SYN);
  const r = forward(engine, syn, 99);
  assert.ok([REAL1, REAL2].includes(ipDst(r.pkt, 0)));
  assert.equal(tcpDstPort(r.pkt, 20), 8080);
  assert.equal(get32(r.pkt, 12), addr("198.51.100.7"));
  assert.equal(get16(r.pkt, 20), 1234);
  // And once everything has timed out, every counter is back to 0.
  engine.tick(engine.now + 3_600_000);
  assert.equal(engine.conns.size, 0);
  for (const svc of engine.services.services) {
    assert.deepEqual([...svc.active, ...svc.inactive].filter((n) => n !== 0), []);
  }
  assert.equal(
    engine.counters[C.CONNECTIONS_EXPIRED],
    engine.counters[C.CONNECTIONS_CREATED],
  );
});
