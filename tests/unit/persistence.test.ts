/**
 * Persistence (-p/-M), port groups and one-packet scheduling (-o), engine-level with a
 * deterministic clock: the rules of IPVS's ip_vs_sched_persist, ip_vs_check_template and
 * ip_vs_conn_expire, played through Engine.process and Engine.tick.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TEMPLATE_REARM_MS } from "../../dataplane/conn/persistence.ts";
import { ConnState } from "../../dataplane/conn/state.ts";
import { ConnFlag } from "../../dataplane/conn/table.ts";
import { DROP, Engine, EngineCounter } from "../../dataplane/engine.ts";
import {
  type DataplaneSpec,
  ONE_PACKET_REPLY_WAIT_MS,
  type ServiceSpec,
  ServiceTable,
} from "../../dataplane/service.ts";
import { ipDst, ipSrc, PROTO_TCP, PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_FIN, TCP_SYN, tcpDstPort, tcpSrcPort } from "../../dataplane/wire/tcp.ts";
import { udpDstPort, udpSrcPort } from "../../dataplane/wire/udp.ts";
import {
  CLIENT,
  dataplaneSpec,
  real,
  REAL1,
  REAL2,
  service,
  TIMEOUTS,
  VIP,
} from "../fixtures/dataplane_specs.ts";
import { tcp, udp } from "../fixtures/packet_builders.ts";
import { addr } from "../fixtures/packets.ts";

const C = EngineCounter;
const NEIGHBOUR = addr("192.168.1.36");
const FAR_CLIENT = addr("192.168.2.35");

/** A one-service spec, web on TCP 80 with both reals on 80; `extra` overrides its fields. */
function oneService(extra: Partial<ServiceSpec>, maxConnections = 1024): DataplaneSpec {
  return dataplaneSpec([service("web", PROTO_TCP, 80, 80, extra)], maxConnections);
}

/** The seed's `ipvsadm -E -t 192.168.1.31:80 -s rr -p 10`, with an optional -M. */
function persistent10(netmask = 0xffffffff): DataplaneSpec {
  return oneService({ persistence: { timeoutMs: 10_000, netmask } });
}

// --- running packets --------------------------------------------------------------------------

/** Runs `pkt` through the engine; returns the rewritten copy, or null when it was dropped. */
function feed(engine: Engine, pkt: Uint8Array): Uint8Array | null {
  const buf = pkt.slice();
  return engine.process(buf, 0, buf.length) === DROP ? null : buf;
}

/** Where a forwarded packet went: "address:port" of its destination. */
function destination(pkt: Uint8Array | null): string {
  assert.ok(pkt !== null, "the packet was forwarded");
  const port = pkt[9] === PROTO_TCP ? tcpDstPort(pkt, 20) : udpDstPort(pkt, 20);
  return `${ipDst(pkt, 0)}:${port}`;
}

/** Where a forwarded packet came from: "address:port" of its source. */
function source(pkt: Uint8Array | null): string {
  assert.ok(pkt !== null, "the packet was forwarded");
  const port = pkt[9] === PROTO_TCP ? tcpSrcPort(pkt, 20) : udpSrcPort(pkt, 20);
  return `${ipSrc(pkt, 0)}:${port}`;
}

const at = (address: number, port: number) => `${address}:${port}`;

/** A client SYN to VIP:`vport`; returns "real:port" it was sent to. */
function connect(engine: Engine, client: number, cport: number, vport = 80): string {
  return destination(feed(engine, tcp(client, cport, VIP, vport, TCP_SYN)));
}

/**
 * A whole connection the way curl makes one, from SYN to the client's last ACK, all at the
 * engine's current time: it is left in TIME_WAIT (client FIN: CLOSE_WAIT, then the real's FIN).
 */
function curl(engine: Engine, client: number, cport: number, vport = 80): string {
  const to = connect(engine, client, cport, vport);
  const [realAddr, realPort] = to.split(":").map(Number);
  const c = (flags: number) => destination(feed(engine, tcp(client, cport, VIP, vport, flags)));
  const r = (flags: number) => source(feed(engine, tcp(realAddr, realPort, client, cport, flags)));
  assert.equal(r(TCP_SYN | TCP_ACK), at(VIP, vport));
  c(TCP_ACK);
  c(TCP_FIN | TCP_ACK);
  r(TCP_FIN | TCP_ACK);
  c(TCP_ACK);
  const e = engine.conns.lookup(PROTO_TCP, client, cport, VIP, vport);
  assert.ok(e >= 0);
  assert.equal(engine.conns.state[e >> 1], ConnState.TIME_WAIT);
  return to;
}

