/**
 * The admin API described in OpenAPI 3.1, served at `GET /api/v1/openapi.json`. Written by hand
 * next to the endpoints (api.ts, api_changes.ts, event_stream.ts, metrics.ts) rather than derived
 * from their zod schemas, so that it reads as documentation; tests/unit/openapi.test.ts keeps it
 * honest: every route of the app is described, the raw service and real shapes have exactly the
 * keys config.ts accepts, and live answers match the schemas given here. docs/api.md is the
 * operator's guide to the same endpoints.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { CONN_STATE_NAMES } from "../dataplane/conn/state.ts";
import { FORWARD_METHODS as IPVSADM_FORWARD_NAMES } from "../dataplane/service.ts";
import { LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT } from "../dataplane/stats/conn_listing.ts";
import { TUN_IO_CHOICES } from "../dataplane/tun_io_choice.ts";
import {
  SYNPROXY_DEFAULTS,
  SYNPROXY_MAX_MSS,
  SYNPROXY_MIN_MSS,
} from "../dataplane/synproxy/synproxy.ts";
import {
  CONFIG_DEFAULTS,
  FORWARD_METHODS,
  MAX_THRESHOLD,
  MAX_TIMEOUT_SECONDS,
  PROTOCOLS,
  SCHEDULER_FLAGS,
  SCHEDULERS,
} from "./config.ts";
import { EVENT_TYPES } from "./events.ts";
import { HEALTH_CHECK_TYPES } from "./health/types.ts";

/** JSON types a schema can name. */
export type JsonType = "string" | "integer" | "number" | "boolean" | "object" | "array" | "null";

/** The part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) this document needs. */
export interface JsonSchema {
  $ref?: string;
  type?: JsonType | JsonType[];
  description?: string;
  format?: string;
  enum?: readonly (string | number | boolean | null)[];
  const?: string | number | boolean | null;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: JsonSchema;
  prefixItems?: JsonSchema[];
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  examples?: unknown[];
}

/** A reference to a reusable component. */
export interface OpenApiRef {
  $ref: string;
}

/** A path, query or header parameter. */
export interface OpenApiParameter {
  name: string;
  in: "path" | "query" | "header";
  required?: boolean;
  description: string;
  schema: JsonSchema;
  example?: unknown;
}

/** One media type of a body: its schema and an example. */
export interface OpenApiMediaType {
  schema: JsonSchema;
  example?: unknown;
}

/** A response header. */
export interface OpenApiHeader {
  description: string;
  schema: JsonSchema;
}

/** One response of an operation. */
export interface OpenApiResponse {
  description: string;
  headers?: Record<string, OpenApiHeader | OpenApiRef>;
  content?: Record<string, OpenApiMediaType>;
}

/** A request body. */
export interface OpenApiRequestBody {
  description?: string;
  required?: boolean;
  content: Record<string, OpenApiMediaType>;
}

/** A security requirement: scheme name → scopes (none for bearer tokens). */
export type OpenApiSecurityRequirement = Record<string, string[]>;

/** One operation (a method on a path). */
export interface OpenApiOperation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  parameters?: (OpenApiParameter | OpenApiRef)[];
  requestBody?: OpenApiRequestBody;
  responses: Record<string, OpenApiResponse | OpenApiRef>;
  security?: OpenApiSecurityRequirement[];
}

/** The methods of one path. */
export interface OpenApiPathItem {
  get?: OpenApiOperation;
  put?: OpenApiOperation;
  post?: OpenApiOperation;
  delete?: OpenApiOperation;
}

/** An HTTP bearer scheme. */
export interface OpenApiSecurityScheme {
  type: "http";
  scheme: "bearer";
  description: string;
}

/** A whole OpenAPI 3.1 document, as far as this API needs one. */
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string };
  servers: { url: string; description: string }[];
  tags: { name: string; description: string }[];
  security: OpenApiSecurityRequirement[];
  paths: Record<string, OpenApiPathItem>;
  components: {
    schemas: Record<string, JsonSchema>;
    parameters: Record<string, OpenApiParameter>;
    responses: Record<string, OpenApiResponse>;
    headers: Record<string, OpenApiHeader>;
    securitySchemes: Record<string, OpenApiSecurityScheme>;
  };
}

// ---------------------------------------------------------------------------------------------
// Shorthands. Each stands for one JSON Schema or OpenAPI fragment; the document below spells
// out everything else.

/** `{$ref}` to a schema of components.schemas. */
function schema(name: string): JsonSchema {
  return { $ref: `#/components/schemas/${name}` };
}

/** `{$ref}` to a component of another kind (parameters, responses, headers). */
function component(kind: "parameters" | "responses" | "headers", name: string): OpenApiRef {
  return { $ref: `#/components/${kind}/${name}` };
}

function integer(minimum: number, maximum: number, description?: string): JsonSchema {
  return {
    type: "integer",
    minimum,
    maximum,
    ...(description === undefined ? {} : { description }),
  };
}

function count(description: string): JsonSchema {
  return { type: "integer", minimum: 0, description };
}

function bool(description: string): JsonSchema {
  return { type: "boolean", description };
}

function text(description: string): JsonSchema {
  return { type: "string", description };
}

function ipv4(description: string): JsonSchema {
  return { type: "string", format: "ipv4", description };
}

function nullable(s: JsonSchema): JsonSchema {
  return { anyOf: [s, { type: "null" }] };
}

/** An object whose every listed property is required. */
function record(properties: Record<string, JsonSchema>, description?: string): JsonSchema {
  return {
    type: "object",
    ...(description === undefined ? {} : { description }),
    properties,
    required: Object.keys(properties),
  };
}

/** `base` (an object schema) with further properties that may be absent. */
function withOptional(base: JsonSchema, optional: Record<string, JsonSchema>): JsonSchema {
  return {
    ...base,
    properties: { ...(base.properties as Record<string, JsonSchema>), ...optional },
  };
}

/** A JSON body with its schema and example. */
function jsonContent(s: JsonSchema, example?: unknown): Record<string, OpenApiMediaType> {
  return { "application/json": { schema: s, ...(example === undefined ? {} : { example }) } };
}

/** A JSON response. */
function jsonResponse(description: string, s: JsonSchema, example?: unknown): OpenApiResponse {
  return { description, content: jsonContent(s, example) };
}

/** A JSON response carrying the configuration's ETag. */
function taggedResponse(description: string, s: JsonSchema, example?: unknown): OpenApiResponse {
  return {
    ...jsonResponse(description, s, example),
    headers: { ETag: component("headers", "ETag") },
  };
}

/** The answers every guarded endpoint may give before the endpoint itself runs. */
const GUARD_RESPONSES = {
  "401": component("responses", "Unauthorized"),
  "403": component("responses", "Forbidden"),
};

/** The answers every endpoint that reads a JSON body may give besides its own. */
const BODY_RESPONSES = {
  "413": component("responses", "PayloadTooLarge"),
  "415": component("responses", "UnsupportedMediaType"),
};

