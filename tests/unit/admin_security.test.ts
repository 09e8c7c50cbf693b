/**
 * Security of the admin endpoint, without a socket: the guards in front of the real admin app
 * (a real engine and configuration file, tests/fixtures/admin_harness.ts) refuse missing and
 * wrong tokens, browser requests, bodies that are too large or not JSON; the app refuses
 * malformed JSON, wrong types and names that try to escape; and after every refusal nothing
 * changed: not the file, not the version, not the engine, and guarded refusals never reached the
 * app at all. The token file rules, and how the ipvsadm client finds the token file, too.
 *
 * New endpoints get covered by adding rows to the tables below.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  AdminTokenError,
  DEFAULT_MAX_BODY_BYTES,
  guardAdminApp,
  MIN_TOKEN_LENGTH,
  readAdminToken,
  tokenMatches,
} from "../../control/admin_auth.ts";
import { chooseAdmin } from "../../control/ipvsadm.ts";
import { type AdminFixture, adminFixture } from "../fixtures/admin_harness.ts";

const CONFIG = `
timeouts: { tcp: 900, tcpfin: 120, udp: 300 }
services:
  - name: web
    protocol: tcp
    vip: 192.168.1.31
    port: 80
    scheduler: rr
    reals:
      - { address: 10.10.10.11, port: 8080 }
      - { address: 10.10.10.12, port: 8080 }
`;

const TOKEN = "q7Zr2L0x9Vb4Nw8Ke1Tg6Hc3";

/** Small, so that "huge" bodies stay quick; the mechanism is the same at 1 MiB. */
const LIMIT = 64 * 1024;

const REAL = "10.10.10.11/8080";
const WEIGHT = `/api/v1/services/web/reals/${REAL}/weight`;

/** One request of a table: what is sent, and how it must be answered. */
interface Row {
  what: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  /** A string goes with a Content-Length; a function makes a chunked stream. */
  body?: string | (() => ReadableStream<Uint8Array>);
  status: number;
  /** The error message must match (every refusal answers JSON {error}). */
  error?: RegExp;
  /** Whether the request gets past the guards to the app (a schema refusal does). */
  reachesApp: boolean;
}

/** What a change would alter: the file, the version, the engine's timeouts, the weights. */
async function snapshot(fx: AdminFixture) {
  return {
    file: await Deno.readTextFile(fx.path),
    version: fx.running.version,
    applies: fx.applies(),
    timeouts: fx.requests.answer("getTimeouts", {}, fx.engine.now),
    weights: fx.running.config.services.map((s) => s.reals.map((r) => r.weight)),
  };
}

/** `n` bytes of JSON-looking text in chunks, with no length known beforehand. */
function chunked(n: number, chunk = 8192): () => ReadableStream<Uint8Array> {
  return () => {
    let sent = 0;
    return new ReadableStream({
      pull(ctrl) {
        if (sent >= n) return ctrl.close();
        const size = Math.min(chunk, n - sent);
        ctrl.enqueue(new Uint8Array(size).fill(0x20));
        sent += size;
      },
    });
  };
}

/** The guarded admin app over a fixture, counting the requests that reach the app itself. */
async function guarded(token: string | null, loopbackHostOnly = false) {
  const fx = await adminFixture(CONFIG);
  let reached = 0;
  const app = guardAdminApp({
    fetch: (req: Request, env?: unknown) => {
      reached++;
      return fx.app.fetch(req, env);
    },
  }, { token, maxBodyBytes: LIMIT, loopbackHostOnly });
  const send = async (row: Omit<Row, "what" | "status" | "reachesApp">) => {
    const body = typeof row.body === "function" ? row.body() : row.body;
    // As an HTTP/1.1 client does: a string body goes with its Content-Length (a stream body
    // is sent chunked, which Transfer-Encoding says).
    const framing: Record<string, string> = typeof body === "string"
      ? { "content-length": String(new TextEncoder().encode(body).length) }
      : body === undefined || body === null
      ? {}
      : { "transfer-encoding": "chunked" };
    const req = new Request(`http://127.0.0.1:9180${row.path}`, {
      method: row.method,
      headers: { ...framing, ...row.headers },
      body,
    });
    const res = await app.fetch(req);
    const text = await res.text();
    let json: Record<string, unknown> | null = null;
    try {
      json = JSON.parse(text);
    } catch {
      // Checked by the caller: every answer here must be JSON.
    }
    return { status: res.status, json, text, headers: res.headers };
  };
  return { fx, send, reached: () => reached };
}