/** One row of `ipvsadm -Lnc` for each entry: what IPVS would print, expiry in whole seconds. */
interface Row {
  state: string;
  expiresIn: number;
  source: string;
  virtual: string;
  destination: string;
}

function ipText(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function listing(engine: Engine): Row[] {
  const t = engine.conns;
  const rows: Row[] = [];
  t.forEach((id) =>
    rows.push({
      state: Engine.stateName(t.state[id]),
      expiresIn: Math.ceil((t.expires[id] - engine.now) / 1000),
      source: `${ipText(t.inSrc[id])}:${t.inSrcPort[id]}`,
      virtual: `${ipText(t.inDst[id])}:${t.inDstPort[id]}`,
      destination: `${ipText(t.outDst[id])}:${t.outDstPort[id]}`,
    })
  );
  return rows.sort((a, b) => a.source.localeCompare(b.source));
}

/** Ids of the templates in the table. */
function templates(engine: Engine): number[] {
  const ids: number[] = [];
  engine.conns.forEach((id) => {
    if ((engine.conns.flags[id] & ConnFlag.TEMPLATE) !== 0) ids.push(id);
  });
  return ids.sort((a, b) => a - b);
}

function onlyTemplate(engine: Engine): number {
  const ids = templates(engine);
  assert.equal(ids.length, 1, "exactly one template");
  return ids[0];
}

/** Advances the engine's clock to `ms` the way the worker does, a tick every 250 ms. */
function tickTo(engine: Engine, ms: number): void {
  for (let now = Math.min(engine.now + 250, ms); now < ms; now += 250) {
    engine.now = now;
    engine.tick(now);
  }
  engine.now = ms;
  engine.tick(ms);
}

// --- persistence ---------------------------------------------------------------------------------

Deno.test("-p 10 with rr: a client keeps its real; another client gets the other one", () => {
  const engine = new Engine(persistent10());
  tickTo(engine, 0);
  const r1 = at(REAL1, 80);
  const r2 = at(REAL2, 80);
  for (let port = 50000; port < 50005; port++) assert.equal(connect(engine, CLIENT, port), r1);
  // rr moved on only once, when the template was made: the next client network gets REAL2.
  assert.equal(connect(engine, NEIGHBOUR, 50000), r2);
  assert.equal(connect(engine, NEIGHBOUR, 50001), r2);
  assert.equal(connect(engine, CLIENT, 50005), r1);

  const svc = engine.services.services[0];
  assert.deepEqual([...svc.persistent], [1, 1], "one template per real");
  // Templates are no connections: ActiveConn/InActConn count the 9 connections only.
  assert.deepEqual(
    [svc.active[0] + svc.inactive[0], svc.active[1] + svc.inactive[1]],
    [6, 2],
  );
  assert.equal(engine.conns.size, 8 + 2);
  assert.equal(engine.counters[C.CONNECTIONS_CREATED], 8);
  assert.equal(templates(engine).length, 2);
});

Deno.test("templates are listed as IPVS shows them and never match a packet", () => {
  const engine = new Engine(persistent10());
  tickTo(engine, 0);
  curl(engine, CLIENT, 59132);
  tickTo(engine, 1_000);
  curl(engine, CLIENT, 59134);
  tickTo(engine, 3_000);
  // The seed's `ipvsadm -lnc`, three seconds in (TCP 00:07 NONE 192.168.1.35:0 ...).
  assert.deepEqual(listing(engine), [
    {
      state: "NONE",
      expiresIn: 8,
      source: "192.168.1.35:0",
      virtual: "192.168.1.31:80",
      destination: "10.10.10.11:80",
    },
    {
      state: "TIME_WAIT",
      expiresIn: 117,
      source: "192.168.1.35:59132",
      virtual: "192.168.1.31:80",
      destination: "10.10.10.11:80",
    },
    {
      state: "TIME_WAIT",
      expiresIn: 118,
      source: "192.168.1.35:59134",
      virtual: "192.168.1.31:80",
      destination: "10.10.10.11:80",
    },
  ]);
  const tpl = onlyTemplate(engine);
  assert.equal(engine.conns.state[tpl], ConnState.NONE);
  assert.equal(engine.conns.controlled[tpl], 2);
  // The template's tuple is no packet's: neither direction finds it.
  assert.equal(engine.conns.lookup(PROTO_TCP, CLIENT, 0, VIP, 80), -1);
  assert.equal(engine.conns.lookup(PROTO_TCP, REAL1, 80, CLIENT, 0), -1);
  // A SYN from client port 0 is a connection of its own, under the template.
  assert.equal(connect(engine, CLIENT, 0), at(REAL1, 80));
  assert.equal(engine.conns.controlled[tpl], 3);
  assert.equal(templates(engine).length, 1);
  const e = engine.conns.lookup(PROTO_TCP, CLIENT, 0, VIP, 80);
  assert.ok(e >= 0 && (e >> 1) !== tpl);
  assert.equal(engine.conns.control[e >> 1], tpl + 1);
});

Deno.test("seed 000: the NONE entry lives 2*60+10 s while TIME_WAIT entries hold it", () => {
  const engine = new Engine(persistent10());
  const svc = engine.services.services[0];
  tickTo(engine, 0);
  // Two curls at t=0, both left in TIME_WAIT (120 s) under one template (-p 10).
  assert.equal(curl(engine, CLIENT, 59132), at(REAL1, 80));
  assert.equal(curl(engine, CLIENT, 59134), at(REAL1, 80));
  const tpl = onlyTemplate(engine);
  assert.equal(engine.conns.expires[tpl], 10_000);

  // The template's own 10 s are up, but it controls two connections: IPVS's expire_later
  // re-arms it for 60 s (and its timeout stays 60 s from then on).
  tickTo(engine, 9_750);
  assert.equal(engine.conns.expires[tpl], 10_000);
  tickTo(engine, 10_000);
  assert.deepEqual(templates(engine), [tpl]);
  assert.equal(engine.conns.expires[tpl], 10_000 + TEMPLATE_REARM_MS);
  assert.notEqual(engine.conns.flags[tpl] & ConnFlag.TEMPLATE_REARMED, 0);
  tickTo(engine, 70_000);
  assert.equal(engine.conns.expires[tpl], 130_000);

  // The connections end at 120 s; the template does not end with them but on its timer.
  tickTo(engine, 120_000);
  assert.equal(engine.conns.size, 1);
  assert.equal(engine.conns.controlled[tpl], 0);
  assert.deepEqual([svc.active[0], svc.inactive[0]], [0, 0]);
  tickTo(engine, 129_750);
  assert.deepEqual(templates(engine), [tpl]);
  assert.deepEqual([...svc.persistent], [1, 0]);
  tickTo(engine, 130_000);
  assert.equal(engine.conns.size, 0);
  assert.deepEqual([...svc.persistent], [0, 0]);

  // Only now may the client go elsewhere: rr's next real.
  assert.equal(connect(engine, CLIENT, 59200), at(REAL2, 80));
});

Deno.test("a new connection under a re-armed template refreshes it by 60 s, not by -p", () => {
  const engine = new Engine(persistent10());
  tickTo(engine, 0);
  curl(engine, CLIENT, 40000);
  tickTo(engine, 10_000);
  const tpl = onlyTemplate(engine);
  assert.equal(engine.conns.expires[tpl], 70_000);
  tickTo(engine, 70_000);
  tickTo(engine, 120_000);
  tickTo(engine, 125_000);
  assert.equal(engine.conns.controlled[tpl], 0, "the connection is gone");
  // ip_vs_conn_put(ct) after the new connection: the timer restarts with ct->timeout (60 s).
  assert.equal(connect(engine, CLIENT, 40001), at(REAL1, 80));
  assert.deepEqual(templates(engine), [tpl]);
  assert.equal(engine.conns.expires[tpl], 185_000);

  // A template never re-armed is refreshed by the persistence timeout.
  const fresh = new Engine(persistent10());
  tickTo(fresh, 0);
  connect(fresh, CLIENT, 40000);
  tickTo(fresh, 4_000);
  connect(fresh, CLIENT, 40001);
  assert.equal(fresh.conns.expires[onlyTemplate(fresh)], 14_000);
});

Deno.test("-M 255.255.255.0: clients of one /24 share a template and a real", () => {
  const engine = new Engine(persistent10(0xffffff00));
  tickTo(engine, 0);
  assert.equal(connect(engine, CLIENT, 40000), at(REAL1, 80));
  assert.equal(connect(engine, NEIGHBOUR, 40000), at(REAL1, 80));
  assert.equal(connect(engine, FAR_CLIENT, 40000), at(REAL2, 80));
  assert.equal(connect(engine, NEIGHBOUR, 40001), at(REAL1, 80));
  const rows = listing(engine).filter((r) => r.state === "NONE");
  assert.deepEqual(rows.map((r) => [r.source, r.destination]), [
    ["192.168.1.0:0", "10.10.10.11:80"],
    ["192.168.2.0:0", "10.10.10.12:80"],
  ]);
  // Connections keep their own client address; only the template is masked.
  const e = engine.conns.lookup(PROTO_TCP, NEIGHBOUR, 40001, VIP, 80);
  assert.ok(e >= 0);
  assert.equal(engine.conns.inSrc[e >> 1], NEIGHBOUR);
  assert.equal(engine.conns.controlled[templates(engine)[0]], 3);
});

Deno.test("drained real (weight 0): persistent clients stay, as expire_quiescent_template=0", () => {
  const engine = new Engine(persistent10());
  const svc = engine.services.services[0];
  tickTo(engine, 0);
  assert.equal(connect(engine, CLIENT, 40000), at(REAL1, 80));
  // ipvsadm -e ... -w 0 on REAL1.
  svc.weight[0] = 0;
  svc.scheduler.reset(svc);
  // IPVS's ip_vs_check_template does not look at the weight unless the sysctl says so.
  assert.equal(connect(engine, CLIENT, 40001), at(REAL1, 80));
  // A new client network is scheduled, and the drained real gets none.
  assert.equal(connect(engine, NEIGHBOUR, 40000), at(REAL2, 80));
  assert.equal(connect(engine, FAR_CLIENT, 40000), at(REAL2, 80));

  // With net.ipv4.vs.expire_quiescent_template=1 the template is dropped from the index and the
  // client is scheduled anew; the old template lives on while it controls connections.
  engine.persistence.expireQuiescentTemplate = true;
  const old = templates(engine).find((id) => engine.conns.real[id] === 0);
  assert.ok(old !== undefined);
  assert.equal(connect(engine, CLIENT, 40002), at(REAL2, 80));
  assert.equal(templates(engine).length, 4);
  assert.equal(engine.conns.controlled[old], 2);
  const current = engine.persistence.index.find(engine.conns, 0, CLIENT);
  assert.ok(current >= 0 && current !== old);
  assert.equal(engine.conns.real[current], 1);
  assert.equal(connect(engine, CLIENT, 40003), at(REAL2, 80));
});

Deno.test("a template whose real is no longer the service's is invalid (ip_vs_check_template)", () => {
  const engine = new Engine(persistent10());
  const svc = engine.services.services[0];
  tickTo(engine, 0);
  assert.equal(curl(engine, CLIENT, 40000), at(REAL1, 80));
  const old = onlyTemplate(engine);
  // The real at REAL1's place is now another server, as after removing and re-adding reals.
  const REPLACEMENT = addr("10.10.10.21");
  svc.addr[0] = REPLACEMENT;
  svc.scheduler.reset(svc);
  assert.equal(connect(engine, CLIENT, 40001), at(REAL2, 80));
  const ids = templates(engine);
  assert.equal(ids.length, 2);
  assert.equal(engine.conns.controlled[old], 1, "the old template still holds its connection");
  assert.equal(engine.persistence.index.find(engine.conns, 0, CLIENT), ids.find((i) => i !== old));
  // It dies on its timer once its TIME_WAIT connection is gone: 10 s, +60, +60 = 130 s.
  tickTo(engine, 129_750);
  assert.ok(templates(engine).includes(old));
  tickTo(engine, 130_000);
  assert.ok(!templates(engine).includes(old));
});

Deno.test("a full table refuses a persistent connection without moving the scheduler", () => {
  // Room for one connection and its template, plus one entry.
  const engine = new Engine(
    oneService({ persistence: { timeoutMs: 10_000, netmask: 0xffffffff } }, 3),
  );
  tickTo(engine, 0);
  assert.equal(connect(engine, CLIENT, 40000), at(REAL1, 80));
  // The neighbour's connection fits, its template does not.
  assert.equal(feed(engine, tcp(NEIGHBOUR, 40000, VIP, 80, TCP_SYN)), null);
  assert.equal(engine.counters[C.DROP_TABLE_FULL], 1);
  assert.equal(engine.conns.size, 2);
  // The existing client's template has room for one more connection.
  assert.equal(connect(engine, CLIENT, 40001), at(REAL1, 80));
  assert.equal(feed(engine, tcp(CLIENT, 40002, VIP, 80, TCP_SYN)), null);
  assert.equal(engine.counters[C.DROP_TABLE_FULL], 2);
  // Once everything expired, rr's next real is still the second one: the refusal did not pick.
  tickTo(engine, 200_000);
  assert.equal(engine.conns.size, 0);
  assert.equal(connect(engine, NEIGHBOUR, 40000), at(REAL2, 80));
});

Deno.test("no real to pick: the persistent connection is dropped and no template is left", () => {
  const engine = new Engine(
    oneService({
      persistence: { timeoutMs: 10_000, netmask: 0xffffffff },
      reals: [real(REAL1, 80, 0), real(REAL2, 80, 0)],
    }),
  );
  assert.equal(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_SYN)), null);
  assert.equal(engine.counters[C.DROP_NO_REAL], 1);
  assert.equal(engine.conns.size, 0);
});