/** The answers of every configuration change (see api_changes.ts). */
const CHANGE_RESPONSES = {
  "400": component("responses", "BadRequest"),
  "404": component("responses", "NotFound"),
  "409": component("responses", "Conflict"),
  "422": component("responses", "Unprocessable"),
  "428": component("responses", "PreconditionRequired"),
  "500": component("responses", "InternalError"),
  "501": component("responses", "NotAvailable"),
  ...GUARD_RESPONSES,
};

/** The path parameters naming one real of one service. */
const REAL_PATH = [
  component("parameters", "ServiceName"),
  component("parameters", "RealAddress"),
  component("parameters", "RealPort"),
];

// ---------------------------------------------------------------------------------------------
// appliance.yaml's shapes, as the change endpoints take them (snake_case keys, the file's
// ranges and defaults; see control/config.ts).

const SERVICE_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$";

const notifyCommand: JsonSchema = {
  description: "A program and its arguments, run without a shell: a command line split on " +
    "whitespace, or a list of words.",
  oneOf: [
    { type: "string", minLength: 1 },
    { type: "array", items: { type: "string" }, minItems: 1 },
  ],
};

const RAW_HEALTH_CHECK: JsonSchema = {
  type: "object",
  description: "keepalived's checkers. A real's block overrides its service's key by key; " +
    "defaults: interval 60, timeout 5, retry 1 (exec 0), delay_before_retry 1 (http 3), rise 1, " +
    "fall 1, alpha false.",
  additionalProperties: false,
  properties: {
    type: { type: "string", enum: HEALTH_CHECK_TYPES },
    interval: { type: "number", minimum: 0.1, maximum: 86400, description: "delay_loop, s" },
    timeout: { type: "number", minimum: 0.1, maximum: 3600, description: "connect_timeout, s" },
    retry: integer(0, 100, "extra attempts before a round fails"),
    delay_before_retry: { type: "number", minimum: 0, maximum: 3600 },
    rise: integer(1, 100, "passing rounds that bring a down real up"),
    fall: integer(1, 100, "failing rounds that take an up real down"),
    alpha: bool("start down until the first pass"),
    port: integer(1, 65535, "port probed instead of the real's"),
    http: {
      type: "object",
      additionalProperties: false,
      properties: {
        method: { type: "string", pattern: "^[A-Z]+$", default: "GET" },
        path: { type: "string", pattern: "^/\\S*$", default: "/" },
        status: { type: "array", items: integer(100, 599), minItems: 1 },
        digest: nullable({ type: "string", pattern: "^[0-9a-fA-F]{32}$" }),
        substring: nullable({ type: "string" }),
        host: nullable({ type: "string" }),
      },
    },
    udp: {
      type: "object",
      additionalProperties: false,
      properties: { payload: { type: "string" }, expect: nullable({ type: "string" }) },
    },
    exec: {
      type: "object",
      additionalProperties: false,
      properties: {
        command: {
          oneOf: [{ type: "string" }, { type: "array", items: { type: "string" } }],
        },
        dynamic: bool("misc_dynamic: exit 2..255 means up with weight exit-2"),
      },
    },
  },
};

const RAW_REAL_PROPERTIES: Record<string, JsonSchema> = {
  address: ipv4("The real server (unicast)."),
  port: integer(
    1,
    65535,
    "Absent: the service's port (a port group's or port-0 service's reals follow the client's).",
  ),
  weight: { ...integer(0, 65535), default: CONFIG_DEFAULTS.weight },
  upper_threshold: { ...integer(0, MAX_THRESHOLD, "ipvsadm -x; 0 = no limit"), default: 0 },
  lower_threshold: { ...integer(0, MAX_THRESHOLD, "ipvsadm -y; 0 = 3/4 of upper"), default: 0 },
  drain: bool("Set by …/drain: weight 0 for new connections, its own weight kept."),
  health_check: schema("RawHealthCheck"),
  inhibit_on_failure: bool("A failed real keeps weight 0 instead of leaving."),
  notify_up: notifyCommand,
  notify_down: notifyCommand,
};

const RAW_SERVICE_PROPERTIES: Record<string, JsonSchema> = {
  name: {
    type: "string",
    pattern: SERVICE_NAME_PATTERN,
    description: "Unique; names the service in every path.",
  },
  protocol: { type: "string", enum: PROTOCOLS, default: CONFIG_DEFAULTS.protocol },
  vip: ipv4("The virtual address (unicast); give vip or fwmark."),
  port: integer(0, 65535, "0 (any port) only with persistence; give port or ports."),
  fwmark: integer(
    1,
    0xffffffff,
    "A firewall-mark service (ipvsadm -f): takes every packet the host's netfilter rule " +
      "marks with it, TCP or UDP, any address and port; then no vip, port, ports or protocol.",
  ),
  vips: {
    type: "array",
    items: { type: "string", format: "ipv4" },
    description: "A firewall-mark service's VIPs, which tunvs routes in and answers ARP for.",
  },
  ports: {
    type: "array",
    minItems: 1,
    description: "A port group: ports and FIRST-LAST ranges that share persistence.",
    items: {
      oneOf: [
        integer(1, 65535),
        { type: "string", pattern: "^\\s*[0-9]{1,5}\\s*-\\s*[0-9]{1,5}\\s*$" },
      ],
    },
  },
  persistence: {
    type: "object",
    description: "ipvsadm -p TIMEOUT -M NETMASK.",
    additionalProperties: false,
    properties: {
      timeout: {
        ...integer(1, MAX_TIMEOUT_SECONDS),
        default: CONFIG_DEFAULTS.persistence.timeout,
      },
      netmask: {
        type: "string",
        format: "ipv4",
        default: CONFIG_DEFAULTS.persistence.netmask,
      },
    },
  },
  one_packet: bool("ipvsadm -o; UDP only."),
  scheduler: { type: "string", enum: SCHEDULERS, default: CONFIG_DEFAULTS.scheduler },
  scheduler_flags: {
    type: "array",
    items: { type: "string", enum: SCHEDULER_FLAGS },
    description: "ipvsadm -b; each flag belongs to its scheduler (sh-…, mh-…).",
  },
  forward: {
    type: "string",
    enum: FORWARD_METHODS,
    default: CONFIG_DEFAULTS.forward,
    description: "nat (-m), fullnat (--fullnat), tunnel (-i), dr (-g).",
  },
  local_addresses: {
    type: "array",
    items: { type: "string", format: "ipv4" },
    description: "FULLNAT only: this service's local addresses instead of the global pool.",
  },
  toa: bool("FULLNAT over TCP: the client's address as a TCP option."),
  synproxy: bool("NAT or FULLNAT over TCP: SYN cookies answer the handshake first."),
  reals: { type: "array", items: schema("RawReal"), default: [] },
  health_check: schema("RawHealthCheck"),
  inhibit_on_failure: bool("Failed reals keep weight 0 instead of leaving."),
  expire_on_failure: bool("Connections of a real that leaves on failure are cut."),
  notify_up: notifyCommand,
  notify_down: notifyCommand,
  sorry_server: {
    type: "object",
    description: "Takes new connections while every real is down.",
    additionalProperties: false,
    required: ["address"],
    properties: { address: ipv4("The sorry server."), port: integer(1, 65535) },
  },
  quorum: integer(1, 0xffffffff, "Live weight the service needs to be up (default 1)."),
  hysteresis: integer(0, 0xffffffff, "Slack around quorum (default 0)."),
};

