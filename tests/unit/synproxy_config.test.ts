/**
 * The SYN proxy's configuration: the global `synproxy:` block and `services[].synproxy`, their
 * checks with file:line:col, and what reaches the dataplane.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConfigError, type ConfigIssue, formatIssue, parseConfig } from "../../control/config.ts";
import { compileDataplaneSpec } from "../../control/dataplane_spec.ts";
import { Engine } from "../../dataplane/engine.ts";

function issuesOf(text: string): ConfigIssue[] {
  try {
    parseConfig(text, "appliance.yaml");
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  assert.fail("expected a ConfigError");
}

function config(global: string[], service: string[]): string {
  return [
    ...global,
    "services:",
    "  - name: web",
    "    vip: 192.168.1.31",
    "    port: 80",
    ...service.map((l) => `    ${l}`),
    "    reals:",
    "      - { address: 10.10.10.11, port: 80 }",
  ].join("\n") + "\n";
}

Deno.test("synproxy: true with the global knobs reaches the dataplane spec", () => {
  const parsed = parseConfig(
    config(["synproxy:", "  mss: 1400", "  key_rotation: 30"], ["synproxy: true"]),
  );
  assert.deepEqual(parsed.synproxy, { mss: 1400, keyRotation: 30 });
  assert.equal(parsed.services[0].synproxy, true);
  const spec = compileDataplaneSpec(parsed);
  assert.deepEqual(spec.synproxy, { mss: 1400, keyRotationSeconds: 30 });
  assert.equal(spec.services[0].synproxy, true);
  // The engine takes it: a SYN proxy announcing 1400.
  const engine = new Engine(spec);
  assert.equal(engine.synproxy.mss, 1400);
  assert.equal(engine.synproxy.cookies.periodSeconds, 30);
  assert.equal(engine.services.services[0].synproxy, true);
});

Deno.test("synproxy: defaults, and nothing in the model when the file says nothing", () => {
  const plain = parseConfig(config([], []));
  assert.equal("synproxy" in plain, false);
  assert.equal("synproxy" in plain.services[0], false);
  assert.equal("synproxy" in compileDataplaneSpec(plain), false);
  const defaults = parseConfig(
    config(["synproxy: {}"], ["synproxy: true", "forward: fullnat", "local_addresses: [10.0.3.1]"]),
  );
  assert.deepEqual(defaults.synproxy, { mss: 1460, keyRotation: 60 });
  const engine = new Engine(compileDataplaneSpec(plain));
  assert.equal(engine.synproxy.mss, 1460);
  assert.equal(engine.synproxy.cookies.periodSeconds, 60);
});

Deno.test("synproxy with dr or tunnel is refused, saying why", () => {
  for (const forward of ["dr", "tunnel"]) {
    const issues = issuesOf(config([], [`forward: ${forward}`, "synproxy: true"]));
    const lines = issues.map(formatIssue);
    const mine = lines.filter((l) => l.includes("synproxy"));
    assert.equal(mine.length, 1, lines.join("\n"));
    assert.match(
      mine[0],
      new RegExp(
        `^appliance\\.yaml:6:15: services\\[0\\]\\.synproxy: synproxy needs forward: nat or ` +
          `fullnat; with ${forward} the real's replies go to the client without passing the ` +
          "director, which therefore cannot translate their sequence numbers",
      ),
    );
  }
});

Deno.test("synproxy on UDP, bad knobs and unknown keys are refused", () => {
  const udp = issuesOf(config([], ["protocol: udp", "synproxy: true"])).map(formatIssue);
  assert.deepEqual(udp, [
    "appliance.yaml:6:15: services[0].synproxy: synproxy applies to protocol: tcp only " +
    "(UDP has no handshake)",
  ]);
  const knobs = issuesOf(
    config(["synproxy:", "  mss: 100", "  key_rotation: 0", "  window: 7"], ["synproxy: yes"]),
  ).map(formatIssue);
  assert.deepEqual(knobs, [
    "appliance.yaml:2:8: synproxy.mss: must be an integer between 536 and 8960 (got 100)",
    "appliance.yaml:3:17: synproxy.key_rotation: must be an integer between 1 and 86400 (got 0)",
    'appliance.yaml:4:3: synproxy.window: unknown key "window"; allowed keys: mss, key_rotation',
    'appliance.yaml:9:15: services[0].synproxy: must be true or false (got string "yes")',
  ]);
});
