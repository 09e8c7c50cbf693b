/**
 * scripts/tunvs.service: systemd accepts it, and the commands it runs work when tunvs is
 * installed the way its header says (scripts/tunvs at /usr/local/sbin/tunvs).
 *
 * @module
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;
const UNIT = `${ROOT}scripts/tunvs.service`;

function which(program: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${program}`).isFile) return `${dir}/${program}`;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

/** The unit with the install paths pointed at this checkout. */
function localUnit(): string {
  return Deno.readTextFileSync(UNIT)
    .replaceAll("/usr/local/sbin/tunvs", `${ROOT}scripts/tunvs`)
    .replaceAll("/etc/tunvs/appliance.yaml", `${ROOT}appliance.yaml`);
}

Deno.test({
  name: "systemd unit: systemd-analyze verify finds nothing to complain about",
  ignore: which("systemd-analyze") === null,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-unit-" });
  try {
    await Deno.writeTextFile(`${dir}/tunvs.service`, localUnit());
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/tunvs.service`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    // Only complaints about this unit count; the host's other units are not ours to judge.
    const ours = text.split("\n").filter((l) => l.startsWith("tunvs.service"));
    assert.deepEqual(ours, []);
    assert.equal(out.code, 0, text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("systemd unit: ExecStartPre's check passes on the shipped appliance.yaml; reload is SIGHUP", async () => {
  const unit = localUnit();
  const pre = /^ExecStartPre=(.+)$/m.exec(unit)?.[1].split(" ") ?? [];
  assert.equal(pre[1], "check");
  const out = await new Deno.Command(pre[0], {
    args: pre.slice(1),
    stdout: "piped",
    stderr: "piped",
    env: { DENO: Deno.execPath() },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(new TextDecoder().decode(out.stdout), /appliance\.yaml: ok \(1 services, 2 reals\)/);
  assert.match(unit, /^ExecStart=\S+scripts\/tunvs run --config \S+appliance\.yaml$/m);
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
});