const EXAMPLE_SERVICE = {
  name: "db",
  protocol: "tcp",
  vip: "192.168.1.31",
  port: 3306,
  scheduler: "wlc",
  forward: "nat",
  reals: [
    { address: "10.10.10.11", weight: 2 },
    { address: "10.10.10.12", upper_threshold: 500 },
  ],
};

const EXAMPLE_REAL = { address: "10.10.10.13", port: 80, weight: 1 };

const EXAMPLE_WEB = {
  name: "web",
  protocol: "tcp",
  vip: "192.168.1.31",
  port: 80,
  scheduler: "rr",
  reals: [{ address: "10.10.10.11", port: 80 }, { address: "10.10.10.12", port: 80 }],
};

// ---------------------------------------------------------------------------------------------
// What the endpoints answer.

const TRAFFIC_PROPERTIES: Record<string, JsonSchema> = {
  conns: count("Connections scheduled."),
  inPkts: count("Packets client → real."),
  outPkts: count("Packets real → client."),
  inBytes: count("Bytes client → real."),
  outBytes: count("Bytes real → client."),
  cps: count("Connections per second (IPVS's 2-second estimator)."),
  inPps: count("Packets per second in."),
  outPps: count("Packets per second out."),
  inBps: count("Bytes per second in."),
  outBps: count("Bytes per second out."),
};

const COUNT_PAIR = record({
  kept: count("kept"),
  added: count("added"),
  removed: count("removed"),
  draining: count("draining"),
});

const HEALTH_STATE: JsonSchema = { type: "string", enum: ["up", "down"] };

/** Counts of a health state's changes. */
const TRANSITIONS = record({ up: count("changes to up"), down: count("changes to down") });

