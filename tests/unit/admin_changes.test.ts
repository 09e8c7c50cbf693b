/**
 * The configuration-changing admin endpoints over a real engine and a real appliance.yaml:
 * versions (If-Match / ETag / 409), validation naming the field with nothing half-applied, the
 * change applied to the engine and written back with the operator's comments kept.
 *
 * @module
 */
import assert from "node:assert/strict";
import { adminFixture } from "../fixtures/admin_harness.ts";
import { parse as parseYaml } from "yaml";

const CONFIG = `# director for the seed 000 lab
timeouts: { tcp: 900, tcpfin: 120, udp: 300 }

services:
  - name: web # the shop
    protocol: tcp
    vip: 192.168.1.31
    port: 80
    scheduler: rr
    reals: # two nginx boxes
      - { address: 10.10.10.11, port: 80 } # web01
      - { address: 10.10.10.12, port: 80 } # web02
`;

const WEB_DB = {
  name: "db",
  protocol: "tcp",
  vip: "192.168.1.31",
  port: 3306,
  scheduler: "rr",
  forward: "nat",
  reals: [{ address: "10.10.10.11" }, { address: "10.10.10.12" }],
};

/** Names of the engine's services, with their reals as address:port/weight. */
function engineView(fx: Awaited<ReturnType<typeof adminFixture>>): string[] {
  return fx.engine.services.services.slice(0, fx.engine.services.visibleCount).map((s) =>
    `${s.spec.name}:` +
    s.spec.reals.map((r) =>
      `${r.addr >>> 24}.${(r.addr >>> 16) & 255}.${(r.addr >>> 8) & 255}.${
        r.addr & 255
      }:${r.port}/${r.weight}`
    ).join(",")
  );
}

