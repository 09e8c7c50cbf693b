/**
 * ICMP errors about NAT-ed connections (translated like the connection they quote, both ways,
 * checked byte for byte against scapy's fixtures) and IP fragments (later fragments follow their
 * first fragment's rewrite through the fragment table, or are dropped when bound for a VIP).
 *
 * @module
 */

import assert from "node:assert/strict";
import { FRAGMENT_TIMEOUT_MS, FragmentTable } from "../../dataplane/conn/fragment_table.ts";
import { DROP, Engine } from "../../dataplane/engine.ts";
import { RealCounter } from "../../dataplane/service.ts";
import { get16, set16 } from "../../dataplane/wire/bytes.ts";
import { checksum, l4Checksum } from "../../dataplane/wire/checksum.ts";
import {
  ipDst,
  ipHeaderLength,
  ipSrc,
  ipTotalLength,
  Ipv4Parse,
  parseIpv4,
  PROTO_TCP,
  PROTO_UDP,
} from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_SYN } from "../../dataplane/wire/tcp.ts";
import { CLIENT, REAL1, REAL2, VIP, webAndDnsSpec } from "../fixtures/dataplane_specs.ts";
import { counters, feed } from "../fixtures/engine_harness.ts";
import {
  echoRequest,
  fragment,
  icmpError,
  ipv4,
  reassemble,
  tcp,
  udp,
} from "../fixtures/packet_builders.ts";
import { addr, fixture } from "../fixtures/packets.ts";

const CLIENT2 = addr("192.168.1.36");
const ROUTER = addr("192.168.1.1");
const REAL_ROUTER = addr("10.10.10.1");
const OTHER = addr("172.16.5.5");

// --- running packets --------------------------------------------------------------------------

/** Feeds a packet that must be written back whole with a valid IPv4 header. */
function pass(engine: Engine, pkt: Uint8Array): Uint8Array {
  const r = feed(engine, pkt);
  assert.equal(r.out, pkt.length);
  assert.equal(parseIpv4(r.pkt, 0, r.pkt.length), Ipv4Parse.OK, "IPv4 header");
  return r.pkt;
}

/** Feeds a packet that must be dropped. */
function drop(engine: Engine, pkt: Uint8Array): void {
  assert.equal(feed(engine, pkt).out, DROP);
}

/** Checks an ICMP error's checksums: outer header, ICMP message, quoted header. */
function assertIcmpChecksums(b: Uint8Array): number {
  assert.equal(parseIpv4(b, 0, b.length), Ipv4Parse.OK, "outer IPv4 header");
  const l4 = ipHeaderLength(b, 0);
  assert.equal(checksum(b, l4, ipTotalLength(b, 0) - l4), 0, "ICMP checksum");
  const inner = l4 + 8;
  assert.equal(checksum(b, inner, ipHeaderLength(b, inner)), 0, "quoted IPv4 header checksum");
  return inner;
}

/** An engine with CLIENT:40000 → VIP:80 and CLIENT:5353 → VIP:53, both on REAL1. */
function engineWithConnections(): Engine {
  const engine = new Engine(webAndDnsSpec(256));
  assert.equal(ipDst(pass(engine, tcp(CLIENT, 40000, VIP, 80, TCP_SYN)), 0), REAL1);
  assert.equal(ipDst(pass(engine, udp(CLIENT, 5353, VIP, 53, 20)), 0), REAL1);
  return engine;
}

// --- ICMP errors ----------------------------------------------------------------------------------

Deno.test("frag-needed from the real's side reaches the client from the VIP, quoting VIP:80", () => {
  const engine = engineWithConnections();
  const id = engine.conns.lookup(PROTO_TCP, CLIENT, 40000, VIP, 80) >> 1;
  const expires = engine.conns.expires[id];
  const state = engine.conns.state[id];
  const out = pass(engine, fixture("icmp_nat_frag_needed_to_client_before"));
  // Scapy built the expected message independently: outer source, quoted destination and port,
  // quoted IP and TCP checksums, ICMP checksum and outer checksum all as the client must see them.
  assert.deepEqual(out, fixture("icmp_nat_frag_needed_to_client_after"));
  const inner = assertIcmpChecksums(out);
  assert.equal(ipSrc(out, 0), VIP);
  assert.equal(ipDst(out, 0), CLIENT);
  assert.equal(get16(out, 26), 1400, "next-hop MTU untouched");
  assert.equal(ipSrc(out, inner), CLIENT);
  assert.equal(ipDst(out, inner), VIP);
  assert.deepEqual([get16(out, inner + 20), get16(out, inner + 22)], [40000, 80]);
  // The error counts as outbound traffic of the connection's real, and leaves it as it was.
  const svc = engine.services.services[0];
  assert.equal(svc.counter(0, RealCounter.OUT_PACKETS), 1);
  assert.equal(svc.counter(0, RealCounter.OUT_BYTES), out.length);
  assert.equal(engine.conns.expires[id], expires);
  assert.equal(engine.conns.state[id], state);
  assert.equal(counters(engine).icmp_errors_translated, 1);
});

