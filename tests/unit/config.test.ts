import assert from "node:assert/strict";
import { steeringSupported } from "../../dataplane/steering/queue_steering.ts";
import {
  type ApplianceConfig,
  ConfigError,
  type ConfigIssue,
  dataplaneWorkers,
  DEFAULT_CONFIG_PATH,
  formatIssue,
  FORWARD_METHODS,
  loadConfig,
  MAX_WORKERS,
  parseConfig,
  realReplyPorts,
} from "../../control/config.ts";
import { compileDataplaneSpec } from "../../control/dataplane_spec.ts";

/** Parses `text`, which must be invalid, and returns its issues. */
function issuesOf(text: string, file?: string): ConfigIssue[] {
  try {
    parseConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  assert.fail("expected a ConfigError");
}

/** Compact "LINE:COL PATH" rendering so location assertions stay readable. */
function where(i: ConfigIssue): string {
  return `${i.line}:${i.col} ${i.path}`;
}

/** Asserts exactly one issue and returns it. */
function onlyIssue(text: string): ConfigIssue {
  const issues = issuesOf(text);
  assert.equal(issues.length, 1, issues.map(formatIssue).join("\n"));
  return issues[0];
}

/** A one-service config whose service body lines are given (indented 4 spaces). */
function withService(...lines: string[]): string {
  return ["services:", "  - name: web", ...lines.map((l) => `    ${l}`)].join("\n") + "\n";
}

Deno.test("default appliance.yaml parses to the seed topology", async () => {
  const path = new URL("../../appliance.yaml", import.meta.url).pathname;
  const expected: ApplianceConfig = {
    admin: { listen: "127.0.0.1:9180", transport: "tcp", host: "127.0.0.1", port: 9180 },
    dataplane: { tun: "tunvs0", offloads: true, io: "syscalls" },
    host: {},
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    localAddresses: [],
    services: [{
      name: "web",
      protocol: "tcp",
      vip: "192.168.1.31",
      port: 80,
      scheduler: "rr",
      schedulerFlags: [],
      forward: "nat",
      localAddresses: [],
      reals: [
        { address: "10.10.10.11", port: 80, weight: 1, upperThreshold: 0, lowerThreshold: 0 },
        { address: "10.10.10.12", port: 80, weight: 1, upperThreshold: 0, lowerThreshold: 0 },
      ],
    }],
  };
  assert.deepEqual(await loadConfig(path), expected);
  assert.equal(DEFAULT_CONFIG_PATH, "appliance.yaml");
});

Deno.test("defaults are applied for every optional key", () => {
  const cfg = parseConfig(
    withService("vip: 10.0.0.1", "port: 443", "reals:", "  - address: 10.0.0.2"),
  );
  assert.deepEqual(cfg, {
    admin: { listen: "127.0.0.1:9180", transport: "tcp", host: "127.0.0.1", port: 9180 },
    dataplane: { tun: "tunvs0", offloads: true, io: "syscalls" },
    host: {},
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    localAddresses: [],
    services: [{
      name: "web",
      protocol: "tcp",
      vip: "10.0.0.1",
      port: 443,
      scheduler: "wlc",
      schedulerFlags: [],
      forward: "nat",
      localAddresses: [],
      reals: [{ address: "10.0.0.2", port: 443, weight: 1, upperThreshold: 0, lowerThreshold: 0 }],
    }],
  });
});

Deno.test("reals default to an empty list; partial timeouts keep the other defaults", () => {
  const cfg = parseConfig(
    "timeouts: { udp: 60 }\n" + withService("vip: 10.0.0.1", "port: 53", "protocol: udp"),
  );
  assert.deepEqual(cfg.timeouts, { tcp: 900, tcpfin: 120, udp: 60 });
  assert.deepEqual(cfg.services[0].reals, []);
  assert.equal(cfg.services[0].protocol, "udp");
});

Deno.test("explicit values override defaults, including host and admin", () => {
  const cfg = parseConfig(
    [
      "admin: { listen: 0.0.0.0:8080, token_file: /etc/tunvs/admin.token }",
      "dataplane: { tun: lb0, offloads: true, io: io_uring }",
      "host: { uplink: eth0, realside: eth1 }",
      "timeouts: { tcp: 1, tcpfin: 2147483, udp: 3 }",
      "services:",
      "  - { name: dns, protocol: udp, vip: 192.168.1.32, port: 53, scheduler: wrr,",
      "      reals: [{ address: 10.10.10.11, port: 5353, weight: 0 }] }",
    ].join("\n"),
  );
  assert.deepEqual(cfg.admin, {
    listen: "0.0.0.0:8080",
    transport: "tcp",
    host: "0.0.0.0",
    port: 8080,
    tokenFile: "/etc/tunvs/admin.token",
  });
  assert.deepEqual(cfg.dataplane, { tun: "lb0", offloads: true, io: "io_uring" });
  assert.deepEqual(cfg.host, { uplink: "eth0", realside: "eth1" });
  assert.deepEqual(cfg.timeouts, { tcp: 1, tcpfin: 2147483, udp: 3 });
  assert.equal(cfg.services[0].scheduler, "wrr");
  assert.deepEqual(cfg.services[0].reals, [{
    address: "10.10.10.11",
    port: 5353,
    weight: 0,
    upperThreshold: 0,
    lowerThreshold: 0,
  }]);
});

Deno.test("out-of-range integer points at the value with the range in the message", () => {
  const text = withService(
    "vip: 192.168.1.31",
    "port: 80",
    "reals:",
    "  - { address: 10.10.10.11 }",
    "  - { address: 10.10.10.12, weight: 70000 }",
  );
  const issue = onlyIssue(text);
  assert.equal(
    formatIssue(issue),
    "appliance.yaml:7:41: services[0].reals[1].weight: " +
      "must be an integer between 0 and 65535 (got 70000)",
  );
});

Deno.test("non-integers and quoted numbers are rejected", () => {
  const fraction = onlyIssue(withService("vip: 10.0.0.1", "port: 1.5"));
  assert.equal(where(fraction), "4:11 services[0].port");
  assert.match(fraction.message, /integer between 1 and 65535 \(got 1\.5\)/);

  const quoted = onlyIssue(withService("vip: 10.0.0.1", 'port: "80"'));
  assert.equal(where(quoted), "4:11 services[0].port");
  assert.match(quoted.message, /got string "80"; remove the quotes/);

  const timeout = onlyIssue("timeouts:\n  tcpfin: 2147484\nservices: []\n");
  assert.equal(where(timeout), "2:11 timeouts.tcpfin");
  assert.match(timeout.message, /between 1 and 2147483 \(got 2147484\)/);
});

Deno.test("missing required key points at the parent map", () => {
  const issue = onlyIssue("services:\n  - name: web\n    port: 80\n");
  assert.equal(where(issue), "2:5 services[0].vip");
  assert.equal(issue.message, "is required");

  const noServices = onlyIssue("admin:\n  listen: 127.0.0.1:1\n");
  assert.equal(where(noServices), "1:1 services");
  assert.equal(noServices.message, "is required");
});

Deno.test("empty value points at its key", () => {
  const issue = onlyIssue(withService("vip: 10.0.0.1", "port:", "reals: []"));
  assert.equal(where(issue), "4:5 services[0].port");
  assert.match(issue.message, /got an empty value/);
});

Deno.test("unknown key points at the key and lists the allowed keys", () => {
  const top = onlyIssue("services: []\nsevrices: []\n");
  assert.equal(where(top), "2:1 sevrices");
  assert.equal(
    top.message,
    'unknown key "sevrices"; allowed keys: admin, dataplane, host, timeouts, local_addresses, ' +
      "synproxy, services",
  );

  const nested = onlyIssue(
    withService("vip: 10.0.0.1", "port: 80", "reals: [{ address: 10.0.0.2, wieght: 2 }]"),
  );
  assert.equal(where(nested), "5:34 services[0].reals[0].wieght");
  assert.match(
    nested.message,
    /^unknown key "wieght"; allowed keys: address, port, weight, upper_threshold, lower_threshold, drain, health_check, inhibit_on_failure, notify_up, notify_down$/,
  );

  const odd = onlyIssue('"my key": 1\nservices: []\n');
  assert.equal(where(odd), '1:1 ["my key"]');
});

Deno.test("wrong container types are named", () => {
  const issues = issuesOf("admin: [1]\nservices: {}\n");
  assert.deepEqual(issues.map(where), ["1:8 admin", "2:11 services"]);
  assert.equal(issues[0].message, "must be a mapping (got a list)");
  assert.equal(issues[1].message, "must be a list (got a mapping)");

  const empty = onlyIssue("host:\nservices: []\n");
  assert.equal(where(empty), "1:1 host");
  assert.match(empty.message, /must be a mapping \(got an empty value; write \{\} or remove/);
});

Deno.test("enum values list the allowed choices", () => {
  const issues = issuesOf(
    withService("vip: 10.0.0.1", "port: 80", "protocol: sctp", "scheduler: foo", "forward: bogus"),
  );
  assert.deepEqual(issues.map(where), [
    "5:15 services[0].protocol",
    "6:16 services[0].scheduler",
    "7:14 services[0].forward",
  ]);
  assert.equal(issues[0].message, 'must be one of: tcp, udp (got "sctp")');
  assert.equal(
    issues[1].message,
    'must be one of: rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, fo, ovf, mh (got "foo")',
  );
  assert.equal(issues[2].message, `must be one of: ${FORWARD_METHODS.join(", ")} (got "bogus")`);
});

Deno.test("bad IPv4 addresses say what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["1.2.3", /expected 4 dot-separated numbers.*found 3 part/],
    ["1.2.3.4.5", /found 5 part/],
    ["1.2..4", /empty part/],
    ["1.2.x.4", /part "x" is not a number/],
    ["1.2.3.256", /part 256 is greater than 255/],
    ["010.0.0.1", /part "010" has a leading zero/],
    ["0.0.0.0", /unicast.*0\.0\.0\.0 is the unspecified address/],
    ["0.1.2.3", /this network/],
    ["127.0.0.1", /unicast.*loopback/],
    ["224.0.0.5", /unicast.*multicast/],
    ["239.255.255.255", /multicast/],
    ["255.255.255.255", /broadcast/],
  ];
  for (const [vip, pattern] of cases) {
    const issue = onlyIssue(withService(`vip: "${vip}"`, "port: 80"));
    assert.equal(where(issue), "3:10 services[0].vip", vip);
    assert.match(issue.message, pattern, vip);
  }
  const real = onlyIssue(
    withService("vip: 10.0.0.1", "port: 80", "reals: [{ address: 10.0.0.300 }]"),
  );
  assert.equal(where(real), "5:24 services[0].reals[0].address");
  assert.match(real.message, /part 300 is greater than 255/);

  const number = onlyIssue(withService("vip: 10", "port: 80"));
  assert.equal(number.message, "must be an IPv4 address (got 10)");
});

