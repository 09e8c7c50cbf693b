/**
 * `tunvs import`: ipvsadm -S output to appliance.yaml (the rules -R would build), the command
 * line (usage, stdin, errors with their line), and --output written atomically, never over an
 * existing file without --force.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../control/config.ts";
import { FileExistsError, writeFileAtomic } from "../../control/atomic_file.ts";
import { type ImportIo, runImport } from "../../control/import/import_command.ts";
import { importIpvsadmRules } from "../../control/import/ipvsadm_save.ts";
import { nameDbFrom, NO_NAMES } from "../../control/netdb.ts";

/** Seed 000's rules as `ipvsadm-save -n` writes them, with tunvs's thresholds. */
const SAVED = "-A -t 192.168.1.31:80 -s wrr -p 10 -M 255.255.255.0\n" +
  "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 2\n" +
  "-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 1 -x 100 -y 50\n" +
  "-A -t 192.168.1.31:3306 -s rr\n" +
  "-a -t 192.168.1.31:3306 -r 10.10.10.11:3306 -m -w 1\n" +
  "-a -t 192.168.1.31:3306 -r 10.10.10.12:3306 -m -w 1\n";

function io(files: Record<string, string>, stdin = ""): ImportIo {
  return {
    readFile: (path) =>
      path in files
        ? Promise.resolve(files[path])
        : Promise.reject(new Deno.errors.NotFound(`No such file or directory: ${path}`)),
    readStdin: () => Promise.resolve(stdin),
    names: NO_NAMES,
  };
}

Deno.test("import --ipvsadm: the services ipvsadm -R would build, and --set's timeouts", () => {
  const result = importIpvsadmRules(
    "# ipvsadm-save -n\n" + SAVED + "--set 900 0 60\n-Ln\n--start-daemon master\n",
    NO_NAMES,
  );
  assert.deepEqual(result.config, {
    timeouts: { tcp: 900, udp: 60 },
    services: [
      {
        name: "tcp-192.168.1.31-80",
        protocol: "tcp",
        vip: "192.168.1.31",
        port: 80,
        scheduler: "wrr",
        persistence: { timeout: 10, netmask: "255.255.255.0" },
        forward: "nat",
        reals: [
          { address: "10.10.10.11", port: 80, weight: 2 },
          {
            address: "10.10.10.12",
            port: 80,
            weight: 1,
            upper_threshold: 100,
            lower_threshold: 50,
          },
        ],
      },
      {
        name: "tcp-192.168.1.31-3306",
        protocol: "tcp",
        vip: "192.168.1.31",
        port: 3306,
        scheduler: "rr",
        forward: "nat",
        reals: [
          { address: "10.10.10.11", port: 3306, weight: 1 },
          { address: "10.10.10.12", port: 3306, weight: 1 },
        ],
      },
    ],
  });
  assert.deepEqual(result.origins.map((o) => o.line), [2, 5]);
  assert.deepEqual(result.skipped.map((s) => [s.line, s.keyword, s.kind]), [
    [9, "-Ln", "ignored"],
    [10, "--start-daemon master", "scope"],
  ]);
  // ipvsadm -S without -n writes names: they are looked up as ipvsadm -R would.
  const names = nameDbFrom("192.168.1.31 lvs-vip\n10.10.10.11 web1\n", "http 80/tcp\n");
  const named = importIpvsadmRules(
    "-A -t lvs-vip:http -s rr\n-a -t lvs-vip:http -r web1 -m\n",
    names,
  );
  assert.deepEqual(named.config.services[0].reals, [{
    address: "10.10.10.11",
    port: 80,
    weight: 1,
  }]);
});

