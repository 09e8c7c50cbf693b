/**
 * Tunnel (IPIP) and direct routing in the engine: the outer header and its checksum, the inner
 * packet untouched, MSS clamping, frag-needed built in the slot, DR packets handed to the sender
 * unchanged, connections without replies; and the configuration and control-plane parsing that
 * feed them.
 */
import assert from "node:assert/strict";
import { ConnFlag } from "../../dataplane/conn/table.ts";
import { ConnState } from "../../dataplane/conn/state.ts";
import { DROP, Engine, EngineCounter, SENT } from "../../dataplane/engine.ts";
import {
  type DirectSender,
  fillSockaddrLl,
  parseMac,
  SOCKADDR_LL_SIZE,
} from "../../dataplane/forward/direct.ts";
import {
  clampMss,
  encapsulateIpip,
  fragmentationNeeded,
  IPIP_HEADER,
} from "../../dataplane/forward/tunnel.ts";
import { SCHEDULER_NAMES } from "../../dataplane/sched/registry.ts";
import { type ServiceSpec, ServiceTable } from "../../dataplane/service.ts";
import { listConnections } from "../../dataplane/stats/conn_listing.ts";
import { get16, set16 } from "../../dataplane/wire/bytes.ts";
import { checksum, l4Checksum } from "../../dataplane/wire/checksum.ts";
import { ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED } from "../../dataplane/wire/icmp.ts";
import {
  fillIpHeaderChecksum,
  ipDontFragment,
  ipDst,
  ipId,
  ipProtocol,
  ipSrc,
  ipTotalLength,
  ipTtl,
  Ipv4Parse,
  parseIpv4,
  PROTO_ICMP,
  PROTO_IPIP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_SYN, tcpMss } from "../../dataplane/wire/tcp.ts";
import { ConfigError, parseConfig } from "../../control/config.ts";
import {
  neighbourUsable,
  parseNeighbour,
  parseRouteGet,
  withLinks,
} from "../../control/forward_links.ts";
import {
  CLIENT,
  dataplaneSpec,
  real,
  REAL1,
  REAL2,
  service,
  VIP,
} from "../fixtures/dataplane_specs.ts";
import { assertChecksums } from "../fixtures/engine_harness.ts";
import { addr } from "../fixtures/packets.ts";
import { fragment, icmpError, ipv4, tcp, udp } from "../fixtures/packet_builders.ts";

const DIRECTOR = addr("10.0.2.10");
const DF = 0x4000;
/** Where packets sit in the test buffers: not 0, so offsets are honoured. */
const OFF = 64;

/** A tunnel service on VIP:`port` to REAL1 and REAL2, rr. */
function tunnelService(
  extra: Partial<ServiceSpec> = {},
  mtu = 1500,
  protocol = PROTO_TCP,
  port = 80,
): ServiceSpec {
  return service("tun", protocol, port, port, {
    forward: "tunnel",
    reals: [REAL1, REAL2].map((a) => ({ ...real(a, port), tunnelSource: DIRECTOR, mtu })),
    ...extra,
  });
}

/** A DR service on VIP:`port` to REAL1 and REAL2, rr. */
function drService(protocol = PROTO_TCP, port = 80, extra: Partial<ServiceSpec> = {}) {
  return service("dr", protocol, port, port, {
    forward: "dr",
    reals: [REAL1, REAL2].map((a, i) => ({
      ...real(a, port),
      ifindex: 7,
      mac: `02:00:00:00:00:0${i + 1}`,
      mtu: 1500,
    })),
    ...extra,
  });
}

/** A DirectSender that keeps copies of what it was given. */
class RecordingSender implements DirectSender {
  sent: { service: number; real: number; bytes: Uint8Array; off: number }[] = [];
  constructor(public ok = true) {}
  send(service: number, real: number, b: Uint8Array, off: number, len: number): boolean {
    this.sent.push({ service, real, bytes: b.slice(off, off + len), off });
    return this.ok;
  }
}