/** Sends every row; each must be answered as it says and leave everything as it was. */
async function refuseAll(rows: Row[], token: string | null, loopbackHostOnly = false) {
  const { fx, send, reached } = await guarded(token, loopbackHostOnly);
  try {
    const before = await snapshot(fx);
    for (const row of rows) {
      const count = reached();
      const res = await send(row);
      const label = `${row.what}: ${row.method} ${row.path.slice(0, 80)} → ${
        res.text.slice(0, 200)
      }`;
      assert.equal(res.status, row.status, label);
      assert.equal(typeof res.json?.error, "string", `${label}: a JSON {error}`);
      if (row.error !== undefined) assert.match(res.json!.error as string, row.error, label);
      assert.equal(reached() - count, row.reachesApp ? 1 : 0, `${label}: reached the app`);
      assert.deepEqual(await snapshot(fx), before, `${label}: something changed`);
    }
  } finally {
    await fx.cleanup();
  }
}

const AUTH = { authorization: `Bearer ${TOKEN}` };
const JSON_TYPE = { "content-type": "application/json" };
/** What a well-formed change carries, so that only the row's own defect can refuse it. */
const CHANGE = { ...AUTH, ...JSON_TYPE, "if-match": "*" };

/** The changing endpoints, each with a body it would accept. */
const CHANGES: { method: string; path: string; body: string }[] = [
  { method: "PUT", path: "/api/v1/timeouts", body: '{"tcp": 100}' },
  { method: "PUT", path: WEIGHT, body: '{"weight": 7}' },
  { method: "POST", path: "/api/v1/config/reload", body: '{"cut": false}' },
  {
    method: "POST",
    path: "/api/v1/services/web/reals",
    body: '{"address": "10.10.10.13", "port": 8080}',
  },
  { method: "DELETE", path: "/api/v1/services/web", body: "" },
];

