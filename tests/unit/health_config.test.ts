import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../control/config.ts";

function service(
  extra: string,
  reals = "    reals:\n      - { address: 10.10.10.11, port: 80 }\n",
): string {
  return `services:\n  - name: web\n    vip: 10.10.10.1\n    port: 80\n${extra}${reals}`;
}

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, "a.yaml");
  } catch (e) {
    if (e instanceof ConfigError) return e.message.split("\n");
    throw e;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("health config: keepalived's defaults fill an almost empty block", () => {
  const cfg = parseConfig(service("    health_check: { type: tcp }\n"));
  const expected = {
    type: "tcp",
    interval: 60,
    timeout: 5,
    retry: 1,
    delayBeforeRetry: 1,
    rise: 1,
    fall: 1,
    alpha: false,
  };
  assert.deepEqual(cfg.services[0].healthCheck, expected);
  assert.deepEqual(cfg.services[0].reals[0].healthCheck, expected);
  const exec = parseConfig(
    service("    health_check: { type: exec, exec: { command: /bin/true } }\n"),
  );
  assert.equal(exec.services[0].healthCheck?.retry, 0, "MISC_CHECK does not retry by default");
  assert.deepEqual(exec.services[0].healthCheck?.exec, { command: ["/bin/true"], dynamic: false });
});

Deno.test("health config: the issue's example parses with every field", () => {
  const cfg = parseConfig(service(
    `    health_check:
      type: http
      interval: 6
      timeout: 3
      retry: 3
      delay_before_retry: 3
      rise: 2
      fall: 3
      alpha: true
      http: { path: /health, status: [200, 204], digest: 9A0364B9E99BB480DD25E1F0284C8555, host: www.example.com, method: HEAD, substring: ok }
    inhibit_on_failure: true
    sorry_server: { address: 10.10.10.99, port: 8080 }
    quorum: 2
    hysteresis: 1
`,
  ));
  const svc = cfg.services[0];
  assert.deepEqual(svc.healthCheck, {
    type: "http",
    interval: 6,
    timeout: 3,
    retry: 3,
    delayBeforeRetry: 3,
    rise: 2,
    fall: 3,
    alpha: true,
    http: {
      method: "HEAD",
      path: "/health",
      status: [200, 204],
      digest: "9a0364b9e99bb480dd25e1f0284c8555",
      substring: "ok",
      host: "www.example.com",
    },
  });
  assert.equal(svc.inhibitOnFailure, true);
  assert.deepEqual(svc.sorryServer, { address: "10.10.10.99", port: 8080 });
  assert.equal(svc.quorum, 2);
  assert.equal(svc.hysteresis, 1);
});

Deno.test("health config: a real's block overrides its service's key by key", () => {
  const cfg = parseConfig(service(
    "    health_check: { type: http, interval: 2, http: { path: /a, status: [200] } }\n",
    `    reals:
      - { address: 10.10.10.11, port: 80 }
      - address: 10.10.10.12
        port: 80
        health_check: { fall: 3, port: 8080, http: { path: /b } }
      - address: 10.10.10.13
        health_check: { type: udp, udp: { payload: ping, expect: pong } }
`,
  ));
  const [a, b, c] = cfg.services[0].reals;
  assert.equal(a.healthCheck?.http?.path, "/a");
  assert.equal(b.healthCheck?.http?.path, "/b");
  assert.deepEqual(b.healthCheck?.http?.status, [200]);
  assert.equal(b.healthCheck?.interval, 2);
  assert.equal(b.healthCheck?.fall, 3);
  assert.equal(b.healthCheck?.port, 8080);
  assert.equal(c.healthCheck?.type, "udp");
  assert.deepEqual(c.healthCheck?.udp, { payload: "ping", expect: "pong" });
  assert.equal(c.healthCheck?.http, undefined);
  assert.equal(c.healthCheck?.interval, 2);
});

Deno.test("health config: no block, no check; sorry_server's port follows the service", () => {
  const cfg = parseConfig(service("    sorry_server: { address: 10.10.10.99 }\n"));
  const svc = cfg.services[0];
  assert.equal(svc.healthCheck, undefined);
  assert.equal(svc.reals[0].healthCheck, undefined);
  assert.deepEqual(svc.sorryServer, { address: "10.10.10.99", port: 80 });
  assert.equal(svc.inhibitOnFailure, undefined);
});

Deno.test("health config: problems are reported with file:line:col and path", () => {
  assert.deepEqual(
    issuesOf(service("    health_check: { type: ping, rise: 0 }\n")),
    [
      "a.yaml:5:27: services[0].health_check.type: must be one of: tcp, http, https, udp, exec, none " +
      '(got "ping")',
      "a.yaml:5:39: services[0].health_check.rise: must be an integer between 1 and 100 (got 0)",
    ],
  );
  assert.deepEqual(issuesOf(service("    health_check: { interval: 0, probe: 1 }\n")), [
    "a.yaml:5:19: services[0].health_check.type: is required (tcp, http, https, udp, exec or none)",
    "a.yaml:5:31: services[0].health_check.interval: must be a number of seconds from 0.1 to 86400 (got 0)",
    'a.yaml:5:34: services[0].health_check.probe: unknown key "probe"; allowed keys: type, interval, ' +
    "timeout, retry, delay_before_retry, rise, fall, alpha, port, http, udp, exec",
  ]);
  assert.deepEqual(
    issuesOf(service("    health_check: { type: tcp, http: { digest: abc } }\n")),
    [
      "a.yaml:5:38: services[0].health_check.http: applies to type http or https only (this check is " +
      '"tcp")',
      "a.yaml:5:48: services[0].health_check.http.digest: must be an MD5 digest: 32 hex digits, " +
      "as keepalived's genhash prints",
    ],
  );
  assert.deepEqual(issuesOf(service("    health_check: { type: exec }\n")), [
    "a.yaml:5:19: services[0].health_check.exec: type exec needs exec.command",
  ]);
  assert.deepEqual(
    issuesOf(service(
      "",
      "    reals:\n      - { address: 10.10.10.11, health_check: { rise: 2 } }\n",
    )),
    [
      "a.yaml:6:47: services[0].reals[0].health_check.type: is required (tcp, http, https, udp, " +
      "exec or none)",
    ],
  );
  assert.deepEqual(
    issuesOf(service("    sorry_server: { address: 127.0.0.1 }\n    quorum: 0\n")),
    [
      "a.yaml:5:30: services[0].sorry_server.address: must be a unicast IPv4 address, but " +
      "127.0.0.0/8 is loopback",
      "a.yaml:6:13: services[0].quorum: must be an integer between 1 and 4294967295 (got 0)",
    ],
  );
});

Deno.test("health config: keepalived's per-checker defaults (HTTP retry delay, 2xx, misc_timeout)", () => {
  const http = parseConfig(service("    health_check: { type: http, interval: 10 }\n"));
  const check = http.services[0].healthCheck!;
  assert.equal(check.delayBeforeRetry, 3, "HTTP_GET/SSL_GET wait 3 s before a retry");
  assert.equal(check.timeout, 5);
  assert.equal(check.http?.status.length, 100);
  assert.equal(check.http?.status[0], 200);
  assert.equal(check.http?.status[99], 299);
  const exec = parseConfig(
    service("    health_check: { type: exec, interval: 10, exec: { command: /bin/true } }\n"),
  );
  assert.equal(exec.services[0].healthCheck?.timeout, 10, "misc_timeout defaults to delay_loop");
  assert.equal(exec.services[0].healthCheck?.delayBeforeRetry, 1);
});

Deno.test("health config: expire_on_failure, per-real inhibit_on_failure, notify commands", () => {
  const cfg = parseConfig(service(
    `    health_check: { type: tcp }
    inhibit_on_failure: true
    expire_on_failure: true
    notify_up: /usr/local/bin/rs-up --quiet
    notify_down: [/bin/sh, -c, "logger down $TUNVS_REAL"]
`,
    `    reals:
      - { address: 10.10.10.11, port: 80 }
      - address: 10.10.10.12
        port: 80
        inhibit_on_failure: false
        notify_down: "  /usr/local/bin/page   ops  "
`,
  ));
  const svc = cfg.services[0];
  assert.equal(svc.expireOnFailure, true);
  const [a, b] = svc.reals;
  assert.equal(a.inhibitOnFailure, undefined, "the service's setting applies");
  assert.equal(b.inhibitOnFailure, false);
  assert.deepEqual(a.notifyUp, ["/usr/local/bin/rs-up", "--quiet"]);
  assert.deepEqual(a.notifyDown, ["/bin/sh", "-c", "logger down $TUNVS_REAL"]);
  assert.deepEqual(b.notifyUp, ["/usr/local/bin/rs-up", "--quiet"]);
  assert.deepEqual(b.notifyDown, ["/usr/local/bin/page", "ops"]);
  const plain = parseConfig(service(""));
  assert.equal(plain.services[0].expireOnFailure, undefined);
  assert.equal(plain.services[0].reals[0].notifyUp, undefined);
});

Deno.test("health config: bad notify commands, DR sorry ports and unprobeable reals are reported", () => {
  assert.deepEqual(
    issuesOf(service('    notify_up: "  "\n    notify_down: []\n    expire_on_failure: 1\n')),
    [
      "a.yaml:5:16: services[0].notify_up: must not be empty",
      "a.yaml:6:18: services[0].notify_down: must list the program and its arguments",
      "a.yaml:7:24: services[0].expire_on_failure: must be true or false (got 1)",
    ],
  );
  assert.deepEqual(
    issuesOf(service("    forward: dr\n    sorry_server: { address: 10.10.10.99, port: 8080 }\n")),
    [
      "a.yaml:6:49: services[0].sorry_server.port: a dr sorry server serves the service's port " +
      "80, unchanged (got 8080); remove port",
    ],
  );
  const group = (check: string) =>
    `services:\n  - name: web\n    vip: 10.10.10.1\n    ports: [80, 443]\n${check}` +
    "    reals:\n      - { address: 10.10.10.11 }\n";
  assert.deepEqual(issuesOf(group("    health_check: { type: tcp }\n")), [
    "a.yaml:7:9: services[0].reals[0]: a real without a port needs health_check.port: the port " +
    "a tcp check probes",
  ]);
  const probed = parseConfig(group("    health_check: { type: tcp, port: 80 }\n"), "a.yaml");
  assert.equal(probed.services[0].reals[0].healthCheck?.port, 80);
  parseConfig(group("    health_check: { type: exec, exec: { command: /bin/true } }\n"), "a.yaml");
});