// --- port groups ---------------------------------------------------------------------------------

/** seed 002's firewall mark 6666 over 80 and 443, with -p: reals without a port. */
function portGroup(realPort = 0): DataplaneSpec {
  return oneService({
    port: 0,
    ports: [[80, 80], [443, 443]],
    persistence: { timeoutMs: 3_000_000, netmask: 0xffffffff },
    reals: [real(REAL1, realPort), real(REAL2, realPort)],
  });
}

Deno.test("port group [80, 443] with persistence: one client's ports go to one real", () => {
  const engine = new Engine(portGroup());
  tickTo(engine, 0);
  // A real without a port receives the port the client asked for.
  assert.equal(connect(engine, CLIENT, 40000, 80), at(REAL1, 80));
  assert.equal(connect(engine, CLIENT, 40001, 443), at(REAL1, 443));
  assert.equal(connect(engine, NEIGHBOUR, 40000, 443), at(REAL2, 443));
  assert.equal(connect(engine, NEIGHBOUR, 40001, 80), at(REAL2, 80));
  assert.equal(connect(engine, CLIENT, 40002, 443), at(REAL1, 443));
  // The real's reply from 443 leaves as the VIP's 443.
  assert.equal(
    source(feed(engine, tcp(REAL1, 443, CLIENT, 40001, TCP_SYN | TCP_ACK))),
    at(VIP, 443),
  );
  // One template per client, naming no port (a firewall-mark template in IPVS).
  const rows = listing(engine).filter((r) => r.state === "NONE");
  assert.deepEqual(rows.map((r) => [r.source, r.virtual, r.destination]), [
    ["192.168.1.35:0", "192.168.1.31:0", "10.10.10.11:0"],
    ["192.168.1.36:0", "192.168.1.31:0", "10.10.10.12:0"],
  ]);
  // Ports outside the group belong to no service: a VIP packet for them is dropped.
  assert.equal(feed(engine, tcp(CLIENT, 40003, VIP, 8080, TCP_SYN)), null);
  assert.equal(engine.counters[C.DROP_NO_SERVICE], 1);
});

