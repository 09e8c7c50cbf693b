/**
 * The OpenAPI description (control/openapi.ts) against itself and against the app it describes:
 * structurally sound as OpenAPI 3.1 goes (references resolve, path parameters declared,
 * operations answer, ids unique, examples fit their schemas), the same routes as
 * createAdminApp, appliance.yaml's keys exactly as config.ts accepts them, its example bodies
 * valid configurations, and the app's live answers shaped as documented.
 *
 * @module
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { guardAdminApp } from "../../control/admin_auth.ts";
import { createAdminApp } from "../../control/api.ts";
import { ConfigError, parseConfig } from "../../control/config.ts";
import { EventBus } from "../../control/events.ts";
import { collectMetricsSnapshot, renderMetrics } from "../../control/metrics.ts";
import { ENGINE_COUNTER_NAMES } from "../../dataplane/engine_counters.ts";
import { HealthSupervisor } from "../../control/health/supervisor.ts";
import {
  type JsonSchema,
  OPENAPI,
  type OpenApiMediaType,
  type OpenApiOperation,
  type OpenApiParameter,
  type OpenApiRef,
  type OpenApiResponse,
} from "../../control/openapi.ts";
import { parseIpv4Address } from "../../dataplane/wire/ipv4.ts";
import { TCP_SYN } from "../../dataplane/wire/tcp.ts";
import { adminFixture } from "../fixtures/admin_harness.ts";
import { CLIENT, VIP } from "../fixtures/dataplane_specs.ts";
import { tcp } from "../fixtures/packet_builders.ts";

const METHODS = ["get", "put", "post", "delete"] as const;
type Method = (typeof METHODS)[number];

/** Every operation of the document, with its path and method. */
function operations(): { path: string; method: Method; op: OpenApiOperation }[] {
  const out: { path: string; method: Method; op: OpenApiOperation }[] = [];
  for (const [path, item] of Object.entries(OPENAPI.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (op !== undefined) out.push({ path, method, op });
    }
  }
  return out;
}

