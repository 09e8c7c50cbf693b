/**
 * Firewall-mark services (ipvsadm -f) in the engine: packets read from a mark's TUN device are
 * classified by the mark before VIP:port (ip_vs_service_find), persistence groups one client's
 * ports and VIPs under the mark, and a marked packet no service takes is never written back.
 *
 * @module
 */
import assert from "node:assert/strict";
import { DROP, Engine, EngineCounter } from "../../dataplane/engine.ts";
import { type ServiceSpec, ServiceTable } from "../../dataplane/service.ts";
import { ipDst, ipSrc, PROTO_TCP } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_SYN, tcpDstPort, tcpSrcPort } from "../../dataplane/wire/tcp.ts";
import { udpDstPort } from "../../dataplane/wire/udp.ts";
import {
  CLIENT,
  dataplaneSpec,
  real,
  REAL1,
  REAL2,
  service,
  VIP,
} from "../fixtures/dataplane_specs.ts";
import { tcp, udp } from "../fixtures/packet_builders.ts";
import { addr } from "../fixtures/packets.ts";

const C = EngineCounter;
const MARK = 6666;
const VIP2 = addr("192.168.1.32");
const NEIGHBOUR = addr("192.168.1.36");

/** Seed 002's `-A -f 6666 -s rr` with `-r REAL` reals (no port); `extra` overrides fields. */
function fwmarkService(extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return service("fwmark-6666", 0, 0, 0, {
    vip: 0,
    fwmark: MARK,
    vips: [VIP, VIP2],
    reals: [real(REAL1, 0), real(REAL2, 0)],
    ...extra,
  });
}

/** Runs `pkt` as read from the device of `mark` (0: the main one); null when dropped. */
function feed(engine: Engine, pkt: Uint8Array, mark: number): Uint8Array | null {
  const buf = pkt.slice();
  return engine.process(buf, 0, buf.length, mark) === DROP ? null : buf;
}

/** "address:port" a forwarded TCP or UDP packet goes to. */
function destination(pkt: Uint8Array | null): string {
  assert.ok(pkt !== null, "the packet was forwarded");
  const port = pkt[9] === PROTO_TCP ? tcpDstPort(pkt, 20) : udpDstPort(pkt, 20);
  return `${ipDst(pkt, 0)}:${port}`;
}

const at = (address: number, port: number) => `${address}:${port}`;

/** A marked client SYN to `vip`:`vport`; where it was sent. */
function connect(engine: Engine, client: number, cport: number, vport: number, vip = VIP): string {
  return destination(feed(engine, tcp(client, cport, vip, vport, TCP_SYN), MARK));
}

Deno.test("fwmark: the table finds a service by its mark, and knows its VIPs", () => {
  const table = new ServiceTable([service("web", PROTO_TCP, 80, 80), fwmarkService()]);
  assert.equal(table.matchMark(MARK), 1);
  assert.equal(table.matchMark(6667), -1);
  // The mark service claims no VIP:port: port 443 on the VIP belongs to no VIP:port service.
  assert.equal(table.match(PROTO_TCP, VIP, 443), -1);
  assert.equal(table.match(PROTO_TCP, VIP, 80), 0);
  assert.ok(table.isVip(VIP2));
  assert.ok(!table.isVip(0));
});

Deno.test("fwmark: a bad mark, or a mark service with a VIP or port, does not compile", () => {
  assert.throws(() => new ServiceTable([fwmarkService({ fwmark: 0 })]), /bad firewall mark 0/);
  assert.throws(
    () => new ServiceTable([fwmarkService({ port: 80 })]),
    /a firewall-mark service has no VIP and no port/,
  );
  assert.throws(
    () => new ServiceTable([fwmarkService({ forward: "dr", reals: [real(REAL1, 80)] })]),
    /dr keeps the client's port; port 80 differs/,
  );
});

