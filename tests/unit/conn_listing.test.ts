/**
 * Unit tests of the connection listing: what an entry shows, the filters, pagination by cursor,
 * and that one page never scans more than LIST_SCAN_SLOTS entries however big the table is.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnState } from "../../dataplane/conn/state.ts";
import { ConnFlag, ConnTable } from "../../dataplane/conn/table.ts";
import { ServiceTable } from "../../dataplane/service.ts";
import {
  type ConnectionEntry,
  type ConnectionQuery,
  countByState,
  LIST_DEFAULT_LIMIT,
  LIST_MAX_LIMIT,
  LIST_SCAN_SLOTS,
  listConnections,
} from "../../dataplane/stats/conn_listing.ts";
import { PROTO_TCP, PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { CLIENT, REAL1, REAL2, service, VIP } from "../fixtures/dataplane_specs.ts";
import { prng } from "../fixtures/prng.ts";

const SERVICES = new ServiceTable([
  service("web", PROTO_TCP, 80, 8080),
  service("dns", PROTO_UDP, 53, 5353),
]);
const WEB = 0;
const DNS = 1;

/** A connection as the test sets it up. */
interface Conn {
  svc: number;
  real: number;
  cport: number;
  state: number;
  expires: number;
}

/** Fills and links a connection of `c.svc` to real `c.real`; returns its id. */
function add(t: ConnTable, c: Conn, now = 0, flags = 0): number {
  const svc = SERVICES.services[c.svc];
  const id = t.allocate();
  assert.ok(id >= 0, "table full");
  t.protocol[id] = svc.spec.protocol;
  t.service[id] = c.svc;
  t.real[id] = c.real;
  t.state[id] = c.state;
  t.inSrc[id] = CLIENT;
  t.inSrcPort[id] = c.cport;
  t.inDst[id] = VIP;
  t.inDstPort[id] = svc.spec.port;
  t.outSrc[id] = CLIENT;
  t.outSrcPort[id] = c.cport;
  t.outDst[id] = svc.addr[c.real];
  t.outDstPort[id] = svc.port[c.real];
  t.flags[id] = flags;
  t.link(id, c.expires, now);
  return id;
}

/** Every page of a query, following cursors to the end. */
function all(t: ConnTable, q: ConnectionQuery, now = 0): ConnectionEntry[] {
  const out: ConnectionEntry[] = [];
  let cursor: number | null = 0;
  let pages = 0;
  while (cursor !== null) {
    const page = listConnections(t, SERVICES, now, { ...q, cursor });
    assert.ok(page.connections.length <= (q.limit ?? LIST_DEFAULT_LIMIT));
    out.push(...page.connections);
    assert.ok(page.cursor === null || page.cursor > cursor, "the cursor moves forward");
    cursor = page.cursor;
    assert.ok(++pages < 10_000, "the listing ends");
  }
  return out;
}

Deno.test("listing: an entry shows what ipvsadm -Lnc shows", () => {
  const t = new ConnTable(64);
  add(t, { svc: WEB, real: 1, cport: 41000, state: ConnState.TIME_WAIT, expires: 120_000 });
  add(t, { svc: DNS, real: 0, cport: 41001, state: ConnState.UDP, expires: 300_000 });
  const page = listConnections(t, SERVICES, 500, {});
  assert.equal(page.total, 2);
  assert.equal(page.cursor, null, "the whole table fits in one scan");
  assert.equal(page.scanned, 2, "the scan ends at the highest id ever used");
  // Ids come from the free list from 0 up.
  assert.deepEqual(page.connections, [
    {
      protocol: "TCP",
      expires: 119,
      state: "TIME_WAIT",
      client: "192.168.1.35:41000",
      virtual: "192.168.1.31:80",
      real: "10.10.10.12:8080",
      forward: "Masq",
      service: "web",
      template: false,
    },
    {
      protocol: "UDP",
      expires: 299,
      state: "UDP",
      client: "192.168.1.35:41001",
      virtual: "192.168.1.31:53",
      real: "10.10.10.11:5353",
      forward: "Masq",
      service: "dns",
      template: false,
    },
  ]);
  // An entry past its time but not yet swept by the wheel shows 0, not a negative expiry.
  assert.equal(listConnections(t, SERVICES, 200_000, {}).connections[0].expires, 0);
});

