/**
 * Several dataplane workers: the owner function (a connection's request, NAT reply, FULLNAT
 * reply and ICMP errors all name the same worker), the hand-off ring, the FULLNAT local port
 * partition, and the control plane's merge of the workers' answers.
 */
import assert from "node:assert/strict";
import { DROP, Engine } from "../../dataplane/engine.ts";
import { LOCAL_PORT_MIN, LocalPortAllocator } from "../../dataplane/forward/local_ports.ts";
import { HandoffRing } from "../../dataplane/handoff_ring.ts";
import {
  closeHandoffShared,
  Handoff,
  HandoffCounter,
  makeHandoffShared,
} from "../../dataplane/handoff.ts";
import { SLOT_BYTES as SLOT } from "../../dataplane/tun.ts";
import { PacketOwners } from "../../dataplane/owner.ts";
import { ConnTable } from "../../dataplane/conn/table.ts";
import { ipDst, ipSrc, PROTO_TCP, PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_SYN, tcpSrcPort } from "../../dataplane/wire/tcp.ts";
import { dataplaneSpec, real, REAL1, REAL2, service, VIP } from "../fixtures/dataplane_specs.ts";
import { feed } from "../fixtures/engine_harness.ts";
import { addr } from "../fixtures/packets.ts";
import { fragment, icmpError, tcp, udp } from "../fixtures/packet_builders.ts";
import {
  listAcrossWorkers,
  mergeStats,
  mergeTraffic,
  splitCursor,
} from "../../control/worker_merge.ts";
import type { WorkerStats } from "../../dataplane/worker.ts";
import type { ServiceTrafficStats } from "../../dataplane/stats/service_stats.ts";
import type {
  ConnectionEntry,
  ConnectionPage,
  ConnectionQuery,
} from "../../dataplane/stats/conn_listing.ts";

const LOCAL = addr("10.0.3.1");
const natSpec = dataplaneSpec([service("web", PROTO_TCP, 80, 8080)]);
const fullnatSpec = dataplaneSpec([
  service("web", PROTO_TCP, 80, 8080, {
    forward: "fullnat",
    localAddresses: [LOCAL],
    reals: [real(REAL1, 8080)],
  }),
]);

function ownerOf(o: PacketOwners, pkt: Uint8Array): number {
  return o.ownerOfPacket(pkt, 0, pkt.length, false);
}

Deno.test("request, NAT reply and ICMP errors of one connection name one owner", () => {
  for (const workers of [2, 3, 4, 7]) {
    const owners = new PacketOwners(workers, natSpec);
    const seen = new Set<number>();
    for (let c = 0; c < 64; c++) {
      const client = addr("172.16.0.1") + c;
      const req = tcp(client, 40000 + c, VIP, 80, TCP_SYN);
      const k = ownerOf(owners, req);
      seen.add(k);
      // The request after NAT (client → real) and the real's reply (real → client).
      const reply = tcp(REAL1, 8080, client, 40000 + c, TCP_SYN | TCP_ACK);
      assert.equal(ownerOf(owners, reply), k);
      // The real's port unreachable about the NATed request, and a router's error about the
      // reply sent to the client (quoting VIP → client).
      const natted = tcp(client, 40000 + c, REAL1, 8080, TCP_SYN);
      assert.equal(ownerOf(owners, icmpError(REAL1, client, 3, 3, natted, 28)), k);
      const toClient = tcp(VIP, 80, client, 40000 + c, TCP_ACK);
      assert.equal(ownerOf(owners, icmpError(addr("10.9.9.9"), VIP, 3, 4, toClient, 28)), k);
      // Other ports of the client: the same worker (persistence, sh).
      assert.equal(ownerOf(owners, tcp(client, 555, VIP, 443, TCP_SYN)), k);
    }
    assert.equal(seen.size, workers, `${workers} workers all own some clients`);
  }
});