/** Runs `pkt` through the engine at OFF of a slot-sized buffer; returns the verdict and buffer. */
function run(e: Engine, pkt: Uint8Array): { out: number; buf: Uint8Array } {
  const buf = new Uint8Array(OFF + 65535).fill(0xa5);
  buf.set(pkt, OFF);
  return { out: e.process(buf, OFF, pkt.length), buf };
}

/** A client SYN carrying `options` (padded to 4 bytes with NOPs by the caller). */
function synWithOptions(options: number[], params: { frag?: number } = {}): Uint8Array {
  const l4 = new Uint8Array(20 + options.length);
  set16(l4, 0, 40000);
  set16(l4, 2, 80);
  l4[12] = ((20 + options.length) / 4) << 4;
  l4[13] = TCP_SYN;
  set16(l4, 14, 64240);
  l4.set(options, 20);
  const b = ipv4(PROTO_TCP, CLIENT, VIP, l4, params);
  set16(b, 36, l4Checksum(b, 0, 20, l4.length, PROTO_TCP));
  return b;
}

const MSS_1460 = [2, 4, 0x05, 0xb4];

Deno.test("tunnel: the outer header is IPIP from the director to the real, inner untouched", () => {
  const e = new Engine(dataplaneSpec([tunnelService()]));
  const syn = synWithOptions([1, 1, 1, 1], { frag: DF });
  const { out, buf } = run(e, syn);
  assert.equal(out, syn.length + IPIP_HEADER);
  assert.equal(parseIpv4(buf, OFF, out), Ipv4Parse.OK, "outer header and its checksum");
  assert.equal(buf[OFF], 0x45);
  assert.equal(ipTotalLength(buf, OFF), out);
  assert.equal(ipProtocol(buf, OFF), PROTO_IPIP);
  assert.equal(ipTtl(buf, OFF), 64);
  assert.equal(ipSrc(buf, OFF), DIRECTOR);
  assert.equal(ipDst(buf, OFF), REAL1);
  assert.equal(ipDontFragment(buf, OFF), true, "DF copied from the inner packet");
  assert.deepEqual(buf.subarray(OFF + IPIP_HEADER, OFF + out), syn, "inner packet as sent");
  assertChecksums(buf, OFF + IPIP_HEADER);
  // Nothing past the new end was written.
  assert.equal(buf[OFF + out], 0xa5);

  // The next connection goes to the other real (rr), with a new IP ID and without DF.
  const second = tcp(CLIENT, 40001, VIP, 80, TCP_SYN, "", { frag: 0 });
  const r2 = run(e, second);
  assert.equal(ipDst(r2.buf, OFF), REAL2);
  assert.equal(ipDontFragment(r2.buf, OFF), false);
  assert.notEqual(ipId(r2.buf, OFF), ipId(buf, OFF));
  assert.deepEqual(r2.buf.subarray(OFF + IPIP_HEADER, OFF + r2.out), second);
});

Deno.test("tunnel: TOS is copied; the connection has no reply side and uses INPUT-ONLY", () => {
  const e = new Engine(dataplaneSpec([tunnelService()]));
  const syn = tcp(CLIENT, 40000, VIP, 80, TCP_SYN);
  syn[1] = 0x2a;
  fillIpHeaderChecksum(syn, 0);
  const { buf } = run(e, syn);
  assert.equal(buf[OFF + 1], 0x2a);
  const id = e.conns.lookup(PROTO_TCP, CLIENT, 40000, VIP, 80) >> 1;
  assert.ok(id >= 0);
  assert.notEqual(e.conns.flags[id] & ConnFlag.NO_REPLY, 0);
  // The real's answer is not ours to see: no reply entry.
  assert.equal(e.conns.lookup(PROTO_TCP, REAL1, 80, CLIENT, 40000), -1);
  assert.equal(e.conns.state[id], ConnState.SYN_RECV);
  // INPUT-ONLY: the client's ACK establishes the connection.
  run(e, tcp(CLIENT, 40000, VIP, 80, TCP_ACK));
  assert.equal(e.conns.state[id], ConnState.ESTABLISHED);
  assert.equal(e.services.services[0].active[0], 1);
  const page = listConnections(e.conns, e.services, e.now, {});
  assert.equal(page.connections[0].forward, "Tunnel");
});

