/**
 * Unit tests of /metrics: the exposition writer's escaping and refusals, the snapshot gathered
 * from a real engine behind the worker's request handler, and the rendered page, checked line by
 * line against the text format's grammar by the small parser below (and by promtool when the
 * machine has it).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Hono } from "hono";
import type { DataplaneRequester } from "../../control/admin_source.ts";
import { parseConfig } from "../../control/config.ts";
import { compileDataplaneSpec } from "../../control/dataplane_spec.ts";
import {
  collectMetricsSnapshot,
  metricsHandler,
  type MetricsSnapshot,
  renderMetrics,
} from "../../control/metrics.ts";
import {
  escapeLabelValue,
  Exposition,
  EXPOSITION_CONTENT_TYPE,
  formatSampleValue,
} from "../../control/prometheus_exposition.ts";
import { CONN_STATE_NAMES } from "../../dataplane/conn/state.ts";
import { Engine } from "../../dataplane/engine.ts";
import { DataplaneRequests } from "../../dataplane/stats/requests.ts";
import { TCP_SYN } from "../../dataplane/wire/tcp.ts";
import { CLIENT, VIP } from "../fixtures/dataplane_specs.ts";
import { tcp, udp } from "../fixtures/packet_builders.ts";

// ---- A parser for the text format, version 0.0.4 ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const VALUE = "(?:NaN|[+-]Inf|[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?)";
const HELP_LINE = new RegExp(`^# HELP (${NAME}) ((?:[^\\\\\\n]|\\\\\\\\|\\\\n)*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_HEAD = new RegExp(`^(${NAME})`);
const LABEL_HEAD = /^([a-zA-Z_][a-zA-Z0-9_]*)="/;
const SAMPLE_TAIL = new RegExp(`^ (${VALUE})(?: (-?[0-9]+))?$`);

function unescapeText(s: string, quotes: boolean): string {
  return s.replace(quotes ? /\\(\\|"|n)/g : /\\(\\|n)/g, (_, c) => c === "n" ? "\n" : c);
}

function parseSampleValue(s: string): number {
  if (s === "NaN") return NaN;
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  return Number(s);
}

/** One sample line → name, labels, value; throws naming the line when it breaks the grammar. */
function parseSampleLine(line: string): Sample {
  const head = SAMPLE_HEAD.exec(line);
  if (head === null) throw new Error(`bad sample line: ${line}`);
  const name = head[1];
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith("{")) {
    rest = rest.slice(1);
    while (!rest.startsWith("}")) {
      const l = LABEL_HEAD.exec(rest);
      if (l === null) throw new Error(`bad label in: ${line}`);
      rest = rest.slice(l[0].length);
      let raw = "";
      for (;;) {
        if (rest === "") throw new Error(`unterminated label value in: ${line}`);
        const c = rest[0];
        if (c === '"') break;
        if (c === "\n") throw new Error(`raw newline in label value: ${line}`);
        if (c === "\\") {
          if (!/^\\[\\"n]/.test(rest)) throw new Error(`bad escape in: ${line}`);
          raw += rest.slice(0, 2);
          rest = rest.slice(2);
        } else {
          raw += c;
          rest = rest.slice(1);
        }
      }
      rest = rest.slice(1);
      if (l[1] in labels) throw new Error(`label ${l[1]} twice in: ${line}`);
      labels[l[1]] = unescapeText(raw, true);
      if (rest.startsWith(",")) rest = rest.slice(1);
      else if (!rest.startsWith("}")) throw new Error(`expected , or } in: ${line}`);
    }
    rest = rest.slice(1);
  }
  const tail = SAMPLE_TAIL.exec(rest);
  if (tail === null) throw new Error(`bad value in: ${line}`);
  return { name, labels, value: parseSampleValue(tail[1]) };
}

/**
 * Parses a page and checks what the format and Prometheus's conventions ask of it: every family
 * has one HELP and one TYPE before its samples, families are not split, counters end in _total,
 * no series appears twice. Returns the families by name.
 */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "the page ends with a line feed");
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  const series = new Set<string>();
  let current: string | null = null;
  const enter = (name: string) => {
    if (current === name) return;
    if (current !== null) finished.add(current);
    if (finished.has(name)) throw new Error(`family ${name} is split`);
    current = name;
  };
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      const m = HELP_LINE.exec(line);
      if (m === null) throw new Error(`bad HELP line: ${line}`);
      enter(m[1]);
      const f = families.get(m[1]);
      if (f !== undefined && f.help !== "") throw new Error(`second HELP for ${m[1]}`);
      if (f !== undefined && f.samples.length > 0) throw new Error(`HELP after samples: ${m[1]}`);
      families.set(m[1], { type: f?.type ?? "", help: unescapeText(m[2], false), samples: [] });
    } else if (line.startsWith("# TYPE ")) {
      const m = TYPE_LINE.exec(line);
      if (m === null) throw new Error(`bad TYPE line: ${line}`);
      enter(m[1]);
      const f = families.get(m[1]) ?? { type: "", help: "", samples: [] };
      if (f.type !== "") throw new Error(`second TYPE for ${m[1]}`);
      if (f.samples.length > 0) throw new Error(`TYPE after samples: ${m[1]}`);
      f.type = m[2];
      families.set(m[1], f);
    } else if (line.startsWith("#")) {
      continue;
    } else {
      const s = parseSampleLine(line);
      enter(s.name);
      const f = families.get(s.name);
      if (f === undefined || f.type === "" || f.help === "") {
        throw new Error(`sample without HELP and TYPE before it: ${line}`);
      }
      const key = `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
      if (series.has(key)) throw new Error(`duplicate series: ${line}`);
      series.add(key);
      f.samples.push(s);
    }
  }
  for (const [name, f] of families) {
    if (f.type === "" || f.help === "") throw new Error(`${name} lacks HELP or TYPE`);
    if (f.type === "counter" && !name.endsWith("_total")) {
      throw new Error(`counter ${name} does not end in _total`);
    }
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`. */
function value(
  page: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const f = page.get(name);
  assert.ok(f !== undefined, `no family ${name}`);
  const hits = f.samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(hits.length, 1, `${name}${JSON.stringify(labels)}: ${hits.length} samples`);
  return hits[0].value;
}

Deno.test("exposition parser: refuses what the format forbids", () => {
  const ok = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n";
  assert.equal(parseExposition(ok).get("a_total")?.samples[0].value, 1);
  for (
    const bad of [
      "a 1\n", // no HELP/TYPE
      "# HELP a A.\n# TYPE a counter\na 1\n", // counter without _total
      "# HELP a A.\n# TYPE a gauge\na 1\na 2\n", // duplicate series
      "# HELP a A.\n# TYPE a gauge\n# TYPE a gauge\na 1\n", // TYPE twice
      '# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x="1"} 2\n', // split
      '# HELP a A.\n# TYPE a gauge\na{x="1} 2\n', // unterminated
      '# HELP a A.\n# TYPE a gauge\na{x="\\t"} 2\n', // bad escape
      "# HELP a A.\n# TYPE a gauge\na one\n", // bad value
      "# HELP a A.\n# TYPE a gauge\na 1", // no final newline
    ]
  ) {
    assert.throws(() => parseExposition(bad), Error, JSON.stringify(bad));
  }
});

// ---- The writer ----

Deno.test("exposition: label values and help are escaped and parse back to the original", () => {
  const tricky = 'back\\slash "quoted"\nnext line';
  assert.equal(escapeLabelValue(tricky), 'back\\\\slash \\"quoted\\"\\nnext line');
  const page = new Exposition();
  page.family("x_total", "counter", "Help with \\ and\na newline.").sample(3, { name: tricky });
  page.family("y", "gauge", "Y.").sample(NaN, { k: "a" }).sample(Infinity, { k: "b" })
    .sample(-Infinity, { k: "c" }).sample(0.25, { k: "d" });
  const text = page.render();
  assert.ok(text.includes('x_total{name="back\\\\slash \\"quoted\\"\\nnext line"} 3\n'));
  assert.ok(text.includes("# HELP x_total Help with \\\\ and\\na newline.\n"));
  const parsed = parseExposition(text);
  assert.equal(parsed.get("x_total")?.samples[0].labels.name, tricky);
  assert.equal(parsed.get("x_total")?.help, "Help with \\ and\na newline.");
  assert.deepEqual(parsed.get("y")?.samples.map((s) => s.value), [NaN, Infinity, -Infinity, 0.25]);
  assert.deepEqual([NaN, Infinity, -Infinity, 12, 1e21].map(formatSampleValue), [
    "NaN",
    "+Inf",
    "-Inf",
    "12",
    "1e+21",
  ]);
});

Deno.test("exposition: refuses bad names, counters without _total, duplicates and redeclarations", () => {
  const page = new Exposition();
  assert.throws(() => page.family("1bad", "gauge", "x"), /bad metric name/);
  assert.throws(() => page.family("has-dash", "gauge", "x"), /bad metric name/);
  assert.throws(() => page.family("requests", "counter", "x"), /must end in _total/);
  const f = page.family("ok_total", "counter", "x");
  assert.equal(page.family("ok_total", "counter", "x"), f, "asking again gives the same family");
  assert.throws(() => page.family("ok_total", "gauge", "x"), /declared twice/);
  f.sample(1, { a: "1", b: "2" });
  assert.throws(() => f.sample(2, { a: "1", b: "2" }), /duplicate series/);
  assert.throws(() => f.sample(2, { "bad-label": "1" }), /bad label name/);
  assert.throws(() => f.sample(2, { __reserved: "1" }), /bad label name/);
  page.family("empty", "gauge", "Never sampled.");
  assert.equal(
    page.render(),
    '# HELP ok_total x\n# TYPE ok_total counter\nok_total{a="1",b="2"} 1\n',
  );
});

// ---- The snapshot and the page ----

const CONFIG = `
services:
  - name: web
    protocol: tcp
    vip: 192.168.1.31
    port: 80
    scheduler: rr
    reals:
      - { address: 10.10.10.11, port: 8080, weight: 3 }
      - { address: 10.10.10.12, port: 8080 }
  - name: dns
    protocol: udp
    vip: 192.168.1.31
    port: 53
    scheduler: wlc
    reals:
      - { address: 10.10.10.11, port: 5353 }
`;

/** A real engine behind the worker's request handler, as the appliance wires it. */
function setup() {
  const config = parseConfig(CONFIG, "test.yaml");
  const engine = new Engine({ ...compileDataplaneSpec(config), maxConnections: 4096 });
  const requests = new DataplaneRequests(engine);
  const request: DataplaneRequester = (name, params) => {
    try {
      return Promise.resolve(requests.answer(name, params, engine.now));
    } catch (err) {
      return Promise.reject(err);
    }
  };
  return { config, engine, request };
}

function send(engine: Engine, pkt: Uint8Array): number {
  return engine.process(pkt, 0, pkt.length);
}

Deno.test("metrics: the page shows the engine's connections, per-real counts and drops by reason", async () => {
  const { config, engine, request } = setup();
  // Two SYNs to web: rr sends one to each real. One datagram to dns. Two to a VIP port no
  // service has: dropped as no_service.
  send(engine, tcp(CLIENT, 40001, VIP, 80, TCP_SYN));
  send(engine, tcp(CLIENT, 40002, VIP, 80, TCP_SYN));
  send(engine, udp(CLIENT, 40003, VIP, 53, "q"));
  send(engine, udp(CLIENT, 40004, VIP, 9999, "x"));
  send(engine, udp(CLIENT, 40005, VIP, 9999, "x"));

  const snapshot = await collectMetricsSnapshot(request, config, {
    startTimeSeconds: 1_700_000_000,
    residentMemoryBytes: () => 123456789,
    realHealth: (svc, address) =>
      svc === "web" ? (address === "10.10.10.12" ? "down" : "up") : undefined,
  });
  assert.equal(snapshot.dataplane?.counters.drop_no_service, 2);
  const page = parseExposition(renderMetrics(snapshot));

  assert.equal(value(page, "tunvs_dataplane_up"), 1);
  assert.equal(
    value(page, "tunvs_service_info", {
      service: "dns",
      protocol: "udp",
      vip: "192.168.1.31",
      port: "53",
      scheduler: "wlc",
      forward: "nat",
    }),
    1,
  );
  const web1 = { service: "web", real: "10.10.10.11:8080" };
  const web2 = { service: "web", real: "10.10.10.12:8080" };
  const dns = { service: "dns", real: "10.10.10.11:5353" };
  assert.equal(value(page, "tunvs_real_configured_weight", web1), 3);
  assert.equal(value(page, "tunvs_real_weight", web1), 3);
  assert.equal(value(page, "tunvs_real_weight", web2), 1);
  assert.equal(value(page, "tunvs_real_connections_scheduled_total", web1), 1);
  assert.equal(value(page, "tunvs_real_connections_scheduled_total", web2), 1);
  assert.equal(value(page, "tunvs_real_connections_scheduled_total", dns), 1);
  // SYN_RECV is active, as IPVS's tcp_state_active_table has it; UDP is inactive.
  assert.equal(value(page, "tunvs_real_active_connections", web1), 1);
  assert.equal(value(page, "tunvs_real_inactive_connections", web1), 0);
  assert.equal(value(page, "tunvs_real_active_connections", dns), 0);
  assert.equal(value(page, "tunvs_real_inactive_connections", dns), 1);
  assert.equal(value(page, "tunvs_real_packets_total", { ...dns, direction: "in" }), 1);
  assert.equal(value(page, "tunvs_real_packets_total", { ...dns, direction: "out" }), 0);
  assert.ok(value(page, "tunvs_real_bytes_total", { ...dns, direction: "in" }) >= 29);
  assert.equal(value(page, "tunvs_real_up", web1), 1);
  assert.equal(value(page, "tunvs_real_up", web2), 0);
  assert.equal(page.get("tunvs_real_up")?.samples.length, 2, "unchecked reals have no series");

  assert.equal(value(page, "tunvs_connections", { state: "SYN_RECV" }), 2);
  assert.equal(value(page, "tunvs_connections", { state: "UDP" }), 1);
  assert.equal(value(page, "tunvs_connections", { state: "ESTABLISHED" }), 0);
  assert.equal(page.get("tunvs_connections")?.samples.length, CONN_STATE_NAMES.length);
  assert.equal(value(page, "tunvs_connection_table_entries"), 3);

  assert.equal(value(page, "tunvs_packets_dropped_total", { reason: "no_service" }), 2);
  assert.equal(value(page, "tunvs_packets_dropped_total", { reason: "malformed_tcp" }), 0);
  assert.equal(value(page, "tunvs_packets_received_total"), 5);
  assert.equal(value(page, "tunvs_connections_created_total"), 3);
  assert.equal(value(page, "tunvs_tun_write_failures_total"), 0);
  // Every drop_* counter of the engine is a reason, and nothing else is.
  const reasons = Object.keys(snapshot.dataplane!.counters).filter((n) => n.startsWith("drop_"));
  assert.deepEqual(
    page.get("tunvs_packets_dropped_total")?.samples.map((s) => `drop_${s.labels.reason}`),
    reasons,
  );
  assert.equal(value(page, "process_resident_memory_bytes"), 123456789);
  assert.equal(value(page, "process_start_time_seconds"), 1_700_000_000);
  // Optional parts absent: no families for them.
  for (const name of ["tunvs_service_up", "tunvs_health_checks_total", "tunvs_config_info"]) {
    assert.equal(page.has(name), false, name);
  }
});

Deno.test("metrics: reals are matched by address and port, not by position", async () => {
  const { config, request } = setup();
  // The configuration lists web's reals the other way round from the dataplane.
  const swapped = {
    ...config,
    services: config.services.map((s) =>
      s.name === "web" ? { ...s, reals: [...s.reals].reverse() } : s
    ),
  };
  const page = parseExposition(renderMetrics(await collectMetricsSnapshot(request, swapped)));
  assert.equal(value(page, "tunvs_real_weight", { real: "10.10.10.11:8080" }), 3);
  assert.equal(value(page, "tunvs_real_weight", { real: "10.10.10.12:8080" }), 1);
});

Deno.test("metrics: a dataplane that does not answer gives tunvs_dataplane_up 0, not a failed page", async () => {
  const { config } = setup();
  const failing: DataplaneRequester = () => Promise.reject(new Error("worker gone"));
  const snapshot = await collectMetricsSnapshot(failing, config);
  assert.equal(snapshot.dataplane, null);
  assert.equal(snapshot.dataplaneError, "worker gone");
  const page = parseExposition(renderMetrics(snapshot));
  assert.equal(value(page, "tunvs_dataplane_up"), 0);
  assert.equal(value(page, "tunvs_real_configured_weight", { real: "10.10.10.11:8080" }), 3);
  for (const name of ["tunvs_connections", "tunvs_packets_dropped_total", "tunvs_real_weight"]) {
    assert.equal(page.has(name), false, `${name} is unknown without the dataplane`);
  }
  assert.ok(value(page, "process_resident_memory_bytes") > 0, "the real RSS by default");
  assert.ok(
    Math.abs(value(page, "process_start_time_seconds") - Date.now() / 1000) < 3600,
    "the process's start time by default",
  );
});

/** A hand-made snapshot with every optional part and awkward names. */
function fullSnapshot(): MetricsSnapshot {
  return {
    services: [{
      name: 'we"b\\x\n',
      protocol: "tcp",
      vip: "192.0.2.1",
      port: 80,
      scheduler: "wlc",
      forward: "fullnat",
      reals: [{ address: "10.0.0.1", port: 80, configuredWeight: 1, health: "down" }],
    }, {
      name: "web",
      protocol: "tcp",
      vip: "192.0.2.2",
      port: 80,
      scheduler: "rr",
      forward: "dr",
      reals: [],
    }],
    dataplane: {
      connectionEntries: 0,
      connectionsByState: { ESTABLISHED: 4, WEIRD: 1 },
      counters: {
        rx_packets: 10,
        drop_no_real: 2,
        "future-thing": 7,
        already_total: 1,
        synproxy_syn_answered: 9,
        synproxy_syns_answered: 100,
        synproxy_cookies_validated: 60,
        synproxy_cookies_rejected: 40,
        synproxy_handshakes_completed: 58,
        synproxy_handshakes_failed: 2,
      },
      writeFailures: 1,
    },
    health: {
      reals: [{ service: "web", address: "10.0.0.1", port: 80, up: 1, down: 2 }],
      checks: [{ type: "http", run: 2, failed: 1 }, { type: "tcp", run: 1, failed: 0 }],
      services: [{ service: "web", up: 1, down: 2 }],
      servicesDown: ["web"],
    },
    config: { version: 'v"7', reloadSuccesses: 4, reloadFailures: 1, lastReloadSeconds: 1.7e9 },
    process: { residentMemoryBytes: 1, startTimeSeconds: 2 },
  };
}

Deno.test("metrics: a firewall-mark service is labelled by its mark, with no VIP", async () => {
  const config = parseConfig(
    CONFIG + `  - name: mark
    fwmark: 6666
    scheduler: rr
    persistence: { timeout: 3000 }
    reals:
      - { address: 10.10.10.11 }
`,
    "test.yaml",
  );
  const engine = new Engine({ ...compileDataplaneSpec(config), maxConnections: 64 });
  const requests = new DataplaneRequests(engine);
  const snapshot = await collectMetricsSnapshot(
    (name, params) => Promise.resolve(requests.answer(name, params, engine.now)),
    config,
  );
  const page = parseExposition(renderMetrics(snapshot));
  assert.equal(value(page, "tunvs_service_info", { service: "mark", fwmark: "6666", vip: "" }), 1);
  assert.equal(
    value(page, "tunvs_service_info", { service: "web", fwmark: "", vip: "192.168.1.31" }),
    1,
  );
});

Deno.test("metrics: health, synproxy, config and unknown counters render under sensible names", () => {
  const text = renderMetrics(fullSnapshot());
  const page = parseExposition(text);
  const odd = 'we"b\\x\n';
  assert.equal(value(page, "tunvs_service_info", { service: odd, forward: "fullnat" }), 1);
  assert.equal(value(page, "tunvs_service_up", { service: odd }), 1);
  assert.equal(value(page, "tunvs_service_up", { service: "web" }), 0);
  assert.equal(value(page, "tunvs_real_up", { service: odd }), 0);
  const real = { service: "web", real: "10.0.0.1:80" };
  assert.equal(value(page, "tunvs_health_transitions_total", { ...real, to: "down" }), 2);
  assert.equal(value(page, "tunvs_health_transitions_total", { ...real, to: "up" }), 1);
  assert.equal(value(page, "tunvs_health_checks_total", { type: "http" }), 2);
  assert.equal(value(page, "tunvs_health_check_failures_total", { type: "http" }), 1);
  assert.equal(value(page, "tunvs_health_check_failures_total", { type: "tcp" }), 0);
  assert.equal(page.has("tunvs_health_check_attempts_total"), false, "attempts not given");
  assert.equal(value(page, "tunvs_service_transitions_total", { service: "web", to: "down" }), 2);
  assert.equal(value(page, "tunvs_synproxy_syns_answered_total"), 100);
  assert.equal(value(page, "tunvs_synproxy_cookies_validated_total"), 60);
  assert.equal(value(page, "tunvs_synproxy_cookies_rejected_total"), 40);
  assert.equal(value(page, "tunvs_synproxy_handshakes_completed_total"), 58);
  assert.equal(value(page, "tunvs_synproxy_handshakes_failed_total"), 2);
  assert.equal(value(page, "tunvs_config_info", { version: 'v"7' }), 1);
  assert.equal(value(page, "tunvs_config_reloads_total", { result: "success" }), 4);
  assert.equal(value(page, "tunvs_config_reloads_total", { result: "failure" }), 1);
  assert.equal(value(page, "tunvs_config_last_reload_timestamp_seconds"), 1.7e9);
  assert.equal(value(page, "tunvs_connections", { state: "WEIRD" }), 1, "unknown states kept");
  assert.equal(value(page, "tunvs_dataplane_future_thing_total"), 7);
  assert.equal(value(page, "tunvs_dataplane_already_total"), 1);
  assert.equal(value(page, "tunvs_dataplane_synproxy_syn_answered_total"), 9);
  assert.equal(value(page, "tunvs_packets_dropped_total", { reason: "no_real" }), 2);
  assert.equal(value(page, "tunvs_tun_write_failures_total"), 1);
  const withAttempts = fullSnapshot();
  withAttempts.health!.checks = [{ type: "exec", run: 3, failed: 1, attempts: 5 }];
  const again = parseExposition(renderMetrics(withAttempts));
  assert.equal(value(again, "tunvs_health_check_attempts_total", { type: "exec" }), 5);
  // Each family's samples directly follow its one HELP and TYPE.
  assert.equal(text.split("# TYPE tunvs_real_up gauge").length, 2);
});

Deno.test("metrics: GET /metrics on a Hono app answers the page with the format's content type", async () => {
  const { config, request } = setup();
  const app = new Hono();
  app.get("/metrics", metricsHandler(() => collectMetricsSnapshot(request, config)));
  const res = await app.request("/metrics");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), EXPOSITION_CONTENT_TYPE);
  const page = parseExposition(await res.text());
  assert.equal(value(page, "tunvs_dataplane_up"), 1);
  assert.equal(page.get("tunvs_service_info")?.samples.length, 2);
});

const PROMTOOL = "/usr/bin/promtool";
const hasPromtool = (() => {
  try {
    return Deno.statSync(PROMTOOL).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "metrics: promtool check metrics accepts the page (needs Debian's prometheus package)",
  ignore: !hasPromtool,
  async fn() {
    const { config, engine, request } = setup();
    send(engine, tcp(CLIENT, 40001, VIP, 80, TCP_SYN));
    send(engine, udp(CLIENT, 40004, VIP, 9999, "x"));
    const pages = [
      renderMetrics(await collectMetricsSnapshot(request, config)),
      renderMetrics(fullSnapshot()),
    ];
    for (const text of pages) {
      const child = new Deno.Command(PROMTOOL, {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(text));
      await writer.close();
      const out = await child.output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `promtool: ${said}`);
      assert.equal(said.trim(), "", "no lint findings");
    }
  },
});

if (!hasPromtool) {
  console.warn(
    `metrics.test.ts: promtool check skipped: ${PROMTOOL} not found (apt-get install prometheus)`,
  );
}