Deno.test("admin changes: a change needs If-Match; a stale one gets 409 and changes nothing", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const read = await fx.call("GET", "/api/v1/config");
    assert.equal(read.status, 200);
    const version = read.json.version as string;
    assert.match(version, /^[0-9a-f]{16}$/);
    assert.equal(read.etag, `"${version}"`);

    const none = await fx.call("POST", "/api/v1/services", WEB_DB);
    assert.equal(none.status, 428);
    assert.match(String(none.json.error), /If-Match/);

    const ok = await fx.call("POST", "/api/v1/services", WEB_DB, { "if-match": `"${version}"` });
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    assert.notEqual(ok.json.version, version);
    assert.equal(ok.etag, `"${ok.json.version}"`);
    assert.equal(fx.applies(), 1);

    const stale = await fx.call("DELETE", "/api/v1/services/db", undefined, {
      "if-match": `"${version}"`,
    });
    assert.equal(stale.status, 409);
    assert.equal(stale.json.version, ok.json.version);
    assert.deepEqual(engineView(fx), [
      "web:10.10.10.11:80/1,10.10.10.12:80/1",
      "db:10.10.10.11:3306/1,10.10.10.12:3306/1",
    ]);
    assert.equal(fx.applies(), 1, "the stale change was not applied");

    const weak = await fx.call("DELETE", "/api/v1/services/db", undefined, {
      "if-match": `W/"${ok.json.version}"`,
    });
    assert.equal(weak.status, 200);
    assert.deepEqual(engineView(fx), ["web:10.10.10.11:80/1,10.10.10.12:80/1"]);
    const bad = await fx.call("DELETE", "/api/v1/services/web", undefined, { "if-match": "x y" });
    assert.deepEqual([bad.status, bad.json.field], [400, "If-Match"]);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: written back atomically with the operator's comments kept", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const any = { "if-match": "*" };
    assert.equal((await fx.call("POST", "/api/v1/services", WEB_DB, any)).status, 201);
    assert.equal(
      (await fx.call("PUT", "/api/v1/services/web/reals/10.10.10.12/80/weight", { weight: 3 }, any))
        .status,
      200,
    );
    assert.equal(
      (await fx.call(
        "POST",
        "/api/v1/services/web/reals",
        { address: "10.10.10.13", port: 80 },
        any,
      ))
        .status,
      201,
    );
    const text = await Deno.readTextFile(fx.path);
    assert.equal(
      text,
      `# director for the seed 000 lab
timeouts: { tcp: 900, tcpfin: 120, udp: 300 }

services:
  - name: web # the shop
    protocol: tcp
    vip: 192.168.1.31
    port: 80
    scheduler: rr
    reals: # two nginx boxes
      - { address: 10.10.10.11, port: 80 } # web01
      - { address: 10.10.10.12, port: 80, weight: 3 } # web02
      - { address: 10.10.10.13, port: 80 }
  - name: db
    protocol: tcp
    vip: 192.168.1.31
    port: 3306
    scheduler: rr
    forward: nat
    reals:
      - address: 10.10.10.11
      - address: 10.10.10.12
`,
    );
    const leftovers = [...Deno.readDirSync(fx.path.replace(/\/[^/]+$/, ""))].map((e) => e.name);
    assert.deepEqual(leftovers, ["appliance.yaml"], "no temporary file left behind");
    assert.equal(fx.running.version, (await fx.call("GET", "/api/v1/config")).json.version);
    const yaml = await fx.app.request("/api/v1/config?format=yaml");
    assert.equal(await yaml.text(), text);
    // The effective configuration as YAML: the JSON's `effective`, defaults filled in.
    const effective = await fx.app.request("/api/v1/config?format=yaml&view=effective");
    assert.equal(effective.headers.get("content-type"), "application/yaml; charset=utf-8");
    assert.deepEqual(
      parseYaml(await effective.text()),
      JSON.parse(JSON.stringify(fx.running.config)),
    );
    assert.equal((await fx.call("GET", "/api/v1/config?view=running")).status, 400);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: invalid changes get 4xx naming the field and leave engine and file alone", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const any = { "if-match": "*" };
    const cases: [string, string, unknown, number, string | undefined][] = [
      ["POST", "/api/v1/services", { ...WEB_DB, vip: "192.168.1.300" }, 422, "services[1].vip"],
      ["POST", "/api/v1/services", { ...WEB_DB, port: 80 }, 422, undefined],
      ["POST", "/api/v1/services", { ...WEB_DB, name: "web" }, 409, undefined],
      [
        "POST",
        "/api/v1/services",
        { ...WEB_DB, scheduler: "fastest" },
        422,
        "services[1].scheduler",
      ],
      ["POST", "/api/v1/services", { ...WEB_DB, colour: "red" }, 422, "services[1].colour"],
      ["POST", "/api/v1/services", [1, 2], 400, undefined],
      ["POST", "/api/v1/services", { vip: "1.2.3.4" }, 400, "name"],
      ["POST", "/api/v1/services", "{not json", 400, undefined],
      ["POST", "/api/v1/services/web/reals", { address: "10.10.10.11", port: 80 }, 409, undefined],
      [
        "POST",
        "/api/v1/services/web/reals",
        { address: "10.10.10.14", weight: -1 },
        422,
        "services[0].reals[2].weight",
      ],
      ["POST", "/api/v1/services/nope/reals", { address: "10.10.10.14" }, 404, undefined],
      ["PUT", "/api/v1/services/web/reals/10.10.10.11/80/weight", { weight: 70000 }, 400, "weight"],
      ["PUT", "/api/v1/services/web/reals/10.10.10.11/80/weight", { weight: 1, x: 1 }, 400, "x"],
      ["PUT", "/api/v1/services/web/reals/10.10.10.19/80/weight", { weight: 2 }, 404, undefined],
      ["PUT", "/api/v1/services/web/reals/10.10.10.11/99999/weight", { weight: 2 }, 400, "port"],
      ["PUT", "/api/v1/services/web/reals/10.10.10.11/80", { address: "10.1.1.1" }, 400, "address"],
      ["PUT", "/api/v1/services/web", { name: "other" }, 400, "name"],
      [
        "PUT",
        "/api/v1/services/web",
        { vip: "192.168.1.31", port: 80, protocol: "icmp" },
        422,
        "services[0].protocol",
      ],
      ["DELETE", "/api/v1/services/nope", undefined, 404, undefined],
      ["DELETE", "/api/v1/services/..%2F..%2Fetc", undefined, 400, "name"],
      ["DELETE", "/api/v1/services/web?cut=maybe", undefined, 400, "cut"],
      ["PUT", "/api/v1/config/services", { services: {} }, 400, "services"],
    ];
    const file = await Deno.readTextFile(fx.path);
    const version = fx.running.version;
    for (const [method, url, body, status, field] of cases) {
      const r = await fx.call(method, url, body, any);
      assert.equal(
        r.status,
        status,
        `${method} ${url} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`,
      );
      assert.equal(typeof r.json.error, "string");
      if (field !== undefined) assert.equal(r.json.field, field, String(r.json.error));
    }
    assert.equal(await Deno.readTextFile(fx.path), file);
    assert.equal(fx.running.version, version);
    assert.equal(fx.applies(), 0);
    assert.deepEqual(engineView(fx), ["web:10.10.10.11:80/1,10.10.10.12:80/1"]);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: a change the dataplane refuses leaves config and file unchanged", async () => {
  const fx = await adminFixture(CONFIG, {
    refuse: (spec) => spec.services.length > 1 ? "VIP 192.168.1.31 is a local address" : null,
  });
  try {
    const file = await Deno.readTextFile(fx.path);
    const r = await fx.call("POST", "/api/v1/services", WEB_DB, { "if-match": "*" });
    assert.equal(r.status, 422);
    assert.match(String(r.json.error), /local address/);
    assert.equal(await Deno.readTextFile(fx.path), file);
    assert.deepEqual(fx.running.config.services.map((s) => s.name), ["web"]);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: an edit on disk since start is not overwritten; reload takes it", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const edited = CONFIG.replace("scheduler: rr", "scheduler: wrr");
    await Deno.writeTextFile(fx.path, edited);
    const r = await fx.call("PUT", "/api/v1/services/web/reals/10.10.10.11/80/weight", {
      weight: 2,
    }, {
      "if-match": "*",
    });
    assert.equal(r.status, 409);
    assert.equal(r.json.fileChanged, true);
    assert.equal(await Deno.readTextFile(fx.path), edited, "the operator's edit survives");

    const reload = await fx.call("POST", "/api/v1/config/reload");
    assert.equal(reload.status, 200, JSON.stringify(reload.json));
    assert.equal(fx.running.config.services[0].scheduler, "wrr");
    const again = await fx.call("PUT", "/api/v1/services/web/reals/10.10.10.11/80/weight", {
      weight: 2,
    }, { "if-match": `"${reload.json.version}"` });
    assert.equal(again.status, 200);
    assert.match(
      await Deno.readTextFile(fx.path),
      /scheduler: wrr[^]*10\.10\.10\.11, port: 80, weight: 2/,
    );
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: drain keeps the weight for restore; replace, delete and the services list", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const any = { "if-match": "*" };
    assert.equal(
      (await fx.call("POST", "/api/v1/services/web/reals/10.10.10.12/80/drain", undefined, any))
        .status,
      200,
    );
    assert.deepEqual(engineView(fx), ["web:10.10.10.11:80/1,10.10.10.12:80/0"]);
    const view = await fx.call("GET", "/api/v1/services/web");
    const reals = view.json.reals as {
      weight: number;
      configuredWeight: number;
      drained: boolean;
    }[];
    assert.deepEqual(reals.map((r) => [r.weight, r.configuredWeight, r.drained]), [[1, 1, false], [
      0,
      1,
      true,
    ]]);
    assert.match(await Deno.readTextFile(fx.path), /10\.10\.10\.12, port: 80, drain: true \}/);
    assert.equal(
      (await fx.call("POST", "/api/v1/services/web/reals/10.10.10.12/80/restore", undefined, any))
        .status,
      200,
    );
    assert.deepEqual(engineView(fx), ["web:10.10.10.11:80/1,10.10.10.12:80/1"]);
    assert.equal(await Deno.readTextFile(fx.path), CONFIG, "restore gives back the very file");

    const put = await fx.call("PUT", "/api/v1/services/web", {
      protocol: "tcp",
      vip: "192.168.1.31",
      port: 80,
      scheduler: "wlc",
    }, any);
    assert.equal(put.status, 200, JSON.stringify(put.json));
    assert.equal(fx.running.config.services[0].scheduler, "wlc");
    assert.equal(fx.running.config.services[0].reals.length, 2, "reals kept");

    assert.equal(
      (await fx.call("DELETE", "/api/v1/services/web/reals/10.10.10.11/80", undefined, any)).status,
      200,
    );
    assert.deepEqual(engineView(fx), ["web:10.10.10.12:80/1"]);

    const raw = (await fx.call("GET", "/api/v1/config")).json.config as { services: unknown[] };
    const replaced = await fx.call("PUT", "/api/v1/config/services", {
      services: [...raw.services, WEB_DB],
    }, any);
    assert.equal(replaced.status, 200);
    assert.deepEqual(engineView(fx), [
      "web:10.10.10.12:80/1",
      "db:10.10.10.11:3306/1,10.10.10.12:3306/1",
    ]);
    const same = await fx.call("PUT", "/api/v1/config/services", {
      services: [...raw.services, WEB_DB],
    }, any);
    assert.deepEqual([same.status, same.json.written], [200, false], "a no-op writes nothing");
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: validate a candidate as YAML or JSON without applying it", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const good = await fx.app.request("/api/v1/config/validate", {
      method: "POST",
      body: CONFIG,
      headers: { "content-type": "application/yaml" },
    });
    assert.deepEqual(await good.json(), { valid: true, issues: [] });
    const bad = await fx.app.request("/api/v1/config/validate", {
      method: "POST",
      body: CONFIG.replace("port: 80\n", "port: 70000\n"),
      headers: { "content-type": "application/yaml" },
    });
    assert.equal(bad.status, 422);
    const body = await bad.json() as { valid: boolean; issues: { path: string; line: number }[] };
    assert.equal(body.valid, false);
    assert.deepEqual(body.issues.map((i) => [i.path, i.line]), [["services[0].port", 8]]);
    const json = await fx.call("POST", "/api/v1/config/validate", {
      config: { services: [{ name: "x" }] },
    });
    assert.equal(json.status, 422);
    assert.equal(fx.applies(), 0);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin changes: cut ends one real's connections now and leaves the other's", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const { tcp } = await import("../fixtures/packet_builders.ts");
    const { TCP_SYN } = await import("../../dataplane/wire/tcp.ts");
    const { CLIENT, VIP } = await import("../fixtures/dataplane_specs.ts");
    for (let i = 0; i < 6; i++) {
      const pkt = tcp(CLIENT, 40000 + i, VIP, 80, TCP_SYN);
      assert.equal(fx.engine.process(pkt, 0, pkt.length), pkt.length);
    }
    assert.equal(fx.engine.conns.size, 6);
    const r = await fx.call("POST", "/api/v1/services/web/reals/10.10.10.11/80/cut");
    assert.deepEqual(r.json, { service: "web", address: "10.10.10.11", port: 80, cut: 3 });
    assert.equal(fx.engine.conns.size, 3);
    const stats = await fx.call("GET", "/api/v1/services/web");
    const reals = stats.json.reals as { activeConns: number; inactiveConns: number }[];
    assert.deepEqual(reals.map((x) => x.activeConns + x.inactiveConns), [0, 3]);
    assert.equal(
      (await fx.call("POST", "/api/v1/services/web/reals/10.10.10.19/80/cut")).status,
      404,
    );
  } finally {
    await fx.cleanup();
  }
});