Deno.test("tunnel: the MSS of a client SYN is clamped to MTU - 60 with a valid checksum", () => {
  const e = new Engine(dataplaneSpec([tunnelService()]));
  for (
    const [name, options] of [
      ["aligned", [...MSS_1460, 1, 1, 1, 1]],
      ["after one NOP", [1, ...MSS_1460, 1, 1, 1]],
      ["after three NOPs", [1, 1, 1, ...MSS_1460, 0, 0, 0, 0, 0, 0, 0, 0]],
    ] as const
  ) {
    const before = e.counters[EngineCounter.MSS_CLAMPED];
    const syn = synWithOptions([...options]);
    set16(syn, 20, 40000 + options.length + name.length);
    set16(syn, 36, 0);
    set16(syn, 36, l4Checksum(syn, 0, 20, syn.length - 20, PROTO_TCP));
    const { out, buf } = run(e, syn);
    const inner = OFF + IPIP_HEADER;
    assert.equal(out, syn.length + IPIP_HEADER, name);
    assert.equal(tcpMss(buf, inner + 20), 1440, name);
    assertChecksums(buf, inner);
    assert.equal(e.counters[EngineCounter.MSS_CLAMPED], before + 1, name);
  }
});

Deno.test("tunnel: a SYN without MSS, or with a small one, is left as it was", () => {
  const e = new Engine(dataplaneSpec([tunnelService()]));
  const bare = tcp(CLIENT, 40000, VIP, 80, TCP_SYN);
  const a = run(e, bare);
  assert.deepEqual(a.buf.subarray(OFF + IPIP_HEADER, OFF + a.out), bare);
  const small = synWithOptions([2, 4, 0x04, 0xb0]); // 1200
  set16(small, 20, 40001);
  set16(small, 36, 0);
  set16(small, 36, l4Checksum(small, 0, 20, small.length - 20, PROTO_TCP));
  const b = run(e, small);
  assert.deepEqual(b.buf.subarray(OFF + IPIP_HEADER, OFF + b.out), small);
  assert.equal(e.counters[EngineCounter.MSS_CLAMPED], 0);
  // A smaller path MTU clamps harder.
  const narrow = new Engine(dataplaneSpec([tunnelService({}, 1280)]));
  const c = run(narrow, synWithOptions(MSS_1460));
  assert.equal(tcpMss(c.buf, OFF + IPIP_HEADER + 20), 1220);
});

Deno.test("clampMss equals a full checksum recomputation at every option alignment", () => {
  for (let nops = 0; nops < 8; nops++) {
    const options = [...Array(nops).fill(1), ...MSS_1460];
    while (options.length % 4 !== 0) options.push(0);
    const syn = synWithOptions(options);
    assert.equal(clampMss(syn, 20, 1000), true);
    assert.equal(tcpMss(syn, 20), 1000);
    assert.equal(l4Checksum(syn, 0, 20, syn.length - 20, PROTO_TCP), 0, `${nops} NOPs`);
    assert.equal(clampMss(syn, 20, 1000), false, "already small enough");
  }
});