const SCHEMAS: Record<string, JsonSchema> = {
  Error: {
    type: "object",
    description: "Every refusal. `field` names the request field (a query parameter, a body " +
      "key, `If-Match`, or the configuration path such as services[1].vip) when one is to " +
      "blame; `error` then starts with it.",
    required: ["error"],
    properties: {
      error: text("What is wrong and what to do."),
      field: text("The field at fault."),
      issues: {
        type: "array",
        description: "422: every problem of the refused candidate configuration.",
        items: record({ path: text("e.g. services[1].port"), message: text("The problem.") }),
      },
      version: text("409 on a version conflict: the version now in force (also the ETag)."),
      fileChanged: {
        type: "boolean",
        const: true,
        description: "409: appliance.yaml was edited on disk since tunvs read it; reload first.",
      },
    },
  },
  RawHealthCheck: RAW_HEALTH_CHECK,
  RawReal: {
    type: "object",
    description: "A real as appliance.yaml writes it (reals[] of a service).",
    additionalProperties: false,
    required: ["address"],
    properties: RAW_REAL_PROPERTIES,
  },
  RawRealReplacement: {
    type: "object",
    description: "A real's new settings. Address and port come from the path; when given they " +
      "must match it (move a real by delete and create).",
    additionalProperties: false,
    properties: RAW_REAL_PROPERTIES,
  },
  RawService: {
    type: "object",
    description: "A service as appliance.yaml writes it (services[]); give vip with port or " +
      "ports, or fwmark.",
    additionalProperties: false,
    required: ["name"],
    properties: RAW_SERVICE_PROPERTIES,
  },
  RawServiceReplacement: {
    type: "object",
    description: "A service's new settings. The name comes from the path (when given it must " +
      "match); its reals stay as they are unless `reals` is given.",
    additionalProperties: false,
    properties: RAW_SERVICE_PROPERTIES,
  },
  RawConfig: {
    type: "object",
    description: "appliance.yaml as data (snake_case keys), as the operator wrote it.",
    additionalProperties: false,
    required: ["services"],
    properties: {
      admin: {
        type: "object",
        additionalProperties: false,
        properties: {
          listen: {
            type: "string",
            default: CONFIG_DEFAULTS.adminListen,
            description: "HOST:PORT (IPv4) or unix:/PATH.",
          },
          token_file: text(
            "Absolute path of the file holding the bearer token; required " +
              "when listen is not loopback.",
          ),
        },
      },
      dataplane: {
        type: "object",
        additionalProperties: false,
        properties: {
          tun: { type: "string", default: CONFIG_DEFAULTS.tun, maxLength: 15 },
          offloads: {
            type: "boolean",
            default: CONFIG_DEFAULTS.offloads,
            description: "Checksum and TSO/USO offloads on the TUN (read at start).",
          },
          workers: {
            type: "integer",
            minimum: 1,
            maximum: 16,
            description:
              "Dataplane workers, one per TUN queue (read at start); default one per core (1 without the steering program).",
          },
          io: {
            type: "string",
            enum: [...TUN_IO_CHOICES],
            default: CONFIG_DEFAULTS.io,
            description: "How TUN batches are read and written: one syscall per packet, or one " +
              "io_uring_enter per batch, falling back to syscalls when io_uring is refused " +
              "(read at start).",
          },
        },
      },
      host: {
        type: "object",
        additionalProperties: false,
        properties: { uplink: { type: "string" }, realside: { type: "string" } },
      },
      timeouts: { ...schema("Timeouts"), description: "Defaults: tcp 900, tcpfin 120, udp 300." },
      local_addresses: {
        type: "array",
        items: { type: "string", format: "ipv4" },
        description: "FULLNAT's global local address pool.",
      },
      synproxy: {
        type: "object",
        description: "The SYN proxy of services with synproxy: true.",
        additionalProperties: false,
        properties: {
          mss: {
            ...integer(SYNPROXY_MIN_MSS, SYNPROXY_MAX_MSS, "MSS the cookie SYN-ACK announces."),
            default: SYNPROXY_DEFAULTS.mss,
          },
          key_rotation: {
            ...integer(1, 86400, "Seconds between cookie key rotations."),
            default: SYNPROXY_DEFAULTS.keyRotationSeconds,
          },
        },
      },
      services: { type: "array", items: schema("RawService") },
    },
  },
  Config: record({
    version: text("The configuration's version (also the ETag)."),
    config: schema("RawConfig"),
    effective: {
      type: "object",
      description: "The validated model with every default filled in (camelCase keys): what " +
        "runs. Informational; changes are made on `config`'s shape.",
    },
  }),
  ConfigIssue: record({
    line: integer(1, Number.MAX_SAFE_INTEGER),
    col: integer(1, Number.MAX_SAFE_INTEGER),
    path: text("e.g. services[0].port; empty for a problem of the whole file"),
    message: text("The problem."),
  }),
  Validation: record({
    valid: { type: "boolean" },
    issues: { type: "array", items: schema("ConfigIssue") },
  }),
  ApplyResult: record({
    services: COUNT_PAIR,
    reals: COUNT_PAIR,
    connections: record({
      remapped: count("Connections carried over to the new configuration."),
      cut: count("Connections cut (of removed reals, with cut)."),
    }),
    ms: { type: "number", minimum: 0, description: "How long the dataplane took." },
    warnings: { type: "array", items: { type: "string" } },
  }, "What the dataplane did with the new configuration."),
  ReloadResult: record({
    dataplane: schema("ApplyResult"),
    services: count("Services now in force."),
    reals: count("Reals now in force."),
    cut: bool("Whether connections of removed reals were cut (else they drain)."),
  }),
  ChangeOutcome: {
    type: "object",
    description: "A change committed: applied to the dataplane, then written to appliance.yaml.",
    required: ["version", "previousVersion", "written", "result"],
    properties: {
      version: text("The version now in force (also the ETag): send it as If-Match next."),
      previousVersion: text("The version the change replaced."),
      written: bool("false when the change was a no-op: nothing applied, nothing written."),
      result: nullable(schema("ReloadResult")),
      service: text("The service the change concerned."),
      address: text("The real the change concerned."),
      port: integer(0, 65535),
    },
  },
  ReloadOutcome: {
    type: "object",
    required: ["dataplane", "services", "reals", "cut", "version", "previousVersion"],
    properties: {
      dataplane: schema("ApplyResult"),
      services: count("Services now in force."),
      reals: count("Reals now in force."),
      cut: bool("Whether connections of removed reals were cut (else they drain)."),
      version: text("The version now in force (the file's)."),
      previousVersion: text("The version before the reload."),
    },
  },
  RealView: record({
    address: ipv4("The real."),
    port: integer(0, 65535, "0: the client's destination port."),
    weight: integer(0, 65535, "The weight the scheduler uses now (0 while drained or down)."),
    scheduled: bool(
      "In the running dataplane; false while health checks keep it out (see /api/v1/health).",
    ),
    configuredWeight: integer(0, 65535, "The weight in appliance.yaml."),
    drained: bool("Drained by an operator (…/drain)."),
    forward: { type: "string", enum: Object.values(IPVSADM_FORWARD_NAMES) },
    activeConns: count("ipvsadm ActiveConn."),
    inactiveConns: count("ipvsadm InActConn."),
    connections: count("Connections scheduled to it."),
    inPackets: count("Packets client → real."),
    inBytes: count("Bytes client → real."),
    outPackets: count("Packets real → client."),
    outBytes: count("Bytes real → client."),
    persistConns: count("Persistence templates pointing at it (ipvsadm PersistConn)."),
    upperThreshold: integer(0, MAX_THRESHOLD, "ipvsadm -x (0: none)."),
    lowerThreshold: integer(0, MAX_THRESHOLD, "ipvsadm -y (0: 3/4 of upper)."),
  }, "A real with its live counters."),
  ServiceView: withOptional(
    record({
      name: text("The service."),
      protocol: { type: "string", enum: PROTOCOLS },
      vip: ipv4("The virtual address (0.0.0.0 for a firewall-mark service)."),
      port: integer(0, 65535, "0 for a port group, a firewall mark or a port-0 service."),
      scheduler: { type: "string", enum: SCHEDULERS },
      forward: { type: "string", enum: FORWARD_METHODS },
      ports: nullable({
        type: "array",
        description: "A port group's ranges, [first, last] each.",
        items: {
          type: "array",
          prefixItems: [integer(1, 65535), integer(1, 65535)],
          minItems: 2,
          maxItems: 2,
        },
      }),
      persistence: nullable(record({
        timeout: integer(1, MAX_TIMEOUT_SECONDS),
        netmask: { type: "string", format: "ipv4" },
      })),
      onePacket: bool("ipvsadm -o."),
      schedulerFlags: { type: "array", items: { type: "string", enum: SCHEDULER_FLAGS } },
      localAddresses: { type: "array", items: { type: "string", format: "ipv4" } },
      reals: { type: "array", items: schema("RealView") },
    }, "A service as configured, with its reals' live counters."),
    {
      fwmark: integer(1, 0xffffffff, "A firewall-mark service's mark (ipvsadm lists FWM N)."),
      vips: {
        type: "array",
        items: { type: "string", format: "ipv4" },
        description: "A firewall-mark service's VIPs.",
      },
    },
  ),
  ServiceList: record({
    version: text("The configuration's version (also the ETag)."),
    services: { type: "array", items: schema("ServiceView") },
    connections: count("Entries in the connection table, templates included."),
    connectionsByState: {
      type: "object",
      description: "Entries by IPVS state name (templates count as NONE); absent states are 0.",
      additionalProperties: { type: "integer", minimum: 0 },
    },
    counters: {
      type: "object",
      description:
        "The dataplane's counters by name (rx_packets, forwarded, drop_no_service, …); " +
        "drop_* are drops by reason.",
      additionalProperties: { type: "integer", minimum: 0 },
    },
  }),
  RealTraffic: record({
    address: ipv4("The real."),
    port: integer(0, 65535),
    ...TRAFFIC_PROPERTIES,
  }),
  ServiceTraffic: record({
    name: text("The service."),
    protocol: {
      type: "string",
      enum: ["TCP", "UDP", "IP"],
      description: "IP: a firewall-mark service, which takes any protocol.",
    },
    vip: ipv4("The virtual address."),
    port: integer(0, 65535),
    ...TRAFFIC_PROPERTIES,
    reals: { type: "array", items: schema("RealTraffic") },
  }, "Counters and rates, sums over the reals (ipvsadm --stats --rate)."),
  Connection: record({
    protocol: {
      type: "string",
      enum: ["TCP", "UDP", "IP"],
      description: "IP: a firewall-mark service's persistence template, as IPVS's.",
    },
    expires: count("Seconds until it expires."),
    state: { type: "string", enum: CONN_STATE_NAMES },
    client: text("ADDRESS:PORT"),
    virtual: text("ADDRESS:PORT"),
    real: text("ADDRESS:PORT"),
    forward: { type: "string", enum: Object.values(IPVSADM_FORWARD_NAMES) },
    service: text("The service."),
    template: bool("A persistence template (state NONE, client port 0)."),
  }, "One connection-table entry (ipvsadm -Lnc)."),
  ConnectionPage: record({
    connections: { type: "array", items: schema("Connection") },
    cursor: nullable({
      type: "integer",
      minimum: 0,
      description: "Pass as ?cursor= for the next page; null at the end of the table.",
    }),
    scanned: count("Table entries this page looked at."),
    total: count("Live entries in the whole table."),
  }),
  Timeouts: {
    type: "object",
    description: "Seconds, as ipvsadm --set tcp tcpfin udp.",
    additionalProperties: false,
    properties: {
      tcp: integer(1, MAX_TIMEOUT_SECONDS, "ESTABLISHED."),
      tcpfin: integer(1, MAX_TIMEOUT_SECONDS, "FIN_WAIT."),
      udp: integer(1, MAX_TIMEOUT_SECONDS, "UDP."),
    },
  },
  RealHealth: {
    type: "object",
    description: "A real's health (a real without a check is up unless forced down).",
    required: ["service", "address", "port", "state", "checked", "forced", "paused"],
    properties: {
      service: text("The service."),
      address: ipv4("The real."),
      port: integer(0, 65535),
      state: { ...HEALTH_STATE, description: "Effective: the forced state, else the checked." },
      checked: { ...HEALTH_STATE, description: "What the checks say." },
      forced: nullable({ ...HEALTH_STATE, description: "The operator's override." }),
      paused: bool("Checks suspended by …/health/pause."),
      check: { type: "string", enum: HEALTH_CHECK_TYPES },
      weight: integer(0, 65535, "Configured weight."),
      dynamicWeight: integer(0, 65535, "The weight a dynamic exec check asked for."),
      effectiveWeight: nullable(integer(0, 65535, "Weight in the dataplane; null: left out.")),
      successes: count("Consecutive passing rounds."),
      failures: count("Consecutive failing rounds."),
      last: nullable(record({
        ok: { type: "boolean" },
        latencyMs: { type: "number", minimum: 0 },
        reason: text("Why it failed, or what it saw."),
        attempts: count("1 + retries used."),
        at: count("Unix time, ms."),
      }, "The last round.")),
      since: count("Unix time (ms) it entered its state."),
      transitions: TRANSITIONS,
    },
  },
  ServiceHealth: {
    type: "object",
    description: "A service's quorum (keepalived's quorum, hysteresis and sorry server).",
    required: ["service", "state"],
    properties: {
      service: text("The service."),
      reals: count("Reals configured."),
      upReals: count("Reals up."),
      liveWeight: count("Sum of the live reals' weights."),
      quorum: count("Live weight needed."),
      hysteresis: count("Slack around quorum."),
      upThreshold: count("Live weight to come up."),
      downThreshold: count("Live weight below which it goes down."),
      state: HEALTH_STATE,
      sorryServer: nullable(
        record({ address: ipv4("The sorry server."), port: integer(0, 65535) }),
      ),
      sorryActive: bool("The sorry server takes the new connections."),
      since: count("Unix time (ms) of the last quorum change."),
      transitions: TRANSITIONS,
    },
  },
  Health: record({
    services: { type: "array", items: schema("ServiceHealth") },
    reals: { type: "array", items: schema("RealHealth") },
  }),
  Cut: record({
    service: text("The service."),
    address: ipv4("The real."),
    port: integer(0, 65535),
    cut: count("Connections cut."),
  }),
};

