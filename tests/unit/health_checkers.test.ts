import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { execCheck } from "../../control/health/exec.ts";
import { httpCheck } from "../../control/health/http.ts";
import { tcpCheck } from "../../control/health/tcp.ts";
import type { HttpCheckSettings } from "../../control/health/types.ts";
import { udpCheck } from "../../control/health/udp.ts";
import { checkerFor } from "../../control/health/checker.ts";

const LOOPBACK = "127.0.0.1";

/** A port nothing listens on: bound once, then released. */
function closedTcpPort(): number {
  const l = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function http(over: Partial<HttpCheckSettings> = {}): HttpCheckSettings {
  return {
    method: "GET",
    path: "/health",
    status: [200],
    digest: null,
    substring: null,
    host: null,
    ...over,
  };
}

const BODY = "all good here";
const BODY_MD5 = createHash("md5").update(BODY).digest("hex");

/** Serves /health (200, BODY), /broken (500); records the Host header it saw. */
function serveHttp(tls?: { cert: string; key: string }) {
  const hosts: string[] = [];
  const server = Deno.serve(
    { hostname: LOOPBACK, port: 0, onListen() {}, ...(tls ?? {}) },
    (req) => {
      hosts.push(req.headers.get("host") ?? "");
      const path = new URL(req.url).pathname;
      return path === "/health" ? new Response(BODY) : new Response("oops", { status: 500 });
    },
  );
  return { server, port: server.addr.port, hosts };
}

Deno.test("health tcp: a listening port passes, a closed one fails", async () => {
  const l = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const accepting = (async () => {
    for await (const c of l) c.close();
  })();
  const up = await tcpCheck({ address: LOOPBACK, port }, AbortSignal.timeout(2000));
  assert.equal(up.ok, true);
  assert.equal(up.reason, "connected");
  assert.ok(up.latencyMs >= 0 && up.latencyMs < 2000);
  l.close();
  await accepting.catch(() => {});
  const down = await tcpCheck(
    { address: LOOPBACK, port: closedTcpPort() },
    AbortSignal.timeout(2000),
  );
  assert.equal(down.ok, false);
  assert.match(down.reason, /^connect: /);
});

Deno.test("health http: status list, digest, substring and Host header", async () => {
  const { server, port, hosts } = serveHttp();
  const target = { address: LOOPBACK, port };
  const t = () => AbortSignal.timeout(2000);
  try {
    const ok = await httpCheck(target, http(), false, t());
    assert.deepEqual([ok.ok, ok.reason], [true, "status 200"]);
    assert.equal(hosts.at(-1), LOOPBACK);

    const err = await httpCheck(target, http({ path: "/broken" }), false, t());
    assert.equal(err.ok, false);
    assert.match(err.reason, /status 500/);
    const accepted = await httpCheck(
      target,
      http({ path: "/broken", status: [200, 500] }),
      false,
      t(),
    );
    assert.equal(accepted.ok, true);

    assert.equal((await httpCheck(target, http({ digest: BODY_MD5 }), false, t())).ok, true);
    const wrong = await httpCheck(target, http({ digest: "0".repeat(32) }), false, t());
    assert.equal(wrong.ok, false);
    assert.match(wrong.reason, /digest/);

    assert.equal((await httpCheck(target, http({ substring: "good" }), false, t())).ok, true);
    assert.equal((await httpCheck(target, http({ substring: "bad" }), false, t())).ok, false);

    await httpCheck(target, http({ host: "www.example.com" }), false, t());
    assert.equal(hosts.at(-1), "www.example.com");
  } finally {
    await server.shutdown();
  }
  const gone = await httpCheck(target, http(), false, AbortSignal.timeout(2000));
  assert.equal(gone.ok, false);
  assert.match(gone.reason, /^request: /);
});

Deno.test("health https: a self-signed certificate passes without verification", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-health-" });
  try {
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=real.invalid",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    assert.equal(out.code, 0, "openssl req failed");
    const cert = await Deno.readTextFile(`${dir}/cert.pem`);
    const key = await Deno.readTextFile(`${dir}/key.pem`);
    const { server, port } = serveHttp({ cert, key });
    try {
      const target = { address: LOOPBACK, port };
      const ok = await httpCheck(
        target,
        http({ digest: BODY_MD5 }),
        true,
        AbortSignal.timeout(3000),
      );
      assert.deepEqual([ok.ok, ok.reason], [true, "status 200"]);
      const bad = await httpCheck(target, http({ path: "/x" }), true, AbortSignal.timeout(3000));
      assert.equal(bad.ok, false);
      // Plain HTTP against the TLS port is not a pass.
      const plain = await httpCheck(target, http(), false, AbortSignal.timeout(3000));
      assert.equal(plain.ok, false);
    } finally {
      await server.shutdown();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("health udp: an echo server passes, a closed port and a wrong reply fail", async () => {
  const echo = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => echo.bind(0, LOOPBACK, () => resolve()));
  echo.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    echo.send(msg, rinfo.port, rinfo.address);
  });
  const port = echo.address().port;
  try {
    const ok = await udpCheck(
      { address: LOOPBACK, port },
      { payload: "ping", expect: "ping" },
      AbortSignal.timeout(2000),
    );
    assert.deepEqual([ok.ok, ok.reason], [true, "expected reply"]);
    const wrong = await udpCheck(
      { address: LOOPBACK, port },
      { payload: "ping", expect: "pong" },
      AbortSignal.timeout(2000),
    );
    assert.equal(wrong.ok, false);
  } finally {
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  }
  const closed = await udpCheck(
    { address: LOOPBACK, port },
    { payload: "ping", expect: "ping" },
    AbortSignal.timeout(300),
  );
  assert.equal(closed.ok, false);
  assert.match(closed.reason, /no reply/);
});

Deno.test("health exec: exit 0 passes, exit 1 fails, a hung program is killed, dynamic weight", async () => {
  const target = { address: "10.0.0.1", port: 80 };
  const t = () => AbortSignal.timeout(3000);
  const pass = await execCheck(target, { command: ["sh", "-c", "exit 0"], dynamic: false }, t());
  assert.deepEqual([pass.ok, pass.reason], [true, "exit 0"]);
  const fail = await execCheck(target, { command: ["sh", "-c", "exit 1"], dynamic: true }, t());
  assert.deepEqual([fail.ok, fail.reason], [false, "exit 1"]);
  const env = await execCheck(
    target,
    {
      command: ["sh", "-c", 'test "$TUNVS_REAL_ADDRESS:$TUNVS_REAL_PORT" = 10.0.0.1:80'],
      dynamic: false,
    },
    t(),
  );
  assert.equal(env.ok, true, "the target reaches the program's environment");

  const started = performance.now();
  const hung = await execCheck(
    target,
    { command: ["sh", "-c", "trap '' TERM; sleep 30"], dynamic: false },
    AbortSignal.timeout(200),
  );
  assert.deepEqual([hung.ok, hung.reason], [false, "timed out; killed"]);
  assert.ok(performance.now() - started < 5000, "the check ends at its timeout");

  const weighted = await execCheck(
    target,
    { command: ["sh", "-c", "exit 12"], dynamic: true },
    t(),
  );
  assert.deepEqual([weighted.ok, weighted.weight], [true, 10]);
  const notDynamic = await execCheck(
    target,
    { command: ["sh", "-c", "exit 12"], dynamic: false },
    t(),
  );
  assert.deepEqual([notDynamic.ok, notDynamic.weight], [false, undefined]);
  const missing = await execCheck(target, { command: ["/nonexistent/check"], dynamic: false }, t());
  assert.equal(missing.ok, false);
  assert.match(missing.reason, /^exec: /);
});

Deno.test("health none: always passes; checkerFor picks by type", async () => {
  const none = checkerFor({
    type: "none",
    interval: 6,
    timeout: 3,
    retry: 0,
    delayBeforeRetry: 1,
    rise: 1,
    fall: 1,
    alpha: false,
  });
  const r = await none({ address: "10.0.0.1", port: 1 }, AbortSignal.timeout(100));
  assert.equal(r.ok, true);
  assert.throws(
    () =>
      checkerFor({
        ...{ type: "exec" },
        interval: 6,
        timeout: 3,
        retry: 0,
        delayBeforeRetry: 1,
        rise: 1,
        fall: 1,
        alpha: false,
      }),
    /without exec settings/,
  );
});