Deno.test("tunnel: an oversize packet with DF gets frag-needed back, built in its slot", () => {
  const e = new Engine(dataplaneSpec([tunnelService({}, 1500, PROTO_UDP, 53)]));
  const big = udp(CLIENT, 5353, VIP, 53, 1490 - 28, { frag: DF });
  const { out, buf } = run(e, big);
  assert.equal(out, 20 + 8 + 28);
  assert.equal(parseIpv4(buf, OFF, out), Ipv4Parse.OK);
  assert.equal(ipProtocol(buf, OFF), PROTO_ICMP);
  assert.equal(ipSrc(buf, OFF), VIP, "from the VIP, as the director's kernel would answer");
  assert.equal(ipDst(buf, OFF), CLIENT);
  const icmp = OFF + 20;
  assert.equal(buf[icmp], ICMP_DEST_UNREACH);
  assert.equal(buf[icmp + 1], ICMP_FRAG_NEEDED);
  assert.equal(get16(buf, icmp + 6), 1480, "next-hop MTU: the path's minus the tunnel");
  assert.equal(checksum(buf, icmp, out - 20), 0, "ICMP checksum");
  assert.deepEqual(buf.subarray(icmp + 8, OFF + out), big.subarray(0, 28), "quotes header + 8");
  assert.equal(e.counters[EngineCounter.FRAG_NEEDED_SENT], 1);

  // Without DF the outer packet goes, for the kernel to fragment.
  const loose = udp(CLIENT, 5354, VIP, 53, 1490 - 28);
  const r = run(e, loose);
  assert.equal(r.out, 1490 + IPIP_HEADER);
  assert.equal(ipProtocol(r.buf, OFF), PROTO_IPIP);
  // One that fits goes through with DF.
  const fits = udp(CLIENT, 5355, VIP, 53, 1480 - 28, { frag: DF });
  assert.equal(run(e, fits).out, 1480 + IPIP_HEADER);
});

Deno.test("fragmentationNeeded and encapsulateIpip refuse when the buffer has no room", () => {
  const pkt = udp(CLIENT, 1, VIP, 53, 100);
  const tight = new Uint8Array(pkt.length);
  tight.set(pkt);
  assert.equal(encapsulateIpip(tight, 0, pkt.length, DIRECTOR, REAL1, 1), -1);
  assert.deepEqual(tight, pkt, "left alone");
  const short = udp(CLIENT, 1, VIP, 53, 0);
  const b = new Uint8Array(short.length + 10);
  b.set(short);
  assert.equal(fragmentationNeeded(b, 0, short.length, 576, 1), -1);
  // A datagram whose encapsulation would pass 65535 bytes cannot be tunnelled.
  const huge = new Uint8Array(65535 + 64);
  assert.equal(encapsulateIpip(huge, 0, 65520, DIRECTOR, REAL1, 1), -1);
});

Deno.test("tunnel and DR: later fragments follow their first fragment's way", () => {
  const e = new Engine(dataplaneSpec([tunnelService({}, 1500, PROTO_UDP, 53)]));
  const frags = fragment(udp(CLIENT, 5353, VIP, 53, 3000, { id: 77 }), 1480);
  for (const f of frags) {
    const { out, buf } = run(e, f);
    assert.equal(out, f.length + IPIP_HEADER);
    assert.equal(ipDst(buf, OFF), REAL1);
    assert.deepEqual(buf.subarray(OFF + IPIP_HEADER, OFF + out), f);
  }
  const sender = new RecordingSender();
  const dr = new Engine(dataplaneSpec([drService(PROTO_UDP, 53)]), sender);
  for (const f of frags) assert.equal(run(dr, f).out, SENT);
  assert.equal(sender.sent.length, frags.length);
  assert.ok(sender.sent.every((s) => s.real === 0));
  assert.deepEqual(sender.sent.map((s) => s.bytes), frags);
});

