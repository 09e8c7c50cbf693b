/**
 * Unit tests of Engine.apply: a running engine takes a new spec and keeps its connections,
 * templates and counters; removed reals and services drain or are cut.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnFlag } from "../../dataplane/conn/table.ts";
import { DROP, Engine } from "../../dataplane/engine.ts";
import { type DataplaneSpec, RealCounter, type ServiceSpec } from "../../dataplane/service.ts";
import { ipDst, ipSrc, PROTO_TCP, PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_FIN, TCP_SYN, tcpDstPort, tcpSrcPort } from "../../dataplane/wire/tcp.ts";
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

const REAL3 = addr("10.10.10.13");

/** web (TCP 80 → reals on 80), rr, with `reals` (default REAL1, REAL2); `extra` overrides. */
function web(reals = [real(REAL1, 80), real(REAL2, 80)], extra: Partial<ServiceSpec> = {}) {
  return service("web", PROTO_TCP, 80, 80, { reals, ...extra });
}

function spec(...services: ServiceSpec[]): DataplaneSpec {
  return dataplaneSpec(services);
}

/** Runs `pkt` through the engine; the rewritten copy, or null when dropped. */
function feed(engine: Engine, pkt: Uint8Array): Uint8Array | null {
  const buf = pkt.slice();
  return engine.process(buf, 0, buf.length) === DROP ? null : buf;
}

/** Opens an established connection from CLIENT:`cport` to VIP:`vport`; returns its real. */
function open(engine: Engine, cport: number, vport = 80): number {
  const syn = feed(engine, tcp(CLIENT, cport, VIP, vport, TCP_SYN));
  assert.ok(syn !== null, "SYN forwarded");
  const realAddr = ipDst(syn, 0);
  const realPort = tcpDstPort(syn, 20);
  assert.ok(feed(engine, tcp(realAddr, realPort, CLIENT, cport, TCP_SYN | TCP_ACK)) !== null);
  assert.ok(feed(engine, tcp(CLIENT, cport, VIP, vport, TCP_ACK)) !== null);
  return realAddr;
}

/** Checks that the connection from CLIENT:`cport` still translates both ways via `realAddr`. */
function flows(engine: Engine, cport: number, realAddr: number, vport = 80, realPort = 80): void {
  const req = feed(engine, tcp(CLIENT, cport, VIP, vport, TCP_ACK, "data"));
  assert.ok(req !== null, "request forwarded");
  assert.equal(ipDst(req, 0), realAddr);
  assert.equal(tcpDstPort(req, 20), realPort);
  const reply = feed(engine, tcp(realAddr, realPort, CLIENT, cport, TCP_ACK, "answer"));
  assert.ok(reply !== null, "reply forwarded");
  assert.equal(ipSrc(reply, 0), VIP);
  assert.equal(tcpSrcPort(reply, 20), vport);
}

/** [active, inactive, persistent] of every slot (reals and draining ones) of service `s`. */
function slots(engine: Engine, s = 0): number[][] {
  const svc = engine.services.services[s];
  return Array.from(
    { length: svc.addr.length },
    (_, r) => [svc.active[r], svc.inactive[r], svc.persistent[r]],
  );
}

/** Where the next `n` new connections go (as addresses), from client ports 50000 on. */
function picks(engine: Engine, n: number, from = 50000): number[] {
  return Array.from({ length: n }, (_, i) => open(engine, from + i));
}

Deno.test("apply: a weight change keeps the connections and changes the next picks", () => {
  const e = new Engine(spec(web()));
  const a = open(e, 40000);
  const b = open(e, 40001);
  assert.deepEqual([a, b], [REAL1, REAL2]);
  const r = e.apply(spec(web([real(REAL1, 80, 1), real(REAL2, 80, 0)])));
  assert.deepEqual(r.reals, { kept: 2, added: 0, removed: 0, draining: 0 });
  assert.equal(r.connections.remapped, 2);
  flows(e, 40000, REAL1);
  flows(e, 40001, REAL2);
  assert.deepEqual(picks(e, 3), [REAL1, REAL1, REAL1]);
  assert.deepEqual(slots(e), [[4, 0, 0], [1, 0, 0]]);
});