/** The value at a local JSON pointer (`#/components/schemas/X`) of the document. */
function resolvePointer(ref: string): unknown {
  assert.ok(ref.startsWith("#/"), `only local references: ${ref}`);
  let node: unknown = OPENAPI;
  for (const part of ref.slice(2).split("/")) {
    const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function deref<T>(x: T | OpenApiRef): T {
  if (typeof x === "object" && x !== null && "$ref" in x && typeof x.$ref === "string") {
    const target = resolvePointer(x.$ref);
    assert.notEqual(target, undefined, `${x.$ref} resolves`);
    return target as T;
  }
  return x as T;
}

/** Every `$ref` in `node`, with where it is. */
function refsIn(node: unknown, at: string, out: [string, string][]): [string, string][] {
  if (Array.isArray(node)) node.forEach((v, i) => refsIn(v, `${at}[${i}]`, out));
  else if (node !== null && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string") out.push([v, at]);
      else if (k !== "example" && k !== "examples") refsIn(v, `${at}.${k}`, out);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A JSON Schema checker for the keywords control/openapi.ts uses.

function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/**
 * Problems of `value` against `s`, each with its place in the value. `strict` also refuses keys
 * an object schema with `properties` does not list (unless it says `additionalProperties`): live
 * answers must have every field documented.
 */
function schemaProblems(s: JsonSchema, value: unknown, at = "$", strict = false): string[] {
  const out: string[] = [];
  if (s.$ref !== undefined) {
    const target = resolvePointer(s.$ref) as JsonSchema | undefined;
    if (target === undefined) return [`${at}: ${s.$ref} does not resolve`];
    out.push(...schemaProblems(target, value, at, strict));
  }
  const t = jsonType(value);
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    const ok = types.some((want) => want === t || (want === "number" && t === "integer"));
    if (!ok) return [...out, `${at}: ${t} is not ${types.join(" or ")}`];
  }
  if (s.enum !== undefined && !s.enum.includes(value as string)) {
    out.push(`${at}: ${JSON.stringify(value)} is not one of ${s.enum.join(", ")}`);
  }
  if (s.const !== undefined && value !== s.const) {
    out.push(`${at}: ${JSON.stringify(value)} is not ${JSON.stringify(s.const)}`);
  }
  if (typeof value === "string") {
    if (s.minLength !== undefined && value.length < s.minLength) out.push(`${at}: too short`);
    if (s.maxLength !== undefined && value.length > s.maxLength) out.push(`${at}: too long`);
    if (s.pattern !== undefined && !new RegExp(s.pattern, "u").test(value)) {
      out.push(`${at}: ${JSON.stringify(value)} does not match ${s.pattern}`);
    }
    if (s.format === "ipv4" && parseIpv4Address(value) === null) {
      out.push(`${at}: ${JSON.stringify(value)} is not an IPv4 address`);
    }
  }
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) out.push(`${at}: ${value} < ${s.minimum}`);
    if (s.maximum !== undefined && value > s.maximum) out.push(`${at}: ${value} > ${s.maximum}`);
  }
  if (Array.isArray(value)) {
    if (s.minItems !== undefined && value.length < s.minItems) out.push(`${at}: too few items`);
    if (s.maxItems !== undefined && value.length > s.maxItems) out.push(`${at}: too many items`);
    const prefix = s.prefixItems ?? [];
    value.forEach((v, i) => {
      const item = i < prefix.length ? prefix[i] : s.items;
      if (item !== undefined) out.push(...schemaProblems(item, v, `${at}[${i}]`, strict));
    });
  }
  if (t === "object") {
    const obj = value as Record<string, unknown>;
    for (const key of s.required ?? []) {
      if (!Object.hasOwn(obj, key)) out.push(`${at}: ${key} is missing`);
    }
    for (const [key, v] of Object.entries(obj)) {
      const declared = s.properties?.[key];
      if (declared !== undefined) out.push(...schemaProblems(declared, v, `${at}.${key}`, strict));
      else if (s.additionalProperties === false) out.push(`${at}: ${key} is not allowed`);
      else if (strict && s.properties !== undefined && s.additionalProperties === undefined) {
        out.push(`${at}: ${key} is not documented`);
      } else if (typeof s.additionalProperties === "object") {
        out.push(...schemaProblems(s.additionalProperties, v, `${at}.${key}`, strict));
      }
    }
  }
  if (
    s.anyOf !== undefined && !s.anyOf.some((x) => schemaProblems(x, value, at, strict).length === 0)
  ) {
    out.push(`${at}: matches none of anyOf`);
  }
  if (s.oneOf !== undefined) {
    const n = s.oneOf.filter((x) => schemaProblems(x, value, at, strict).length === 0).length;
    if (n !== 1) out.push(`${at}: matches ${n} of oneOf, not exactly one`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

Deno.test("openapi: a structurally sound OpenAPI 3.1 document", () => {
  assert.match(OPENAPI.openapi, /^3\.1\.\d+$/);
  assert.ok(OPENAPI.info.title !== "" && OPENAPI.info.version !== "");
  const problems: string[] = [];

  for (const [ref, at] of refsIn(OPENAPI, "$", [])) {
    if (resolvePointer(ref) === undefined) problems.push(`${at}: ${ref} does not resolve`);
  }

  const ids = new Map<string, string>();
  const tags = new Set(OPENAPI.tags.map((t) => t.name));
  const schemes = new Set(Object.keys(OPENAPI.components.securitySchemes));
  const requirements = [
    ...OPENAPI.security,
    ...operations().flatMap(({ op }) => op.security ?? []),
  ];
  for (const req of requirements) {
    for (const name of Object.keys(req)) {
      if (!schemes.has(name)) problems.push(`security names an undeclared scheme ${name}`);
    }
  }

  for (const path of Object.keys(OPENAPI.paths)) {
    if (!path.startsWith("/")) problems.push(`${path}: paths start with /`);
  }
  for (const { path, method, op } of operations()) {
    const where = `${method.toUpperCase()} ${path}`;
    if (op.operationId === "") problems.push(`${where}: no operationId`);
    const other = ids.get(op.operationId);
    if (other !== undefined) problems.push(`${where}: operationId ${op.operationId} of ${other}`);
    ids.set(op.operationId, where);
    for (const tag of op.tags) if (!tags.has(tag)) problems.push(`${where}: undeclared tag ${tag}`);

    const params = (op.parameters ?? []).map((p) => deref<OpenApiParameter>(p));
    const seen = new Set<string>();
    for (const p of params) {
      const key = `${p.in}:${p.name.toLowerCase()}`;
      if (seen.has(key)) problems.push(`${where}: parameter ${p.name} twice`);
      seen.add(key);
      if (p.in === "path" && p.required !== true) {
        problems.push(`${where}: path parameter ${p.name} must be required`);
      }
      if (p.example !== undefined) {
        for (const x of schemaProblems(p.schema, p.example)) {
          problems.push(`${where}: example of ${p.name}: ${x}`);
        }
      }
    }
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const name of templated) {
      if (!params.some((p) => p.in === "path" && p.name === name)) {
        problems.push(`${where}: {${name}} is not declared`);
      }
    }
    for (const p of params) {
      if (p.in === "path" && !templated.includes(p.name)) {
        problems.push(`${where}: path parameter ${p.name} is not in the path`);
      }
    }

    const responses = Object.entries(op.responses);
    if (responses.length === 0) problems.push(`${where}: no responses`);
    if (!responses.some(([status]) => /^2\d\d$/.test(status))) {
      problems.push(`${where}: no success response`);
    }
    const bodies: [string, OpenApiMediaType][] = [];
    for (const [status, r] of responses) {
      if (!/^[1-5]\d\d$/.test(status)) problems.push(`${where}: status ${status}`);
      const response = deref<OpenApiResponse>(r);
      if (response.description === "") problems.push(`${where} ${status}: no description`);
      for (const [type, media] of Object.entries(response.content ?? {})) {
        bodies.push([`${status} ${type}`, media]);
      }
    }
    for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
      bodies.push([`request ${type}`, media]);
    }
    for (const [what, media] of bodies) {
      if (media.example === undefined || !what.endsWith("json")) continue;
      for (const x of schemaProblems(media.schema, media.example)) {
        problems.push(`${where} ${what} example: ${x}`);
      }
    }
  }

  // Every component is used somewhere: none documents something nothing refers to.
  const used = new Set(
    refsIn({ paths: OPENAPI.paths, c: OPENAPI.components }, "$", []).map((r) => r[0]),
  );
  for (const kind of ["schemas", "parameters", "responses", "headers"] as const) {
    for (const name of Object.keys(OPENAPI.components[kind])) {
      if (!used.has(`#/components/${kind}/${name}`)) {
        problems.push(`components.${kind}.${name} is not used`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("openapi: the checker itself finds wrong values", () => {
  // The structural test above relies on schemaProblems; make sure it can fail.
  const real = { $ref: "#/components/schemas/RawReal" };
  assert.deepEqual(schemaProblems(real, { address: "10.0.0.1", weight: 3 }), []);
  assert.equal(schemaProblems(real, { address: "10.0.0.300" }).length, 1);
  assert.equal(schemaProblems(real, { address: "10.0.0.1", weight: 70000 }).length, 1);
  assert.equal(schemaProblems(real, { address: "10.0.0.1", colour: "red" }).length, 1);
  assert.equal(schemaProblems(real, { weight: 1 }).length, 1);
  const notify = { $ref: "#/components/schemas/RawService" };
  assert.equal(schemaProblems(notify, { name: "a", vip: "1.2.3.4", notify_up: 3 }).length, 1);
  assert.equal(schemaProblems({ $ref: "#/components/schemas/Nope" }, 1).length, 1);
  const view = { $ref: "#/components/schemas/Cut" };
  const cut = { service: "web", address: "10.0.0.1", port: 80, cut: 1 };
  assert.deepEqual(schemaProblems(view, { ...cut, extra: 1 }), [], "open by default");
  assert.equal(schemaProblems(view, { ...cut, extra: 1 }, "$", true).length, 1, "strict");
});

Deno.test("openapi: the same routes as createAdminApp (Hono :name is OpenAPI {name})", async () => {
  const fx = await adminFixture("services: []\n");
  try {
    const mounted = new Set(
      fx.app.routes
        .filter((r) => r.method !== "ALL")
        .map((r) => `${r.method} ${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`),
    );
    const documented = new Set(
      operations().map(({ path, method }) => `${method.toUpperCase()} ${path}`),
    );
    assert.ok(mounted.size >= 20, `the app has its routes (${mounted.size})`);
    const undocumented = [...mounted].filter((r) => !documented.has(r));
    assert.deepEqual(undocumented, [], "every route of the app is in OPENAPI.paths");
    const missing = [...documented].filter((r) => !mounted.has(r));
    assert.deepEqual(missing, [], "every documented operation is served");
    if (mounted.has("GET /api/v1/openapi.json")) {
      const res = await fx.app.request("/api/v1/openapi.json");
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), JSON.parse(JSON.stringify(OPENAPI)), "serves OPENAPI");
    }
  } finally {
    await fx.cleanup();
  }
});

/** The keys config.ts allows at the place `yamlWith("zz_unknown")` puts an unknown key. */
function allowedKeys(yamlWith: (key: string) => string): string[] {
  try {
    parseConfig(yamlWith("zz_unknown"), "keys.yaml");
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const issue = err.issues.find((i) => i.message.startsWith('unknown key "zz_unknown"'));
    assert.ok(issue !== undefined, err.message);
    const m = /allowed keys: (.*)$/.exec(issue.message);
    assert.ok(m !== null, issue.message);
    return m[1].split(", ").sort();
  }
  throw new Error("config.ts accepted an unknown key");
}

/** The properties of the schema at `pointer`, sorted. */
function documentedKeys(pointer: string): string[] {
  const s = resolvePointer(pointer) as JsonSchema;
  assert.ok(s?.properties !== undefined, pointer);
  return Object.keys(s.properties).sort();
}

Deno.test("openapi: appliance.yaml's shapes have exactly the keys config.ts accepts", () => {
  const svc = (extra: string) =>
    `services:\n  - { name: a, vip: 192.168.1.31, port: 80, ${extra} }\n`;
  const cases: [string, (k: string) => string][] = [
    ["#/components/schemas/RawConfig", (k) => `${k}: 1\nservices: []\n`],
    [
      "#/components/schemas/RawConfig/properties/admin",
      (k) => `admin: { ${k}: 1 }\nservices: []\n`,
    ],
    [
      "#/components/schemas/RawConfig/properties/dataplane",
      (k) => `dataplane: { ${k}: 1 }\nservices: []\n`,
    ],
    ["#/components/schemas/RawConfig/properties/host", (k) => `host: { ${k}: 1 }\nservices: []\n`],
    ["#/components/schemas/Timeouts", (k) => `timeouts: { ${k}: 1 }\nservices: []\n`],
    [
      "#/components/schemas/RawConfig/properties/synproxy",
      (k) => `synproxy: { ${k}: 1 }\nservices: []\n`,
    ],
    ["#/components/schemas/RawService", (k) => svc(`${k}: 1`)],
    ["#/components/schemas/RawServiceReplacement", (k) => svc(`${k}: 1`)],
    [
      "#/components/schemas/RawService/properties/persistence",
      (k) => svc(`persistence: {${k}: 1}`),
    ],
    [
      "#/components/schemas/RawService/properties/sorry_server",
      (k) => svc(`sorry_server: { address: 10.0.0.9, ${k}: 1 }`),
    ],
    ["#/components/schemas/RawReal", (k) => svc(`reals: [{ address: 10.0.0.1, ${k}: 1 }]`)],
    [
      "#/components/schemas/RawRealReplacement",
      (k) => svc(`reals: [{ address: 10.0.0.1, ${k}: 1 }]`),
    ],
    ["#/components/schemas/RawHealthCheck", (k) => svc(`health_check: { type: tcp, ${k}: 1 }`)],
    [
      "#/components/schemas/RawHealthCheck/properties/http",
      (k) => svc(`health_check: { type: http, http: { ${k}: 1 } }`),
    ],
    [
      "#/components/schemas/RawHealthCheck/properties/udp",
      (k) => svc(`health_check: { type: udp, udp: { ${k}: 1 } }`),
    ],
    [
      "#/components/schemas/RawHealthCheck/properties/exec",
      (k) => svc(`health_check: { type: exec, exec: { ${k}: 1 } }`),
    ],
  ];
  for (const [pointer, yamlWith] of cases) {
    assert.deepEqual(documentedKeys(pointer), allowedKeys(yamlWith), pointer);
  }
});

/** The JSON example of an operation's request body. */
function requestExample(path: string, method: Method): unknown {
  const example = OPENAPI.paths[path][method]?.requestBody?.content["application/json"]?.example;
  assert.notEqual(example, undefined, `${method} ${path} has an example`);
  return structuredClone(example);
}

Deno.test("openapi: the example bodies are valid configurations", () => {
  const service = requestExample("/api/v1/services", "post") as Record<string, unknown>;
  parseConfig(stringify({ services: [service] }), "example.yaml");

  const real = requestExample("/api/v1/services/{name}/reals", "post");
  const web = { name: "web", vip: "192.168.1.31", port: 80, reals: [real] };
  parseConfig(stringify({ services: [web] }), "example.yaml");

  const replacement = requestExample("/api/v1/services/{name}", "put") as Record<string, unknown>;
  parseConfig(stringify({ services: [{ name: "web", ...replacement }] }), "example.yaml");

  const realSettings = requestExample("/api/v1/services/{name}/reals/{address}/{port}", "put");
  const edited = { ...web, reals: [{ address: "10.10.10.13", port: 80, ...Object(realSettings) }] };
  parseConfig(stringify({ services: [edited] }), "example.yaml");

  const list = requestExample("/api/v1/config/services", "put") as { services: unknown[] };
  const config = parseConfig(stringify({ services: list.services }), "example.yaml");
  assert.deepEqual(config.services.map((s) => s.name), ["web", "db"]);

  const validate = OPENAPI.paths["/api/v1/config/validate"].post?.requestBody?.content;
  parseConfig(stringify((validate?.["application/json"].example as { config: unknown }).config));
  parseConfig(String(validate?.["application/yaml"].example));

  // And the checks have teeth: a broken example would be refused.
  assert.throws(
    () => parseConfig(stringify({ services: [{ ...service, port: 70000 }] })),
    ConfigError,
  );
});

const CONFIG = `# the seed 000 lab
timeouts: { tcp: 900, tcpfin: 120, udp: 300 }
services:
  - name: web # the shop
    protocol: tcp
    vip: 192.168.1.31
    port: 80
    scheduler: rr
    reals:
      - { address: 10.10.10.11, port: 80 }
      - { address: 10.10.10.12, port: 80 }
`;

/** One request to the app, and the documented operation it exercises. */
interface Call {
  method: Method;
  /** The documented path. */
  path: string;
  /** The URL requested (the path with its parameters filled in, and a query). */
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
}

/**
 * Sends `call` to `app` and checks the answer against the document: the status is documented for
 * the operation, its content type too, a JSON body fits the schema, and a documented ETag is
 * there. Returns the response (a JSON body already read, a stream untouched).
 */
async function exercise(app: ReturnType<typeof createAdminApp>, call: Call): Promise<Response> {
  const where = `${call.method.toUpperCase()} ${call.url} → ${call.status}`;
  const res = await app.request(call.url, {
    method: call.method.toUpperCase(),
    body: call.body === undefined ? undefined : JSON.stringify(call.body),
    headers: {
      ...(call.body === undefined ? {} : { "content-type": "application/json" }),
      ...call.headers,
    },
  });
  const type = (res.headers.get("content-type") ?? "").split(";")[0].trim();
  const streaming = type === "text/event-stream";
  const body = streaming ? "" : await res.text();
  assert.equal(res.status, call.status, `${where}: ${body}`);
  const op = OPENAPI.paths[call.path][call.method];
  assert.ok(op !== undefined, `${where}: documented`);
  const documented = op.responses[String(res.status)];
  assert.ok(documented !== undefined, `${where}: status ${res.status} is documented`);
  const response = deref<OpenApiResponse>(documented);
  const media = Object.entries(response.content ?? {}).find(([k]) => k.split(";")[0] === type);
  assert.ok(media !== undefined, `${where}: ${type} is documented`);
  if (type === "application/json") {
    const problems = schemaProblems(media[1].schema, JSON.parse(body), "$", true);
    assert.deepEqual(problems, [], `${where}: ${body}`);
  }
  if (res.status < 300 && response.headers?.ETag !== undefined) {
    assert.match(res.headers.get("etag") ?? "", /^"[0-9a-f]{16}"$/, `${where}: ETag`);
  }
  return streaming ? res : new Response(body, { status: res.status, headers: res.headers });
}

Deno.test("openapi: the app's answers have the documented statuses and shapes", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    for (let i = 0; i < 3; i++) {
      const pkt = tcp(CLIENT, 40000 + i, VIP, 80, TCP_SYN);
      assert.equal(fx.engine.process(pkt, 0, pkt.length), pkt.length);
    }
    const real = "/api/v1/services/{name}/reals/{address}/{port}";
    const example = (path: string, method: Method) => requestExample(path, method);
    let version = fx.running.version;
    const ifMatch = () => ({ "if-match": `"${version}"` });
    const calls: (Call | (() => Call))[] = [
      { method: "get", path: "/healthz", url: "/healthz", status: 200 },
      { method: "get", path: "/ready", url: "/ready", status: 200 },
      { method: "get", path: "/api/v1/services", url: "/api/v1/services", status: 200 },
      { method: "get", path: "/api/v1/services/{name}", url: "/api/v1/services/web", status: 200 },
      { method: "get", path: "/api/v1/services/{name}", url: "/api/v1/services/no", status: 404 },
      { method: "get", path: "/api/v1/stats", url: "/api/v1/stats", status: 200 },
      {
        method: "get",
        path: "/api/v1/connections",
        url: "/api/v1/connections?limit=2&state=syn_recv",
        status: 200,
      },
      { method: "get", path: "/api/v1/connections", url: "/api/v1/connections?x=1", status: 400 },
      { method: "get", path: "/api/v1/timeouts", url: "/api/v1/timeouts", status: 200 },
      { method: "get", path: "/api/v1/config", url: "/api/v1/config", status: 200 },
      { method: "get", path: "/api/v1/config", url: "/api/v1/config?format=yaml", status: 200 },
      { method: "get", path: "/api/v1/config", url: "/api/v1/config?format=xml", status: 400 },
      {
        method: "post",
        path: "/api/v1/config/validate",
        url: "/api/v1/config/validate",
        body: example("/api/v1/config/validate", "post"),
        status: 200,
      },
      {
        method: "post",
        path: "/api/v1/config/validate",
        url: "/api/v1/config/validate",
        body: { config: { services: [{ name: "x", vip: "1.2.3.4", port: 70000 }] } },
        status: 422,
      },
      {
        method: "post",
        path: "/api/v1/services",
        url: "/api/v1/services",
        body: example("/api/v1/services", "post"),
        status: 428,
      },
      {
        method: "post",
        path: "/api/v1/services",
        url: "/api/v1/services",
        body: example("/api/v1/services", "post"),
        headers: { "if-match": '"0000000000000000"' },
        status: 409,
      },
      () => ({
        method: "post",
        path: "/api/v1/services",
        url: "/api/v1/services",
        body: { ...Object(example("/api/v1/services", "post")), vip: "192.168.1.300" },
        headers: ifMatch(),
        status: 422,
      }),
      () => ({
        method: "post",
        path: "/api/v1/services",
        url: "/api/v1/services",
        body: example("/api/v1/services", "post"),
        headers: ifMatch(),
        status: 201,
      }),
      () => ({
        method: "post",
        path: "/api/v1/services",
        url: "/api/v1/services",
        body: example("/api/v1/services", "post"),
        headers: ifMatch(),
        status: 409,
      }),
      () => ({
        method: "post",
        path: "/api/v1/services/{name}/reals",
        url: "/api/v1/services/web/reals",
        body: example("/api/v1/services/{name}/reals", "post"),
        headers: ifMatch(),
        status: 201,
      }),
      () => ({
        method: "put",
        path: real,
        url: "/api/v1/services/web/reals/10.10.10.13/80",
        body: example(real, "put"),
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "put",
        path: `${real}/weight`,
        url: "/api/v1/services/web/reals/10.10.10.12/80/weight",
        body: example(`${real}/weight`, "put"),
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "put",
        path: `${real}/weight`,
        url: "/api/v1/services/web/reals/10.10.10.12/80/weight",
        body: { weight: 70000 },
        headers: ifMatch(),
        status: 400,
      }),
      () => ({
        method: "post",
        path: `${real}/drain`,
        url: "/api/v1/services/web/reals/10.10.10.12/80/drain",
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "post",
        path: `${real}/restore`,
        url: "/api/v1/services/web/reals/10.10.10.12/80/restore",
        headers: ifMatch(),
        status: 200,
      }),
      {
        method: "post",
        path: `${real}/cut`,
        url: "/api/v1/services/web/reals/10.10.10.11/80/cut",
        status: 200,
      },
      () => ({
        method: "delete",
        path: real,
        url: "/api/v1/services/web/reals/10.10.10.13/80?cut=true",
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "delete",
        path: real,
        url: "/api/v1/services/web/reals/10.10.10.19/80",
        headers: ifMatch(),
        status: 404,
      }),
      () => ({
        method: "put",
        path: "/api/v1/services/{name}",
        url: "/api/v1/services/web",
        body: example("/api/v1/services/{name}", "put"),
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "put",
        path: "/api/v1/timeouts",
        url: "/api/v1/timeouts",
        body: example("/api/v1/timeouts", "put"),
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "put",
        path: "/api/v1/config/services",
        url: "/api/v1/config/services",
        body: example("/api/v1/config/services", "put"),
        headers: ifMatch(),
        status: 200,
      }),
      () => ({
        method: "delete",
        path: "/api/v1/services/{name}",
        url: "/api/v1/services/db",
        headers: ifMatch(),
        status: 200,
      }),
      {
        method: "post",
        path: "/api/v1/config/reload",
        url: "/api/v1/config/reload",
        body: example("/api/v1/config/reload", "post"),
        status: 200,
      },
      {
        method: "post",
        path: "/api/v1/stats/zero",
        url: "/api/v1/stats/zero?service=web",
        status: 200,
      },
      {
        method: "post",
        path: "/api/v1/stats/zero",
        url: "/api/v1/stats/zero?service=nope",
        status: 400,
      },
    ];
    for (const entry of calls) {
      const res = await exercise(fx.app, typeof entry === "function" ? entry() : entry);
      const tag = res.headers.get("etag");
      if (tag !== null && res.status < 300) version = tag.slice(1, -1);
      await res.body?.cancel();
    }
    assert.equal(version, fx.running.version, "the ETags followed the changes");
  } finally {
    await fx.cleanup();
  }
});

Deno.test("openapi: health, metrics and events answer as documented", async () => {
  const fx = await adminFixture(CONFIG);
  const supervisor = new HealthSupervisor({ reapply: () => {}, log: () => {} });
  supervisor.sync(fx.running.config);
  const bus = new EventBus();
  try {
    const app = createAdminApp({
      running: fx.running,
      request: (name, params) => Promise.resolve(fx.requests.answer(name, params, fx.engine.now)),
      health: supervisor,
      events: bus,
    });
    const real = "/api/v1/services/{name}/reals/{address}/{port}/health";
    const at = "/api/v1/services/web/reals/10.10.10.11/80/health";
    const calls: Call[] = [
      { method: "get", path: "/api/v1/health", url: "/api/v1/health", status: 200 },
      { method: "get", path: real, url: at, status: 200 },
      {
        method: "get",
        path: real,
        url: "/api/v1/services/web/reals/10.10.10.19/80/health",
        status: 404,
      },
      {
        method: "put",
        path: `${real}/force`,
        url: `${at}/force`,
        body: requestExample(`${real}/force`, "put"),
        status: 200,
      },
      {
        method: "put",
        path: `${real}/force`,
        url: `${at}/force`,
        body: { state: null },
        status: 200,
      },
      {
        method: "put",
        path: `${real}/force`,
        url: `${at}/force`,
        body: { state: "x" },
        status: 400,
      },
      // Reals without a check cannot be paused.
      { method: "post", path: `${real}/pause`, url: `${at}/pause`, status: 409 },
      { method: "post", path: `${real}/resume`, url: `${at}/resume`, status: 409 },
      { method: "get", path: "/metrics", url: "/metrics", status: 200 },
      { method: "get", path: "/api/v1/events", url: "/api/v1/events?types=nope", status: 400 },
    ];
    for (const call of calls) await (await exercise(app, call)).body?.cancel();

    const res = await exercise(app, {
      method: "get",
      path: "/api/v1/events",
      url: "/api/v1/events?types=drops",
      status: 200,
    });
    const reader = res.body!.getReader();
    bus.publish("drops", { drops: { no_service: 3 }, total: 3, intervalMs: 1000 });
    let text = "";
    const decoder = new TextDecoder();
    const deadline = Date.now() + 2000;
    // An SSE event ends with an empty line; the data line need not be its last.
    while (!/^data: .*\n(?:[^\n]+\n)*\n/m.test(text) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const data = /^data: (.*)$/m.exec(text);
    assert.ok(data !== null, text);
    const envelope = JSON.parse(data[1]);
    assert.deepEqual(Object.keys(envelope), ["id", "type", "time", "data"]);
    assert.equal(envelope.type, "drops");
    assert.match(text, new RegExp(`^id: ${envelope.id}$`, "m"));
    await reader.cancel();
  } finally {
    bus.close();
    supervisor.stop();
    await fx.cleanup();
  }
});

Deno.test("openapi: the guards' refusals (401, 403, 413, 415) are documented", async () => {
  const fx = await adminFixture(CONFIG);
  try {
    const token = "0123456789abcdef0123";
    const guarded = guardAdminApp(fx.app, { token, maxBodyBytes: 1024 });
    const auth = { authorization: `Bearer ${token}`, "if-match": "*" };
    const service = JSON.stringify(requestExample("/api/v1/services", "post"));
    const cases: [string, RequestInit, number][] = [
      ["/api/v1/services", { method: "GET" }, 401],
      ["/api/v1/services", { method: "GET", headers: { authorization: "Bearer wrong" } }, 401],
      ["/api/v1/services", { method: "GET", headers: { ...auth, origin: "http://x" } }, 403],
      [
        "/api/v1/services",
        {
          method: "POST",
          body: service,
          // As an HTTP client frames it: the guards know a body by its Content-Length.
          headers: { ...auth, "content-type": "text/plain", "content-length": `${service.length}` },
        },
        415,
      ],
      [
        "/api/v1/services",
        {
          method: "POST",
          body: JSON.stringify({ name: "x".repeat(2000) }),
          headers: { ...auth, "content-type": "application/json" },
        },
        413,
      ],
    ];
    const op = OPENAPI.paths["/api/v1/services"];
    for (const [url, init, status] of cases) {
      const res = await guarded.request(url, init);
      const body = await res.json();
      assert.equal(res.status, status, JSON.stringify(body));
      const documented = (init.method === "GET" ? op.get : op.post)?.responses[String(status)];
      assert.ok(documented !== undefined, `${init.method} ${url} ${status} is documented`);
      const media = deref<OpenApiResponse>(documented).content?.["application/json"];
      assert.ok(media !== undefined);
      assert.deepEqual(schemaProblems(media.schema, body, "$", true), []);
    }
    const open = await guarded.request("/healthz");
    assert.equal(open.status, 200, "/healthz needs no token, as its empty security says");
    assert.deepEqual(OPENAPI.paths["/healthz"].get?.security, []);
  } finally {
    await fx.cleanup();
  }
});

Deno.test("docs/api.md names every metric family and drop reason /metrics has", async () => {
  const guide = await Deno.readTextFile(new URL("../../docs/api.md", import.meta.url));
  const section = guide.slice(guide.indexOf("## Metrics"), guide.indexOf("## ipvsadm"));
  const fx = await adminFixture(CONFIG);
  try {
    const labels = { service: "web", address: "10.10.10.11", port: 80 };
    const snapshot = await collectMetricsSnapshot(
      (name, params) => Promise.resolve(fx.requests.answer(name, params, fx.engine.now)),
      fx.running.config,
      {
        realHealth: () => "up",
        health: {
          reals: [{ ...labels, up: 1, down: 0 }],
          checks: [{ type: "tcp", run: 1, failed: 0, attempts: 1 }],
          services: [{ service: "web", up: 1, down: 0 }],
          servicesDown: [],
        },
        config: { version: "v", reloadSuccesses: 0, reloadFailures: 0, lastReloadSeconds: 1 },
      },
    );
    const rendered = [...renderMetrics(snapshot).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    // Counters without a name of their own: the guide gives the rule, not each name.
    const named = rendered.filter((n) =>
      n === "tunvs_dataplane_up" || !/^tunvs_dataplane_/.test(n)
    );
    const listed = [...section.matchAll(/`((?:tunvs|process)_[a-z_]+)`/g)].map((m) => m[1]);
    assert.deepEqual(named.filter((n) => !listed.includes(n)), [], "families the guide misses");
    assert.deepEqual(listed.filter((n) => !rendered.includes(n)), [], "families /metrics lacks");
    const reasons = ENGINE_COUNTER_NAMES.filter((n) => n.startsWith("drop_")).map((n) =>
      n.slice(5)
    );
    const paragraph = section.slice(section.indexOf("The drop reasons"));
    assert.deepEqual(reasons.filter((r) => !paragraph.includes(`\`${r}\``)), [], "drop reasons");
  } finally {
    await fx.cleanup();
  }
});