Deno.test("admin.listen must be an IPv4 host and a port", () => {
  const bad: [string, RegExp][] = [
    ["localhost:9180", /host part: "localhost" is not an IPv4 address/],
    ["127.0.0.1", /must be HOST:PORT/],
    ["127.0.0.1:0", /port part must be an integer between 1 and 65535 \(got "0"\)/],
    ["127.0.0.1:65536", /got "65536"/],
    ["127.0.0.1:", /got ""/],
    ["127.0.0.1:09180", /got "09180"/],
    ["[::1]:9180", /must be HOST:PORT/],
  ];
  for (const [listen, pattern] of bad) {
    const issue = onlyIssue(`admin:\n  listen: "${listen}"\nservices: []\n`);
    assert.equal(where(issue), "2:11 admin.listen", listen);
    assert.match(issue.message, pattern, listen);
  }
  const number = onlyIssue("admin: { listen: 9180 }\nservices: []\n");
  assert.match(number.message, /must be a HOST:PORT string or unix:\/PATH.*\(got 9180\)/);
  assert.deepEqual(
    parseConfig("admin: { listen: 127.1.2.3:65535 }\nservices: []\n").admin,
    { listen: "127.1.2.3:65535", transport: "tcp", host: "127.1.2.3", port: 65535 },
  );
});

