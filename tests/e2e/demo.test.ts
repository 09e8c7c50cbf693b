/**
 * The README's first command: the demo builds seed 000, forwards real
 * requests through tunvs and cleans up after itself.
 */
import assert from "node:assert/strict";
import { listNamespaces } from "../../lab/netns.ts";
import { needsRoot } from "./root.ts";

Deno.test({
  name: "demo --once: requests alternate between web01 and web02, nothing is left behind",
  ignore: needsRoot("the demo test"),
}, async () => {
  const before = await listNamespaces();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../lab/demo.ts", import.meta.url).pathname,
      "--once",
      "--requests",
      "4",
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `${stdout}\n${new TextDecoder().decode(out.stderr)}`);
  const answers = [...stdout.matchAll(/^request \d+ → (web0[12]) /gm)].map((m) => m[1]);
  assert.equal(answers.length, 4, stdout);
  for (let i = 1; i < answers.length; i++) assert.notEqual(answers[i], answers[i - 1], stdout);
  assert.deepEqual(await listNamespaces(), before);
});
