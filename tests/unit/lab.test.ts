import assert from "node:assert/strict";
import {
  assertIfName,
  assertRole,
  formatCommand,
  labId,
  OutputCollector,
  parseLabName,
  pollUntil,
  run,
} from "../../lab/netns.ts";
import { describeServices, parseDemoArgs, UsageError } from "../../lab/demo.ts";
import { adminListenOf, DEFAULT_ADMIN_LISTEN, REPO_ROOT } from "../../lab/appliance.ts";

Deno.test("labId encodes pid and counter so parseLabName recovers them", () => {
  for (const pid of [1, 36, 32768, 4194304]) {
    for (const counter of [0, 35, 36, 1000]) {
      const parsed = parseLabName(`${labId(pid, counter)}-director`);
      assert.deepEqual(parsed && [parsed.pid, parsed.counter, parsed.rest], [
        pid,
        counter,
        "director",
      ]);
      assert.equal(parsed!.id, labId(pid, counter));
    }
  }
});

Deno.test("the largest possible lab namespace name stays short", () => {
  assert.equal(`${labId(4194304, 1295)}-director`.length, 18);
  assert.equal(labId(4194304, 0).length, 8);
});

Deno.test("parseLabName ignores names that are not ours", () => {
  assert.equal(parseLabName("default"), null);
  assert.equal(parseLabName("tv"), null);
  assert.equal(parseLabName("tv0001"), null); // no counter, no role separator
  assert.equal(parseLabName("tv00a1b"), null); // no '-' separator
  assert.equal(parseLabName("xx00a1b0-client"), null);
  assert.equal(parseLabName("tvABCDE0-client"), null);
});

Deno.test("roles and interface names are checked against kernel limits", () => {
  assertRole("web01");
  assertRole("director");
  assert.throws(() => assertRole("Web01"), /role/);
  assert.throws(() => assertRole("a-b"), /role/);
  assert.throws(() => assertRole("abcdefghijk"), /role/); // 11 chars: too long for rs-<role>
  assertIfName("rs-director");
  assertIfName("abcdefghijklmno");
  assert.throws(() => assertIfName("abcdefghijklmnop"), /1-15/);
  assert.throws(() => assertIfName("a/b"), /interface/);
  assert.throws(() => assertIfName(""), /interface/);
});

Deno.test("formatCommand quotes arguments a shell would split", () => {
  assert.equal(
    formatCommand(["ip", "netns", "exec", "ns-1", "sh", "-c", "echo 'hi' x"]),
    "ip netns exec ns-1 sh -c 'echo '\\''hi'\\'' x'",
  );
});

Deno.test("run returns output, and throws naming command and stderr on failure", async () => {
  const ok = await run(["sh", "-c", "cat; echo err >&2"], { stdin: "in\n" });
  assert.deepEqual(ok, { code: 0, stdout: "in\n", stderr: "err\n" });
  await assert.rejects(
    run(["sh", "-c", "echo boom >&2; exit 3"]),
    (err: Error) =>
      err.message.includes("exit 3") && err.message.includes("boom") &&
      err.message.includes("sh -c"),
  );
  const failed = await run(["sh", "-c", "exit 4"], { allowFail: true });
  assert.equal(failed.code, 4);
  await assert.rejects(run(["/nonexistent/tunvs-cmd"]), /cannot start/);
});

Deno.test("OutputCollector keeps the newest bytes within its limit", async () => {
  const chunks = ["aaaa", "bbbb", "cccc"].map((s) => new TextEncoder().encode(s));
  const stream = ReadableStream.from(chunks);
  const out = new OutputCollector(stream, 8);
  await out.done;
  assert.equal(out.text(), "bbbbcccc");
});

Deno.test("pollUntil stops at success and gives up after the timeout", async () => {
  let calls = 0;
  assert.equal(await pollUntil(() => Promise.resolve(++calls === 3), 1000, 1), true);
  assert.equal(calls, 3);
  const started = Date.now();
  assert.equal(await pollUntil(() => Promise.resolve(false), 30, 5), false);
  assert.ok(Date.now() - started >= 30);
});

Deno.test("parseDemoArgs reads flags and rejects bad request counts", () => {
  assert.deepEqual(parseDemoArgs([]), {
    once: false,
    requests: 6,
    config: `${REPO_ROOT}/appliance.yaml`,
  });
  assert.deepEqual(parseDemoArgs(["--once", "--requests", "3", "--config", "x.yaml"]), {
    once: true,
    requests: 3,
    config: "x.yaml",
  });
  assert.throws(() => parseDemoArgs(["--requests", "0"]), UsageError);
  assert.throws(() => parseDemoArgs(["--requests", "2.5"]), UsageError);
  assert.throws(() => parseDemoArgs(["--bogus"]));
});

Deno.test("describeServices renders services with their reals, or falls back to JSON", () => {
  const lines = describeServices({
    services: [{
      name: "web",
      protocol: "tcp",
      vip: "192.168.1.31",
      port: 80,
      scheduler: "rr",
      reals: [{ address: "10.10.10.11", port: 80, weight: 1, stats: { conns: 3 } }],
    }],
  });
  assert.deepEqual(lines, ["TCP 192.168.1.31:80 rr (web)", "  -> 10.10.10.11:80 weight=1"]);
  assert.deepEqual(describeServices({ odd: true }), ['{"odd":true}']);
});

Deno.test("adminListenOf reads admin.listen and falls back to the default", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.yaml`, "admin:\n  listen: 127.0.0.1:9999\n");
    await Deno.writeTextFile(`${dir}/b.yaml`, "services: []\n");
    assert.equal(await adminListenOf(`${dir}/a.yaml`), "127.0.0.1:9999");
    assert.equal(await adminListenOf(`${dir}/b.yaml`), DEFAULT_ADMIN_LISTEN);
    assert.equal(await adminListenOf(`${dir}/missing.yaml`), DEFAULT_ADMIN_LISTEN);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the repository root found from the lab holds the default configuration", async () => {
  const stat = await Deno.stat(`${REPO_ROOT}/deno.json`);
  assert.ok(stat.isFile);
});