Deno.test("admin.listen may be a Unix socket: unix:/ABSOLUTE/PATH, short enough to bind", () => {
  assert.deepEqual(
    parseConfig("admin: { listen: unix:/run/tunvs/admin.sock }\nservices: []\n").admin,
    { listen: "unix:/run/tunvs/admin.sock", transport: "unix", path: "/run/tunvs/admin.sock" },
  );
  const bad: [string, RegExp][] = [
    ["unix:run/admin.sock", /socket path must be an absolute path.*\(got "run\/admin.sock"\)/],
    ["unix:", /socket path must be an absolute path/],
    ["unix:/run/tunvs/", /socket path must name a file, not a directory/],
    ["unix:/run/a\\0b", /socket path must not contain a NUL character/],
    [`unix:/${"a".repeat(107)}`, /socket path is too long \(108 bytes; at most 107\)/],
    ["unix:@abstract", /socket path must be an absolute path/],
  ];
  for (const [listen, pattern] of bad) {
    const issue = onlyIssue(`admin:\n  listen: "${listen}"\nservices: []\n`);
    assert.equal(where(issue), "2:11 admin.listen", listen);
    assert.match(issue.message, pattern, listen);
  }
  // The longest path the kernel binds is accepted.
  const longest = `/${"a".repeat(106)}`;
  assert.equal(
    parseConfig(`admin: { listen: "unix:${longest}" }\nservices: []\n`).admin.listen,
    `unix:${longest}`,
  );
});