// ---------------------------------------------------------------------------------------------
// The document.

const IF_MATCH_DESCRIPTION = "The version this change is based on: the ETag of GET " +
  '/api/v1/config (or of the last change), e.g. `"3f1c9a0b2d4e6f70"`; `W/"…"` and the bare ' +
  "version are accepted too. `*` changes whatever is current. Without it: 428; stale: 409.";

/** A configuration change: If-Match, its own parameters, and the change answers. */
function change(
  operation: Omit<OpenApiOperation, "responses" | "tags"> & {
    tags?: string[];
    created?: boolean;
  },
): OpenApiOperation {
  const { created, tags, parameters = [], ...rest } = operation;
  return {
    ...rest,
    tags: tags ?? ["changes"],
    parameters: [...parameters, component("parameters", "IfMatch")],
    responses: {
      [created === true ? "201" : "200"]: taggedResponse(
        created === true ? "Created, applied and written back." : "Applied and written back.",
        schema("ChangeOutcome"),
      ),
      ...CHANGE_RESPONSES,
      ...(rest.requestBody === undefined ? {} : BODY_RESPONSES),
    },
  };
}

/** The document served at /api/v1/openapi.json. */
export const OPENAPI: OpenApiDocument = {
  openapi: "3.1.0",
  info: {
    title: "tunvs admin API",
    version: denoJson.version,
    description: "Administer a running tunvs appliance: services and reals, weights, drain and " +
      "restore, counters, rates, connections, timeouts, health, the configuration itself, " +
      "events and metrics. Every change names the configuration version it is based on " +
      "(If-Match), is validated as appliance.yaml is, applied without dropping established " +
      "connections, and written back to appliance.yaml with the operator's comments kept — or " +
      "refused with nothing changed. See docs/api.md.",
  },
  servers: [{ url: "http://127.0.0.1:9180", description: "admin.listen's default" }],
  tags: [
    { name: "status", description: "Liveness, readiness, the API description." },
    { name: "services", description: "Services and reals with their live counters." },
    { name: "changes", description: "Configuration changes (If-Match, written back)." },
    { name: "config", description: "The configuration as a whole." },
    { name: "operations", description: "Actions on the running dataplane, not the file." },
    { name: "health", description: "Health checks of the reals." },
    { name: "stats", description: "Counters, rates, connections, timeouts, metrics, events." },
  ],
  security: [{ bearerAuth: [] }, {}],
  paths: {
    "/healthz": {
      get: {
        operationId: "getLiveness",
        summary: "Alive",
        description: "Answers while the process serves requests; needs no token.",
        tags: ["status"],
        security: [],
        responses: {
          "200": jsonResponse("Alive.", record({ status: { type: "string", const: "ok" } }), {
            status: "ok",
          }),
          "403": component("responses", "Forbidden"),
        },
      },
    },
    "/ready": {
      get: {
        operationId: "getReadiness",
        summary: "Ready: the dataplane runs with the configuration applied",
        tags: ["status"],
        responses: {
          "200": jsonResponse(
            "Ready.",
            record({ ready: { type: "boolean", const: true }, version: text("In force.") }),
            { ready: true, version: "3f1c9a0b2d4e6f70" },
          ),
          "503": jsonResponse(
            "Not ready (starting, stopping, or the dataplane stopped).",
            record({ ready: { type: "boolean", const: false }, version: text("In force.") }),
          ),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/openapi.json": {
      get: {
        operationId: "getOpenApi",
        summary: "This description",
        tags: ["status"],
        responses: {
          "200": jsonResponse("The OpenAPI 3.1 document.", { type: "object" }),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/metrics": {
      get: {
        operationId: "getMetrics",
        summary: "Prometheus metrics",
        description: "Text exposition format 0.0.4, `tunvs_` names (see docs/api.md for the " +
          "list). When the dataplane does not answer the page still renders, with " +
          "tunvs_dataplane_up 0.",
        tags: ["stats"],
        responses: {
          "200": {
            description: "The metrics page.",
            content: {
              "text/plain; version=0.0.4; charset=utf-8": {
                schema: { type: "string" },
                example: "# HELP tunvs_dataplane_up 1 when the dataplane answered this " +
                  "scrape, else 0.\n# TYPE tunvs_dataplane_up gauge\ntunvs_dataplane_up 1\n",
              },
            },
          },
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/events": {
      get: {
        operationId: "streamEvents",
        summary: "Live events (Server-Sent Events)",
        description: "One SSE event per health change, configuration change, or second with " +
          "drops: `id:` (a number), `event:` (health, config, drops, lagged) and `data:` the JSON " +
          "`{id, type, time, data}`. Lagged notices have no id and say how many events a slow " +
          "or late client missed. A comment line every 15 s keeps proxies from closing it.",
        tags: ["stats"],
        parameters: [
          {
            name: "types",
            in: "query",
            description: `Only these types, comma-separated: ${EVENT_TYPES.join(", ")}.`,
            schema: {
              type: "string",
              pattern: `^(${EVENT_TYPES.join("|")})(,\\s*(${EVENT_TYPES.join("|")}))*$`,
            },
            example: "health,config",
          },
          {
            name: "Last-Event-ID",
            in: "header",
            description: "Replay the retained events after this id (browsers' EventSource " +
              "sends it when reconnecting).",
            schema: { type: "string", pattern: "^[0-9]{1,15}$" },
          },
        ],
        responses: {
          "200": {
            description: "The stream; it ends when the client goes away or tunvs stops.",
            content: {
              "text/event-stream": {
                schema: { type: "string" },
                example: ': connected\n\nid: 1718000000123\nevent: drops\ndata: {"id":' +
                  '1718000000123,"type":"drops","time":"2024-06-10T06:13:20.123Z","data":' +
                  '{"drops":{"no_service":3},"total":3,"intervalMs":1000}}\n\n',
              },
            },
          },
          "400": component("responses", "BadRequest"),
          "501": component("responses", "NotAvailable"),
          "503": jsonResponse("Too many subscribers, or shutting down.", schema("Error")),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/services": {
      get: {
        operationId: "listServices",
        summary: "Every service with its reals and live counters (ipvsadm -Ln)",
        tags: ["services"],
        responses: {
          "200": taggedResponse("The services.", schema("ServiceList")),
          ...GUARD_RESPONSES,
        },
      },
      post: change({
        operationId: "createService",
        summary: "Add a service (ipvsadm -A)",
        description: "The body is one entry of appliance.yaml's services list.",
        created: true,
        requestBody: {
          required: true,
          content: jsonContent(schema("RawService"), EXAMPLE_SERVICE),
        },
      }),
    },
    "/api/v1/services/{name}": {
      get: {
        operationId: "getService",
        summary: "One service with its reals and live counters",
        tags: ["services"],
        parameters: [component("parameters", "ServiceName")],
        responses: {
          "200": taggedResponse("The service.", schema("ServiceView")),
          "400": component("responses", "BadRequest"),
          "404": component("responses", "NotFound"),
          ...GUARD_RESPONSES,
        },
      },
      put: change({
        operationId: "replaceService",
        summary: "Replace a service's settings (ipvsadm -E)",
        parameters: [component("parameters", "ServiceName"), component("parameters", "Cut")],
        requestBody: {
          required: true,
          content: jsonContent(schema("RawServiceReplacement"), {
            protocol: "tcp",
            vip: "192.168.1.31",
            port: 80,
            scheduler: "wlc",
            persistence: { timeout: 600 },
          }),
        },
      }),
      delete: change({
        operationId: "deleteService",
        summary: "Delete a service (ipvsadm -D); its connections drain unless ?cut=true",
        parameters: [component("parameters", "ServiceName"), component("parameters", "Cut")],
      }),
    },
    "/api/v1/services/{name}/reals": {
      post: change({
        operationId: "createReal",
        summary: "Add a real to a service (ipvsadm -a)",
        parameters: [component("parameters", "ServiceName")],
        created: true,
        requestBody: {
          required: true,
          content: jsonContent(schema("RawReal"), EXAMPLE_REAL),
        },
      }),
    },
    "/api/v1/services/{name}/reals/{address}/{port}": {
      put: change({
        operationId: "replaceReal",
        summary: "Replace a real's settings (ipvsadm -e)",
        parameters: [...REAL_PATH, component("parameters", "Cut")],
        requestBody: {
          required: true,
          content: jsonContent(schema("RawRealReplacement"), { weight: 3, upper_threshold: 1000 }),
        },
      }),
      delete: change({
        operationId: "deleteReal",
        summary: "Delete a real (ipvsadm -d); its connections drain unless ?cut=true",
        parameters: [...REAL_PATH, component("parameters", "Cut")],
      }),
    },
    "/api/v1/services/{name}/reals/{address}/{port}/weight": {
      put: change({
        operationId: "setRealWeight",
        summary: "Set a real's weight (ipvsadm -e -w)",
        parameters: [...REAL_PATH, component("parameters", "Cut")],
        requestBody: {
          required: true,
          content: jsonContent({
            type: "object",
            additionalProperties: false,
            required: ["weight"],
            properties: { weight: integer(0, 65535) },
          }, { weight: 3 }),
        },
      }),
    },
    "/api/v1/services/{name}/reals/{address}/{port}/drain": {
      post: change({
        operationId: "drainReal",
        summary: "Drain a real: weight 0 for new connections, its own weight kept",
        description: "Writes `drain: true` on the real; established connections carry on.",
        parameters: [...REAL_PATH, component("parameters", "Cut")],
      }),
    },
    "/api/v1/services/{name}/reals/{address}/{port}/restore": {
      post: change({
        operationId: "restoreReal",
        summary: "Restore a drained real to its own weight",
        parameters: [...REAL_PATH, component("parameters", "Cut")],
      }),
    },
    "/api/v1/services/{name}/reals/{address}/{port}/cut": {
      post: {
        operationId: "cutRealConnections",
        summary: "Cut a real's connections now",
        description: "Ends every connection to the real at once (its clients reconnect, to it " +
          "or elsewhere). Not a configuration change: no If-Match, nothing written.",
        tags: ["operations"],
        parameters: REAL_PATH,
        responses: {
          "200": jsonResponse("Cut.", schema("Cut"), {
            service: "web",
            address: "10.10.10.11",
            port: 80,
            cut: 3,
          }),
          "400": component("responses", "BadRequest"),
          "404": component("responses", "NotFound"),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/health": {
      get: {
        operationId: "getHealth",
        summary: "Health of every service and real",
        tags: ["health"],
        responses: {
          "200": jsonResponse("Health.", schema("Health")),
          "404": component("responses", "NotFound"),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/services/{name}/reals/{address}/{port}/health": {
      get: {
        operationId: "getRealHealth",
        summary: "One real's health",
        tags: ["health"],
        parameters: REAL_PATH,
        responses: {
          "200": jsonResponse("Its health.", schema("RealHealth")),
          "400": component("responses", "BadRequest"),
          "404": component("responses", "NotFound"),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/services/{name}/reals/{address}/{port}/health/pause": {
      post: {
        operationId: "pauseRealHealth",
        summary: "Suspend a real's checks; its state stays as it is",
        description: "Not a configuration change: no If-Match, nothing written. Survives " +
          "reloads.",
        tags: ["health"],
        parameters: REAL_PATH,
        responses: {
          "200": jsonResponse("Paused.", schema("RealHealth")),
          "400": component("responses", "BadRequest"),
          "404": component("responses", "NotFound"),
          "409": jsonResponse("The real has no health check.", schema("Error")),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/services/{name}/reals/{address}/{port}/health/resume": {
      post: {
        operationId: "resumeRealHealth",
        summary: "Resume a real's checks, with a round at once",
        tags: ["health"],
        parameters: REAL_PATH,
        responses: {
          "200": jsonResponse("Resumed.", schema("RealHealth")),
          "400": component("responses", "BadRequest"),
          "404": component("responses", "NotFound"),
          "409": jsonResponse("The real has no health check.", schema("Error")),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/services/{name}/reals/{address}/{port}/health/force": {
      put: {
        operationId: "forceRealHealth",
        summary: "Force a real up or down (maintenance), or back to its checks with null",
        description: "Not a configuration change: no If-Match, nothing written. Survives " +
          "reloads.",
        tags: ["health"],
        parameters: REAL_PATH,
        requestBody: {
          required: true,
          content: jsonContent({
            type: "object",
            additionalProperties: false,
            required: ["state"],
            properties: { state: nullable(HEALTH_STATE) },
          }, { state: "down" }),
        },
        responses: {
          "200": jsonResponse("Forced (or cleared).", schema("RealHealth")),
          "400": component("responses", "BadRequest"),
          "404": component("responses", "NotFound"),
          ...GUARD_RESPONSES,
          ...BODY_RESPONSES,
        },
      },
    },
    "/api/v1/stats": {
      get: {
        operationId: "getStats",
        summary: "Counters and rates per service and real (ipvsadm -Ln --stats --rate)",
        tags: ["stats"],
        responses: {
          "200": jsonResponse(
            "Counters and rates.",
            record({ services: { type: "array", items: schema("ServiceTraffic") } }),
          ),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/stats/zero": {
      post: {
        operationId: "zeroStats",
        summary: "Zero counters and rates (ipvsadm -Z)",
        tags: ["stats"],
        parameters: [{
          name: "service",
          in: "query",
          description: "Only this service; every service when absent.",
          schema: { type: "string", pattern: SERVICE_NAME_PATTERN },
        }],
        responses: {
          "200": jsonResponse(
            "Zeroed.",
            record({ zeroed: { type: "array", items: { type: "string" } } }),
            { zeroed: ["web"] },
          ),
          "400": component("responses", "BadRequest"),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/connections": {
      get: {
        operationId: "listConnections",
        summary: "The connection table, filtered and paged (ipvsadm -Lnc)",
        description: "A page scans a bounded part of the table: follow `cursor` until it is " +
          "null, even when a page has fewer entries than `limit`.",
        tags: ["stats"],
        parameters: [
          {
            name: "service",
            in: "query",
            description: "Only this service's connections.",
            schema: { type: "string", minLength: 1 },
          },
          {
            name: "real",
            in: "query",
            description: "Only connections to this real: ADDRESS or ADDRESS:PORT.",
            schema: { type: "string", pattern: "^[0-9.]+(:[0-9]{1,5})?$" },
            example: "10.10.10.11:80",
          },
          {
            name: "state",
            in: "query",
            description: "Only this IPVS state (any case).",
            schema: { type: "string", enum: CONN_STATE_NAMES },
          },
          {
            name: "protocol",
            in: "query",
            description: "tcp or udp (any case).",
            schema: { type: "string", enum: PROTOCOLS },
          },
          {
            name: "cursor",
            in: "query",
            description: "Where to start: 0, or the previous page's cursor.",
            schema: { ...integer(0, 0x7fffffff), default: 0 },
          },
          {
            name: "limit",
            in: "query",
            description: "Entries per page at most.",
            schema: { ...integer(1, LIST_MAX_LIMIT), default: LIST_DEFAULT_LIMIT },
          },
        ],
        responses: {
          "200": jsonResponse("One page.", schema("ConnectionPage")),
          "400": component("responses", "BadRequest"),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/timeouts": {
      get: {
        operationId: "getTimeouts",
        summary: "Timeouts in force (ipvsadm -L --timeout)",
        tags: ["stats"],
        responses: {
          "200": jsonResponse("Seconds.", schema("Timeouts"), { tcp: 900, tcpfin: 120, udp: 300 }),
          ...GUARD_RESPONSES,
        },
      },
      put: {
        operationId: "setTimeouts",
        summary: "Change timeouts (ipvsadm --set); written to appliance.yaml",
        description: "A configuration change (If-Match), answered with the timeouts now in " +
          "force; the new version is in the ETag header. Connections take a new value at " +
          "their next packet, as in IPVS.",
        tags: ["changes"],
        parameters: [component("parameters", "IfMatch")],
        requestBody: {
          required: true,
          content: jsonContent({ ...schema("Timeouts"), description: "At least one of them." }, {
            tcpfin: 30,
          }),
        },
        responses: {
          "200": taggedResponse("Timeouts now in force.", schema("Timeouts")),
          ...CHANGE_RESPONSES,
          ...BODY_RESPONSES,
        },
      },
    },
    "/api/v1/config": {
      get: {
        operationId: "getConfig",
        summary: "The configuration in force, and its version",
        tags: ["config"],
        parameters: [{
          name: "format",
          in: "query",
          description: "json (default): as data; yaml: appliance.yaml's text, comments kept.",
          schema: { type: "string", enum: ["json", "yaml"], default: "json" },
        }, {
          name: "view",
          in: "query",
          description: "With format=yaml: file (default), appliance.yaml's text as applied; " +
            "effective, what runs with every default filled in (the JSON's effective, as YAML).",
          schema: { type: "string", enum: ["file", "effective"], default: "file" },
        }],
        responses: {
          "200": {
            description: "The configuration; ETag is its version.",
            headers: { ETag: component("headers", "ETag") },
            content: {
              "application/json": { schema: schema("Config") },
              "application/yaml": { schema: { type: "string" } },
            },
          },
          "400": component("responses", "BadRequest"),
          ...GUARD_RESPONSES,
        },
      },
    },
    "/api/v1/config/services": {
      put: change({
        operationId: "replaceServices",
        summary: "Replace the whole services list (ipvsadm -R, and every ipvsadm rule change)",
        description: "Everything else in appliance.yaml stays. Services and reals that remain " +
          "keep their connections; those of removed reals drain unless ?cut=true.",
        tags: ["config"],
        parameters: [component("parameters", "Cut")],
        requestBody: {
          required: true,
          content: jsonContent(
            record({ services: { type: "array", items: schema("RawService") } }),
            { services: [EXAMPLE_WEB, EXAMPLE_SERVICE] },
          ),
        },
      }),
    },
    "/api/v1/config/validate": {
      post: {
        operationId: "validateConfig",
        summary: "Check a candidate appliance.yaml without applying it",
        description: "Send the file as application/yaml (or text/plain), or `{config}` as JSON. " +
          "The answer lists every problem with its line and column.",
        tags: ["config"],
        requestBody: {
          required: true,
          content: {
            "application/yaml": {
              schema: { type: "string" },
              example: "services:\n  - name: web\n    vip: 192.168.1.31\n    port: 80\n",
            },
            "application/json": {
              schema: record({ config: schema("RawConfig") }),
              example: { config: { services: [EXAMPLE_WEB] } },
            },
          },
        },
        responses: {
          "200": jsonResponse("Valid.", schema("Validation"), { valid: true, issues: [] }),
          "422": jsonResponse("Invalid: its problems.", schema("Validation"), {
            valid: false,
            issues: [{
              line: 4,
              col: 11,
              path: "services[0].port",
              message: "must be an integer between 1 and 65535 (got 70000); or 0 (any port) " +
                "with persistence",
            }],
          }),
          "400": component("responses", "BadRequest"),
          ...GUARD_RESPONSES,
          ...BODY_RESPONSES,
        },
      },
    },
    "/api/v1/config/reload": {
      post: {
        operationId: "reloadConfig",
        summary: "Re-read appliance.yaml and apply it (as SIGHUP)",
        description: "The file wins: use it after editing appliance.yaml by hand. Established " +
          "connections to reals that remain keep flowing; those of removed reals drain unless " +
          "cut. Needs no If-Match. The body is optional.",
        tags: ["config"],
        requestBody: {
          required: false,
          content: jsonContent({
            type: "object",
            additionalProperties: false,
            properties: { cut: bool("Cut the connections of removed reals.") },
          }, { cut: false }),
        },
        responses: {
          "200": taggedResponse("Applied.", schema("ReloadOutcome")),
          "400": component("responses", "BadRequest"),
          "422": component("responses", "Unprocessable"),
          "501": component("responses", "NotAvailable"),
          ...GUARD_RESPONSES,
          ...BODY_RESPONSES,
        },
      },
    },
  },
  components: {
    schemas: SCHEMAS,
    parameters: {
      IfMatch: {
        name: "If-Match",
        in: "header",
        required: true,
        description: IF_MATCH_DESCRIPTION,
        schema: { type: "string" },
        example: '"3f1c9a0b2d4e6f70"',
      },
      ServiceName: {
        name: "name",
        in: "path",
        required: true,
        description: "The service's name.",
        schema: { type: "string", pattern: SERVICE_NAME_PATTERN },
        example: "web",
      },
      RealAddress: {
        name: "address",
        in: "path",
        required: true,
        description: "The real's address as in appliance.yaml.",
        schema: { type: "string", format: "ipv4" },
        example: "10.10.10.11",
      },
      RealPort: {
        name: "port",
        in: "path",
        required: true,
        description: "The real's port: its own, else the service's; 0 for a real that takes " +
          "the client's port.",
        schema: integer(0, 65535),
        example: 80,
      },
      Cut: {
        name: "cut",
        in: "query",
        description: "Cut the connections of reals this change removes instead of letting " +
          "them drain.",
        schema: { type: "string", enum: ["true", "false", "1", "0"], default: "false" },
      },
    },
    responses: {
      BadRequest: jsonResponse(
        "A malformed request: `field` names what is wrong.",
        schema("Error"),
        {
          error: "weight: must be an integer 0..65535",
          field: "weight",
        },
      ),
      Unauthorized: {
        description: "No bearer token, or a wrong one (only when admin.token_file is set).",
        headers: {
          "WWW-Authenticate": { description: 'Bearer realm="tunvs"', schema: { type: "string" } },
        },
        content: jsonContent(schema("Error")),
      },
      Forbidden: jsonResponse(
        "A request made by a web page (Origin or Sec-Fetch-Site), or, on loopback, a Host " +
          "that is not a loopback name.",
        schema("Error"),
      ),
      NotFound: jsonResponse("No such service or real (or no health checks).", schema("Error"), {
        error: "No such destination: 10.10.10.19:80 in service web",
      }),
      Conflict: {
        description: "The version in If-Match is no longer current (`version` and ETag give " +
          "the current one), appliance.yaml was edited on disk (`fileChanged`), or the " +
          "service or real to create exists already.",
        headers: { ETag: component("headers", "ETag") },
        content: jsonContent(schema("Error"), {
          error: "the configuration changed since the version this change is based on; read " +
            "it again (now version 9a8b7c6d5e4f3a2b) and retry",
          version: "9a8b7c6d5e4f3a2b",
        }),
      },
      Unprocessable: jsonResponse(
        "The candidate configuration is invalid (`field` and `issues` name every problem), or " +
          "the host or dataplane refused it. Nothing changed.",
        schema("Error"),
        {
          error: 'services[1].vip: "192.168.1.300" is not an IPv4 address: part 300 is ' +
            "greater than 255",
          field: "services[1].vip",
          issues: [{
            path: "services[1].vip",
            message: '"192.168.1.300" is not an IPv4 address: part 300 is greater than 255',
          }],
        },
      ),
      PreconditionRequired: jsonResponse("The change has no If-Match.", schema("Error")),
      PayloadTooLarge: jsonResponse("The body is over 1 MiB.", schema("Error")),
      UnsupportedMediaType: jsonResponse("The body is not application/json.", schema("Error")),
      InternalError: jsonResponse(
        "appliance.yaml could not be written (the change was rolled back), or tunvs failed.",
        schema("Error"),
      ),
      NotAvailable: jsonResponse(
        "This appliance does not offer it (changes, reload or events).",
        schema("Error"),
      ),
    },
    headers: {
      ETag: {
        description: 'The configuration version in force, quoted: `"3f1c9a0b2d4e6f70"`. Send ' +
          "it back as If-Match.",
        schema: { type: "string" },
      },
    },
    securitySchemes: {
      bearerAuth: {
        type: "http",
        scheme: "bearer",
        description: "The token in the file admin.token_file names; required on every " +
          "endpoint but /healthz when that is set (always when listening off loopback).",
      },
    },
  },
};
