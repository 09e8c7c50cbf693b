/**
 * RunningConfig and the YAML merge under it: comments and layout survive edits, services and
 * reals are matched by identity, a failed write rolls the dataplane back.
 *
 * @module
 */
import assert from "node:assert/strict";
import { mergeIntoDocument, parseConfigDocument } from "../../control/config_document.ts";
import type { ApplianceConfig } from "../../control/config.ts";
import { RunningConfig, WriteBackFailed } from "../../control/running_config.ts";

const TEXT = `# three services
services:
  - name: a # first
    vip: 10.0.0.1
    port: 80
    reals: [ { address: 10.1.0.1 } ]
  # the middle one goes
  - name: b
    vip: 10.0.0.2
    port: 80
    reals: [ { address: 10.1.0.2 } ]
  - name: c # keeps its comment when b goes
    vip: 10.0.0.3
    port: 80
    reals:
      - address: 10.1.0.3 # c's real
        weight: 2
`;

Deno.test("config document: prints back byte for byte, including comments after `key:`", () => {
  const text = Deno.readTextFileSync(new URL("../../appliance.yaml", import.meta.url));
  assert.equal(parseConfigDocument(text).toString(), text);
  assert.equal(parseConfigDocument(TEXT).toString(), TEXT);
});

Deno.test("config document: deleting a service keeps the next one's node and comments", () => {
  const doc = parseConfigDocument(TEXT);
  const raw = doc.toJS();
  raw.services.splice(1, 1);
  raw.services[1].reals[0].weight = 3;
  raw.services[1].reals.push({ address: "10.1.0.4" });
  mergeIntoDocument(doc, raw);
  assert.equal(
    doc.toString(),
    `# three services
services:
  - name: a # first
    vip: 10.0.0.1
    port: 80
    reals: [ { address: 10.1.0.1 } ]
  - name: c # keeps its comment when b goes
    vip: 10.0.0.3
    port: 80
    reals:
      - address: 10.1.0.3 # c's real
        weight: 3
      - address: 10.1.0.4
`,
  );
});

Deno.test("config document: a new real in a flow-style list is written in flow style", () => {
  const doc = parseConfigDocument(TEXT);
  const raw = doc.toJS();
  raw.services[0].reals.push({ address: "10.1.0.9", port: 8080 });
  delete raw.services[0].port;
  mergeIntoDocument(doc, raw);
  assert.ok(
    doc.toString().includes(
      "- name: a # first\n    vip: 10.0.0.1\n" +
        "    reals: [ { address: 10.1.0.1 }, { address: 10.1.0.9, port: 8080 } ]\n",
    ),
    doc.toString(),
  );
});

Deno.test("running config: a failed write-back re-applies the old configuration and changes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-rc-" });
  const path = `${dir}/appliance.yaml`;
  await Deno.writeTextFile(path, TEXT);
  const running = await RunningConfig.load(path);
  const version = running.version;
  const applied: string[][] = [];
  const apply = (next: ApplianceConfig) => {
    applied.push(next.services.map((s) => s.name));
    return Promise.resolve(null);
  };
  // The directory is gone: the temporary file cannot be created.
  await Deno.remove(dir, { recursive: true });
  await assert.rejects(
    running.change(null, (raw) => {
      (raw.services as unknown[]).pop();
      return raw;
    }, apply),
    WriteBackFailed,
  );
  assert.deepEqual(applied, [["a", "b"], ["a", "b", "c"]], "applied, then rolled back");
  assert.equal(running.version, version);
  assert.deepEqual(running.config.services.map((s) => s.name), ["a", "b", "c"]);
});

Deno.test("running config: changes are serialized, each based on the one before", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-rc-" });
  try {
    const path = `${dir}/appliance.yaml`;
    await Deno.writeTextFile(path, TEXT);
    const running = await RunningConfig.load(path);
    const first = running.version;
    const slowApply = () => new Promise<null>((r) => setTimeout(() => r(null), 20));
    const weights = [5, 6, 7];
    const outcomes = await Promise.allSettled(weights.map((w) =>
      running.change(first, (raw) => {
        (raw.services as { reals: { weight?: number }[] }[])[2].reals[0].weight = w;
        return raw;
      }, slowApply)
    ));
    assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "rejected", "rejected"]);
    assert.equal(running.config.services[2].reals[0].weight, 5);
    assert.match(await Deno.readTextFile(path), /weight: 5/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config document: an empty `services: []` grows in block style", () => {
  const doc = parseConfigDocument("# rules come from ipvsadm\nservices: []\n");
  mergeIntoDocument(doc, { services: [{ name: "a", vip: "10.0.0.1", port: 80, reals: [] }] });
  assert.equal(
    doc.toString(),
    "# rules come from ipvsadm\nservices:\n  - name: a\n    vip: 10.0.0.1\n    port: 80\n    reals: []\n",
  );
});