Deno.test("admin.token_file: required off loopback, an absolute path, never the token itself", () => {
  // Off loopback without a token file: the error names the missing field, at the admin map.
  for (const listen of ["0.0.0.0:9180", "10.1.2.3:9180", "128.0.0.1:9180"]) {
    const issue = onlyIssue(`admin:\n  listen: ${listen}\nservices: []\n`);
    assert.equal(where(issue), "2:3 admin.token_file", listen);
    assert.match(issue.message, new RegExp(`^is required when admin.listen is not a loopback`));
    assert.match(issue.message, new RegExp(`\\(got ${listen.replaceAll(".", "\\.")}\\)`));
  }
  // Loopback (all of 127.0.0.0/8) and Unix sockets need none; a token file is allowed there too.
  for (const listen of ["127.0.0.1:9180", "127.255.0.9:1", "unix:/run/tunvs.sock"]) {
    const admin = parseConfig(`admin: { listen: "${listen}" }\nservices: []\n`).admin;
    assert.equal(admin.tokenFile, undefined, listen);
    const withToken = parseConfig(
      `admin: { listen: "${listen}", token_file: /etc/tunvs/token }\nservices: []\n`,
    ).admin;
    assert.equal(withToken.tokenFile, "/etc/tunvs/token", listen);
  }
  const bad: [string, RegExp][] = [
    ["token_file: admin.token", /must be an absolute path, e.g. \/etc\/tunvs\/admin.token/],
    ["token_file: /etc/tunvs/", /must name a file, not a directory/],
    ["token_file: 12345", /must be the absolute path of the file holding the admin token/],
  ];
  for (const [line, pattern] of bad) {
    const issue = onlyIssue(`admin:\n  listen: 127.0.0.1:9180\n  ${line}\nservices: []\n`);
    assert.equal(where(issue).replace(/^\S+ /, ""), "admin.token_file", line);
    assert.match(issue.message, pattern, line);
  }
  // The token itself has no key: an unknown key, whatever it is called.
  for (const key of ["token", "bearer_token"]) {
    const issue = onlyIssue(
      `admin:\n  listen: 127.0.0.1:9180\n  ${key}: s3cr3t-s3cr3t-s3cr3t\nservices: []\n`,
    );
    assert.equal(where(issue), `3:3 admin.${key}`);
    assert.match(issue.message, /unknown key .*; allowed keys: listen, token_file$/);
  }
});

Deno.test("interface names follow the kernel's rules", () => {
  const bad: [string, RegExp][] = [
    ["", /must not be empty/],
    ["a234567890123456", /too long \(16 bytes; at most 15\)/],
    ["tun/0", /must not contain "\/"/],
    ["tun:0", /must not contain ":"/],
    ["tun 0", /must not contain whitespace/],
    [".", /must not be "\."/],
    ["..", /must not be "\.\."/],
  ];
  for (const [name, pattern] of bad) {
    const issue = onlyIssue(`dataplane:\n  tun: "${name}"\nservices: []\n`);
    assert.equal(where(issue), "2:8 dataplane.tun", name);
    assert.match(issue.message, pattern, name);
  }
  assert.equal(
    parseConfig("dataplane: { tun: a23456789012345 }\nservices: []").dataplane.tun,
    "a23456789012345",
  );
  const uplink = onlyIssue("host:\n  uplink: eth0\n  realside: 'e 1'\nservices: []\n");
  assert.equal(where(uplink), "3:13 host.realside");
});

Deno.test("service names must match the allowed pattern", () => {
  for (const name of ["-web", "web!", "a".repeat(64), ""]) {
    const issue = onlyIssue(`services:\n  - { name: "${name}", vip: 10.0.0.1, port: 80 }\n`);
    assert.equal(where(issue), "2:13 services[0].name", name);
    assert.match(issue.message, /must be 1-63 letters, digits/, name);
  }
  assert.equal(
    parseConfig(`services:\n  - { name: "${"a".repeat(63)}", vip: 10.0.0.1, port: 80 }\n`)
      .services[0].name.length,
    63,
  );
});

Deno.test("duplicate service names point at the later definition", () => {
  const issue = onlyIssue(
    [
      "services:",
      "  - { name: web, vip: 10.0.0.1, port: 80 }",
      "  - { name: api, vip: 10.0.0.1, port: 81 }",
      "  - { name: web, vip: 10.0.0.1, port: 82 }",
    ].join("\n"),
  );
  assert.equal(where(issue), "4:13 services[2].name");
  assert.equal(issue.message, 'duplicate service name "web" (already used by services[0])');
});

Deno.test("duplicate protocol+vip+port is an error; a different protocol is not", () => {
  const issue = onlyIssue(
    [
      "services:",
      "  - { name: a, vip: 10.0.0.1, port: 80 }",
      "  - { name: b, vip: 10.0.0.1, port: 80, protocol: udp }",
      "  - { name: c, vip: 10.0.0.1, port: 80, protocol: tcp }",
    ].join("\n"),
  );
  assert.equal(where(issue), "4:5 services[2]");
  assert.equal(issue.message, "duplicate service tcp 10.0.0.1:80 (already defined by services[0])");
});