Deno.test("apply: an added real takes new connections; old ones stay where they are", () => {
  const e = new Engine(spec(web()));
  open(e, 40000);
  open(e, 40001);
  const r = e.apply(spec(web([real(REAL1, 80), real(REAL2, 80), real(REAL3, 80)])));
  assert.deepEqual(r.reals, { kept: 2, added: 1, removed: 0, draining: 0 });
  flows(e, 40000, REAL1);
  flows(e, 40001, REAL2);
  assert.deepEqual(new Set(picks(e, 3)), new Set([REAL1, REAL2, REAL3]));
});

Deno.test("apply: a removed real drains; its connections translate until they end", () => {
  const e = new Engine(spec(web()));
  open(e, 40000);
  open(e, 40001);
  const r = e.apply(spec(web([real(REAL1, 80)])));
  assert.deepEqual(r.reals, { kept: 1, added: 0, removed: 1, draining: 1 });
  assert.equal(r.connections.cut, 0);
  assert.equal(e.services.services[0].count, 1, "the scheduler sees one real");
  flows(e, 40001, REAL2);
  assert.deepEqual(picks(e, 2), [REAL1, REAL1]);
  // The drained connection ends: its slot's counts go back to zero, never below.
  assert.ok(feed(e, tcp(CLIENT, 40001, VIP, 80, TCP_FIN | TCP_ACK)) !== null);
  assert.ok(feed(e, tcp(REAL2, 80, CLIENT, 40001, TCP_FIN | TCP_ACK)) !== null);
  assert.ok(feed(e, tcp(CLIENT, 40001, VIP, 80, TCP_ACK)) !== null);
  const svc = e.services.services[0];
  assert.ok(svc.counter(1, RealCounter.IN_PACKETS) > 0, "the draining real's traffic counts");
  e.tick(e.now + 200_000);
  assert.deepEqual(slots(e)[1], [0, 0, 0]);
  assert.equal(e.conns.lookup(PROTO_TCP, CLIENT, 40001, VIP, 80), -1);
  // The next apply forgets the drained slot.
  e.apply(spec(web([real(REAL1, 80)])));
  assert.equal(e.services.services[0].addr.length, 1);
  flows(e, 40000, REAL1);
});

Deno.test("apply: cut removes a removed real's connections at once", () => {
  const e = new Engine(spec(web()));
  open(e, 40000);
  open(e, 40001);
  const r = e.apply(spec(web([real(REAL1, 80)])), { cut: true });
  assert.equal(r.connections.cut, 1);
  assert.equal(e.conns.size, 1);
  assert.equal(e.conns.lookup(PROTO_TCP, REAL2, 80, CLIENT, 40001), -1);
  // Not a SYN, no connection: dropped, not sent to a real.
  assert.equal(feed(e, tcp(CLIENT, 40001, VIP, 80, TCP_ACK)), null);
  flows(e, 40000, REAL1);
  assert.deepEqual(slots(e), [[1, 0, 0]]);
});

Deno.test("apply: reordered reals keep their connections and counters", () => {
  const e = new Engine(spec(web([real(REAL1, 80), real(REAL2, 80), real(REAL3, 80)])));
  assert.deepEqual(picks(e, 3, 40000), [REAL1, REAL2, REAL3]);
  flows(e, 40002, REAL3);
  const before = e.services.services[0].counter(2, RealCounter.IN_PACKETS);
  e.apply(spec(web([real(REAL3, 80), real(REAL1, 80), real(REAL2, 80)])));
  const svc = e.services.services[0];
  assert.equal(svc.addr[0], REAL3);
  assert.equal(svc.counter(0, RealCounter.IN_PACKETS), before);
  assert.deepEqual(slots(e), [[1, 0, 0], [1, 0, 0], [1, 0, 0]]);
  flows(e, 40000, REAL1);
  flows(e, 40001, REAL2);
  flows(e, 40002, REAL3);
  // Ending a connection uncounts the real it is on, wherever that real now sits.
  const id = e.conns.lookup(PROTO_TCP, CLIENT, 40002, VIP, 80) >> 1;
  assert.equal(e.conns.real[id], 0);
});