Deno.test("admin security: the accepted requests of the tables do change things (controls)", async () => {
  const { fx, send, reached } = await guarded(TOKEN);
  try {
    const before = await snapshot(fx);
    const put = await send({ method: "PUT", path: WEIGHT, headers: CHANGE, body: '{"weight": 7}' });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual((await snapshot(fx)).weights, [[7, 1]]);
    // Scheme name in any case (RFC 7235), a charset with the media type.
    const set = await send({
      method: "PUT",
      path: "/api/v1/timeouts",
      headers: {
        ...CHANGE,
        authorization: `bearer ${TOKEN}`,
        "content-type": "application/json; charset=utf-8",
      },
      body: '{"tcp": 100}',
    });
    assert.equal(set.status, 200, set.text);
    const after = await snapshot(fx);
    assert.equal(after.timeouts.tcp, 100);
    assert.notEqual(after.file, before.file);
    assert.notEqual(after.version, before.version);
    assert.equal(reached(), 2);
    // A body within the limit, chunked, gets through whole (JSON padded with spaces).
    const padded = `{"udp": 77}${" ".repeat(LIMIT - 20)}`;
    const stream = await send({
      method: "PUT",
      path: "/api/v1/timeouts",
      headers: CHANGE,
      body: () => new Blob([padded]).stream(),
    });
    assert.equal(stream.status, 200, stream.text);
    assert.equal((await snapshot(fx)).timeouts.udp, 77);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin security: missing or wrong tokens get 401 and reach nothing", async () => {
  const rows: Row[] = [];
  const tokens: [string, Record<string, string>, RegExp][] = [
    ["no Authorization", {}, /needs a bearer token/],
    ["empty Authorization", { authorization: "" }, /needs a bearer token/],
    ["wrong token", { authorization: "Bearer not-the-token-at-all" }, /not the one/],
    ["token cut short", { authorization: `Bearer ${TOKEN.slice(0, -1)}` }, /not the one/],
    ["token with more", { authorization: `Bearer ${TOKEN}x` }, /not the one/],
    ["token in another case", { authorization: `Bearer ${TOKEN.toLowerCase()}` }, /not the one/],
    ["Basic scheme", { authorization: `Basic ${btoa(`admin:${TOKEN}`)}` }, /must be Bearer/],
    ["bare token", { authorization: TOKEN }, /must be Bearer/],
    ["Bearer without token", { authorization: "Bearer" }, /must be Bearer/],
    ["two tokens", { authorization: `Bearer ${TOKEN} ${TOKEN}` }, /must be Bearer/],
  ];
  for (const [what, headers, error] of tokens) {
    for (const change of CHANGES) {
      rows.push({
        what,
        ...change,
        headers: { ...JSON_TYPE, "if-match": "*", ...headers },
        status: 401,
        error,
        reachesApp: false,
      });
    }
    // Reading needs the token as well; only liveness does not.
    for (const path of ["/api/v1/services", "/api/v1/config", "/ready", "/healthz/", "/metrics"]) {
      rows.push({ what, method: "GET", path, headers, status: 401, error, reachesApp: false });
    }
    rows.push({
      what: `${what}, POST to the open endpoint`,
      method: "POST",
      path: "/healthz",
      headers,
      status: 401,
      reachesApp: false,
    });
  }
  await refuseAll(rows, TOKEN);

  const { fx, send } = await guarded(TOKEN);
  try {
    const missing = await send({ method: "GET", path: "/api/v1/services" });
    assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="tunvs"');
    const wrong = await send({
      method: "GET",
      path: "/api/v1/services",
      headers: { authorization: "Bearer nope-nope-nope-nope" },
    });
    assert.equal(
      wrong.headers.get("www-authenticate"),
      'Bearer realm="tunvs", error="invalid_token"',
    );
    // Liveness is open, so that a supervisor can ask without the secret.
    const health = await send({ method: "GET", path: "/healthz" });
    assert.deepEqual([health.status, health.json], [200, { status: "ok" }]);
    assert.equal(
      (await send({ method: "GET", path: "/api/v1/services", headers: AUTH })).status,
      200,
    );
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin security: huge bodies get 413 before the app, with or without Content-Length", async () => {
  const rows: Row[] = [];
  for (const change of CHANGES) {
    rows.push({
      what: "one byte over the limit, with Content-Length",
      ...change,
      headers: CHANGE,
      body: `{"tcp": 1}${" ".repeat(LIMIT - 9)}`,
      status: 413,
      error: new RegExp(`larger than the limit of ${LIMIT} bytes`),
      reachesApp: false,
    });
    rows.push({
      what: "16 times the limit, chunked",
      ...change,
      headers: CHANGE,
      body: chunked(16 * LIMIT),
      status: 413,
      reachesApp: false,
    });
    rows.push({
      what: "one byte over the limit, chunked in odd pieces",
      ...change,
      headers: CHANGE,
      body: chunked(LIMIT + 1, 999),
      status: 413,
      reachesApp: false,
    });
  }
  await refuseAll(rows, TOKEN);
  // Without a token (a loopback endpoint) the limits hold all the same.
  await refuseAll(
    rows.map((r) => ({ ...r, headers: { ...JSON_TYPE, "if-match": "*" } })),
    null,
  );
  assert.equal(DEFAULT_MAX_BODY_BYTES, 1024 * 1024);
});

Deno.test("admin security: bodies that are not JSON get 415 unread; malformed JSON and wrong types 400", async () => {
  const rows: Row[] = [];
  const types: [string, Record<string, string>][] = [
    ["no Content-Type", {}],
    ["text/plain (what a web page may send without asking)", { "content-type": "text/plain" }],
    ["a form", { "content-type": "application/x-www-form-urlencoded" }],
    ["multipart", { "content-type": "multipart/form-data; boundary=x" }],
    ["JSON's name inside another", { "content-type": "application/jsonx" }],
    ["YAML outside validate", { "content-type": "application/yaml" }],
  ];
  for (const [what, type] of types) {
    for (const change of CHANGES.filter((c) => c.body !== "")) {
      rows.push({
        what,
        ...change,
        headers: { ...AUTH, "if-match": "*", ...type },
        status: 415,
        error: /must be sent as application\/json/,
        reachesApp: false,
      });
    }
  }
  const bad = (what: string, path: string, body: string, error: RegExp, method = "PUT"): Row => ({
    what,
    method,
    path,
    headers: CHANGE,
    body,
    status: 400,
    error,
    reachesApp: true,
  });
  rows.push(
    bad("malformed JSON", "/api/v1/timeouts", '{"tcp": 10,', /must be JSON/),
    bad("not JSON at all", "/api/v1/timeouts", "tcp=10", /must be JSON/),
    bad("a NUL in the body", "/api/v1/timeouts", '{"tcp": 10}\0', /must be JSON/),
    bad("JSON, but a list", "/api/v1/timeouts", "[10, 10, 10]", /must be a JSON object/),
    bad("JSON, but null", "/api/v1/timeouts", "null", /must be a JSON object/),
    bad("a number as text", "/api/v1/timeouts", '{"tcp": "10"}', /^tcp: must be an integer/),
    bad("a fraction", "/api/v1/timeouts", '{"tcp": 10.5}', /^tcp: must be an integer/),
    bad("negative", "/api/v1/timeouts", '{"udp": -1}', /^udp: must be an integer/),
    bad("out of range", "/api/v1/timeouts", '{"tcpfin": 1e99}', /^tcpfin: must be an integer/),
    bad("an unknown field", "/api/v1/timeouts", '{"tcp": 10, "admin": 1}', /^admin: unknown/),
    bad("a prototype key", "/api/v1/timeouts", '{"__proto__": {"tcp": 1}}', /unknown field/),
    bad("nothing to set", "/api/v1/timeouts", "{}", /at least one/),
    bad("weight as text", WEIGHT, '{"weight": "5"}', /^weight: must be an integer/),
    bad("weight as a boolean", WEIGHT, '{"weight": true}', /^weight: must be an integer/),
    bad("weight too large", WEIGHT, '{"weight": 65536}', /^weight: must be an integer/),
    bad("weight missing", WEIGHT, '{"wieght": 5}', /wieght: unknown field|weight/),
    bad("cut as text", "/api/v1/config/reload", '{"cut": "yes"}', /^cut: must be true/, "POST"),
    bad("reload with junk", "/api/v1/config/reload", '{"cut": false', /must be JSON/, "POST"),
  );
  await refuseAll(rows, TOKEN);
});

Deno.test("admin security: names that try to escape are refused and change nothing", async () => {
  const long = "a".repeat(10_000);
  // 400 for a name or port no real can have, 404 for a well-formed one that does not exist.
  const paths: [string, string, string, number][] = [
    ["traversal in the service", "PUT", `/api/v1/services/..%2F..%2Fetc/reals/${REAL}/weight`, 400],
    ["a slash in the service", "PUT", `/api/v1/services/web%2Fx/reals/${REAL}/weight`, 400],
    ["a NUL in the service", "PUT", `/api/v1/services/web%00/reals/${REAL}/weight`, 400],
    ["a very long service", "PUT", `/api/v1/services/${long}/reals/${REAL}/weight`, 400],
    // Hono folds a literal "/../" away before routing: that one is no such endpoint.
    ["dot-dot service", "PUT", `/api/v1/services/../reals/${REAL}/weight`, 404],
    ["an unknown service", "PUT", `/api/v1/services/etc/reals/${REAL}/weight`, 404],
    [
      "traversal in the address",
      "PUT",
      "/api/v1/services/web/reals/..%2F..%2Fetc/8080/weight",
      404,
    ],
    ["a NUL in the address", "PUT", "/api/v1/services/web/reals/10.10.10.11%00/8080/weight", 404],
    ["a NUL in the port", "PUT", "/api/v1/services/web/reals/10.10.10.11/8080%00/weight", 400],
    ["a port out of range", "PUT", "/api/v1/services/web/reals/10.10.10.11/80800/weight", 400],
    ["a sign in the port", "PUT", "/api/v1/services/web/reals/10.10.10.11/-8080/weight", 400],
    ["traversal on delete", "DELETE", "/api/v1/services/..%2Fweb", 400],
    ["a NUL on delete", "DELETE", "/api/v1/services/web%00", 400],
    ["a long name on delete", "DELETE", `/api/v1/services/${long}`, 400],
  ];
  const rows: Row[] = paths.map(([what, method, path, status]) => ({
    what,
    method,
    path,
    headers: CHANGE,
    body: method === "PUT" ? '{"weight": 0}' : undefined,
    status,
    reachesApp: true,
  }));
  for (const name of ["../x", "web/x", "a\0b", "x".repeat(64), "", " web"]) {
    rows.push({
      what: `creating a service named ${JSON.stringify(name.slice(0, 10))}`,
      method: "POST",
      path: "/api/v1/services",
      headers: CHANGE,
      body: JSON.stringify({ name, vip: "192.168.1.40", port: 80 }),
      status: 400,
      error: /name/,
      reachesApp: true,
    });
  }
  await refuseAll(rows, TOKEN);
});

Deno.test("admin security: requests made by web pages get 403, also without a token", async () => {
  const browser: [string, Record<string, string>][] = [
    ["a cross-site Origin", { origin: "http://evil.example" }],
    ["Origin null (sandboxed page)", { origin: "null" }],
    ["Sec-Fetch-Site cross-site", { "sec-fetch-site": "cross-site" }],
    ["Sec-Fetch-Site same-origin (a rebound name)", { "sec-fetch-site": "same-origin" }],
    ["a Host that is not loopback (DNS rebinding)", { host: "evil.example:9180" }],
  ];
  const rows: Row[] = [];
  for (const [what, headers] of browser) {
    for (const change of CHANGES) {
      rows.push({
        what,
        ...change,
        headers: { ...CHANGE, ...headers },
        status: 403,
        reachesApp: false,
      });
    }
    rows.push({
      what,
      method: "GET",
      path: "/api/v1/config",
      headers,
      status: 403,
      reachesApp: false,
    });
  }
  await refuseAll(rows, null, true);
  await refuseAll(rows.map((r) => ({ ...r, headers: { ...r.headers, ...AUTH } })), TOKEN, true);

  // A browser's own navigation (typed address) and loopback names pass.
  const { fx, send } = await guarded(null, true);
  try {
    for (const host of ["127.0.0.1:9180", "localhost:9180", "127.0.0.2", "[::1]:9180"]) {
      const res = await send({
        method: "GET",
        path: "/api/v1/services",
        headers: { host, "sec-fetch-site": "none" },
      });
      assert.equal(res.status, 200, host);
    }
  } finally {
    await fx.cleanup();
  }
});

Deno.test("admin token file: regular, owner-only, long enough, one visible token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tunvs-token-" });
  try {
    const write = async (name: string, text: string, mode = 0o600) => {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, text);
      await Deno.chmod(path, mode);
      return path;
    };
    assert.equal(await readAdminToken(await write("ok", `  ${TOKEN}\n`)), TOKEN);
    assert.equal(await readAdminToken(await write("r", TOKEN, 0o400)), TOKEN);
    const refused: [string, RegExp][] = [
      [await write("group", TOKEN, 0o640), /permissions 0640 are too open.*chmod 600/],
      [await write("others", TOKEN, 0o604), /permissions 0604 are too open/],
      [await write("world", TOKEN, 0o666), /permissions 0666 are too open/],
      [await write("gwrite", TOKEN, 0o620), /permissions 0620 are too open/],
      [
        await write("short", "x".repeat(MIN_TOKEN_LENGTH - 1)),
        /has 15 characters; it needs at least 16/,
      ],
      [await write("empty", "\n"), /has 0 characters/],
      [await write("spaces", "correct horse battery staple"), /visible ASCII characters/],
      [await write("lines", `${TOKEN}\n${TOKEN}\n`), /without spaces or line breaks/],
      [await write("big", "x".repeat(5000)), /has 5000 bytes/],
      [`${dir}/missing`, /does not exist; create it/],
      [dir, /is not a regular file/],
    ];
    for (const [path, pattern] of refused) {
      await assert.rejects(readAdminToken(path), (err: unknown) => {
        assert.ok(err instanceof AdminTokenError, String(err));
        assert.match(err.message, pattern, path);
        assert.ok(err.message.includes(path), err.message);
        return true;
      });
    }
    // A symlink is followed, and the file it reaches is what is checked.
    await Deno.symlink(`${dir}/group`, `${dir}/link`);
    await assert.rejects(readAdminToken(`${dir}/link`), /too open/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin token comparison: equal only for the same token, whatever the lengths", () => {
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  for (const other of ["", TOKEN.slice(1), `${TOKEN} `, TOKEN.toUpperCase(), "x".repeat(1000)]) {
    assert.equal(tokenMatches(TOKEN, other), false, other);
  }
});