Deno.test("listing: filters by service, real, state and protocol; removed entries vanish", () => {
  const t = new ConnTable(4096);
  const next = prng(0x5eed);
  const states = [ConnState.ESTABLISHED, ConnState.TIME_WAIT, ConnState.SYN_RECV];
  const conns: (Conn & { id: number })[] = [];
  for (let i = 0; i < 1000; i++) {
    const svc = next() % 2 === 0 ? WEB : DNS;
    const c: Conn = {
      svc,
      real: next() % 2,
      cport: 10000 + i,
      state: svc === DNS ? ConnState.UDP : states[next() % 3],
      expires: 60_000,
    };
    conns.push({ ...c, id: add(t, c) });
  }
  // A quarter go away again.
  for (const c of conns.filter((_, i) => i % 4 === 3)) t.remove(c.id);
  const alive = conns.filter((_, i) => i % 4 !== 3);
  const ports = (entries: ConnectionEntry[]) =>
    entries.map((e) => Number(e.client.split(":")[1])).sort((a, b) => a - b);
  const expect = (pred: (c: Conn) => boolean) => alive.filter(pred).map((c) => c.cport);

  assert.deepEqual(ports(all(t, {})), expect(() => true));
  assert.deepEqual(ports(all(t, { service: "web" })), expect((c) => c.svc === WEB));
  assert.deepEqual(ports(all(t, { protocol: PROTO_UDP })), expect((c) => c.svc === DNS));
  assert.deepEqual(
    ports(all(t, { state: "TIME_WAIT" })),
    expect((c) => c.state === ConnState.TIME_WAIT),
  );
  // A real by address matches both services; with a port, only the one it serves on.
  assert.deepEqual(ports(all(t, { realAddr: REAL2 })), expect((c) => c.real === 1));
  assert.deepEqual(
    ports(all(t, { realAddr: REAL2, realPort: 5353 })),
    expect((c) => c.real === 1 && c.svc === DNS),
  );
  assert.deepEqual(
    ports(all(t, { service: "web", realAddr: REAL1, state: "ESTABLISHED" })),
    expect((c) => c.svc === WEB && c.real === 0 && c.state === ConnState.ESTABLISHED),
  );
  // Names that match nothing end the listing at once.
  for (const q of [{ service: "nope" }, { state: "NOPE" }]) {
    const page = listConnections(t, SERVICES, 0, q);
    assert.deepEqual([page.connections.length, page.cursor, page.scanned], [0, null, 0]);
  }
  assert.equal(all(t, { realAddr: REAL1, realPort: 9999 }).length, 0);

  const byState = countByState(t);
  assert.equal(byState.UDP, expect((c) => c.svc === DNS).length);
  assert.equal(
    Object.values(byState).reduce((a, b) => a + b, 0),
    alive.length,
  );
});