Deno.test("duplicate reals compare the effective port", () => {
  const issue = onlyIssue(
    withService(
      "vip: 10.0.0.1",
      "port: 80",
      "reals:",
      "  - address: 10.0.0.2",
      "  - address: 10.0.0.2",
      "    port: 8080",
      "  - address: 10.0.0.2",
      "    port: 80",
    ),
  );
  assert.equal(where(issue), "9:9 services[0].reals[2]");
  assert.equal(issue.message, "duplicate real 10.0.0.2:80 (already listed as reals[0])");
});

Deno.test("all issues are reported together, in file order", () => {
  const text = [
    "timeouts: { tcp: 0 }", // 1
    "services:", // 2
    "  - name: web", // 3
    "    vip: 1.2.3.4", // 4
    "    port: 70000", // 5
    "    extra: true", // 6
    "  - name: web", // 7
    "    vip: 999.1.1.1", // 8
    "    port: 80", // 9
  ].join("\n");
  let error: unknown;
  try {
    parseConfig(text, "lab.yaml");
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(error.issues.map(where), [
    "1:18 timeouts.tcp",
    "5:11 services[0].port",
    "6:5 services[0].extra",
    "7:11 services[1].name",
    "8:10 services[1].vip",
  ]);
  const lines = error.message.split("\n");
  assert.equal(lines.length, 5);
  assert.equal(
    lines[0],
    "lab.yaml:1:18: timeouts.tcp: must be an integer between 1 and 2147483 (got 0)",
  );
  assert.ok(lines.every((l) => l.startsWith("lab.yaml:")));
  assert.equal(error.name, "ConfigError");
});

Deno.test("YAML syntax errors are reported at their own location", () => {
  const unclosed = onlyIssue("services:\n  - name: web\n    vip: [1, 2\n    port: 80\n");
  assert.equal(where(unclosed), "4:5 ");
  assert.match(unclosed.message, /Flow sequence .* end with a \]/);

  const tab = onlyIssue("services:\n\t- name: web\n");
  assert.equal(where(tab), "2:1 ");
  assert.match(tab.message, /Tabs are not allowed/);

  const stray = onlyIssue("services: [] ]\n");
  assert.equal(
    formatIssue(stray),
    'appliance.yaml:1:14: Unexpected flow-seq-end token in YAML stream: "]"',
  );

  const nested = onlyIssue("services: x: y\n");
  assert.equal(`${nested.line}:${nested.col}`, "1:11");
});

Deno.test("aliases: errors inside an anchor are reported; bad aliases are located", () => {
  const shared = issuesOf(
    [
      "services:",
      "  - name: a",
      "    vip: 10.0.0.1",
      "    port: 80",
      "    reals: &r",
      "      - { address: 10.0.0.2, weight: -1 }",
      "  - name: b",
      "    vip: 10.0.0.1",
      "    port: 81",
      "    reals: *r",
    ].join("\n"),
  );
  assert.deepEqual(shared.map(where), [
    "6:38 services[0].reals[0].weight",
    "6:38 services[1].reals[0].weight",
  ]);

  const unknown = onlyIssue("admin: {}\nservices: *nope\n");
  assert.equal(where(unknown), "2:11 ");
  assert.match(unknown.message, /unknown alias "\*nope"/);

  const bomb = [
    "a: &a [x, x, x, x, x, x, x, x, x, x]",
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
    "services: []",
  ].join("\n");
  const exhausted = onlyIssue(bomb);
  assert.equal(where(exhausted), "1:1 ");
  assert.match(exhausted.message, /cannot expand aliases: Excessive alias count/);
});

Deno.test("duplicate keys are an error at the repeated key", () => {
  const issue = onlyIssue("services: []\nadmin: {}\nadmin: { listen: 127.0.0.1:1 }\n");
  assert.equal(where(issue), "3:1 admin");
  assert.equal(issue.message, 'duplicate key "admin"; each key may appear only once');

  const nested = onlyIssue(withService("vip: 10.0.0.1", "port: 80", "port: 81"));
  assert.equal(where(nested), "5:5 services[0].port");
});

Deno.test("empty or non-mapping documents get a clear error at 1:1", () => {
  for (const text of ["", "\n\n", "# only a comment\n", "---\n", "~\n"]) {
    const issue = onlyIssue(text);
    assert.equal(where(issue), "1:1 ", JSON.stringify(text));
    assert.match(issue.message, /configuration is empty/);
  }
  const scalar = onlyIssue("hello\n");
  assert.equal(formatIssue(scalar), 'appliance.yaml:1:1: must be a mapping (got string "hello")');
});