Deno.test("ipvsadm client: the token file comes from TUNVS_ADMIN_TOKEN_FILE or the config file", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const files: Record<string, { listen: string; tokenFile?: string }> = {
    "/etc/tunvs.yaml": { listen: "unix:/run/tunvs/admin.sock", tokenFile: "/etc/tunvs/token" },
    "appliance.yaml": { listen: "127.0.0.1:9181" },
  };
  const listenIn = (path: string) => files[path] ?? null;
  assert.deepEqual(chooseAdmin(["-Ln", "--config", "/etc/tunvs.yaml"], env({}), listenIn), {
    url: "unix:/run/tunvs/admin.sock",
    source: "admin.listen in /etc/tunvs.yaml",
    args: ["-Ln"],
    tokenFile: { path: "/etc/tunvs/token", source: "admin.token_file in /etc/tunvs.yaml" },
  });
  assert.deepEqual(
    chooseAdmin(["-Ln"], env({ TUNVS_CONFIG: "/etc/tunvs.yaml" }), listenIn).tokenFile,
    { path: "/etc/tunvs/token", source: "admin.token_file in /etc/tunvs.yaml" },
  );
  // The environment's file wins, and is the only source for --admin and TUNVS_ADMIN.
  const fromEnv = { path: "/root/token", source: "TUNVS_ADMIN_TOKEN_FILE" };
  const tokenEnv = { TUNVS_ADMIN_TOKEN_FILE: "/root/token" };
  assert.deepEqual(
    chooseAdmin(["--config=/etc/tunvs.yaml"], env(tokenEnv), listenIn).tokenFile,
    fromEnv,
  );
  assert.deepEqual(chooseAdmin(["--admin", "unix:/x.sock"], env(tokenEnv), listenIn), {
    url: "unix:/x.sock",
    source: "--admin",
    args: [],
    tokenFile: fromEnv,
  });
  assert.equal(
    chooseAdmin(["--admin", "127.0.0.1:1", "--config", "/etc/tunvs.yaml"], env({}), listenIn)
      .tokenFile,
    undefined,
  );
  assert.equal(chooseAdmin([], env({ TUNVS_ADMIN: "h:1" }), listenIn).tokenFile, undefined);
  // A config file without one sends none.
  assert.equal("tokenFile" in chooseAdmin(["-Ln"], env({}), listenIn), false);
});