Deno.test("frag-needed from the client's side to the VIP goes to the real, quoting real:8080", () => {
  const engine = engineWithConnections();
  const out = pass(engine, fixture("icmp_nat_frag_needed_to_real_before"));
  assert.deepEqual(out, fixture("icmp_nat_frag_needed_to_real_after"));
  const inner = assertIcmpChecksums(out);
  assert.deepEqual([ipSrc(out, 0), ipDst(out, 0)], [ROUTER, REAL1]);
  assert.deepEqual([ipSrc(out, inner), ipDst(out, inner)], [REAL1, CLIENT]);
  assert.deepEqual([get16(out, inner + 20), get16(out, inner + 22)], [8080, 40000]);
  const svc = engine.services.services[0];
  assert.equal(svc.counter(0, RealCounter.IN_PACKETS), 2); // the SYN and the error
  assert.deepEqual(counters(engine), {
    rx_packets: 3,
    forwarded: 2,
    connections_created: 2,
    icmp_errors_translated: 1,
  });
});

Deno.test("time exceeded about UDP, both ways, with the quoted UDP checksum kept valid", () => {
  const engine = engineWithConnections();
  for (const name of ["icmp_nat_time_exceeded_to_client", "icmp_nat_time_exceeded_to_real"]) {
    const out = pass(engine, fixture(`${name}_before`));
    assert.deepEqual(out, fixture(`${name}_after`), name);
    const inner = assertIcmpChecksums(out);
    // The whole datagram is quoted: its checksum verifies against the rewritten addresses.
    const quoted = ipTotalLength(out, inner) - 20;
    assert.equal(l4Checksum(out, inner, inner + 20, quoted, PROTO_UDP), 0, name);
  }
  assert.equal(counters(engine).icmp_errors_translated, 2);
  const dns = engine.services.services[1];
  assert.equal(dns.counter(0, RealCounter.IN_PACKETS), 2);
  assert.equal(dns.counter(0, RealCounter.OUT_PACKETS), 1);
});

Deno.test("parameter problem and source quench are translated; a redirect is not", () => {
  const engine = engineWithConnections();
  // The client's segment as it left towards the real, quoted with 8 bytes of TCP only.
  const sent = tcp(CLIENT, 40000, REAL1, 8080, TCP_ACK);
  for (const type of [12, 4]) {
    const out = pass(engine, icmpError(REAL1, CLIENT, type, 0, sent, 28));
    const inner = assertIcmpChecksums(out);
    assert.deepEqual([ipSrc(out, 0), ipDst(out, 0)], [VIP, CLIENT], `type ${type}`);
    assert.deepEqual([ipSrc(out, inner), ipDst(out, inner)], [CLIENT, VIP]);
    assert.deepEqual([get16(out, inner + 20), get16(out, inner + 22)], [40000, 80]);
    assert.equal(out.length, 20 + 8 + 28, "nothing added to a short quote");
  }
  const redirect = icmpError(REAL_ROUTER, CLIENT, 5, 1, sent, 28);
  assert.deepEqual(pass(engine, redirect), redirect);
  assert.equal(counters(engine).icmp_errors_translated, 2);
  assert.equal(counters(engine).passed_through, 1);
});

Deno.test("a quoted UDP datagram without checksum keeps checksum 0", () => {
  const engine = new Engine(webAndDnsSpec(256));
  pass(engine, udp(CLIENT2, 6000, VIP, 53, 10, { id: 0x4444, checksum: false }));
  const sent = udp(CLIENT2, 6000, REAL1, 8053, 10, { id: 0x4444, checksum: false });
  const out = pass(engine, icmpError(REAL_ROUTER, CLIENT2, 3, 3, sent));
  const inner = assertIcmpChecksums(out);
  assert.equal(get16(out, inner + 22), 53);
  assert.equal(get16(out, inner + 26), 0, "still no checksum");
});