Deno.test("a real that names a port gets every port of the group on it", () => {
  const engine = new Engine(portGroup(8443));
  assert.equal(connect(engine, CLIENT, 40000, 80), at(REAL1, 8443));
  assert.equal(connect(engine, CLIENT, 40001, 443), at(REAL1, 8443));
  assert.equal(
    source(feed(engine, tcp(REAL1, 8443, CLIENT, 40001, TCP_SYN | TCP_ACK))),
    at(VIP, 443),
  );
});

Deno.test("port ranges match only within the range; port 0 takes what no other service has", () => {
  const spec = (name: string, protocol: number, port: number, extra: Partial<ServiceSpec> = {}) =>
    service(name, protocol, port, 0, { reals: [real(REAL1, 0)], ...extra });
  const table = new ServiceTable([
    spec("web", PROTO_TCP, 80),
    // Long enough to be scanned rather than indexed port by port.
    spec("range", PROTO_TCP, 0, { ports: [[8000, 8099], [9000, 9001]] }),
    spec("any", PROTO_TCP, 0, { persistence: { timeoutMs: 1000, netmask: 0xffffffff } }),
    spec("udp-range", PROTO_UDP, 0, { ports: [[5000, 5999]] }),
  ]);
  const cases: [number, number, number][] = [
    [PROTO_TCP, 80, 0],
    [PROTO_TCP, 8000, 1],
    [PROTO_TCP, 8050, 1],
    [PROTO_TCP, 8099, 1],
    [PROTO_TCP, 9000, 1],
    [PROTO_TCP, 9001, 1],
    [PROTO_TCP, 7999, 2],
    [PROTO_TCP, 8100, 2],
    [PROTO_TCP, 9002, 2],
    [PROTO_TCP, 5000, 2],
    [PROTO_UDP, 5000, 3],
    [PROTO_UDP, 5999, 3],
    [PROTO_UDP, 4999, -1],
    [PROTO_UDP, 6000, -1],
    [PROTO_UDP, 80, -1],
    [PROTO_UDP, 8050, -1],
  ];
  for (const [proto, port, want] of cases) {
    assert.equal(table.match(proto, VIP, port), want, `${proto}/${port}`);
  }
  assert.equal(table.match(PROTO_TCP, VIP + 1, 8050), -1);
  assert.equal(table.isVip(VIP), true);

  // Through the engine: only ports inside the range are balanced.
  const engine = new Engine(
    oneService({ port: 0, ports: [[8000, 8099]], reals: [real(REAL1, 0)] }),
  );
  assert.equal(connect(engine, CLIENT, 40000, 8000), at(REAL1, 8000));
  assert.equal(connect(engine, CLIENT, 40001, 8099), at(REAL1, 8099));
  assert.equal(feed(engine, tcp(CLIENT, 40002, VIP, 7999, TCP_SYN)), null);
  assert.equal(feed(engine, tcp(CLIENT, 40003, VIP, 8100, TCP_SYN)), null);
  assert.equal(engine.counters[C.DROP_NO_SERVICE], 2);
});