Deno.test("formatIssue renders FILE:LINE:COL: PATH: MESSAGE", () => {
  const base = { file: "a.yaml", line: 12, col: 17, message: "boom" };
  assert.equal(
    formatIssue({ ...base, path: "services[0].port" }),
    "a.yaml:12:17: services[0].port: boom",
  );
  assert.equal(formatIssue({ ...base, path: "" }), "a.yaml:12:17: boom");
});

Deno.test("loadConfig: missing file is a ConfigError at 1:1 naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/nope.yaml`;
    await assert.rejects(loadConfig(missing), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.message, `${missing}:1:1: config file not found`);
      return true;
    });
    const bad = `${dir}/bad.yaml`;
    await Deno.writeTextFile(bad, "services:\n  - name: web\n");
    await assert.rejects(loadConfig(bad), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.issues.map(formatIssue), [
        `${bad}:2:5: services[0].vip: is required`,
        `${bad}:2:5: services[0].port: is required`,
      ]);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("thresholds and scheduler flags: parsed, defaulted, checked against each other", () => {
  const ok = parseConfig(
    [
      "services:",
      "  - name: web",
      "    vip: 192.168.1.31",
      "    port: 80",
      "    scheduler: sh",
      "    scheduler_flags: [sh-port, sh-fallback]",
      "    reals:",
      "      - { address: 10.10.10.11, upper_threshold: 1000, lower_threshold: 800 }",
      "      - { address: 10.10.10.12 }",
      "",
    ].join("\n"),
  ).services[0];
  assert.deepEqual(ok.schedulerFlags, ["sh-port", "sh-fallback"]);
  assert.deepEqual(
    ok.reals.map((r) => [r.upperThreshold, r.lowerThreshold]),
    [[1000, 800], [0, 0]],
  );
  const issues = issuesOf(
    [
      "services:",
      "  - name: web",
      "    vip: 192.168.1.31",
      "    port: 80",
      "    scheduler: wlc",
      "    scheduler_flags: [mh-port]",
      "    reals:",
      "      - { address: 10.10.10.11, upper_threshold: 10, lower_threshold: 20 }",
      "",
    ].join("\n"),
  );
  assert.deepEqual(issues.map(where), [
    "6:23 services[0].scheduler_flags[0]",
    "8:71 services[0].reals[0].lower_threshold",
  ]);
  assert.match(issues[0].message, /mh-port applies to the mh scheduler only/);
  assert.equal(issues[1].message, "must not exceed upper_threshold (20 > 10)");
});

Deno.test("persistence: timeout and netmask, with ipvsadm's defaults", () => {
  const full = parseConfig(
    withService(
      "vip: 192.168.1.31",
      "port: 80",
      "persistence: { timeout: 360, netmask: 255.255.255.0 }",
    ),
  ).services[0];
  assert.deepEqual(full.persistence, { timeout: 360, netmask: "255.255.255.0" });
  const defaults = parseConfig(withService("vip: 192.168.1.31", "port: 80", "persistence: {}"));
  assert.deepEqual(defaults.services[0].persistence, { timeout: 300, netmask: "255.255.255.255" });
  const none = parseConfig(withService("vip: 192.168.1.31", "port: 80")).services[0];
  assert.equal("persistence" in none, false);

  const seed = parseConfig(
    withService(
      "vip: 192.168.1.31",
      "port: 80",
      "persistence: { timeout: 10, netmask: 255.0.0.0 }",
    ),
  );
  assert.deepEqual(compileDataplaneSpec(seed).services[0].persistence, {
    timeoutMs: 10_000,
    netmask: 0xff000000,
  });
  assert.equal(compileDataplaneSpec(defaults).services[0].persistence?.netmask, 0xffffffff);
});

Deno.test("persistence: bad timeouts, netmasks and keys are located", () => {
  const cases: [string, string, RegExp][] = [
    ["persistence: { timeout: 0 }", "5:29 services[0].persistence.timeout", /between 1 and/],
    ["persistence: { netmask: 255.0.255.0 }", "5:29 services[0].persistence.netmask", /one bits/],
    [
      "persistence: { netmask: 255.255.255.256 }",
      "5:29 services[0].persistence.netmask",
      /is not a netmask: part 256 is greater than 255/,
    ],
    ["persistence: { timout: 10 }", "5:20 services[0].persistence.timout", /timeout, netmask/],
    ["persistence:", "5:5 services[0].persistence", /write \{\} or remove the key/],
  ];
  for (const [line, at, message] of cases) {
    const issue = onlyIssue(withService("vip: 10.0.0.1", "port: 80", line));
    assert.equal(where(issue), at, line);
    assert.match(issue.message, message, line);
  }
  // /0 groups every client into one template: odd, but a netmask.
  const all = parseConfig(
    withService("vip: 10.0.0.1", "port: 80", "persistence: { netmask: 0.0.0.0 }"),
  );
  assert.equal(all.services[0].persistence?.netmask, "0.0.0.0");
});