Deno.test("ICMP errors about no tracked connection pass, or are dropped when sent to a VIP", () => {
  const engine = new Engine(webAndDnsSpec(256));
  // A connection of another client port is no reason to touch these.
  pass(engine, tcp(CLIENT, 40001, VIP, 80, TCP_SYN));
  pass(engine, udp(CLIENT, 5354, VIP, 53, 4));
  const before = counters(engine);
  for (
    const name of ["icmp_nat_frag_needed_to_client", "icmp_nat_time_exceeded_to_client"]
  ) {
    const pkt = fixture(`${name}_before`);
    assert.deepEqual(pass(engine, pkt), pkt, name);
  }
  for (const name of ["icmp_nat_frag_needed_to_real", "icmp_nat_time_exceeded_to_real"]) {
    drop(engine, fixture(`${name}_before`));
  }
  // A quote that is no TCP/UDP packet with ports is about nothing we track either.
  const sent = tcp(CLIENT, 40001, REAL1, 8080, TCP_ACK);
  const odd = [
    icmpError(REAL_ROUTER, CLIENT, 3, 4, sent, 23), // ports cut off
    icmpError(REAL_ROUTER, CLIENT, 3, 4, Uint8Array.of(0x65, ...sent.subarray(1))), // version 6
    icmpError(REAL_ROUTER, CLIENT, 3, 4, Uint8Array.of(0x44, ...sent.subarray(1))), // IHL 4
    icmpError(REAL_ROUTER, CLIENT, 3, 4, ipv4(47, CLIENT, REAL1, new Uint8Array(8))), // GRE
  ];
  const later = sent.slice();
  set16(later, 6, 0x0010); // a later fragment quotes no ports
  odd.push(icmpError(REAL_ROUTER, CLIENT, 3, 4, later));
  for (const pkt of odd) assert.deepEqual(pass(engine, pkt), pkt);
  // An error sent to a VIP about a packet to a real would be sent back to us: dropped.
  drop(engine, icmpError(ROUTER, VIP, 3, 4, tcp(CLIENT, 40001, REAL1, 8080, TCP_ACK)));
  const after = counters(engine);
  assert.equal(after.passed_through - (before.passed_through ?? 0), 2 + odd.length);
  assert.equal(after.drop_icmp_untracked, 3);
  assert.equal(after.icmp_errors_translated, undefined);
});

Deno.test("a tracked error with a bad checksum is dropped; pings and ICMP fragments as before", () => {
  const engine = engineWithConnections();
  const bad = fixture("icmp_nat_frag_needed_to_client_before");
  bad[24] ^= 0x40; // an ICMP checksum byte
  drop(engine, bad);
  assert.equal(counters(engine).drop_malformed_icmp, 1);
  // Echo requests to the VIP are still answered by it.
  const reply = pass(engine, echoRequest(CLIENT, VIP, 0, 0));
  assert.deepEqual([reply[20], ipSrc(reply, 0), ipDst(reply, 0)], [0, VIP, CLIENT]);
  // A piece of an ICMP message to the VIP cannot be checked or answered.
  drop(engine, echoRequest(CLIENT, VIP, 0, 0, { id: 0x99, frag: 0x2000 }));
  assert.equal(counters(engine).drop_fragment, 1);
  assert.equal(counters(engine).echo_replies, 1);
});

// --- fragments ------------------------------------------------------------------------------------