Deno.test("ServiceTable refuses port settings IPVS would not schedule", () => {
  const base = oneService({}).services[0];
  assert.throws(() => new ServiceTable([{ ...base, port: 0 }]), /port 0 \(any port\) needs/);
  assert.throws(() => new ServiceTable([{ ...base, port: 0, ports: [[90, 80]] }]), /bad port/);
  assert.throws(() => new ServiceTable([{ ...base, port: 0, ports: [] }]), /needs ports/);
  assert.throws(() => new ServiceTable([{ ...base, ports: [[80, 81]] }]), /port group has port 0/);
  assert.throws(() => new ServiceTable([{ ...base, port: 70000 }]), /bad port/);
});

Deno.test("persistent port-0 service: any port, one template for all of a client's ports", () => {
  const engine = new Engine(
    oneService({
      port: 0,
      persistence: { timeoutMs: 60_000, netmask: 0xffffffff },
      reals: [real(REAL1, 0), real(REAL2, 0)],
    }),
  );
  assert.equal(connect(engine, CLIENT, 40000, 22), at(REAL1, 22));
  assert.equal(connect(engine, CLIENT, 40001, 3306), at(REAL1, 3306));
  assert.equal(connect(engine, NEIGHBOUR, 40000, 3306), at(REAL2, 3306));
  assert.equal(templates(engine).length, 2);
});