Deno.test("apply: services added and removed; a removed service's connections drain or are cut", () => {
  const dns = service("dns", PROTO_UDP, 53, 53);
  const e = new Engine(spec(web()));
  open(e, 40000);
  let r = e.apply(spec(dns, web()));
  assert.deepEqual(r.services, { kept: 1, added: 1, removed: 0, draining: 0 });
  flows(e, 40000, REAL1);
  const q = feed(e, udp(CLIENT, 5353, VIP, 53, "q"));
  assert.ok(q !== null);
  assert.equal(ipDst(q, 0), REAL1);

  r = e.apply(spec(dns));
  assert.deepEqual(r.services, { kept: 1, added: 0, removed: 1, draining: 1 });
  assert.equal(e.services.visibleCount, 1);
  flows(e, 40000, REAL1);
  // No new connection for the removed service.
  assert.equal(feed(e, tcp(CLIENT, 40009, VIP, 80, TCP_SYN)), null);
  const a = feed(e, udp(REAL1, 53, CLIENT, 5353, "a"));
  assert.ok(a !== null && ipSrc(a, 0) === VIP, "dns kept its connection");

  r = e.apply(spec(dns), { cut: true });
  assert.equal(r.connections.cut, 1);
  assert.equal(e.services.services.length, 1);
  assert.equal(e.conns.lookup(PROTO_TCP, CLIENT, 40000, VIP, 80), -1);
});

Deno.test("apply: persistence templates survive and keep pointing at their real", () => {
  const persistence = { timeoutMs: 10_000, netmask: 0xffffffff };
  const e = new Engine(spec(web(undefined, { persistence })));
  const first = open(e, 40000);
  const templateReal = (): number => {
    let found = -1;
    e.conns.forEach((id) => {
      if ((e.conns.flags[id] & ConnFlag.TEMPLATE) !== 0) {
        found = e.services.services[e.conns.service[id]].addr[e.conns.real[id]];
      }
    });
    return found;
  };
  assert.equal(templateReal(), first);
  // The template's real moves to another position, and a service is put in front.
  const other = first === REAL1 ? REAL2 : REAL1;
  const dns = service("dns", PROTO_UDP, 53, 53);
  e.apply(spec(dns, web([real(REAL3, 80), real(other, 80), real(first, 80)], { persistence })));
  assert.equal(templateReal(), first);
  assert.deepEqual(slots(e, 1)[2], [1, 0, 1]);
  // A new connection of the same client still follows its template.
  assert.equal(open(e, 40001), first);
  flows(e, 40000, first);
});

Deno.test("apply: a bad spec throws and changes nothing; timeouts take effect", () => {
  const e = new Engine(spec(web()));
  open(e, 40000);
  const bad = spec(web(undefined, { forward: "bogus" as "nat" }));
  assert.throws(() => e.apply(bad), RangeError);
  flows(e, 40000, REAL1);
  const next = spec(web());
  next.timeouts = { tcp: 60, tcpfin: 10, udp: 30 };
  e.apply(next);
  assert.deepEqual(e.timeouts, { tcp: 60, tcpfin: 10, udp: 30 });
});

Deno.test("apply: remapping 1M connections is a control-rate pass", () => {
  const n = 1_000_000;
  const e = new Engine(dataplaneSpec([web()], n + 16));
  const t = e.conns;
  // Filled directly: a million packets through process() would test process(), not apply().
  const svc = e.services.services[0];
  for (let i = 0; i < n; i++) {
    const id = t.allocate();
    t.protocol[id] = PROTO_TCP;
    t.service[id] = 0;
    t.real[id] = i & 1;
    t.inSrc[id] = CLIENT + (i >>> 16);
    t.inSrcPort[id] = i & 0xffff;
    t.inDst[id] = VIP;
    t.inDstPort[id] = 80;
    t.outSrc[id] = t.inSrc[id];
    t.outSrcPort[id] = t.inSrcPort[id];
    t.outDst[id] = i & 1 ? REAL2 : REAL1;
    t.outDstPort[id] = 80;
    svc.bind(i & 1);
    t.link(id, 600_000, 0);
  }
  const r = e.apply(dataplaneSpec([web([real(REAL2, 80), real(REAL1, 80)])], n + 16));
  assert.equal(r.connections.remapped, n);
  assert.deepEqual(slots(e), [[0, n / 2, 0], [0, n / 2, 0]]);
  console.log(`apply over ${n} connections: ${r.ms.toFixed(1)} ms`);
  assert.ok(r.ms < 5000, `took ${r.ms} ms`);
});
