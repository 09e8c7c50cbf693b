/**
 * FULLNAT in the engine: both addresses rewritten both ways, local ports
 * collision-free, reused only after their connection expired, and exhaustion
 * counted instead of failing silently.
 */
import assert from "node:assert/strict";
import { DROP, Engine, EngineCounter } from "../../dataplane/engine.ts";
import { LOCAL_PORT_MIN, LocalPortAllocator } from "../../dataplane/forward/local_ports.ts";
import { ConnTable } from "../../dataplane/conn/table.ts";
import { ipDst, ipSrc, PROTO_TCP, PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { udpDstPort, udpSrcPort } from "../../dataplane/wire/udp.ts";
import { TCP_ACK, TCP_SYN, tcpDstPort, tcpSrcPort } from "../../dataplane/wire/tcp.ts";
import { dataplaneSpec, real, REAL1, service, VIP } from "../fixtures/dataplane_specs.ts";
import { assertChecksums, feed } from "../fixtures/engine_harness.ts";
import { addr } from "../fixtures/packets.ts";
import { icmpError, tcp, udp } from "../fixtures/packet_builders.ts";
import { checksum } from "../../dataplane/wire/checksum.ts";

const CLIENT = addr("172.10.0.100");
const LOCAL = addr("10.0.3.1");
const REAL_ROUTER = addr("10.10.10.1");
const CLIENT_ROUTER = addr("172.10.0.1");

function fullnatEngine(capacity = 1024, locals = [LOCAL]): Engine {
  return new Engine(dataplaneSpec([
    service("web", PROTO_TCP, 80, 8080, {
      forward: "fullnat",
      localAddresses: locals,
      reals: [real(REAL1, 8080)],
    }),
  ], capacity));
}

Deno.test("FULLNAT rewrites source and destination, and both back on the reply", () => {
  const e = fullnatEngine();
  const syn = feed(e, tcp(CLIENT, 50026, VIP, 80, TCP_SYN));
  assert.notEqual(syn.out, DROP);
  assert.equal(ipSrc(syn.pkt, 0), LOCAL);
  assert.equal(ipDst(syn.pkt, 0), REAL1);
  const lport = tcpSrcPort(syn.pkt, 20);
  assert.ok(lport >= LOCAL_PORT_MIN);
  assert.equal(tcpDstPort(syn.pkt, 20), 8080);
  assertChecksums(syn.pkt, 0);

  const synAck = feed(e, tcp(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK));
  assert.notEqual(synAck.out, DROP);
  assert.equal(ipSrc(synAck.pkt, 0), VIP);
  assert.equal(ipDst(synAck.pkt, 0), CLIENT);
  assert.equal(tcpSrcPort(synAck.pkt, 20), 80);
  assert.equal(tcpDstPort(synAck.pkt, 20), 50026);
  assertChecksums(synAck.pkt, 0);
});

Deno.test("local ports are collision-free, exhaust with a counter, and return after expiry", () => {
  const e = fullnatEngine(70_000);
  const seen = new Set<number>();
  let refused = 0;
  for (let i = 0; i < 65536; i++) {
    // Distinct clients, one real: every connection needs its own local port.
    const client = (CLIENT + Math.floor(i / 60000)) >>> 0;
    const r = feed(e, tcp(client, 1024 + (i % 60000), VIP, 80, TCP_SYN), 0);
    if (r.out === DROP) {
      refused++;
      continue;
    }
    const port = tcpSrcPort(r.pkt, 20);
    assert.ok(!seen.has(port), `port ${port} handed out twice`);
    seen.add(port);
  }
  assert.equal(seen.size, 65536 - LOCAL_PORT_MIN);
  assert.equal(refused, LOCAL_PORT_MIN);
  assert.equal(e.counters[EngineCounter.DROP_NO_LOCAL_PORT], LOCAL_PORT_MIN);
  // Once the connections have expired (SYN_RECV: 60 s), their ports can be used again.
  e.tick(61_000);
  assert.equal(e.conns.size, 0);
  e.now = 61_000;
  assert.notEqual(feed(e, tcp(CLIENT, 999, VIP, 80, TCP_SYN), 0).out, DROP);
});

Deno.test("a pool of several addresses spreads connections over them", () => {
  const second = addr("10.0.3.2");
  const e = fullnatEngine(1024, [LOCAL, second]);
  const sources = new Set<number>();
  for (let i = 0; i < 4; i++) {
    sources.add(ipSrc(feed(e, tcp(CLIENT, 40000 + i, VIP, 80, TCP_SYN), 0).pkt, 0));
  }
  assert.deepEqual([...sources].sort(), [LOCAL, second].sort());
});

Deno.test("each local address of a pool goes through every port before a pair comes round", () => {
  const pool = Uint32Array.of(LOCAL, addr("10.0.3.2"));
  const ports = 65536 - LOCAL_PORT_MIN;
  const a = new LocalPortAllocator();
  const t = new ConnTable(16);
  const pairs = new Set<string>();
  const perAddress = new Map<number, Set<number>>();
  for (let i = 0; i < pool.length * ports; i++) {
    assert.ok(a.allocate(t, PROTO_TCP, pool, REAL1, 8080));
    pairs.add(`${a.address}:${a.port}`);
    if (!perAddress.has(a.address)) perAddress.set(a.address, new Set());
    perAddress.get(a.address)!.add(a.port);
  }
  // No pair repeated within a whole round, and both addresses used all their ports.
  assert.equal(pairs.size, pool.length * ports);
  for (const used of perAddress.values()) assert.equal(used.size, ports);
});

Deno.test("FULLNAT carries UDP both ways, checksums intact", () => {
  const e = new Engine(dataplaneSpec([
    service("dns", PROTO_UDP, 53, 8053, {
      forward: "fullnat",
      localAddresses: [LOCAL],
      reals: [real(REAL1, 8053)],
    }),
  ]));
  const q = feed(e, udp(CLIENT, 5353, VIP, 53, "query"));
  assert.notEqual(q.out, DROP);
  assert.equal(ipSrc(q.pkt, 0), LOCAL);
  assert.equal(ipDst(q.pkt, 0), REAL1);
  assert.equal(udpDstPort(q.pkt, 20), 8053);
  assertChecksums(q.pkt, 0);
  const answer = feed(e, udp(REAL1, 8053, LOCAL, udpSrcPort(q.pkt, 20), "answer"));
  assert.notEqual(answer.out, DROP);
  assert.equal(ipSrc(answer.pkt, 0), VIP);
  assert.equal(ipDst(answer.pkt, 0), CLIENT);
  assert.equal(udpSrcPort(answer.pkt, 20), 53);
  assert.equal(udpDstPort(answer.pkt, 20), 5353);
  assertChecksums(answer.pkt, 0);
});

Deno.test("a FULLNAT service without local addresses yet (DPVS: reals before -P) drops new connections", () => {
  const e = fullnatEngine(1024, []);
  assert.equal(feed(e, tcp(CLIENT, 50026, VIP, 80, TCP_SYN)).out, DROP);
  assert.equal(e.counters[EngineCounter.DROP_NO_LOCAL_PORT], 1);
  assert.equal(e.conns.size, 0);
});

/** The packet an ICMP error quotes, after checking the error's checksums. */
function quoteOf(pkt: Uint8Array): Uint8Array {
  assertChecksums(pkt, 0);
  assert.equal(checksum(pkt, 20, pkt.length - 20), 0, "ICMP checksum");
  return pkt.subarray(28);
}

Deno.test("FULLNAT ICMP errors are translated on both sides: the client and the real each see their own tuple", () => {
  const e = fullnatEngine();
  const clientSyn = tcp(CLIENT, 50026, VIP, 80, TCP_SYN, "hello");
  const sent = feed(e, clientSyn.slice());
  const lport = tcpSrcPort(sent.pkt, 20);
  const forwarded = sent.pkt.slice(0, sent.out);

  // Frag-needed from a router on the real's side, to the local address, about what we sent.
  const toLocal = feed(e, icmpError(REAL_ROUTER, LOCAL, 3, 4, forwarded));
  assert.notEqual(toLocal.out, DROP);
  const out = toLocal.pkt.slice(0, toLocal.out);
  assert.equal(ipSrc(out, 0), VIP, "from the VIP");
  assert.equal(ipDst(out, 0), CLIENT, "to the client, not the local address");
  // The quote is the client's own segment again, byte for byte (addresses, ports, sequence
  // number, checksum): what its TCP matches the error against.
  assert.deepEqual(quoteOf(out), clientSyn);

  // Frag-needed from the client's side, to the VIP, about a reply: the real sees its own reply.
  const replyFromReal = tcp(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, "", { ack: 1 });
  const reply = feed(e, replyFromReal.slice());
  const toClient = reply.pkt.slice(0, reply.out);
  const toVip = feed(e, icmpError(CLIENT_ROUTER, VIP, 3, 4, toClient));
  assert.notEqual(toVip.out, DROP);
  const back = toVip.pkt.slice(0, toVip.out);
  assert.equal(ipDst(back, 0), REAL1, "to the real");
  assert.equal(ipSrc(back, 0), LOCAL, "from the local address the real knows");
  assert.deepEqual(quoteOf(back), replyFromReal);
});