// --- one-packet scheduling -------------------------------------------------------------------------

function dns(extra: Partial<ServiceSpec> = {}): DataplaneSpec {
  return oneService({
    name: "dns",
    protocol: PROTO_UDP,
    port: 53,
    onePacket: true,
    reals: [real(REAL1, 53), real(REAL2, 53)],
    ...extra,
  });
}

Deno.test("-o: each datagram of one client socket is scheduled on its own", () => {
  const engine = new Engine(dns());
  const svc = engine.services.services[0];
  tickTo(engine, 0);
  const ask = () => destination(feed(engine, udp(CLIENT, 33000, VIP, 53)));
  assert.equal(ask(), at(REAL1, 53));
  assert.equal(ask(), at(REAL2, 53));
  // Two entries wait for their replies; neither is found by the client's tuple.
  assert.equal(engine.conns.size, 2);
  assert.equal(engine.conns.lookup(PROTO_UDP, CLIENT, 33000, VIP, 53), -1);
  assert.deepEqual([...svc.inactive], [1, 1]);

  // Each reply is translated back to the VIP, and its entry is gone right after.
  const reply = (from: number) => source(feed(engine, udp(from, 53, CLIENT, 33000)));
  assert.equal(reply(REAL2), at(VIP, 53));
  assert.equal(engine.conns.size, 1);
  assert.equal(reply(REAL1), at(VIP, 53));
  assert.equal(engine.conns.size, 0);
  assert.deepEqual([...svc.inactive], [0, 0]);
  // A second reply finds nothing: it is not ours to translate and passes through unchanged.
  assert.equal(reply(REAL1), at(REAL1, 53));
  assert.equal(engine.counters[C.CONNECTIONS_CREATED], 2);
  assert.equal(engine.counters[C.CONNECTIONS_EXPIRED], 2);
});

