/**
 * Firewall-mark services in appliance.yaml: `fwmark: N` instead of vip/port, checked as
 * IPVS and ipvsadm would (a mark from 1 to 2^32-1, once per appliance), compiled for the
 * dataplane, and planned on the host (VIPs from `vips`, reply rules for TCP and UDP).
 *
 * @module
 */
import assert from "node:assert/strict";
import { ConfigError, type ConfigIssue, formatIssue, parseConfig } from "../../control/config.ts";
import { compileDataplaneSpec } from "../../control/dataplane_spec.ts";
import { markDeviceName } from "../../control/mark_devices.ts";
import { hostPlan } from "../../control/reload.ts";
import { ServiceTable } from "../../dataplane/service.ts";

/** The issues `text` has, formatted "line:col path: message" without the file. */
function issues(text: string): string[] {
  try {
    parseConfig(text, "f.yaml");
  } catch (e) {
    if (e instanceof ConfigError) {
      return e.issues.map((i: ConfigIssue) => formatIssue(i).replace(/^f\.yaml:/, ""));
    }
    throw e;
  }
  assert.fail("expected a ConfigError");
}

const SEED_002 = `dataplane: { tun: tunvs0 }
services:
  - name: fwmark-6666
    fwmark: 6666
    vips: [192.168.0.220]
    scheduler: rr
    persistence: { timeout: 3000 }
    forward: dr
    reals:
      - { address: 192.168.0.10 }
      - { address: 192.168.0.20 }
  - name: nat-mark
    fwmark: 7
    forward: nat
    reals:
      - { address: 10.0.0.5 }
      - { address: 10.0.0.6, port: 8080 }
`;

Deno.test("fwmark config: seed 002's service parses, compiles and plans", () => {
  const config = parseConfig(SEED_002);
  const [svc, nat] = config.services;
  assert.equal(svc.fwmark, 6666);
  assert.deepEqual(svc.vips, ["192.168.0.220"]);
  assert.equal(svc.port, 0);
  // Reals without a port take the port the client asked for.
  assert.deepEqual(svc.reals.map((r) => r.port), [0, 0]);
  assert.deepEqual(nat.vips, []);

  const spec = compileDataplaneSpec(config);
  assert.deepEqual(
    spec.services.map((s) => [s.fwmark, s.protocol, s.vip, s.port, s.vips]),
    [[6666, 0, 0, 0, [0xc0a800dc]], [7, 0, 0, 0, []]],
  );
  const table = new ServiceTable(spec.services);
  assert.deepEqual([table.matchMark(6666), table.matchMark(7), table.matchMark(8)], [0, 1, -1]);

  const plan = hostPlan(config, [{ mark: 6666, tun: "tunvs0m6666", table: 30400 }]);
  assert.deepEqual(plan.vips, ["192.168.0.220"]);
  assert.deepEqual(plan.markTuns, [{ mark: 6666, tun: "tunvs0m6666", table: 30400 }]);
  // A NAT mark service's replies may be TCP or UDP: a rule for each, on the real's port or all.
  assert.deepEqual(plan.natReals, [
    { address: "10.0.0.5", ports: [[1, 65535]], protocol: "tcp" },
    { address: "10.0.0.5", ports: [[1, 65535]], protocol: "udp" },
    { address: "10.0.0.6", ports: [[8080, 8080]], protocol: "tcp" },
    { address: "10.0.0.6", ports: [[8080, 8080]], protocol: "udp" },
  ]);
});

Deno.test("fwmark config: exactly one of vip and fwmark; no port, protocol or TCP-only keys", () => {
  const both = issues(
    "services:\n  - { name: a, fwmark: 1, vip: 10.0.0.1, port: 80, protocol: udp }\n",
  );
  assert.deepEqual(both, [
    "2:27: services[0].vip: a firewall-mark service has no vip: name the VIPs the mark rule " +
    "matches in vips: [...] instead",
    "2:42: services[0].port: a firewall-mark service has no port: the mark rule chooses the ports",
    "2:52: services[0].protocol: a firewall-mark service has no protocol: the service takes " +
    "every marked packet, TCP and UDP alike",
  ]);
  assert.deepEqual(issues("services:\n  - { name: a, port: 80 }\n"), [
    "2:5: services[0].vip: is required",
  ]);
  assert.match(
    issues("services:\n  - { name: a, vip: 10.0.0.1, port: 80, vips: [10.0.0.2] }\n").join(),
    /services\[0\]\.vips: vips apply to firewall-mark services \(fwmark\) only/,
  );
  assert.match(
    issues(
      "local_addresses: [10.0.0.9]\nservices:\n  - { name: a, fwmark: 1, vips: [10.0.0.9] }\n",
    ).join(),
    /local_addresses\[0\]: 10\.0\.0\.9 is a VIP; local addresses must differ/,
  );
  assert.match(
    issues("services:\n  - { name: a, fwmark: 1, synproxy: true }\n").join(),
    /services\[0\]\.synproxy: a firewall-mark service has no synproxy/,
  );
});

Deno.test("fwmark config: marks from 1 to 2^32-1, each used once; DR reals keep the port", () => {
  assert.match(issues("services:\n  - { name: a, fwmark: 0 }\n").join(), /services\[0\]\.fwmark: /);
  assert.match(
    issues("services:\n  - { name: a, fwmark: 4294967296 }\n").join(),
    /services\[0\]\.fwmark: /,
  );
  assert.equal(
    parseConfig("services:\n  - { name: a, fwmark: 4294967295 }\n").services[0].fwmark,
    4294967295,
  );
  assert.match(
    issues("services:\n  - { name: a, fwmark: 5 }\n  - { name: b, fwmark: 5 }\n").join(),
    /services\[1\]\.fwmark: duplicate firewall mark 5 \(already used by services\[0\]\)/,
  );
  assert.match(
    issues(
      "services:\n  - name: a\n    fwmark: 5\n    forward: dr\n    reals: [{ address: 10.0.0.5, port: 80 }]\n",
    ).join(),
    /reals\[0\]\.port: a dr real serves the port the client asked for; remove port/,
  );
});

Deno.test("fwmark devices: named after the main TUN and the mark, within 15 bytes", () => {
  assert.equal(markDeviceName("tunvs0", 6666), "tunvs0m6666");
  assert.equal(markDeviceName("tunvs0", 4294967295), "tunvm4294967295");
  assert.equal(markDeviceName("a-very-long-tun", 1), "a-very-long-tm1");
  for (const n of [markDeviceName("tunvs0", 4294967295), markDeviceName("a-very-long-tun", 1)]) {
    assert.ok(n.length <= 15);
  }
});
