/**
 * The command line as an operator meets it: check, run on a bad file,
 * version, usage errors, and the compile task.
 */
import assert from "node:assert/strict";
import { OUTPUT, SKIPPED } from "../../scripts/compile.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

async function tunvs(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/mod.ts`, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("tunvs check validates the default appliance.yaml", async () => {
  const r = await tunvs("check", "appliance.yaml");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "appliance.yaml: ok (1 services, 2 reals)");
});

Deno.test("tunvs check and run reject a bad file with file:line:col and exit 2", async () => {
  const file = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(
      file,
      "services:\n  - name: web\n    vip: 192.168.1.300\n    port: 80\n    colour: blue\n",
    );
    for (const args of [["check", file], ["run", "--config", file]]) {
      const r = await tunvs(...args);
      assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${file}:3:10: services\\[0\\]\\.vip: `));
      assert.match(
        r.stderr,
        new RegExp(`${file}:5:5: services\\[0\\]\\.colour: unknown key "colour"`),
      );
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("tunvs run on a missing file says so and exits 2", async () => {
  const r = await tunvs("run", "--config", "/nonexistent/appliance.yaml");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /\/nonexistent\/appliance\.yaml:1:1: .*not found/);
});

Deno.test("tunvs prints its version and rejects unknown commands and flags", async () => {
  const version = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).version;
  assert.equal((await tunvs("version")).stdout.trim(), `tunvs ${version}`);
  const unknown = await tunvs("frobnicate");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const flag = await tunvs("run", "--bogus");
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--bogus/);
});

Deno.test("deno task compile builds dist/tunvs, or says plainly it could not", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code === SKIPPED) {
    // No runtime to embed here: the task must say so and leave nothing that looks built.
    console.warn("compile skipped: the Deno runtime for compiling cannot be downloaded here");
    assert.match(stderr, /SKIPPED, nothing was built/);
    await assert.rejects(Deno.stat(OUTPUT));
    return;
  }
  assert.equal(out.code, 0, stderr);
  const version = await new Deno.Command(OUTPUT, { args: ["version"], stdout: "piped" }).output();
  assert.match(new TextDecoder().decode(version.stdout), /^tunvs \d+\.\d+\.\d+/);
});