Deno.test("fwmark: rr across marked connections, each real on the client's port", () => {
  const engine = new Engine(dataplaneSpec([fwmarkService()]));
  assert.equal(connect(engine, CLIENT, 40000, 80), at(REAL1, 80));
  assert.equal(connect(engine, CLIENT, 40001, 443), at(REAL2, 443));
  assert.equal(connect(engine, CLIENT, 40002, 443, VIP2), at(REAL1, 443));
  // UDP is taken by the same mark: the service matches whatever protocol is marked.
  assert.equal(
    destination(feed(engine, udp(CLIENT, 5353, VIP, 53, "q"), MARK)),
    at(REAL2, 53),
  );
  // The connection's later segments are found by their tuple, from any device.
  assert.equal(
    destination(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_ACK), 0)),
    at(REAL1, 80),
  );
  // The NAT reply leaves as the VIP's port the client asked for.
  const reply = feed(engine, tcp(REAL2, 443, CLIENT, 40001, TCP_SYN | TCP_ACK), 0);
  assert.ok(reply !== null);
  assert.deepEqual([ipSrc(reply, 0), tcpSrcPort(reply, 20)], [VIP, 443]);
});

Deno.test("fwmark -p 3000: one client's :80 and :443 share a real; clients still alternate", () => {
  const engine = new Engine(
    dataplaneSpec([fwmarkService({ persistence: { timeoutMs: 3_000_000, netmask: 0xffffffff } })]),
  );
  assert.equal(connect(engine, CLIENT, 40000, 80), at(REAL1, 80));
  assert.equal(connect(engine, CLIENT, 40001, 443), at(REAL1, 443));
  assert.equal(connect(engine, CLIENT, 40002, 443, VIP2), at(REAL1, 443));
  assert.equal(connect(engine, NEIGHBOUR, 40000, 443), at(REAL2, 443));
  assert.equal(connect(engine, NEIGHBOUR, 40001, 80), at(REAL2, 80));
  // One template per client, as IPVS's: protocol IP, the mark as its virtual address, no ports.
  const t = engine.conns;
  const templates: string[] = [];
  t.forEach((id) => {
    if (t.protocol[id] === 0) {
      templates.push(`${t.inSrc[id]}:${t.inSrcPort[id]} ${t.inDst[id]}:${t.inDstPort[id]}`);
    }
  });
  assert.deepEqual(templates.sort(), [`${CLIENT}:0 ${MARK}:0`, `${NEIGHBOUR}:0 ${MARK}:0`].sort());
  const svc = engine.services.services[0];
  assert.deepEqual([...svc.persistent], [1, 1]);
});

Deno.test("fwmark first: a marked packet to a VIP:port service goes to the mark's service", () => {
  const web = service("web", PROTO_TCP, 80, 8080, { reals: [real(NEIGHBOUR, 8080)] });
  const engine = new Engine(dataplaneSpec([web, fwmarkService()]));
  // Marked: the fwmark service, as ip_vs_service_find tries the mark first.
  assert.equal(connect(engine, CLIENT, 40000, 80), at(REAL1, 80));
  // Unmarked (the main device): the VIP:port service.
  assert.equal(
    destination(feed(engine, tcp(CLIENT, 40001, VIP, 80, TCP_SYN), 0)),
    at(NEIGHBOUR, 8080),
  );
  // A mark no service has falls back to VIP:port.
  assert.equal(
    destination(feed(engine, tcp(CLIENT, 40002, VIP, 80, TCP_SYN), 7)),
    at(NEIGHBOUR, 8080),
  );
});

Deno.test("fwmark: marked packets no service takes are dropped, never written back to loop", () => {
  const engine = new Engine(dataplaneSpec([fwmarkService()]));
  const other = addr("172.16.5.5");
  // Unmarked, to a non-VIP: passed through as before.
  assert.ok(feed(engine, tcp(CLIENT, 40000, other, 80, TCP_SYN), 0) !== null);
  // Marked but for a mark without a service (removed a moment ago): dropped.
  assert.equal(feed(engine, tcp(CLIENT, 40001, other, 80, TCP_SYN), 7), null);
  // Unmarked, to one of the mark service's VIPs: dropped (the VIP is routed into the TUN).
  assert.equal(feed(engine, tcp(CLIENT, 40002, VIP2, 22, TCP_SYN), 0), null);
  assert.equal(engine.counters[C.DROP_NO_SERVICE], 2);
  assert.equal(engine.counters[C.PASSED_THROUGH], 1);
});
