/**
 * Unit tests of the worker's requests (timeouts, counters, listing) against a real engine, and of
 * the admin endpoints over them: the same wiring as the appliance, without the worker thread.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type AdminSource, createAdminApp } from "../../control/api.ts";
import { parseConfig } from "../../control/config.ts";
import { DataplaneRequestError } from "../../control/dataplane_handle.ts";
import { compileDataplaneSpec } from "../../control/dataplane_spec.ts";
import { Engine } from "../../dataplane/engine.ts";
import { DataplaneRequests } from "../../dataplane/stats/requests.ts";
import { TCP_ACK, TCP_FIN, TCP_SYN } from "../../dataplane/wire/tcp.ts";
import { CLIENT, REAL1, VIP } from "../fixtures/dataplane_specs.ts";
import { adminFixture } from "../fixtures/admin_harness.ts";
import { tcp, udp } from "../fixtures/packet_builders.ts";

const CONFIG = `
timeouts: { tcp: 900, tcpfin: 120, udp: 300 }
services:
  - name: web
    protocol: tcp
    vip: 192.168.1.31
    port: 80
    scheduler: rr
    reals:
      - { address: 10.10.10.11, port: 8080 }
      - { address: 10.10.10.12, port: 8080 }
  - name: dns
    protocol: udp
    vip: 192.168.1.31
    port: 53
    scheduler: rr
    reals:
      - { address: 10.10.10.11, port: 5353 }
`;

/** An engine for CONFIG and the request handler the worker would put in front of it. */
function setup() {
  const config = parseConfig(CONFIG, "test.yaml");
  const engine = new Engine({ ...compileDataplaneSpec(config), maxConnections: 4096 });
  const requests = new DataplaneRequests(engine);
  const source: AdminSource = {
    running: { config, version: "0", text: CONFIG, raw: () => ({}) },
    // As DataplaneHandle.request: a refused request rejects with DataplaneRequestError.
    request: (name, params) => {
      try {
        return Promise.resolve(requests.answer(name, params, engine.now));
      } catch (err) {
        return Promise.reject(new DataplaneRequestError((err as Error).message));
      }
    },
  };
  return { engine, requests, app: createAdminApp(source) };
}

/** Runs `pkt` through `engine` at clock `now`; it must be forwarded. */
function send(engine: Engine, now: number, pkt: Uint8Array): void {
  engine.now = now;
  assert.equal(engine.process(pkt, 0, pkt.length), pkt.length);
}

/** The one connection of the engine's listing: its state and seconds left at `now`. */
function only(requests: DataplaneRequests, now: number): { state: string; expires: number } {
  const page = requests.answer("connections", {}, now);
  assert.equal(page.connections.length, 1);
  const { state, expires } = page.connections[0];
  return { state, expires };
}

Deno.test("timeouts: new values apply from each connection's next packet, as in IPVS", () => {
  const { engine, requests } = setup();
  assert.deepEqual(requests.answer("getTimeouts", {}, 0), { tcp: 900, tcpfin: 120, udp: 300 });

  send(engine, 0, udp(CLIENT, 40000, VIP, 53));
  assert.deepEqual(only(requests, 0), { state: "UDP", expires: 300 });
  assert.deepEqual(requests.answer("setTimeouts", { udp: 10 }, 0), {
    tcp: 900,
    tcpfin: 120,
    udp: 10,
  });
  assert.deepEqual(requests.answer("getTimeouts", {}, 0), { tcp: 900, tcpfin: 120, udp: 10 });
  // The connection keeps the expiry it had...
  assert.deepEqual(only(requests, 1000), { state: "UDP", expires: 299 });
  // ...until its next packet re-arms it with the new value, and it then ends on time.
  send(engine, 1000, udp(REAL1, 5353, CLIENT, 40000));
  assert.deepEqual(only(requests, 1000), { state: "UDP", expires: 10 });
  engine.tick(10_500);
  assert.equal(engine.conns.size, 1);
  engine.tick(11_250);
  assert.equal(engine.conns.size, 0, "expired 10 s after its last packet");
});