Deno.test("ports: a port group of ports and ranges; reals without a port follow the client", () => {
  const cfg = parseConfig(
    withService(
      "vip: 192.168.0.220",
      'ports: [80, 443, "8000-8099", " 9000 - 9001 "]',
      "persistence: { timeout: 3000 }",
      "reals:",
      "  - { address: 192.168.0.10 }",
      "  - { address: 192.168.0.20, port: 8443 }",
    ),
  );
  const svc = cfg.services[0];
  assert.equal(svc.port, 0);
  assert.deepEqual(svc.ports, [[80, 80], [443, 443], [8000, 8099], [9000, 9001]]);
  assert.deepEqual(svc.reals.map((r) => r.port), [0, 8443]);
  assert.deepEqual(realReplyPorts(svc, svc.reals[0].port), svc.ports);
  assert.deepEqual(realReplyPorts(svc, svc.reals[1].port), [[8443, 8443]]);

  const spec = compileDataplaneSpec(cfg).services[0];
  assert.equal(spec.port, 0);
  assert.deepEqual(spec.ports, [[80, 80], [443, 443], [8000, 8099], [9000, 9001]]);
  assert.deepEqual(spec.reals.map((r) => r.port), [0, 8443]);
  // A plain service names no group, and its reals answer from their own port.
  const plain = parseConfig(
    withService("vip: 10.0.0.1", "port: 80", "reals: [{ address: 10.0.0.2 }]"),
  );
  assert.equal("ports" in compileDataplaneSpec(plain).services[0], false);
  assert.deepEqual(realReplyPorts(plain.services[0], plain.services[0].reals[0].port), [[80, 80]]);
});

Deno.test("ports: bad items, overlaps in the list, and port with ports are errors", () => {
  const cases: [string[], string, RegExp][] = [
    [
      ['ports: [80, "8099-8000"]'],
      "4:17 services[0].ports[1]",
      /runs backwards; write "8000-8099"/,
    ],
    [['ports: ["1-70000"]'], "4:13 services[0].ports[0]", /between 1 and 65535/],
    [['ports: ["443"]'], "4:13 services[0].ports[0]", /range such as .*remove the quotes/],
    [["ports: [0]"], "4:13 services[0].ports[0]", /between 1 and 65535 \(got 0\)/],
    [["ports: [http]"], "4:13 services[0].ports[0]", /got string "http"/],
    [["ports: []"], "4:12 services[0].ports", /at least one port/],
    [['ports: [80, "70-90"]'], "4:17 services[0].ports[1]", /70-90 overlaps 80 earlier/],
    [["port: 80", "ports: [443]"], "5:12 services[0].ports", /either port or ports/],
  ];
  for (const [lines, at, message] of cases) {
    const issue = onlyIssue(withService("vip: 10.0.0.1", ...lines));
    assert.equal(where(issue), at, lines.join(" "));
    assert.match(issue.message, message, lines.join(" "));
  }
  const neither = onlyIssue(withService("vip: 10.0.0.1"));
  assert.equal(where(neither), "2:5 services[0].port");
  assert.equal(neither.message, "is required");
});

Deno.test("ports: services on one VIP and protocol must not share a port", () => {
  const issues = issuesOf(
    [
      "services:",
      "  - { name: a, vip: 10.0.0.1, port: 443 }",
      '  - { name: b, vip: 10.0.0.1, ports: [80, 443, "8000-8099"] }',
      '  - { name: c, vip: 10.0.0.1, ports: ["8050-8060"] }',
      "  - { name: d, vip: 10.0.0.1, port: 80 }",
      // Another protocol, another VIP, or port 0 overlap nothing.
      '  - { name: e, vip: 10.0.0.1, protocol: udp, ports: [80, "8000-8099"] }',
      '  - { name: f, vip: 10.0.0.2, ports: [80, "8000-8099"] }',
      "  - { name: g, vip: 10.0.0.1, port: 0, persistence: {} }",
    ].join("\n"),
  );
  assert.deepEqual(issues.map(where), [
    "3:43 services[1].ports[1]",
    "4:39 services[2].ports[0]",
    "5:37 services[3].port",
  ]);
  assert.equal(issues[0].message, "443 overlaps services[0] (tcp 10.0.0.1 port 443)");
  assert.equal(issues[1].message, "8050-8060 overlaps services[1] (tcp 10.0.0.1 ports 8000-8099)");
  assert.equal(
    issues[2].message,
    "port 80 is already served by services[1] (tcp 10.0.0.1 port 80)",
  );
});