Deno.test("later fragments of a UDP query follow their first fragment to the real", () => {
  const engine = new Engine(webAndDnsSpec(256));
  const query = udp(CLIENT, 5353, VIP, 53, 3000, { id: 0xabc0 });
  const frags = fragment(query, 1480);
  assert.equal(frags.length, 3);
  const outs = frags.map((f) => pass(engine, f));
  for (const [i, out] of outs.entries()) {
    assert.deepEqual([ipSrc(out, 0), ipDst(out, 0)], [CLIENT, REAL1], `fragment ${i}`);
    // Only the destination and the header checksum (and the first fragment's port and UDP
    // checksum) differ.
    const changed = [...out.keys()].filter((k) => out[k] !== frags[i][k]);
    const allowed = i === 0 ? [10, 11, 16, 17, 18, 19, 22, 23, 26, 27] : [10, 11, 16, 17, 18, 19];
    assert.ok(changed.every((k) => allowed.includes(k)), `fragment ${i} changed ${changed}`);
  }
  // The datagram the real reassembles is addressed to it and its UDP checksum verifies.
  const whole = reassemble(outs);
  assert.equal(get16(whole, 22), 8053);
  assert.equal(l4Checksum(whole, 0, 20, whole.length - 20, PROTO_UDP), 0);
  const svc = engine.services.services[1];
  assert.equal(svc.counter(0, RealCounter.IN_PACKETS), 1, "one datagram");
  assert.equal(svc.counter(0, RealCounter.IN_BYTES), frags.reduce((n, f) => n + f.length, 0));
  assert.deepEqual(counters(engine), {
    rx_packets: 3,
    forwarded: 1,
    connections_created: 1,
    fragments_translated: 2,
  });
  // The datagram is complete: its entry is gone, and a stray copy for the VIP goes nowhere.
  assert.equal(engine.fragments.size(engine.now), 0);
  drop(engine, frags[2]);
  assert.equal(counters(engine).drop_fragment, 1);
});

Deno.test("a fragmented reply leaves from the VIP, in any order", () => {
  const engine = new Engine(webAndDnsSpec(256));
  pass(engine, udp(CLIENT, 5353, VIP, 53, 10));
  const answer = udp(REAL1, 8053, CLIENT, 5353, 4000, { id: 0xabc1 });
  const [first, middle, last] = fragment(answer, 1480);
  // The last piece before the middle one.
  const outs = [first, last, middle].map((f) => pass(engine, f));
  for (const out of outs) assert.deepEqual([ipSrc(out, 0), ipDst(out, 0)], [VIP, CLIENT]);
  const whole = reassemble(outs);
  assert.equal(get16(whole, 20), 53);
  assert.equal(l4Checksum(whole, 0, 20, whole.length - 20, PROTO_UDP), 0);
  assert.equal(counters(engine).fragments_translated, 2);
  assert.equal(engine.services.services[1].counter(0, RealCounter.OUT_PACKETS), 1);
});

Deno.test("datagrams of two connections, interleaved, each follow their own first fragment", () => {
  const engine = new Engine(webAndDnsSpec(256));
  const a = fragment(udp(CLIENT, 7000, VIP, 53, 2000, { id: 0x0101 }), 1000); // → REAL1
  const b = fragment(udp(CLIENT, 7001, VIP, 53, 2000, { id: 0x0102 }), 1000); // → REAL2
  // The same IP id from another client is another datagram.
  const c = fragment(udp(CLIENT2, 7000, VIP, 53, 2000, { id: 0x0101 }), 1000); // → REAL1
  const order: [Uint8Array, number][] = [
    [a[0], REAL1],
    [b[0], REAL2],
    [c[0], REAL1],
    [b[2], REAL2],
    [a[1], REAL1],
    [c[2], REAL1],
    [b[1], REAL2],
    [a[2], REAL1],
    [c[1], REAL1],
  ];
  for (const [f, real] of order) assert.equal(ipDst(pass(engine, f), 0), real);
  // A TCP segment's fragments too.
  pass(engine, tcp(CLIENT, 40000, VIP, 80, TCP_SYN)); // → REAL1
  const seg = tcp(CLIENT, 40000, VIP, 80, TCP_ACK, 100, { id: 0x0103 });
  const segFrags = fragment(seg, 24).map((f) => pass(engine, f));
  assert.equal(segFrags.length, 5);
  for (const f of segFrags) assert.deepEqual([ipSrc(f, 0), ipDst(f, 0)], [CLIENT, REAL1]);
  const whole = reassemble(segFrags);
  assert.equal(get16(whole, 22), 8080);
  assert.equal(l4Checksum(whole, 0, 20, whole.length - 20, PROTO_TCP), 0);
  assert.equal(counters(engine).fragments_translated, 6 + 4);
  // A first fragment too short for the TCP header tells nothing: dropped, and so are the rest.
  const tiny = fragment(seg, 8);
  drop(engine, tiny[0]);
  drop(engine, tiny[1]);
});