Deno.test("listing: pages of `limit` entries walk the table once, in id order", () => {
  const t = new ConnTable(5000);
  for (let i = 0; i < 3000; i++) {
    add(t, { svc: WEB, real: i % 2, cport: 1024 + i, state: ConnState.ESTABLISHED, expires: 1 });
  }
  const first = listConnections(t, SERVICES, 0, {});
  assert.equal(first.connections.length, LIST_DEFAULT_LIMIT);
  assert.equal(first.cursor, LIST_DEFAULT_LIMIT, "the cursor is the id after the last match");
  const pages: number[] = [];
  let cursor: number | null = 0;
  const seen: string[] = [];
  while (cursor !== null) {
    const page = listConnections(t, SERVICES, 0, { cursor, limit: 7 });
    pages.push(page.connections.length);
    seen.push(...page.connections.map((e) => e.client));
    cursor = page.cursor;
  }
  assert.equal(seen.length, 3000);
  assert.equal(new Set(seen).size, 3000, "no entry twice");
  assert.equal(seen[0], "192.168.1.35:1024");
  assert.equal(seen[2999], "192.168.1.35:4023");
  assert.ok(pages.slice(0, -2).every((n) => n === 7));
  // A limit of 10000 is allowed; more, zero or fractions are not; nor negative cursors.
  assert.equal(listConnections(t, SERVICES, 0, { limit: LIST_MAX_LIMIT }).connections.length, 3000);
  for (const q of [{ limit: LIST_MAX_LIMIT + 1 }, { limit: 0 }, { limit: 1.5 }, { cursor: -1 }]) {
    assert.throws(() => listConnections(t, SERVICES, 0, q), RangeError);
  }
  // A cursor past the end is simply the end.
  assert.deepEqual(listConnections(t, SERVICES, 0, { cursor: 1 << 30 }).cursor, null);
});

Deno.test("listing: a page with no matches in 200k entries stops after a bounded scan", () => {
  const capacity = 200_000;
  const t = new ConnTable(capacity);
  for (let i = 0; i < capacity; i++) {
    add(t, {
      svc: WEB,
      real: i & 1,
      cport: 1024 + (i % 60000),
      state: ConnState.ESTABLISHED,
      expires: 900_000,
    });
  }
  assert.equal(t.size, capacity);
  const started = performance.now();
  const page = listConnections(t, SERVICES, 0, { protocol: PROTO_UDP });
  const elapsed = performance.now() - started;
  assert.deepEqual([page.connections.length, page.scanned, page.cursor], [
    0,
    LIST_SCAN_SLOTS,
    LIST_SCAN_SLOTS,
  ]);
  assert.ok(elapsed < 50, `one page took ${elapsed.toFixed(1)} ms`);
  // Following the cursor reaches the end in capacity / LIST_SCAN_SLOTS pages.
  let cursor: number | null = page.cursor;
  let pages = 1;
  while (cursor !== null) {
    cursor = listConnections(t, SERVICES, 0, { protocol: PROTO_UDP, cursor }).cursor;
    pages++;
  }
  assert.equal(pages, Math.ceil(capacity / LIST_SCAN_SLOTS));
  // With matches everywhere, a page stops at its limit after scanning just as many entries.
  const full = listConnections(t, SERVICES, 0, { limit: 10 });
  assert.deepEqual([full.connections.length, full.scanned, full.cursor], [10, 10, 10]);
});

Deno.test("listing: persistence templates show as IPVS lists them and filter as NONE", () => {
  const t = new ConnTable(64);
  add(t, { svc: WEB, real: 0, cport: 41000, state: ConnState.ESTABLISHED, expires: 900_000 });
  // A template as persistence files it: client port 0, state NONE, never hashed by a packet.
  add(
    t,
    { svc: WEB, real: 0, cport: 0, state: ConnState.NONE, expires: 360_000 },
    0,
    ConnFlag.TEMPLATE | ConnFlag.NO_ORIGINAL,
  );
  const [conn, template] = listConnections(t, SERVICES, 0, {}).connections;
  assert.equal(conn.template, false);
  assert.deepEqual(
    [template.template, template.state, template.client, template.real, template.expires],
    [true, "NONE", "192.168.1.35:0", "10.10.10.11:8080", 360],
  );
  assert.deepEqual(
    listConnections(t, SERVICES, 0, { state: "NONE" }).connections.map((e) => e.client),
    ["192.168.1.35:0"],
  );
  assert.deepEqual(countByState(t), { NONE: 1, ESTABLISHED: 1 });
});