Deno.test("-o: a datagram without a reply holds its entry a few seconds at most", () => {
  const engine = new Engine(dns());
  tickTo(engine, 0);
  assert.equal(destination(feed(engine, udp(CLIENT, 33000, VIP, 53))), at(REAL1, 53));
  assert.equal(engine.conns.size, 1);
  assert.equal(engine.conns.expires[liveIds(engine)[0]], ONE_PACKET_REPLY_WAIT_MS);
  tickTo(engine, ONE_PACKET_REPLY_WAIT_MS - 250);
  assert.equal(engine.conns.size, 1);
  tickTo(engine, ONE_PACKET_REPLY_WAIT_MS);
  assert.equal(engine.conns.size, 0);
  assert.deepEqual([...engine.services.services[0].inactive], [0, 0]);

  // A udp timeout below the wait bounds it instead.
  const short = new Engine({ ...dns(), timeouts: { ...TIMEOUTS, udp: 2 } });
  feed(short, udp(CLIENT, 33000, VIP, 53));
  assert.equal(short.conns.expires[liveIds(short)[0]], 2_000);
});

/** Ids of every live entry. */
function liveIds(engine: Engine): number[] {
  const ids: number[] = [];
  engine.conns.forEach((id) => ids.push(id));
  return ids;
}

Deno.test("-o applies to UDP only; without it a client socket sticks to its real", () => {
  const tcpSpec = oneService({ onePacket: true });
  const engine = new Engine(tcpSpec);
  assert.equal(engine.services.services[0].onePacket, false);
  assert.equal(connect(engine, CLIENT, 40000), at(REAL1, 80));
  assert.equal(destination(feed(engine, tcp(CLIENT, 40000, VIP, 80, TCP_ACK))), at(REAL1, 80));
  assert.equal(engine.conns.size, 1);

  const plain = new Engine(dns({ onePacket: false }));
  const ask = () => destination(feed(plain, udp(CLIENT, 33000, VIP, 53)));
  assert.equal(ask(), at(REAL1, 53));
  assert.equal(ask(), at(REAL1, 53));
  assert.equal(plain.conns.size, 1);
});

Deno.test("-o with persistence: every datagram to the template's real, no entry kept", () => {
  const engine = new Engine(dns({ persistence: { timeoutMs: 30_000, netmask: 0xffffffff } }));
  tickTo(engine, 0);
  for (let i = 0; i < 4; i++) {
    const sport = 33000 + (i & 1);
    assert.equal(destination(feed(engine, udp(CLIENT, sport, VIP, 53))), at(REAL1, 53));
    assert.equal(source(feed(engine, udp(REAL1, 53, CLIENT, sport))), at(VIP, 53));
  }
  assert.equal(destination(feed(engine, udp(NEIGHBOUR, 33000, VIP, 53))), at(REAL2, 53));
  assert.equal(source(feed(engine, udp(REAL2, 53, NEIGHBOUR, 33000))), at(VIP, 53));
  // Only the two templates are left; each controls nothing.
  const ids = templates(engine);
  assert.equal(engine.conns.size, 2);
  assert.deepEqual(ids.map((id) => engine.conns.controlled[id]), [0, 0]);
  // With no datagram for 30 s the templates go.
  tickTo(engine, 30_000);
  assert.equal(engine.conns.size, 0);
});