Deno.test("later fragments of a request go where the first went", () => {
  const owners = new PacketOwners(4, dataplaneSpec([service("dns", PROTO_UDP, 53, 8053)]));
  for (let c = 0; c < 16; c++) {
    const frags = fragment(udp(addr("172.16.1.1") + c, 5000, VIP, 53, new Uint8Array(3000)), 1400);
    const first = ownerOf(owners, frags[0]);
    for (const f of frags) assert.equal(ownerOf(owners, f), first);
  }
});

Deno.test("persistence netmasks widen the client hash: a /24 shares one worker", () => {
  const spec = dataplaneSpec([
    service("web", PROTO_TCP, 80, 8080, {
      persistence: { timeoutMs: 10_000, netmask: 0xffffff00 },
    }),
  ]);
  const owners = new PacketOwners(4, spec);
  const k = ownerOf(owners, tcp(addr("172.16.2.1"), 1000, VIP, 80, TCP_SYN));
  for (let h = 2; h < 255; h++) {
    assert.equal(ownerOf(owners, tcp(addr("172.16.2.0") + h, 1000, VIP, 80, TCP_SYN)), k);
  }
});

Deno.test("FULLNAT: the reply's local port names the engine that made the connection", () => {
  const workers = 3;
  const owners = new PacketOwners(workers, fullnatSpec);
  const engines = Array.from({ length: workers }, (_, k) => {
    const e = new Engine(fullnatSpec);
    e.shareLocalPorts(k, workers);
    return e;
  });
  for (let c = 0; c < 48; c++) {
    const client = addr("172.16.3.1") + c;
    const syn = tcp(client, 30000 + c, VIP, 80, TCP_SYN);
    const k = ownerOf(owners, syn);
    const out = feed(engines[k], syn);
    assert.notEqual(out.out, DROP);
    assert.equal(ipSrc(out.pkt, 0), LOCAL);
    const lport = tcpSrcPort(out.pkt, 20);
    assert.equal(lport % workers, k);
    const reply = tcp(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK);
    assert.equal(ownerOf(owners, reply), k);
    // The real's error about the FULLNATed request quotes local → real.
    assert.equal(ownerOf(owners, icmpError(REAL1, LOCAL, 3, 3, out.pkt.slice(0, 28))), k);
    const back = feed(engines[k], reply);
    assert.equal(ipDst(back.pkt, 0), client);
  }
});

Deno.test("a local port share holds exactly the ports ≡ residue, each once per round", () => {
  for (const [stride, residue] of [[1, 0], [2, 0], [2, 1], [3, 2], [16, 5]]) {
    const a = new LocalPortAllocator(stride, residue);
    const t = new ConnTable(16);
    const seen = new Set<number>();
    const share = Array.from({ length: 65536 - LOCAL_PORT_MIN }, (_, i) => i + LOCAL_PORT_MIN)
      .filter((p) => p % stride === residue).length;
    for (let i = 0; i < share; i++) {
      assert.ok(a.allocate(t, PROTO_TCP, Uint32Array.of(LOCAL), REAL2, 80));
      assert.equal(a.port % stride, residue);
      assert.ok(a.port >= LOCAL_PORT_MIN && a.port <= 65535);
      seen.add(a.port);
    }
    assert.equal(seen.size, share, `${residue} mod ${stride}`);
  }
  assert.throws(() => new LocalPortAllocator(2, 2), RangeError);
});