Deno.test("DR: the packet goes to the sender unchanged and is not written back", () => {
  const sender = new RecordingSender();
  const e = new Engine(dataplaneSpec([service("other", PROTO_UDP, 53, 53), drService()]), sender);
  const syn = tcp(CLIENT, 40000, VIP, 80, TCP_SYN);
  const { out, buf } = run(e, syn);
  assert.equal(out, SENT);
  assert.deepEqual(buf.subarray(OFF, OFF + syn.length), syn, "the slot still holds it as sent");
  assert.equal(sender.sent.length, 1);
  assert.deepEqual(sender.sent[0], { service: 1, real: 0, bytes: syn, off: OFF });
  // rr: the next connection to the other real; the same connection to the same real.
  run(e, tcp(CLIENT, 40001, VIP, 80, TCP_SYN));
  run(e, tcp(CLIENT, 40000, VIP, 80, TCP_ACK, "GET /"));
  assert.deepEqual(sender.sent.map((s) => s.real), [0, 1, 0]);
  assert.equal(e.counters[EngineCounter.DIRECT_SENT], 3);
  assert.equal(e.counters[EngineCounter.FORWARDED], 3);
  const page = listConnections(e.conns, e.services, e.now, {});
  assert.deepEqual(page.connections.map((c) => c.forward), ["Route", "Route"]);

  sender.ok = false;
  assert.equal(run(e, tcp(CLIENT, 40002, VIP, 80, TCP_SYN)).out, DROP);
  assert.equal(e.counters[EngineCounter.DROP_DIRECT_SEND_FAILED], 1);
  // Without a sender, DR fails closed.
  const bare = new Engine(dataplaneSpec([drService()]));
  assert.equal(run(bare, syn).out, DROP);
});

Deno.test("DR: a DF packet bigger than the real's link MTU gets frag-needed", () => {
  const sender = new RecordingSender();
  const svc = drService(PROTO_UDP, 53);
  svc.reals = svc.reals.map((r) => ({ ...r, mtu: 1400 }));
  const e = new Engine(dataplaneSpec([svc]), sender);
  const { out, buf } = run(e, udp(CLIENT, 5353, VIP, 53, 1450, { frag: DF }));
  assert.equal(out, 56);
  assert.equal(get16(buf, OFF + 26), 1400);
  assert.equal(sender.sent.length, 0);
  assert.equal(run(e, udp(CLIENT, 5354, VIP, 53, 1450)).out, DROP, "no DF: cannot fragment");
  assert.equal(e.counters[EngineCounter.DROP_TOO_BIG], 1);
});

Deno.test("DR and tunnel work with persistence and one-packet scheduling", () => {
  const sender = new RecordingSender();
  const e = new Engine(
    dataplaneSpec([
      drService(PROTO_TCP, 80, { persistence: { timeoutMs: 60_000, netmask: 0xffffffff } }),
    ]),
    sender,
  );
  for (let p = 0; p < 4; p++) run(e, tcp(CLIENT, 41000 + p, VIP, 80, TCP_SYN));
  assert.deepEqual(sender.sent.map((s) => s.real), [0, 0, 0, 0], "the client's template holds");

  const one = new Engine(dataplaneSpec([drService(PROTO_UDP, 53, { onePacket: true })]), sender);
  sender.sent = [];
  for (let i = 0; i < 4; i++) assert.equal(run(one, udp(CLIENT, 5353, VIP, 53, "q")).out, SENT);
  assert.deepEqual(sender.sent.map((s) => s.real), [0, 1, 0, 1], "each datagram scheduled");
  assert.equal(one.conns.size, 0, "nothing waits for a reply that bypasses us");
});

Deno.test("every scheduler schedules tunnel and DR connections", () => {
  // Weights well above the connections made, so that ovf (which fills a real up to its
  // weight) has room too.
  const heavy = (svc: ServiceSpec) => ({
    ...svc,
    reals: svc.reals.map((r) => ({ ...r, weight: 100 })),
  });
  for (const scheduler of SCHEDULER_NAMES) {
    const sender = new RecordingSender();
    const dr = new Engine(dataplaneSpec([heavy(drService(PROTO_TCP, 80, { scheduler }))]), sender);
    const tun = new Engine(dataplaneSpec([heavy(tunnelService({ scheduler }))]));
    for (let i = 0; i < 8; i++) {
      const client = (CLIENT + i) >>> 0;
      assert.equal(run(dr, tcp(client, 40000 + i, VIP, 80, TCP_SYN)).out, SENT, scheduler);
      const r = run(tun, tcp(client, 40000 + i, VIP, 80, TCP_SYN));
      assert.ok([REAL1, REAL2].includes(ipDst(r.buf, OFF)), scheduler);
      const id = tun.conns.lookup(PROTO_TCP, client, 40000 + i, VIP, 80) >> 1;
      assert.equal(tun.conns.flags[id] & ConnFlag.NO_REPLY, ConnFlag.NO_REPLY, scheduler);
    }
    assert.equal(sender.sent.length, 8, scheduler);
    assert.ok(sender.sent.every((s) => s.real === 0 || s.real === 1), scheduler);
  }
});