Deno.test("a later fragment without its first: dropped for a VIP, passed otherwise", () => {
  const engine = new Engine(webAndDnsSpec(256));
  const [, second] = fragment(udp(CLIENT, 5353, VIP, 53, 2000, { id: 0x0201 }), 1480);
  drop(engine, second);
  const [, passing] = fragment(udp(CLIENT, 5353, OTHER, 53, 2000, { id: 0x0202 }), 1480);
  assert.deepEqual(pass(engine, passing), passing);
  // Fragments of traffic for no connection or service do not enter the table.
  const [first] = fragment(udp(CLIENT, 5353, OTHER, 53, 2000, { id: 0x0203 }), 1480);
  assert.deepEqual(pass(engine, first), first);
  assert.equal(engine.fragments.size(engine.now), 0);
  assert.deepEqual(counters(engine), { rx_packets: 3, passed_through: 2, drop_fragment: 1 });
});

Deno.test("fragment entries expire after 30 s", () => {
  const engine = new Engine(webAndDnsSpec(256));
  engine.now = 1_000;
  pass(engine, udp(CLIENT, 5353, VIP, 53, 10));
  const query = fragment(udp(CLIENT, 5353, VIP, 53, 3000, { id: 0x0301 }), 1480);
  const answer = fragment(udp(REAL1, 8053, CLIENT, 5353, 3000, { id: 0x0302 }), 1480);
  pass(engine, query[0]);
  pass(engine, answer[0]);
  assert.equal(engine.fragments.size(engine.now), 2);
  engine.now = 1_000 + FRAGMENT_TIMEOUT_MS - 1;
  assert.equal(ipDst(pass(engine, query[1]), 0), REAL1);
  assert.equal(ipSrc(pass(engine, answer[1]), 0), VIP);
  engine.now = 1_000 + FRAGMENT_TIMEOUT_MS;
  assert.equal(engine.fragments.size(engine.now), 0);
  // Too late: for the VIP it is dropped, towards the client it passes untouched.
  drop(engine, query[2]);
  assert.deepEqual(pass(engine, answer[2]), answer[2]);
  assert.equal(counters(engine).drop_fragment, 1);
  assert.equal(counters(engine).fragments_translated, 2);
});

Deno.test("the fragment table is bounded: it evicts the entry closest to timing out", () => {
  const table = new FragmentTable(8, 1_000);
  assert.equal(table.capacity, 8);
  for (let i = 0; i < 100; i++) {
    table.record(PROTO_UDP, CLIENT, VIP, i, i, CLIENT, REAL1, 1, 0, false, 8);
  }
  assert.ok(table.size(99) <= 8);
  assert.equal(table.evictions, 100 - 8);
  // The newest entries are there; the oldest made room.
  assert.ok(table.find(PROTO_UDP, CLIENT, VIP, 99, 99) >= 0);
  assert.equal(table.find(PROTO_UDP, CLIENT, VIP, 0, 99), -1);
  // Keys differ by protocol, source and destination as well as by id.
  assert.equal(table.find(PROTO_TCP, CLIENT, VIP, 99, 99), -1);
  assert.equal(table.find(PROTO_UDP, CLIENT2, VIP, 99, 99), -1);
  assert.equal(table.find(PROTO_UDP, CLIENT, OTHER, 99, 99), -1);
  // Timed out entries are gone without a sweep, and their slots are taken without eviction.
  assert.equal(table.size(10_000), 0);
  assert.equal(table.find(PROTO_UDP, CLIENT, VIP, 99, 10_000), -1);
  table.record(PROTO_UDP, CLIENT, VIP, 1, 10_000, CLIENT, REAL2, 1, 1, false, 8);
  assert.equal(table.evictions, 100 - 8);
  const slot = table.find(PROTO_UDP, CLIENT, VIP, 1, 10_000);
  assert.equal(table.newDst[slot], REAL2);
  // Complete once every byte up to the end the last fragment names has been seen.
  assert.equal(table.account(slot, 16, 8, true), false);
  assert.equal(table.account(slot, 8, 8, false), true);
  assert.equal(table.find(PROTO_UDP, CLIENT, VIP, 1, 10_000), -1);
  assert.throws(() => new FragmentTable(2));
  assert.throws(() => new FragmentTable(8, 0));
});
