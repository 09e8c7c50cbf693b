/**
 * The admin endpoint really listening (no root needed): a Unix socket in a temporary directory
 * (mode 0600, stale sockets replaced, anything else in the way refused, removed on shutdown) and
 * TCP on loopback with a token (401 without it, limits on the wire, the ipvsadm client sending
 * it), and the refusals to start.
 *
 * @module
 */
import assert from "node:assert/strict";
import { AdminServeError, serveAdmin } from "../../control/admin_server.ts";
import type { AdminConfig } from "../../control/config.ts";
import { httpAdminClient, runIpvsadm } from "../../control/ipvsadm.ts";
import { IpvsadmExit } from "../../control/ipvsadm_options.ts";
import { NO_NAMES } from "../../control/netdb.ts";
import { adminFixture } from "../fixtures/admin_harness.ts";

const CONFIG = `
services:
  - name: web
    vip: 192.168.1.31
    port: 80
    reals:
      - { address: 10.10.10.11, port: 8080 }
`;

const TOKEN = "Zx81-pQ0r.tS7uV2wY5a";

/** A temporary directory with a token file (mode 0600) in it, removed by `cleanup`. */
async function workspace() {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-admin-server-" });
  const tokenFile = `${dir}/admin.token`;
  await Deno.writeTextFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  await Deno.chmod(tokenFile, 0o600);
  const fx = await adminFixture(CONFIG);
  return {
    dir,
    tokenFile,
    fx,
    cleanup: async () => {
      await fx.cleanup();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function unix(path: string, tokenFile?: string): AdminConfig {
  return { listen: `unix:${path}`, transport: "unix", path, ...(tokenFile ? { tokenFile } : {}) };
}

function tcp(host: string, port: number, tokenFile?: string): AdminConfig {
  return {
    listen: `${host}:${port}`,
    transport: "tcp",
    host,
    port,
    ...(tokenFile ? { tokenFile } : {}),
  };
}

/** Sends raw bytes of one HTTP/1.1 request and returns the status line of the answer. */
async function rawStatus(port: number, request: string, body?: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
    if (body !== undefined) await conn.write(body).catch(() => 0);
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text.split("\r\n")[0];
  } finally {
    conn.close();
  }
}

Deno.test("admin server: a Unix socket, 0600 from the start, reached by ipvsadm, removed at shutdown", async () => {
  const ws = await workspace();
  try {
    // The directory does not exist yet: it is created for the owner only.
    const path = `${ws.dir}/run/admin.sock`;
    const umask = Deno.umask();
    const server = await serveAdmin(ws.fx.app, unix(path));
    try {
      assert.equal(Deno.umask(), umask, "the umask is put back");
      const info = await Deno.lstat(path);
      assert.ok(info.isSocket);
      assert.equal(info.mode! & 0o777, 0o600);
      assert.equal((await Deno.lstat(`${ws.dir}/run`)).mode! & 0o777, 0o700);
      assert.equal(server.url, `unix:${path}`);
      assert.deepEqual(server.address, { transport: "unix", path });
      assert.equal(server.tokenRequired, false);

      const admin = httpAdminClient(server.url, "test");
      const res = await admin.request("GET", "/api/v1/services");
      assert.equal(res.status, 200);
      assert.deepEqual(
        (res.body as { services: { name: string }[] }).services.map((s) => s.name),
        ["web"],
      );
      // The guards sit in front of the socket too.
      const type = await admin.request("PUT", "/api/v1/timeouts", { tcp: 5 }, {
        "content-type": "text/plain",
        "if-match": "*",
      });
      assert.equal(type.status, 415);
      assert.match((type.body as { error: string }).error, /must be sent as application\/json/);
      const listing = await runIpvsadm(["-Ln"], {
        program: "ipvsadm",
        admin,
        names: NO_NAMES,
        readStdin: () => Promise.resolve(""),
      }, "0.0.0");
      assert.equal(listing.code, 0, listing.stderr);
      assert.match(
        listing.stdout,
        /TCP {2}192\.168\.1\.31:80 wlc\n {2}-> 10\.10\.10\.11:8080 +Masq/,
      );
    } finally {
      await server.shutdown();
    }
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
    // Nothing answers there any more: the client says so, naming the socket.
    await assert.rejects(
      httpAdminClient(`unix:${path}`).request("GET", "/healthz"),
      new RegExp(`admin endpoint unix:${path} does not answer \\(no socket there\\)`),
    );
  } finally {
    await ws.cleanup();
  }
});

Deno.test("admin server: a stale socket is replaced; a live one, a file or a symlink is refused", async () => {
  const ws = await workspace();
  try {
    const path = `${ws.dir}/admin.sock`;
    // A socket left by a process that ended: bound, never closed by a listener.
    const py = await new Deno.Command("python3", {
      args: ["-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`],
    }).output();
    assert.equal(py.code, 0, new TextDecoder().decode(py.stderr));
    assert.ok((await Deno.lstat(path)).isSocket);
    const first = await serveAdmin(ws.fx.app, unix(path));
    try {
      assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o600);
      await assert.rejects(serveAdmin(ws.fx.app, unix(path)), (err: unknown) => {
        assert.ok(err instanceof AdminServeError);
        assert.match(err.message, /another process is listening on this socket/);
        return true;
      });
      // The refused second start left the first one's socket alone.
      assert.equal((await httpAdminClient(first.url).request("GET", "/healthz")).status, 200);
    } finally {
      await first.shutdown();
    }

    await Deno.writeTextFile(path, "operator's notes\n");
    await assert.rejects(serveAdmin(ws.fx.app, unix(path)), /is not a socket is in the way/);
    assert.equal(await Deno.readTextFile(path), "operator's notes\n");
    await Deno.remove(path);
    await Deno.symlink(ws.tokenFile, path);
    await assert.rejects(serveAdmin(ws.fx.app, unix(path)), /is not a socket is in the way/);
    assert.equal(await Deno.readTextFile(ws.tokenFile), `${TOKEN}\n`);
  } finally {
    await ws.cleanup();
  }
});

Deno.test("admin server: TCP loopback with a token: 401 without it, limits on the wire, ipvsadm sends it", async () => {
  const ws = await workspace();
  try {
    const server = await serveAdmin(ws.fx.app, tcp("127.0.0.1", 0, ws.tokenFile), {
      maxBodyBytes: 4096,
    });
    try {
      const port = (server.address as Deno.NetAddr).port;
      assert.equal(server.url, `http://127.0.0.1:${port}`);
      assert.equal(server.tokenRequired, true);
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(`${server.url}${path}`, { headers }).then(async (r) => ({
          status: r.status,
          auth: r.headers.get("www-authenticate"),
          json: await r.json(),
        }));
      const none = await get("/api/v1/services");
      assert.deepEqual([none.status, none.auth], [401, 'Bearer realm="tunvs"']);
      assert.equal((await get("/api/v1/services", { authorization: "Bearer wrong" })).status, 401);
      const ok = await get("/api/v1/services", { authorization: `Bearer ${TOKEN}` });
      assert.equal(ok.status, 200);
      assert.deepEqual(await get("/healthz"), { status: 200, auth: null, json: { status: "ok" } });

      // Bodies over the limit, on the wire: a Content-Length that says so is refused before a
      // byte of the body is sent, a chunked body once it passes the limit.
      const auth = `Authorization: Bearer ${TOKEN}\r\n`;
      const head = (extra: string) =>
        `PUT /api/v1/timeouts HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}` +
        `Content-Type: application/json\r\nIf-Match: *\r\n${extra}Connection: close\r\n\r\n`;
      assert.equal(
        await rawStatus(port, head("Content-Length: 10000000000\r\n")),
        "HTTP/1.1 413 Payload Too Large",
      );
      const chunk = `1000\r\n${" ".repeat(4096)}\r\n`;
      assert.equal(
        await rawStatus(
          port,
          head("Transfer-Encoding: chunked\r\n"),
          new TextEncoder().encode(chunk.repeat(4)),
        ),
        "HTTP/1.1 413 Payload Too Large",
      );
      assert.equal(
        await rawStatus(
          port,
          head("Content-Length: 12\r\n").replace("application/json", "text/plain"),
        ),
        "HTTP/1.1 415 Unsupported Media Type",
      );
      // A name re-pointed at 127.0.0.1 (DNS rebinding) still says its own name in Host.
      assert.equal(
        await rawStatus(
          port,
          `GET /api/v1/services HTTP/1.1\r\nHost: evil.example:${port}\r\n${auth}` +
            `Connection: close\r\n\r\n`,
        ),
        "HTTP/1.1 403 Forbidden",
      );

      // The ipvsadm client: with the token file, without, with the wrong one.
      const tokenFile = { path: ws.tokenFile, source: "admin.token_file in test.yaml" };
      const admin = httpAdminClient(server.url, "test", 10_000, tokenFile);
      assert.equal((await admin.request("GET", "/api/v1/services")).status, 200);
      await assert.rejects(
        httpAdminClient(server.url, "test").request("GET", "/api/v1/services"),
        (err: unknown) => {
          assert.ok(err instanceof IpvsadmExit);
          assert.equal(err.code, 2);
          assert.match(err.message, /needs a bearer token \(HTTP 401\)/);
          assert.match(err.message, /admin\.token_file .* TUNVS_ADMIN_TOKEN_FILE/);
          return true;
        },
      );
      const wrongFile = `${ws.dir}/wrong.token`;
      await Deno.writeTextFile(wrongFile, "0123456789abcdef0123", { mode: 0o600 });
      await assert.rejects(
        httpAdminClient(server.url, "", 10_000, {
          path: wrongFile,
          source: "TUNVS_ADMIN_TOKEN_FILE",
        })
          .request("GET", "/api/v1/services"),
        new RegExp(
          `refused the token from ${wrongFile} \\(HTTP 401\\); that file came from ` +
            `TUNVS_ADMIN_TOKEN_FILE`,
        ),
      );
      // A token file others can read is refused by the client as by the server.
      await Deno.chmod(wrongFile, 0o644);
      await assert.rejects(
        httpAdminClient(server.url, "", 10_000, {
          path: wrongFile,
          source: "TUNVS_ADMIN_TOKEN_FILE",
        })
          .request("GET", "/api/v1/services"),
        /too open.*\(that file came from TUNVS_ADMIN_TOKEN_FILE\)/,
      );
      // Through ipvsadm's runner: its message and exit status.
      const run = await runIpvsadm(["-Ln"], {
        program: "ipvsadm",
        admin: httpAdminClient(server.url, "test"),
        names: NO_NAMES,
        readStdin: () => Promise.resolve(""),
      }, "0.0.0");
      assert.equal(run.code, 2);
      assert.match(run.stderr, /^Can't initialize ipvs: the tunvs admin endpoint http:\/\/127/);
      assert.equal(ws.fx.applies(), 0, "no refused request changed anything");
    } finally {
      await server.shutdown();
    }
  } finally {
    await ws.cleanup();
  }
});

Deno.test("admin server: refuses to start off loopback without a token, or with a bad token file", async () => {
  const ws = await workspace();
  try {
    await assert.rejects(serveAdmin(ws.fx.app, tcp("0.0.0.0", 0)), (err: unknown) => {
      assert.ok(err instanceof AdminServeError);
      assert.match(
        err.message,
        /admin\.listen 0\.0\.0\.0:0 is not a loopback address: refusing .* without admin\.token_file/,
      );
      return true;
    });
    await Deno.chmod(ws.tokenFile, 0o644);
    for (const config of [tcp("0.0.0.0", 0, ws.tokenFile), tcp("127.0.0.1", 0, ws.tokenFile)]) {
      await assert.rejects(
        serveAdmin(ws.fx.app, config),
        /^AdminServeError: admin\.token_file: .*permissions 0644 are too open/,
      );
    }
    await assert.rejects(
      serveAdmin(ws.fx.app, unix(`${ws.dir}/a.sock`, `${ws.dir}/missing.token`)),
      /admin\.token_file: admin token file .*missing\.token does not exist/,
    );
    await assert.rejects(Deno.lstat(`${ws.dir}/a.sock`), Deno.errors.NotFound);
    await Deno.chmod(ws.tokenFile, 0o600);

    // Off loopback with a token: served, any Host, the token required.
    const open = await serveAdmin(ws.fx.app, tcp("0.0.0.0", 0, ws.tokenFile));
    try {
      const port = (open.address as Deno.NetAddr).port;
      const status = (auth: string) =>
        rawStatus(
          port,
          `GET /api/v1/services HTTP/1.1\r\nHost: lb1.example:${port}\r\n${auth}` +
            `Connection: close\r\n\r\n`,
        );
      assert.equal(await status(""), "HTTP/1.1 401 Unauthorized");
      assert.equal(await status(`Authorization: Bearer ${TOKEN}\r\n`), "HTTP/1.1 200 OK");
      // The same port again: already in use.
      await assert.rejects(
        serveAdmin(ws.fx.app, tcp("0.0.0.0", port, ws.tokenFile)),
        /admin\.listen 0\.0\.0\.0:\d+: .*\(is tunvs already running\?\)/,
      );
    } finally {
      await open.shutdown();
    }
  } finally {
    await ws.cleanup();
  }
});