Deno.test("port 0 (any port) needs persistence; its reals take the client's port", () => {
  const issue = onlyIssue(withService("vip: 10.0.0.1", "port: 0"));
  assert.equal(where(issue), "4:11 services[0].port");
  assert.equal(issue.message, "0 (any port) needs persistence, as ipvsadm requires");
  const bad = onlyIssue(withService("vip: 10.0.0.1", "port: -1"));
  assert.match(bad.message, /between 1 and 65535 \(got -1\); or 0 \(any port\) with persistence/);

  const cfg = parseConfig(
    withService("vip: 10.0.0.1", "port: 0", "persistence: {}", "reals: [{ address: 10.0.0.2 }]"),
  );
  const svc = cfg.services[0];
  assert.equal(svc.port, 0);
  assert.equal("ports" in svc, false);
  assert.equal(svc.reals[0].port, 0);
  assert.deepEqual(realReplyPorts(svc, svc.reals[0].port), [[1, 65535]]);
  // Two port-0 services on one VIP and protocol are one too many.
  const twice = issuesOf(
    [
      "services:",
      "  - { name: a, vip: 10.0.0.1, port: 0, persistence: {} }",
      "  - { name: b, vip: 10.0.0.1, port: 0, persistence: {} }",
    ].join("\n"),
  );
  assert.deepEqual(twice.map((i) => i.message), [
    "duplicate service tcp 10.0.0.1:0 (already defined by services[0])",
  ]);
  // Reals of a port group without a port are duplicates when their address repeats.
  const dup = onlyIssue(
    withService(
      "vip: 10.0.0.1",
      "ports: [80]",
      "reals: [{ address: 10.0.0.2 }, { address: 10.0.0.2 }]",
    ),
  );
  assert.equal(dup.message, "duplicate real 10.0.0.2 (no port) (already listed as reals[0])");
});

Deno.test("one_packet: UDP only, compiled to onePacket", () => {
  const cfg = parseConfig(
    withService("vip: 10.0.0.1", "port: 53", "protocol: udp", "one_packet: true"),
  );
  assert.equal(cfg.services[0].onePacket, true);
  assert.equal(compileDataplaneSpec(cfg).services[0].onePacket, true);
  const off = parseConfig(
    withService("vip: 10.0.0.1", "port: 53", "protocol: udp", "one_packet: false"),
  );
  assert.equal("onePacket" in off.services[0], false);
  assert.equal("onePacket" in compileDataplaneSpec(off).services[0], false);

  const tcp = onlyIssue(withService("vip: 10.0.0.1", "port: 80", "one_packet: true"));
  assert.equal(where(tcp), "5:17 services[0].one_packet");
  assert.equal(tcp.message, 'applies to UDP services only (this one is "tcp")');
  const word = onlyIssue(
    withService("vip: 10.0.0.1", "port: 53", "protocol: udp", "one_packet: yes"),
  );
  assert.equal(where(word), "6:17 services[0].one_packet");
  assert.equal(word.message, 'must be true or false (got string "yes")');
});

Deno.test("a fullnat service may have no local address yet (DPVS adds the reals first)", () => {
  const config = parseConfig(withService(
    "vip: 172.16.0.1",
    "port: 80",
    "forward: fullnat",
    "reals: [{ address: 10.0.4.2, port: 8080 }]",
  ));
  assert.deepEqual(config.services[0].localAddresses, []);
  // It compiles to the dataplane, which drops its new connections (no_local_port).
  assert.deepEqual(compileDataplaneSpec(config).services[0].localAddresses, []);
});

Deno.test("dataplane.workers: 1..16, absent means one per core with steering, else one", () => {
  assert.equal(parseConfig("services: []\n").dataplane.workers, undefined);
  const cores = Math.min(MAX_WORKERS, navigator.hardwareConcurrency);
  assert.equal(dataplaneWorkers(parseConfig("services: []\n")), steeringSupported() ? cores : 1);
  assert.equal(
    dataplaneWorkers(parseConfig(`dataplane: { workers: ${MAX_WORKERS} }\nservices: []\n`)),
    MAX_WORKERS,
  );
  assert.equal(parseConfig("dataplane: { workers: 2 }\nservices: []\n").dataplane.workers, 2);
  assert.equal(dataplaneWorkers(parseConfig("dataplane: { workers: 3 }\nservices: []\n")), 3);
  for (const bad of ["0", "17", "1.5", "two"]) {
    const issue = onlyIssue(`dataplane:\n  workers: ${bad}\nservices: []\n`);
    assert.equal(where(issue), "2:12 dataplane.workers");
  }
});