Deno.test("an ICMP error about a tunnel/DR real's reply goes to that real as it is", () => {
  const sender = new RecordingSender();
  const e = new Engine(dataplaneSpec([drService()]), sender);
  run(e, tcp(CLIENT, 40000, VIP, 80, TCP_SYN));
  // A router near the client cannot pass the real's 1500-byte reply.
  const reply = tcp(VIP, 80, CLIENT, 40000, TCP_ACK, 1460, { frag: DF });
  const err = icmpError(addr("10.10.0.88"), VIP, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, reply, 28);
  set16(err, 26, 1400);
  set16(err, 22, 0);
  set16(err, 22, checksum(err, 20, err.length - 20));
  assert.equal(run(e, err).out, SENT);
  assert.deepEqual(sender.sent[1].bytes, err);
  assert.equal(e.counters[EngineCounter.ICMP_ERRORS_TRANSLATED], 1);

  const t = new Engine(dataplaneSpec([tunnelService()]));
  run(t, tcp(CLIENT, 40000, VIP, 80, TCP_SYN));
  const r = run(t, err);
  assert.equal(r.out, err.length + IPIP_HEADER);
  assert.equal(ipDst(r.buf, OFF), REAL1);
  assert.deepEqual(r.buf.subarray(OFF + IPIP_HEADER, OFF + r.out), err);
});

Deno.test("specs: tunnel reals need a source; DR and tunnel reals keep the service's port", () => {
  const noSource = tunnelService();
  noSource.reals = [real(REAL1, 80)];
  assert.throws(() => new ServiceTable([noSource]), /tunnelSource/);
  const otherPort = drService();
  otherPort.reals = otherPort.reals.map((r) => ({ ...r, port: 8080 }));
  assert.throws(() => new ServiceTable([otherPort]), /port 8080 differs/);
  const tinyMtu = tunnelService({}, 80);
  assert.throws(() => new ServiceTable([tinyMtu]), /bad MTU 80/);
  // Without an MTU a tunnel assumes 1500; DR checks none.
  const table = new ServiceTable([
    tunnelService({ reals: [{ ...real(REAL1, 80), tunnelSource: DIRECTOR }] }),
    drService(PROTO_UDP, 53, { reals: [real(REAL2, 0)] }),
  ]);
  assert.equal(table.services[0].mtu[0], 1500);
  assert.equal(table.services[1].mtu[0], 0);
});

function configIssues(yaml: string): string[] {
  try {
    parseConfig(yaml, "t.yaml");
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => `${i.path}: ${i.message}`);
    throw e;
  }
  return [];
}