Deno.test("timeouts: tcp sets ESTABLISHED, tcpfin FIN_WAIT; bad values change nothing", () => {
  const { engine, requests } = setup();
  send(engine, 0, tcp(CLIENT, 41000, VIP, 80, TCP_SYN));
  send(engine, 10, tcp(REAL1, 8080, CLIENT, 41000, TCP_SYN | TCP_ACK));
  send(engine, 20, tcp(CLIENT, 41000, VIP, 80, TCP_ACK));
  assert.deepEqual(only(requests, 20), { state: "ESTABLISHED", expires: 900 });

  requests.answer("setTimeouts", { tcp: 5, tcpfin: 7 }, 20);
  assert.deepEqual(only(requests, 20), { state: "ESTABLISHED", expires: 900 });
  send(engine, 1000, tcp(CLIENT, 41000, VIP, 80, TCP_ACK));
  assert.deepEqual(only(requests, 1000), { state: "ESTABLISHED", expires: 5 });
  // The real closes first: FIN_WAIT, on the tcpfin timeout.
  send(engine, 2000, tcp(REAL1, 8080, CLIENT, 41000, TCP_FIN | TCP_ACK));
  assert.deepEqual(only(requests, 2000), { state: "FIN_WAIT", expires: 7 });

  for (const bad of [{ tcp: 0 }, { udp: 1.5 }, { tcpfin: 2147484 }, { tcp: 60, udp: -1 }]) {
    assert.throws(() => requests.answer("setTimeouts", bad, 0), RangeError);
  }
  assert.deepEqual(requests.answer("getTimeouts", {}, 0), { tcp: 5, tcpfin: 7, udp: 300 });
});

async function call(
  app: ReturnType<typeof createAdminApp>,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await app.request(path, {
    method,
    body,
    headers: body === undefined ? {} : { "content-type": "application/json" },
  });
  return { status: res.status, json: await res.json() };
}

Deno.test("api: /api/v1/timeouts reads, changes, writes back and refuses bad bodies naming the field", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    assert.deepEqual((await fx.call("GET", "/api/v1/timeouts")).json, {
      tcp: 900,
      tcpfin: 120,
      udp: 300,
    });
    const put = await fx.call("PUT", "/api/v1/timeouts", '{"tcpfin": 30, "udp": 2147483}', {
      "if-match": "*",
    });
    assert.equal(put.status, 200);
    assert.deepEqual(put.json, { tcp: 900, tcpfin: 30, udp: 2147483 });
    assert.deepEqual(fx.engine.timeouts, { tcp: 900, tcpfin: 30, udp: 2147483 });
    assert.match(
      await Deno.readTextFile(fx.path),
      /timeouts: \{ tcp: 900, tcpfin: 30, udp: 2147483 \}/,
    );

    const cases: [string, string | undefined][] = [
      ['{"tcp": 0}', "tcp"],
      ['{"tcp": "60"}', "tcp"],
      ['{"udp": 2147484}', "udp"],
      ['{"tcpfin": 1.5}', "tcpfin"],
      ['{"tcp": 60, "tcp_fin": 5}', "tcp_fin"],
      ["[60]", undefined],
      ["{}", undefined],
      ["tcp=60", undefined],
    ];
    const file = await Deno.readTextFile(fx.path);
    for (const [body, field] of cases) {
      const r = await fx.call("PUT", "/api/v1/timeouts", body, { "if-match": "*" });
      assert.equal(r.status, 400, body);
      assert.equal(typeof r.json.error, "string", body);
      assert.equal(r.json.field, field, `${body}: ${r.json.error}`);
      if (field !== undefined) assert.match(String(r.json.error), new RegExp(`^${field}: `));
    }
    assert.deepEqual(fx.engine.timeouts, { tcp: 900, tcpfin: 30, udp: 2147483 }, "nothing changed");
    assert.equal(await Deno.readTextFile(fx.path), file, "the file is unchanged");
  } finally {
    await fx.cleanup();
  }
});