Deno.test("hand-off ring: order, wrap-around, full", () => {
  const ring = new HandoffRing(HandoffRing.allocate(4096));
  const src = new Uint8Array(70000).map((_, i) => i & 0xff);
  const dst = new Uint8Array(70000);
  assert.equal(ring.pop(dst, 0), -1);
  assert.ok(ring.empty);
  // Many rounds of odd sizes wrap the 4 KB ring over and over, in order.
  let next = 0;
  for (let round = 0; round < 500; round++) {
    const lens = [1, 64, 999, 1500, 7].map((l) => (l + round) % 1700 + 1);
    const pushed: number[] = [];
    for (const len of lens) {
      if (ring.push(src, next % 200, len, len * 3)) pushed.push(len);
    }
    assert.ok(pushed.length >= 2, "room for at least two of them");
    for (const len of pushed) {
      const got = ring.pop(dst, 5);
      assert.equal(got, len);
      assert.equal(ring.mark, len * 3);
      assert.deepEqual(dst.subarray(5, 5 + len), src.subarray(next % 200, next % 200 + len));
    }
    assert.equal(ring.pop(dst, 0), -1);
    next++;
  }
  // Full: pushes fail without changing anything until the consumer makes room.
  let count = 0;
  while (ring.push(src, 0, 1000, count)) count++;
  assert.ok(count >= 3 && count < 5, `${count} records of 1000 bytes in 4 KB`);
  assert.equal(ring.pop(dst, 0), 1000);
  assert.equal(ring.mark, 0);
  assert.ok(ring.push(src, 0, 1000, 99));
  for (let i = 1; i < count; i++) assert.equal((ring.pop(dst, 0), ring.mark), i);
  assert.equal((ring.pop(dst, 0), ring.mark), 99);
  assert.ok(ring.empty);
  // A record larger than the ring never fits.
  assert.equal(ring.push(src, 0, 5000, 0), false);
});

function stats(conns: number, rx: number, activeConns: number): WorkerStats {
  return {
    connections: conns,
    connectionsByState: { ESTABLISHED: conns },
    counters: { rx_packets: rx, forwarded: rx },
    writeFailures: 1,
    services: [{
      name: "web",
      reals: [{
        address: REAL1,
        port: 8080,
        weight: 2,
        activeConns,
        inactiveConns: 0,
        connections: conns,
        inPackets: rx,
        inBytes: rx * 100,
        outPackets: rx,
        outBytes: rx * 10,
        persistConns: 0,
      }],
    }],
  };
}

Deno.test("merged stats sum the workers' counters and keep a per-worker view", () => {
  const m = mergeStats([stats(3, 100, 2), stats(5, 50, 4)]);
  assert.equal(m.connections, 8);
  assert.equal(m.connectionsByState.ESTABLISHED, 8);
  assert.equal(m.counters.rx_packets, 150);
  assert.equal(m.writeFailures, 2);
  const r = m.services[0].reals[0];
  assert.equal(r.weight, 2);
  assert.equal(r.activeConns, 6);
  assert.equal(r.inBytes, 15000);
  assert.deepEqual(m.workers?.map((w) => w.rxPackets), [100, 50]);
});

Deno.test("merged traffic sums counters and rates", () => {
  // Every counter and rate of a service and of its real at `n`.
  const figures = (n: number) => ({
    conns: n,
    inPkts: n,
    outPkts: n,
    inBytes: n,
    outBytes: n,
    cps: n,
    inPps: n,
    outPps: n,
    inBps: n,
    outBps: n,
  });
  const t = (n: number): ServiceTrafficStats[] => [{
    name: "web",
    protocol: "TCP",
    vip: "192.168.1.31",
    port: 80,
    ...figures(n),
    reals: [{ address: "10.10.10.11", port: 8080, ...figures(n) }],
  } as ServiceTrafficStats];
  const m = mergeTraffic([t(1), t(2)]);
  assert.equal(m[0].conns, 3);
  assert.equal(m[0].inBps, 3);
  assert.equal(m[0].reals[0].cps, 3);
  assert.equal(m[0].name, "web");
});