Deno.test("import --ipvsadm: printed appliance.yaml, and refusals with their line", async () => {
  const run = await runImport(["--ipvsadm", "rules"], io({ rules: SAVED }));
  assert.equal(run.code, 0);
  assert.equal(run.stderr, "");
  assert.match(
    run.stdout,
    /^# appliance\.yaml written by `tunvs import --ipvsadm rules` from rules\./,
  );
  const config = parseConfig(run.stdout, "out.yaml");
  assert.deepEqual(config.services.map((s) => [s.name, s.scheduler, s.reals.length]), [
    ["tcp-192.168.1.31-80", "wrr", 2],
    ["tcp-192.168.1.31-3306", "rr", 2],
  ]);
  assert.equal(config.services[0].reals[1].upperThreshold, 100);

  // Standard input, and what appliance.yaml cannot express named on stderr.
  const stdin = await runImport(
    ["--ipvsadm", "-"],
    io({}, SAVED + "-A -f 6666 -s rr\n-a -f 6666 -r 192.168.0.10 -g\n"),
  );
  assert.equal(stdin.code, 0);
  assert.equal(parseConfig(stdin.stdout).services.length >= 2, true);
  if (!parseConfig(stdin.stdout).services.some((s) => s.name === "fwmark-6666")) {
    assert.match(
      stdin.stderr,
      /^tunvs import: stdin:7: -A -f 6666 -s rr: not carried over: appliance\.yaml cannot express it/,
    );
    assert.match(stdin.stdout, /\n# Not carried over:\n# {3}stdin:7: -A -f 6666 -s rr: /);
  }

  assert.deepEqual(
    await runImport(
      ["--ipvsadm", "r"],
      io({ r: SAVED + "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m\n" }),
    ),
    { code: 1, stdout: "", stderr: "tunvs import: r:7: Destination already exists\n" },
  );
  assert.deepEqual(
    await runImport(["--ipvsadm", "r"], io({ r: "-A -t 192.168.1.31:80 -w 1\n" })),
    {
      code: 1,
      stdout: "",
      stderr: "tunvs import: r:1: Illegal 'weight' option with the 'add-service' command\n",
    },
  );
  assert.deepEqual(
    await runImport(["--keepalived", "k"], io({ k: "virtual_server 10.0.0.1 80 {\n" })),
    { code: 1, stdout: "", stderr: "tunvs import: k:1: the block opened here is not closed\n" },
  );
  const missing = await runImport(["--keepalived", "nope.conf"], io({}));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^tunvs import: cannot read nope\.conf: /);
  for (
    const args of [
      [],
      ["--ipvsadm", "a", "--keepalived", "b"],
      ["--ipvsadm", "a", "--force"],
      ["--ipvsadm", "a", "extra"],
      ["--bogus"],
    ]
  ) {
    const r = await runImport(args, io({ a: SAVED }));
    assert.equal(r.code, 2, args.join(" "));
    assert.match(
      r.stderr,
      /^tunvs import: .*\n\nusage:\n {2}tunvs import --keepalived FILE/,
      args.join(" "),
    );
  }
});

Deno.test("import --output: written atomically, an existing file only with --force", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/appliance.yaml`;
    const conf = await Deno.readTextFile(
      new URL("../fixtures/keepalived_seed003.conf", import.meta.url),
    );
    const first = await runImport(
      ["--keepalived", "k.conf", "--output", out],
      io({ "k.conf": conf }),
    );
    assert.equal(first.code, 0);
    assert.equal(first.stdout, "");
    assert.match(first.stderr, /tunvs import: k\.conf:3: global_defs: outside tunvs's scope: /);
    assert.match(first.stderr, /tunvs import: wrote .*appliance\.yaml \(1 services, 2 reals\)\n$/);
    const written = await Deno.readTextFile(out);
    assert.equal(parseConfig(written, out).services[0].name, "tcp-10.0.2.99-80");

    // An existing file is left alone without --force; nothing else is left in the directory.
    await Deno.chmod(out, 0o600);
    const again = await runImport(["--ipvsadm", "r", "--output", out], io({ r: SAVED }));
    assert.equal(again.code, 1);
    assert.match(again.stderr, /appliance\.yaml exists; use --force to replace it\n$/);
    assert.equal(await Deno.readTextFile(out), written);
    const forced = await runImport(["--ipvsadm", "r", "-o", out, "--force"], io({ r: SAVED }));
    assert.equal(forced.code, 0);
    assert.equal(parseConfig(await Deno.readTextFile(out)).services.length, 2);
    assert.equal((await Deno.stat(out)).mode! & 0o777, 0o600, "--force keeps the file's mode");
    const entries = [];
    for await (const e of Deno.readDir(dir)) entries.push(e.name);
    assert.deepEqual(entries, ["appliance.yaml"], "no temporary file is left behind");

    // The writer itself: no clobbering, and no temporary file left when it refuses.
    await assert.rejects(writeFileAtomic(out, "x", { replace: false }), FileExistsError);
    await writeFileAtomic(`${dir}/new.yaml`, "services: []\n", { replace: false });
    assert.equal(await Deno.readTextFile(`${dir}/new.yaml`), "services: []\n");
    await assert.rejects(
      writeFileAtomic(`${dir}/missing/x.yaml`, "x", { replace: true }),
      Deno.errors.NotFound,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tunvs import: reached through mod.ts", async () => {
  const root = new URL("../..", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}/mod.ts`, "import", "--ipvsadm", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = out.stdin.getWriter();
  await writer.write(new TextEncoder().encode(SAVED));
  await writer.close();
  const done = await out.output();
  assert.equal(done.code, 0, new TextDecoder().decode(done.stderr));
  const yaml = new TextDecoder().decode(done.stdout);
  assert.equal(parseConfig(yaml).services.length, 2);
});