Deno.test("api: /api/v1/stats and zeroing, per service and per real", async () => {
  const { app, engine, requests } = setup();
  requests.tick(0);
  for (let i = 0; i < 8; i++) send(engine, 100, tcp(CLIENT, 42000 + i, VIP, 80, TCP_SYN));
  send(engine, 100, udp(CLIENT, 43000, VIP, 53));
  requests.tick(2000);
  const stats = (await call(app, "GET", "/api/v1/stats")).json as {
    services: { name: string; conns: number; inPkts: number; cps: number; reals: unknown[] }[];
  };
  const [web, dns] = stats.services;
  // 8 connections in 2 s: (8 << 9) >> 2 = 1024 → (1024 + 511) >> 10 = 1 (4 would read as 0).
  assert.deepEqual([web.name, web.conns, web.inPkts, web.cps], ["web", 8, 8, 1]);
  assert.deepEqual(
    (web.reals as { address: string; port: number; conns: number; outPkts: number }[]).map(
      (r) => [r.address, r.port, r.conns, r.outPkts],
    ),
    [["10.10.10.11", 8080, 4, 0], ["10.10.10.12", 8080, 4, 0]],
  );
  assert.deepEqual([dns.name, dns.conns], ["dns", 1]);

  assert.deepEqual((await call(app, "POST", "/api/v1/stats/zero?service=web")).json, {
    zeroed: ["web"],
  });
  const after = (await call(app, "GET", "/api/v1/stats")).json as typeof stats;
  assert.deepEqual(after.services.map((s) => [s.conns, s.cps]), [[0, 0], [1, 0]]);
  const bad = await call(app, "POST", "/api/v1/stats/zero?service=nope");
  assert.deepEqual([bad.status, bad.json.field], [400, "service"]);
  assert.deepEqual((await call(app, "POST", "/api/v1/stats/zero")).json, {
    zeroed: ["web", "dns"],
  });
  const none = (await call(app, "GET", "/api/v1/stats")).json as typeof stats;
  assert.ok(none.services.every((s) => s.conns === 0 && s.inPkts === 0));
  // /api/v1/services keeps its shape (and sees the zeroed counters as ipvsadm would).
  const services = (await call(app, "GET", "/api/v1/services")).json as {
    services: { reals: { connections: number }[] }[];
    connectionsByState: Record<string, number>;
  };
  assert.deepEqual(services.services[0].reals.map((r) => r.connections), [0, 0]);
  assert.deepEqual(services.connectionsByState, { SYN_RECV: 8, UDP: 1 });
});

Deno.test("api: /api/v1/connections filters, pages and checks its query", async () => {
  const { app, engine } = setup();
  for (let i = 0; i < 5; i++) send(engine, 0, tcp(CLIENT, 44000 + i, VIP, 80, TCP_SYN));
  send(engine, 0, udp(CLIENT, 45000, VIP, 53));
  type Page = { connections: Record<string, unknown>[]; cursor: number | null; total: number };
  const list = async (q: string) =>
    (await call(app, "GET", `/api/v1/connections${q}`)).json as Page;

  const all = await list("");
  assert.equal(all.total, 6);
  assert.equal(all.connections.length, 6);
  assert.deepEqual(all.connections[5], {
    protocol: "UDP",
    expires: 300,
    state: "UDP",
    client: "192.168.1.35:45000",
    virtual: "192.168.1.31:53",
    real: "10.10.10.11:5353",
    forward: "Masq",
    service: "dns",
    template: false,
  });
  assert.equal((await list("?service=web")).connections.length, 5);
  assert.equal((await list("?protocol=UDP")).connections.length, 1);
  assert.equal((await list("?state=syn_recv")).connections.length, 5);
  assert.equal((await list("?real=10.10.10.12")).connections.length, 2);
  assert.equal((await list("?real=10.10.10.11:8080")).connections.length, 3);
  assert.equal((await list("?real=10.10.10.11:5353&service=dns")).connections.length, 1);

  const first = await list("?limit=4");
  assert.equal(first.connections.length, 4);
  const rest = await list(`?limit=4&cursor=${first.cursor}`);
  assert.equal(rest.connections.length, 2);
  assert.equal(rest.cursor, null, "a 4096-entry table fits in one scan");
  const clients = [...first.connections, ...rest.connections].map((c) => c.client);
  assert.equal(new Set(clients).size, 6);

  const bad: [string, string][] = [
    ["?limit=0", "limit"],
    ["?limit=10001", "limit"],
    ["?limit=ten", "limit"],
    ["?cursor=-1", "cursor"],
    ["?state=OPEN", "state"],
    ["?protocol=sctp", "protocol"],
    ["?real=10.10.10", "real"],
    ["?real=10.10.10.11:70000", "real"],
    ["?service=nope", "service"],
    ["?sevice=web", "sevice"],
  ];
  for (const [q, field] of bad) {
    const r = await call(app, "GET", `/api/v1/connections${q}`);
    assert.deepEqual([r.status, r.json.field], [400, field], `${q}: ${r.json.error}`);
  }
});