Deno.test("the listing fills a page across workers and its cursor walks them all", async () => {
  // Three fake workers with 3, 0 and 5 connections; each lists at most `limit` from `cursor`.
  const tables = [[1, 2, 3], [], [10, 11, 12, 13, 14]];
  const asked: { worker: number; cursor: number; limit: number }[] = [];
  const ask = (worker: number, q: ConnectionQuery): Promise<ConnectionPage> => {
    const t = tables[worker];
    const from = q.cursor ?? 0;
    asked.push({ worker, cursor: from, limit: q.limit ?? 100 });
    const rows = t.slice(from, from + (q.limit ?? 100));
    const next = from + rows.length;
    return Promise.resolve({
      connections: rows.map((id) => ({ id } as unknown as ConnectionEntry)),
      cursor: next < t.length && from < t.length ? next : null,
      scanned: rows.length,
      total: t.length,
    });
  };
  const ids = (p: ConnectionPage) => p.connections.map((c) => (c as unknown as { id: number }).id);
  // A page big enough takes everything, as one worker's would.
  const all = await listAcrossWorkers(3, ask, { limit: 100 });
  assert.deepEqual(ids(all), [1, 2, 3, 10, 11, 12, 13, 14]);
  assert.equal(all.cursor, null);
  assert.equal(all.total, 8);
  // Pages of 2 walk every connection once, worker after worker.
  const seen: number[] = [];
  let cursor: number | null = 0;
  let pages = 0;
  while (cursor !== null) {
    const page: ConnectionPage = await listAcrossWorkers(3, ask, { limit: 2, cursor });
    assert.ok(page.connections.length <= 2);
    assert.equal(page.total, 8);
    seen.push(...ids(page));
    cursor = page.cursor;
    assert.ok(++pages < 20);
  }
  assert.deepEqual(seen, [1, 2, 3, 10, 11, 12, 13, 14]);
  assert.deepEqual(splitCursor(5, 3), { worker: 2, slot: 1 });
  assert.throws(() => splitCursor(-1, 2), RangeError);
  assert.ok(asked.every((a) => a.limit >= 1));
});

Deno.test("hand-off between two workers: packets and marks arrive, counted, with a wake-up", () => {
  const shared = makeHandoffShared(2, 8192);
  try {
    const spec = natSpec;
    const w0 = new Handoff(0, 2, shared, spec);
    const w1 = new Handoff(1, 2, shared, spec);
    const buf = new Uint8Array(4 * SLOT);
    for (let i = 0; i < buf.length; i++) buf[i] = i & 0xff;
    w0.send(1, buf, 0, 64, 0);
    w0.send(1, buf, SLOT, 3000, 6666);
    assert.ok(w1.pending);
    assert.equal(w1.clearWake(), false, "no wake-up before wakeOwners");
    w0.wakeOwners();
    // The wake is an eventfd write: 8 bytes readable on worker 1's descriptor, once.
    assert.equal(w0.clearWake(), false);
    assert.equal(w1.clearWake(), true);
    assert.equal(w1.clearWake(), false);
    const into = new Uint8Array(4 * SLOT);
    const lengths = new Int32Array(4);
    const marks = new Uint32Array(4);
    assert.equal(w1.receive(into, SLOT, lengths, marks, 4), 2);
    assert.deepEqual([...lengths.subarray(0, 2)], [64, 3000]);
    assert.deepEqual([...marks.subarray(0, 2)], [0, 6666]);
    assert.deepEqual(into.subarray(SLOT, SLOT + 3000), buf.subarray(SLOT, SLOT + 3000));
    assert.deepEqual(into.subarray(0, 64), buf.subarray(0, 64));
    assert.equal(w0.counters[HandoffCounter.OUT], 2);
    assert.equal(w1.counters[HandoffCounter.IN], 2);
    // A full ring counts a drop instead.
    let sent = 0;
    while (w0.counters[HandoffCounter.DROP_FULL] === 0) {
      w0.send(1, buf, 0, 3000, 0);
      sent++;
    }
    assert.ok(sent >= 2 && sent < 5, `${sent}`);
    assert.equal(w1.pending, true);
    assert.equal(w0.pending, false);
  } finally {
    closeHandoffShared(shared);
  }
});