Deno.test("config: a dr or tunnel real must not name a port other than the service's", () => {
  const svc = (forward: string, reals: string, port = "port: 80") =>
    `services:\n  - name: web\n    vip: 172.10.0.9\n    ${port}\n    forward: ${forward}\n` +
    `    reals: ${reals}\n`;
  for (const forward of ["dr", "tunnel"]) {
    assert.deepEqual(configIssues(svc(forward, "[{ address: 192.168.60.8 }]")), []);
    assert.deepEqual(configIssues(svc(forward, "[{ address: 192.168.60.8, port: 80 }]")), []);
    const issues = configIssues(svc(forward, "[{ address: 192.168.60.8, port: 8080 }]"));
    assert.equal(issues.length, 1);
    assert.match(issues[0], /^services\[0\]\.reals\[0\]\.port: a \w+ real serves the service's/);
    assert.match(issues[0], /port 80, unchanged \(got 8080\)/);
    const group = configIssues(
      svc(forward, "[{ address: 192.168.60.8, port: 443 }]", "ports: [80, 443]"),
    );
    assert.deepEqual(group, [
      `services[0].reals[0].port: a ${forward} real serves the port the client asked for; ` +
      "remove port",
    ]);
  }
  // NAT may change the port, as before.
  assert.deepEqual(configIssues(svc("nat", "[{ address: 192.168.60.8, port: 8080 }]")), []);
  const model = parseConfig(svc("dr", "[{ address: 192.168.60.8 }]"), "t.yaml");
  assert.equal(model.services[0].forward, "dr");
  assert.equal(model.services[0].reals[0].port, 80);
});

Deno.test("sockaddr_ll for DR: AF_PACKET, IPv4 in network order, the ifindex and the MAC", () => {
  const mac = parseMac("02:1a:ff:00:9C:7e")!;
  assert.deepEqual([...mac], [0x02, 0x1a, 0xff, 0x00, 0x9c, 0x7e]);
  assert.equal(parseMac("02:1a:ff:00:9c"), null);
  assert.equal(parseMac("02:1a:ff:00:9c:7g"), null);
  const sll = new Uint8Array(SOCKADDR_LL_SIZE + 4).fill(0xee);
  fillSockaddrLl(sll, 0x01020304, mac);
  assert.deepEqual(
    [...sll.subarray(0, SOCKADDR_LL_SIZE)],
    [17, 0, 0x08, 0x00, 4, 3, 2, 1, 0, 0, 0, 6, 0x02, 0x1a, 0xff, 0x00, 0x9c, 0x7e, 0, 0],
  );
  assert.equal(sll[SOCKADDR_LL_SIZE], 0xee, "nothing past the struct");
});

Deno.test("control: route, neighbour and link parsing", () => {
  assert.deepEqual(
    parseRouteGet(
      "10.0.3.62",
      '[{"dst":"10.0.3.62","gateway":"10.0.2.1","dev":"eth0","prefsrc":"10.0.2.10",' +
        '"flags":[],"uid":0,"cache":[],"metrics":[{"mtu":1400}]}]',
    ),
    { dev: "eth0", gateway: "10.0.2.1", prefsrc: "10.0.2.10", mtu: 1400 },
  );
  assert.deepEqual(
    parseRouteGet("10.0.2.20", '[{"dst":"10.0.2.20","dev":"eth0","prefsrc":"10.0.2.10"}]'),
    { dev: "eth0", prefsrc: "10.0.2.10" },
  );
  assert.equal(parseRouteGet("10.0.2.10", '[{"type":"local","dev":"lo"}]').type, "local");
  assert.throws(() => parseRouteGet("10.9.9.9", "[]"), /no route to 10\.9\.9\.9/);

  const reachable = parseNeighbour(
    "192.168.60.8",
    '[{"dst":"192.168.60.8","lladdr":"8e:b1:4f:50:0c:cb","state":["REACHABLE"]}]',
  );
  assert.deepEqual(reachable, { lladdr: "8e:b1:4f:50:0c:cb", state: ["REACHABLE"] });
  assert.equal(neighbourUsable(reachable), true);
  assert.equal(neighbourUsable({ lladdr: "8e:b1:4f:50:0c:cb", state: ["STALE"] }), true);
  assert.equal(neighbourUsable({ state: ["INCOMPLETE"] }), false);
  assert.equal(neighbourUsable({ lladdr: "8e:b1:4f:50:0c:cb", state: ["FAILED"] }), false);
  assert.equal(parseNeighbour("192.168.60.9", "[]"), null);

  const spec = dataplaneSpec([drService()]);
  const linked = withLinks(spec, [[{ mac: "02:00:00:00:00:aa", ifindex: 9 }, {}]]);
  assert.equal(linked.services[0].reals[0].mac, "02:00:00:00:00:aa");
  assert.equal(linked.services[0].reals[0].ifindex, 9);
  assert.equal(linked.services[0].reals[1].mac, "02:00:00:00:00:02");
  assert.equal(spec.services[0].reals[0].mac, "02:00:00:00:00:01", "the input is not changed");
});
