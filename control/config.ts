/**
 * appliance.yaml ⇄ typed configuration model.
 *
 * Parsing keeps the YAML AST (with a LineCounter) next to the plain JS value so that every
 * validation issue — zod's or our own semantic checks — can be reported as FILE:LINE:COL plus
 * the field path an operator has to fix.
 */
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
} from "yaml";
import { z } from "zod";
import { SCHEDULER_NAMES, type SchedulerName } from "../dataplane/sched/registry.ts";
import { FORWARD_METHODS as FORWARD_METHOD_NAMES, type ForwardName } from "../dataplane/service.ts";
import { MAX_TIMEOUT_SECONDS } from "../dataplane/stats/requests.ts";
import { DEFAULT_TUN_IO, TUN_IO_CHOICES, type TunIoChoice } from "../dataplane/tun_io_choice.ts";
import {
  SYNPROXY_DEFAULTS,
  SYNPROXY_MAX_MSS,
  SYNPROXY_MIN_MSS,
} from "../dataplane/synproxy/synproxy.ts";
import { parseIpv4Address } from "../dataplane/wire/ipv4.ts";
import { steeringSupported } from "../dataplane/steering/queue_steering.ts";
import { commandWords, healthCheckProblems, resolveHealthCheck } from "./health/settings.ts";
import { HEALTH_CHECK_TYPES, type HealthCheckConfig } from "./health/types.ts";

/** Config file read when no path is given on the command line. */
export const DEFAULT_CONFIG_PATH = "appliance.yaml";

/** Transport protocols a virtual service can balance. */
export const PROTOCOLS = ["tcp", "udp"] as const;
/** A transport protocol name accepted in `services[].protocol`. */
export type Protocol = (typeof PROTOCOLS)[number];

/** Scheduler names accepted in `services[].scheduler`: those the dataplane implements. */
export const SCHEDULERS = SCHEDULER_NAMES;
export type { SchedulerName };

/** Forwarding methods accepted in `services[].forward`: those the dataplane implements. */
export const FORWARD_METHODS = Object.keys(FORWARD_METHOD_NAMES) as [ForwardName, ...ForwardName[]];
/** A forwarding method accepted in `services[].forward`. */
export type ForwardMethod = ForwardName;

/** Most dataplane workers (TUN queues) `dataplane.workers` takes, and the default's cap. */
export const MAX_WORKERS = 16;

/**
 * Dataplane workers when `dataplane.workers` is left out: one per core (at most MAX_WORKERS) when
 * the kernel takes the steering program that queues each packet for its owner, else one — without
 * it a new connection's handshake ACK can be handed over and overtaken by its first data
 * (docs/workers.md).
 */
export function defaultWorkers(): number {
  if (!steeringSupported()) return 1;
  return Math.max(1, Math.min(MAX_WORKERS, navigator.hardwareConcurrency || 1));
}

/** The dataplane workers `config` asks for: `dataplane.workers`, else `defaultWorkers()`. */
export function dataplaneWorkers(config: Pick<ApplianceConfig, "dataplane">): number {
  return config.dataplane.workers ?? defaultWorkers();
}

/** Values used for keys the operator leaves out. */
export const CONFIG_DEFAULTS = {
  adminListen: "127.0.0.1:9180",
  tun: "tunvs0",
  // IFF_VNET_HDR + TUNSETOFFLOAD: checksum and TSO/USO offloads on the TUN (docs/offloads.md).
  offloads: true,
  // A syscall per packet; io_uring (one enter per batch) is opt-in (docs/performance.md).
  io: DEFAULT_TUN_IO,
  timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  protocol: "tcp",
  // ipvsadm's default.
  scheduler: "wlc",
  forward: "nat",
  weight: 1,
  // ipvsadm's -p without a value, and -M's default.
  persistence: { timeout: 300, netmask: "255.255.255.255" },
} as const satisfies {
  adminListen: string;
  tun: string;
  offloads: boolean;
  io: TunIoChoice;
  timeouts: { tcp: number; tcpfin: number; udp: number };
  protocol: Protocol;
  scheduler: SchedulerName;
  forward: ForwardMethod;
  weight: number;
  persistence: PersistenceConfig;
};

/** Largest connection threshold: what fits the dataplane's signed 32-bit counters. */
export const MAX_THRESHOLD = 2147483647;

/** Largest timeout in seconds (the dataplane's limit). */
export { MAX_TIMEOUT_SECONDS };

/** One real server behind a virtual service. */
export interface RealConfig {
  address: string;
  /** 0: the port the client connected to (a real without a port in a port group or port-0 service). */
  port: number;
  weight: number;
  /** ipvsadm -x: no new connections at this many connections (0 = no limit). */
  upperThreshold: number;
  /** ipvsadm -y: new connections again below this many (0 = below 3/4 of the upper). */
  lowerThreshold: number;
  /** Present when the service or the real has `health_check:`: the real's effective check. */
  healthCheck?: HealthCheckConfig;
  /** Present, and true, while an operator drains the real: weight 0, its own weight kept. */
  drain?: true;
  /** Present when the real sets `inhibit_on_failure` itself (it overrides the service's). */
  inhibitOnFailure?: boolean;
  /** Program and arguments run when health checks bring the real up (real's, else service's). */
  notifyUp?: string[];
  /** Program and arguments run when the real goes down (real's, else service's). */
  notifyDown?: string[];
}

/** Scheduler flags, as ipvsadm -b spells them; each belongs to one scheduler. */
export const SCHEDULER_FLAGS = ["sh-fallback", "sh-port", "mh-fallback", "mh-port"] as const;
/** A scheduler flag name. */
export type SchedulerFlagName = (typeof SCHEDULER_FLAGS)[number];

/** The `vip` a firewall-mark service has in the model: none, as IPVS lists such a service. */
export const FWMARK_SERVICE_VIP = "0.0.0.0";

/** An inclusive range of ports, `[first, last]`; a single port is `[p, p]`. */
export type PortRange = [number, number];

/** Persistence, as ipvsadm's `-p TIMEOUT -M NETMASK`. */
export interface PersistenceConfig {
  /** Seconds a client's template lives after its last new connection. */
  timeout: number;
  /** Clients whose addresses agree under this dotted-quad mask share a template. */
  netmask: string;
}

/** One virtual service (VIP:port/protocol, or a firewall mark) and its real servers. */
export interface ServiceConfig {
  name: string;
  /** The protocol served; "tcp" for a firewall-mark service, which serves whatever is marked. */
  protocol: Protocol;
  /** The VIP; FWMARK_SERVICE_VIP ("0.0.0.0") for a firewall-mark service. */
  vip: string;
  /** The port served; 0 for a port group (`ports`), a firewall mark or, with persistence, any port. */
  port: number;
  /**
   * Present for a firewall-mark service (ipvsadm -f): the mark (1..2^32-1) the operator's
   * netfilter rule sets on the packets this service takes, whatever their address and port.
   */
  fwmark?: number;
  /** A firewall-mark service's VIPs (`vips:`), which tunvs answers ARP for and routes in. */
  vips?: string[];
  /** Present for a port group (`ports:` in the file): the ranges of ports the service serves. */
  ports?: PortRange[];
  /** Present when the service is persistent (`persistence:` in the file). */
  persistence?: PersistenceConfig;
  /** Present, and true, with `one_packet: true` (ipvsadm -o). */
  onePacket?: true;
  scheduler: SchedulerName;
  schedulerFlags: SchedulerFlagName[];
  forward: ForwardMethod;
  /** FULLNAT: the local addresses requests leave from (the service's own, else the global pool). */
  localAddresses: string[];
  /** Present, and true, with `toa: true` (FULLNAT over TCP): the client's address as a TCP option. */
  toa?: true;
  /** Present, and true, with `synproxy: true` (NAT or FULLNAT over TCP): SYN cookies. */
  synproxy?: true;
  reals: RealConfig[];
  /** Present when the service has `health_check:` (each real's effective one is on the real). */
  healthCheck?: HealthCheckConfig;
  /** Present, and true, when failed reals keep weight 0 instead of leaving (keepalived). */
  inhibitOnFailure?: true;
  /** Present, and true, when connections to a real that leaves on failure are cut, not drained. */
  expireOnFailure?: true;
  /** Takes new connections when every real is down; port 0 follows the client's port. */
  sorryServer?: { address: string; port: number };
  /** Present when set: live weight needed for the service to be up (keepalived; default 1). */
  quorum?: number;
  /** Present when set: slack around quorum before the service state flips (default 0). */
  hysteresis?: number;
}

/** Where the admin endpoint listens, as `admin.listen` says: TCP HOST:PORT or a Unix socket. */
export type AdminListen =
  | { transport: "tcp"; host: string; port: number }
  | { transport: "unix"; path: string };

/**
 * The admin endpoint: `listen` as written and where that is, and the file holding the bearer
 * token every request needs (required unless the endpoint is reachable from this host only).
 */
export type AdminConfig = AdminListen & { listen: string; tokenFile?: string };

/** The whole validated appliance configuration, with every default filled in. */
export interface ApplianceConfig {
  admin: AdminConfig;
  /**
   * `offloads`: open the TUN with virtio_net_hdr and offloads; `workers`: dataplane workers, one
   * per TUN queue (absent: `defaultWorkers()`); `io`: how batches are read and written (all three
   * read at start only).
   */
  dataplane: { tun: string; offloads: boolean; workers?: number; io: TunIoChoice };
  host: { uplink?: string; realside?: string };
  timeouts: { tcp: number; tcpfin: number; udp: number };
  /** FULLNAT's global local address pool (`local_addresses`). */
  localAddresses: string[];
  /** Present when the file has `synproxy:`: the SYN proxy's MSS and key rotation (seconds). */
  synproxy?: { mss: number; keyRotation: number };
  services: ServiceConfig[];
}

/** One problem found in a config file; line and col are 1-based, path like "services[1].port". */
export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

/** Formats an issue as "FILE:LINE:COL: PATH: MESSAGE" (the PATH part is left out when empty). */
export function formatIssue(i: ConfigIssue): string {
  const where = `${i.file}:${i.line}:${i.col}`;
  return i.path === "" ? `${where}: ${i.message}` : `${where}: ${i.path}: ${i.message}`;
}

/** Thrown when a config cannot be read or is invalid; carries every issue found. */
export class ConfigError extends Error {
  /** All problems found, in file order. */
  readonly issues: ConfigIssue[];

  constructor(issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join("\n"));
    this.name = "ConfigError";
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------------------------
// Value descriptions and field checks shared by the schema and the semantic pass.

type PathSegment = string | number;

/** Short operator-facing rendering of a YAML value, used in "(got ...)". */
function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "an empty value";
  if (typeof v === "string") {
    const shown = v.length > 40 ? `${v.slice(0, 37)}...` : v;
    return `string ${JSON.stringify(shown)}`;
  }
  if (typeof v === "number") return String(v);
  if (typeof v === "boolean") return `boolean ${v}`;
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return typeof v;
}

/** Quoted numbers are the most common type mistake, so say how to fix them. */
function quoteHint(v: unknown): string {
  return typeof v === "string" && /^\s*-?[0-9]+(\.[0-9]+)?\s*$/.test(v)
    ? "; remove the quotes"
    : "";
}

function intRangeMessage(min: number, max: number, got: unknown): string {
  return `must be an integer between ${min} and ${max} (got ${describe(got)}${quoteHint(got)})`;
}

/** Explains why `s` is not a dotted quad, or null when it is one. */
function ipv4SyntaxProblem(s: string): string | null {
  if (parseIpv4Address(s) !== null) return null;
  const prefix = `${JSON.stringify(s)} is not an IPv4 address`;
  const parts = s.split(".");
  if (parts.length !== 4) {
    return `${prefix}: expected 4 dot-separated numbers (a.b.c.d), found ${parts.length} part(s)`;
  }
  for (const part of parts) {
    if (part === "") return `${prefix}: it has an empty part`;
    if (!/^[0-9]+$/.test(part)) return `${prefix}: part ${JSON.stringify(part)} is not a number`;
    if (part.length > 1 && part[0] === "0") {
      return `${prefix}: part ${JSON.stringify(part)} has a leading zero`;
    }
    if (Number(part) > 255) return `${prefix}: part ${part} is greater than 255`;
  }
  return prefix;
}

/** Why a (syntactically valid) address cannot be a VIP or a real server, or null if it can. */
function unicastProblem(addr: number): string | null {
  const firstOctet = addr >>> 24;
  if (addr === 0) return "0.0.0.0 is the unspecified address";
  if (firstOctet === 0) return "0.0.0.0/8 means 'this network' and cannot be addressed";
  if (firstOctet === 127) return "127.0.0.0/8 is loopback";
  if (firstOctet >= 224 && firstOctet <= 239) return "224.0.0.0/4 is multicast";
  if (addr === 0xffffffff) return "255.255.255.255 is the broadcast address";
  return null;
}

function unicastIpv4Problem(s: string): string | null {
  const syntax = ipv4SyntaxProblem(s);
  if (syntax !== null) return syntax;
  const reason = unicastProblem(parseIpv4Address(s) as number);
  return reason === null ? null : `must be a unicast IPv4 address, but ${reason}`;
}

/** Why `s` is not a netmask (a dotted quad whose one bits all come first), or null. */
function netmaskProblem(s: string): string | null {
  const syntax = ipv4SyntaxProblem(s);
  if (syntax !== null) return syntax.replace("is not an IPv4 address", "is not a netmask");
  const hostBits = ~(parseIpv4Address(s) as number) >>> 0;
  if ((hostBits & (hostBits + 1)) !== 0) {
    return `${
      JSON.stringify(s)
    } is not a netmask: its one bits must come first, as in 255.255.255.0`;
  }
  return null;
}

/** A `ports` item as a range: a port number or a "FIRST-LAST" string; a problem otherwise. */
function parsePortItem(v: unknown): PortRange | string {
  const usage = 'must be a port number or a "FIRST-LAST" range such as "8000-8099"';
  if (typeof v === "number") {
    return Number.isInteger(v) && v >= 1 && v <= 65535 ? [v, v] : intRangeMessage(1, 65535, v);
  }
  if (typeof v !== "string") return `${usage} (got ${describe(v)})`;
  const m = /^\s*([0-9]{1,5})\s*-\s*([0-9]{1,5})\s*$/.exec(v);
  if (m === null) return `${usage} (got ${describe(v)}${quoteHint(v)})`;
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < 1 || last < 1 || first > 65535 || last > 65535) {
    return `range ${JSON.stringify(v)}: ports must be between 1 and 65535`;
  }
  if (first > last) return `range ${JSON.stringify(v)} runs backwards; write "${last}-${first}"`;
  return [first, last];
}

function formatRange([first, last]: PortRange): string {
  return first === last ? String(first) : `${first}-${last}`;
}

/** "port 80" or "ports 8000-8099". */
function describeRange(range: PortRange): string {
  return `${range[0] === range[1] ? "port" : "ports"} ${formatRange(range)}`;
}

/** Linux interface-name rules (dev_valid_name): IFNAMSIZ-1 bytes, no '/', ':' or whitespace. */
function interfaceNameProblem(s: string): string | null {
  const shown = JSON.stringify(s);
  if (s === "") return "interface name must not be empty";
  const bytes = new TextEncoder().encode(s).length;
  if (bytes > 15) return `interface name ${shown} is too long (${bytes} bytes; at most 15)`;
  if (s === "." || s === "..") return `interface name must not be ${shown}`;
  if (s.includes("/")) return `interface name ${shown} must not contain "/"`;
  if (s.includes(":")) return `interface name ${shown} must not contain ":"`;
  if (/\s/.test(s)) return `interface name ${shown} must not contain whitespace`;
  return null;
}

const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function serviceNameProblem(s: string): string | null {
  if (SERVICE_NAME.test(s)) return null;
  return `must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit ` +
    `(got ${JSON.stringify(s)})`;
}

/** Splits "a.b.c.d:port"; returns a problem description instead when it is not one. */
function splitListen(s: string): { host: string; port: number } | string {
  const example = "e.g. 127.0.0.1:9180";
  const m = /^([^:]*):([^:]*)$/.exec(s);
  if (m === null) {
    return `must be HOST:PORT with an IPv4 host, ${example} (got ${JSON.stringify(s)})`;
  }
  const [, host, portText] = m;
  const hostProblem = ipv4SyntaxProblem(host);
  if (hostProblem !== null) return `host part: ${hostProblem} (${example})`;
  const port = /^[1-9][0-9]{0,4}$/.test(portText) ? Number(portText) : NaN;
  if (!(port <= 65535)) {
    return `port part must be an integer between 1 and 65535 (got ${JSON.stringify(portText)})`;
  }
  return { host, port };
}

/** The longest socket path the kernel binds (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** Why `s` is not an absolute file path tunvs can use, or null. */
function absolutePathProblem(s: string, example: string): string | null {
  if (!s.startsWith("/")) {
    return `must be an absolute path, e.g. ${example} (got ${JSON.stringify(s)})`;
  }
  if (s.includes("\0")) return "must not contain a NUL character";
  if (s.endsWith("/")) return `must name a file, not a directory (got ${JSON.stringify(s)})`;
  return null;
}

/** Parses an `admin.listen` value, "HOST:PORT" or "unix:/PATH"; a string says what is wrong. */
export function parseAdminListen(s: string): AdminListen | string {
  if (s.startsWith("unix:")) {
    const path = s.slice("unix:".length);
    const problem = absolutePathProblem(path, "unix:/run/tunvs/admin.sock");
    if (problem !== null) return `socket path ${problem}`;
    const bytes = new TextEncoder().encode(path).length;
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      return `socket path is too long (${bytes} bytes; at most ${MAX_SOCKET_PATH_BYTES})`;
    }
    return { transport: "unix", path };
  }
  const tcp = splitListen(s);
  return typeof tcp === "string" ? tcp : { transport: "tcp", ...tcp };
}

/** Whether a TCP admin listener on `host` is reachable from this host only (127.0.0.0/8). */
export function isLoopbackHost(host: string): boolean {
  const addr = parseIpv4Address(host);
  return addr !== null && addr >>> 24 === 127;
}

// ---------------------------------------------------------------------------------------------
// Schema. Every leaf carries its own operator-facing message; structural issues (wrong
// container type, missing key, unknown key, bad enum value) get theirs in `structuralMessage`.

/** Missing keys reach the leaf's own error function first, so leaves word that case too. */
function requiredOr(message: (input: unknown) => string) {
  return (iss: { input?: unknown }) => iss.input === undefined ? "is required" : message(iss.input);
}

function intInRange(min: number, max: number) {
  const message = requiredOr((input) => intRangeMessage(min, max, input));
  return z.number({ error: message }).refine(
    (n) => Number.isInteger(n) && n >= min && n <= max,
    { error: message },
  );
}

function checkedString(what: string, problem: (s: string) => string | null) {
  return z.string({ error: requiredOr((input) => `must be ${what} (got ${describe(input)})`) })
    .superRefine(
      (s, ctx) => {
        const p = problem(s);
        if (p !== null) ctx.addIssue({ code: "custom", message: p, input: s });
      },
    );
}

/** The allowed keys ride on the unrecognized_keys message; `zodIssues` prefixes each key. */
function strictMap<T extends z.core.$ZodLooseShape>(shape: T) {
  const allowed = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (iss) => iss.code === "unrecognized_keys" ? `allowed keys: ${allowed}` : undefined,
  });
}

const interfaceName = checkedString("an interface name", interfaceNameProblem);

const timeoutSeconds = (fallback: number) => intInRange(1, MAX_TIMEOUT_SECONDS).default(fallback);

function secondsInRange(min: number, max: number) {
  const message = requiredOr((input) =>
    `must be a number of seconds from ${min} to ${max} (got ${describe(input)}${quoteHint(input)})`
  );
  return z.number({ error: message }).refine((n) => n >= min && n <= max, { error: message });
}

const checkFlag = z.boolean({
  error: (iss) => `must be true or false (got ${describe(iss.input)})`,
});

function nullableText(what: string) {
  return z.string({ error: (iss) => `must be ${what} or null (got ${describe(iss.input)})` })
    .nullable();
}

/** keepalived's delay_loop, connect_timeout, retry... with every key optional: a real's block
 * overrides its service's key by key, and defaults are filled after merging. */
const healthCheckSchema = strictMap({
  type: z.enum(HEALTH_CHECK_TYPES).optional(),
  interval: secondsInRange(0.1, 86400).optional(),
  timeout: secondsInRange(0.1, 3600).optional(),
  retry: intInRange(0, 100).optional(),
  delay_before_retry: secondsInRange(0, 3600).optional(),
  rise: intInRange(1, 100).optional(),
  fall: intInRange(1, 100).optional(),
  alpha: checkFlag.optional(),
  port: intInRange(1, 65535).optional(),
  http: strictMap({
    method: z.string({ error: (iss) => `must be an HTTP method (got ${describe(iss.input)})` })
      .regex(/^[A-Z]+$/, { error: "must be an upper-case HTTP method such as GET or HEAD" })
      .optional(),
    path: z.string({ error: (iss) => `must be a path (got ${describe(iss.input)})` })
      .regex(/^\/\S*$/, { error: 'must start with "/" and contain no whitespace' }).optional(),
    status: z.array(intInRange(100, 599)).min(1, { error: "must list at least one status" })
      .optional(),
    digest: nullableText("an MD5 digest (32 hex digits)")
      .refine((d) => d === null || /^[0-9a-fA-F]{32}$/.test(d), {
        error: "must be an MD5 digest: 32 hex digits, as keepalived's genhash prints",
      }).optional(),
    substring: nullableText("text").optional(),
    host: nullableText("a host name").optional(),
  }).optional(),
  udp: strictMap({
    payload: z.string({ error: (iss) => `must be text (got ${describe(iss.input)})` }).optional(),
    expect: nullableText("text").optional(),
  }).optional(),
  exec: strictMap({
    command: z.union([
      z.string({ error: (iss) => `must be a command line (got ${describe(iss.input)})` }),
      z.array(z.string({ error: (iss) => `must be text (got ${describe(iss.input)})` })),
    ], { error: (iss) => `must be a command line or a list of words (got ${describe(iss.input)})` })
      .optional(),
    dynamic: checkFlag.optional(),
  }).optional(),
});

/** keepalived's notify_up/notify_down: a command line split on whitespace, or a list of words. */
const notifyCommand = z.union([
  z.string({ error: (iss) => `must be a command line (got ${describe(iss.input)})` })
    .refine((c) => c.trim() !== "", { error: "must not be empty" }),
  z.array(z.string({ error: (iss) => `must be text (got ${describe(iss.input)})` }))
    .min(1, { error: "must list the program and its arguments" }),
], { error: (iss) => `must be a command line or a list of words (got ${describe(iss.input)})` });

const realSchema = strictMap({
  address: checkedString("an IPv4 address", unicastIpv4Problem),
  port: intInRange(1, 65535).optional(),
  weight: intInRange(0, 65535).default(CONFIG_DEFAULTS.weight),
  upper_threshold: intInRange(0, MAX_THRESHOLD).default(0),
  lower_threshold: intInRange(0, MAX_THRESHOLD).default(0),
  drain: checkFlag.optional(),
  health_check: healthCheckSchema.optional(),
  inhibit_on_failure: checkFlag.optional(),
  notify_up: notifyCommand.optional(),
  notify_down: notifyCommand.optional(),
});

/** A service port: 1..65535, or 0 (any port), which the semantic pass allows with persistence only. */
const servicePort = (() => {
  const message = requiredOr((input) =>
    `${intRangeMessage(1, 65535, input)}; or 0 (any port) with persistence`
  );
  return z.number({ error: message }).refine(
    (n) => Number.isInteger(n) && n >= 0 && n <= 65535,
    { error: message },
  );
})();

const portItem = z.unknown().transform((v, ctx): PortRange => {
  const parsed = parsePortItem(v);
  if (typeof parsed !== "string") return parsed;
  ctx.addIssue({ code: "custom", message: parsed, input: v });
  return z.NEVER;
});

const persistenceSchema = strictMap({
  timeout: intInRange(1, MAX_TIMEOUT_SECONDS).default(CONFIG_DEFAULTS.persistence.timeout),
  netmask: checkedString("a netmask such as 255.255.255.0", netmaskProblem)
    .default(CONFIG_DEFAULTS.persistence.netmask),
});

const serviceSchema = strictMap({
  name: checkedString("a service name", serviceNameProblem),
  protocol: z.enum(PROTOCOLS).default(CONFIG_DEFAULTS.protocol),
  vip: checkedString("an IPv4 address", unicastIpv4Problem).optional(),
  port: servicePort.optional(),
  fwmark: intInRange(1, 0xffffffff).optional(),
  vips: z.array(checkedString("an IPv4 address", unicastIpv4Problem)).optional(),
  ports: z.array(portItem).min(1, { error: "must list at least one port" }).optional(),
  persistence: persistenceSchema.optional(),
  one_packet: z.boolean({
    error: (iss) => `must be true or false (got ${describe(iss.input)})`,
  }).optional(),
  scheduler: z.enum(SCHEDULERS).default(CONFIG_DEFAULTS.scheduler),
  scheduler_flags: z.array(z.enum(SCHEDULER_FLAGS)).default([]),
  forward: z.enum(FORWARD_METHODS).default(CONFIG_DEFAULTS.forward),
  local_addresses: z.array(checkedString("an IPv4 address", unicastIpv4Problem)).optional(),
  toa: z.boolean({
    error: (iss) => `must be true or false (got ${describe(iss.input)})`,
  }).optional(),
  synproxy: checkFlag.optional(),
  reals: z.array(realSchema).default([]),
  health_check: healthCheckSchema.optional(),
  inhibit_on_failure: checkFlag.optional(),
  expire_on_failure: checkFlag.optional(),
  notify_up: notifyCommand.optional(),
  notify_down: notifyCommand.optional(),
  sorry_server: strictMap({
    address: checkedString("an IPv4 address", unicastIpv4Problem),
    port: intInRange(1, 65535).optional(),
  }).optional(),
  quorum: intInRange(1, 0xffffffff).optional(),
  hysteresis: intInRange(0, 0xffffffff).optional(),
});

const configSchema = strictMap({
  admin: strictMap({
    listen: checkedString("a HOST:PORT string or unix:/PATH, e.g. 127.0.0.1:9180", (s) => {
      const r = parseAdminListen(s);
      return typeof r === "string" ? r : null;
    }).default(CONFIG_DEFAULTS.adminListen),
    // The token itself never goes in this file (it is often shared, versioned, printed).
    token_file: checkedString(
      "the absolute path of the file holding the admin token",
      (s) => absolutePathProblem(s, "/etc/tunvs/admin.token"),
    ).optional(),
  }).superRefine((admin, ctx) => {
    const listen = parseAdminListen(admin.listen);
    if (typeof listen === "string" || admin.token_file !== undefined) return;
    if (listen.transport === "tcp" && !isLoopbackHost(listen.host)) {
      ctx.addIssue({
        code: "custom",
        path: ["token_file"],
        message: `is required when admin.listen is not a loopback address ` +
          `(got ${admin.listen}): anyone who reaches it could change the rules. Write a random ` +
          `token to a file only root can read and name it here, or listen on 127.0.0.1:PORT ` +
          `or unix:/PATH`,
        input: admin,
      });
    }
  }).prefault({}),
  dataplane: strictMap({
    tun: interfaceName.default(CONFIG_DEFAULTS.tun),
    offloads: z.boolean().default(CONFIG_DEFAULTS.offloads),
    workers: intInRange(1, MAX_WORKERS).optional(),
    io: z.enum(TUN_IO_CHOICES).default(CONFIG_DEFAULTS.io),
  }).prefault({}),
  host: strictMap({ uplink: interfaceName.optional(), realside: interfaceName.optional() })
    .prefault({}),
  timeouts: strictMap({
    tcp: timeoutSeconds(CONFIG_DEFAULTS.timeouts.tcp),
    tcpfin: timeoutSeconds(CONFIG_DEFAULTS.timeouts.tcpfin),
    udp: timeoutSeconds(CONFIG_DEFAULTS.timeouts.udp),
  }).prefault({}),
  local_addresses: z.array(checkedString("an IPv4 address", unicastIpv4Problem)).default([]),
  synproxy: strictMap({
    mss: intInRange(SYNPROXY_MIN_MSS, SYNPROXY_MAX_MSS).default(SYNPROXY_DEFAULTS.mss),
    key_rotation: intInRange(1, 86400).default(SYNPROXY_DEFAULTS.keyRotationSeconds),
  }).optional(),
  services: z.array(serviceSchema),
});

const CONTAINER_NAMES: Record<string, string> = {
  object: "a mapping",
  array: "a list",
  string: "a string",
  number: "a number",
};

/** Fallback messages for issues the leaf schemas above do not word themselves. */
function structuralMessage(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.code === "invalid_type") {
    if (iss.input === undefined) return "is required";
    const want = CONTAINER_NAMES[iss.expected] ?? iss.expected;
    const hint = iss.input === null && (iss.expected === "object" || iss.expected === "array")
      ? (iss.expected === "array" ? "; write [] for an empty list" : "; write {} or remove the key")
      : "";
    return `must be ${want} (got ${describe(iss.input)}${hint})`;
  }
  if (iss.code === "invalid_value") {
    const values = iss.values.map((v) => String(v)).join(", ");
    const got = typeof iss.input === "string" ? JSON.stringify(iss.input) : describe(iss.input);
    return `must be one of: ${values} (got ${got})`;
  }
  return undefined;
}

type SchemaOutput = z.output<typeof configSchema>;

// ---------------------------------------------------------------------------------------------
// Mapping paths back to source positions.

interface Position {
  line: number;
  col: number;
}

/** Formats a path as `services[1].reals[0].weight`; odd keys are quoted so the path stays readable. */
function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out === "" ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

class SourceMap {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Position of an offset in the source text. */
  at(offset: number): Position {
    const { line, col } = this.lines.linePos(offset);
    return { line, col };
  }

  /**
   * Position of the node at `path`: the value itself; its key when the value is empty or
   * `preferKey` is set (unknown keys); the nearest existing ancestor when part of the path is
   * missing (a missing required key points at its parent map).
   */
  locate(path: readonly PathSegment[], preferKey = false): Position {
    let node: unknown = this.doc.contents;
    let best = this.start(node) ?? 0;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      if (isAlias(node)) node = node.resolve(this.doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (pair === undefined) break;
        const keyStart = this.start(pair.key) ?? best;
        node = pair.value;
        const valueStart = this.isEmpty(node) ? null : this.start(node);
        best = (preferKey && i === path.length - 1) || valueStart === null ? keyStart : valueStart;
      } else if (isSeq(node) && typeof seg === "number" && seg < node.items.length) {
        node = node.items[seg];
        best = this.start(node) ?? best;
      } else {
        break;
      }
    }
    return this.at(best);
  }

  /** Path of the mapping key that starts at `offset` (how yaml reports duplicate keys). */
  pathOfKeyAt(offset: number): PathSegment[] | null {
    const search = (node: unknown, path: PathSegment[]): PathSegment[] | null => {
      if (isMap(node)) {
        for (const pair of node.items) {
          if (!isScalar(pair.key)) continue;
          const here = [...path, String(pair.key.value)];
          if (this.start(pair.key) === offset) return here;
          const found = search(pair.value, here);
          if (found !== null) return found;
        }
      } else if (isSeq(node)) {
        for (let i = 0; i < node.items.length; i++) {
          const found = search(node.items[i], [...path, i]);
          if (found !== null) return found;
        }
      }
      return null;
    };
    return search(this.doc.contents, []);
  }

  private start(node: unknown): number | null {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return Array.isArray(range) ? range[0] : null;
  }

  /** `key:` with nothing after it yields a null scalar positioned at the next line. */
  private isEmpty(node: unknown): boolean {
    return node === null || node === undefined ||
      (isScalar(node) && node.value === null && node.source === "");
  }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks: run on the raw value so they are reported together with schema issues.

interface RawIssue {
  path: PathSegment[];
  message: string;
  preferKey?: boolean;
}

function asRecord(v: unknown): Record<string, unknown> | null {
  return v !== null && typeof v === "object" && !Array.isArray(v)
    ? v as Record<string, unknown>
    : null;
}

function endpointKey(address: unknown, port: unknown): string | null {
  if (typeof address !== "string" || typeof port !== "number") return null;
  const addr = parseIpv4Address(address);
  return addr === null ? null : `${addr}:${port}`;
}

/** Ports a service serves on its VIP and protocol, for finding overlaps between services. */
interface PortClaim {
  range: PortRange;
  service: number;
  /** Claimed through `ports`, not `port`. */
  group: boolean;
}

/** Whether a raw service serves more than one port: reals without a port then follow the client. */
function servesAnyPort(svc: Record<string, unknown>): boolean {
  return svc.ports !== undefined || svc.port === 0 || svc.fwmark !== undefined;
}

/**
 * A firewall-mark service is found by its mark alone, whatever the packet's address, port and
 * protocol (as IPVS's fwmark services): the keys of an address service do not apply to it, and
 * the features bound to one protocol (one_packet, toa, synproxy) cannot know theirs.
 */
function fwmarkIssues(
  svc: Record<string, unknown>,
  i: number,
  marks: Map<number, number>,
  issues: RawIssue[],
): void {
  if (svc.fwmark === undefined) {
    if (svc.vip === undefined) {
      issues.push({ path: ["services", i, "vip"], message: "is required" });
    }
    if (svc.vips !== undefined) {
      issues.push({
        path: ["services", i, "vips"],
        message: "vips apply to firewall-mark services (fwmark) only; this service has vip",
        preferKey: true,
      });
    }
    return;
  }
  const notHere: Record<string, string> = {
    vip: "name the VIPs the mark rule matches in vips: [...] instead",
    port: "the mark rule chooses the ports",
    ports: "the mark rule chooses the ports",
    protocol: "the service takes every marked packet, TCP and UDP alike",
    one_packet: "one_packet applies to a UDP service",
    toa: "toa applies to a TCP service",
    synproxy: "synproxy applies to a TCP service",
  };
  for (const [key, why] of Object.entries(notHere)) {
    if (svc[key] === undefined) continue;
    issues.push({
      path: ["services", i, key],
      message: `a firewall-mark service has no ${key}: ${why}`,
      preferKey: true,
    });
  }
  if (typeof svc.fwmark === "number") {
    const first = marks.get(svc.fwmark);
    if (first !== undefined) {
      issues.push({
        path: ["services", i, "fwmark"],
        message: `duplicate firewall mark ${svc.fwmark} (already used by services[${first}])`,
      });
    } else marks.set(svc.fwmark, i);
  }
}

/**
 * The port rules: exactly one of `port` and `ports`; port 0 only with persistence (IPVS
 * schedules nothing for a non-persistent port-zero service); no port twice in a list; no port
 * served by two services on one VIP and protocol (a port-0 service only takes what no other
 * serves, so it overlaps nothing); one_packet on UDP only, as IPVS applies it.
 */
function portIssues(
  svc: Record<string, unknown>,
  i: number,
  claims: Map<string, PortClaim[]>,
  issues: RawIssue[],
): void {
  const { port, ports } = svc;
  const protocol = svc.protocol ?? CONFIG_DEFAULTS.protocol;
  if (svc.one_packet === true && protocol !== "udp") {
    issues.push({
      path: ["services", i, "one_packet"],
      message: `applies to UDP services only (this one is ${JSON.stringify(protocol)})`,
    });
  }
  if (port === undefined && ports === undefined) {
    issues.push({ path: ["services", i, "port"], message: "is required" });
    return;
  }
  if (port !== undefined && ports !== undefined) {
    issues.push({
      path: ["services", i, "ports"],
      message: "give either port or ports (a port group), not both",
    });
    return;
  }
  if (port === 0 && svc.persistence === undefined) {
    issues.push({
      path: ["services", i, "port"],
      message: "0 (any port) needs persistence, as ipvsadm requires",
    });
  }
  const vip = typeof svc.vip === "string" ? parseIpv4Address(svc.vip) : null;
  if (vip === null || typeof protocol !== "string") return;
  const key = `${protocol}/${vip}`;
  const earlier = claims.get(key) ?? [];
  const own: PortClaim[] = [];
  const overlapping = (list: PortClaim[], [first, last]: PortRange) =>
    list.find((c) => c.range[0] <= last && first <= c.range[1]);
  if (typeof port === "number" && port !== 0) {
    const other = overlapping(earlier, [port, port]);
    // Two services on one port are reported as duplicates already.
    if (other !== undefined && other.group) {
      issues.push({
        path: ["services", i, "port"],
        message: `port ${port} is already served by services[${other.service}] ` +
          `(${protocol} ${svc.vip} ${describeRange(other.range)})`,
      });
    }
    own.push({ range: [port, port], service: i, group: false });
  } else if (Array.isArray(ports)) {
    ports.forEach((item, j) => {
      const range = parsePortItem(item);
      if (typeof range === "string") return;
      const mine = overlapping(own, range);
      const other = overlapping(earlier, range);
      if (mine !== undefined) {
        issues.push({
          path: ["services", i, "ports", j],
          message: `${formatRange(range)} overlaps ${formatRange(mine.range)} earlier in the list`,
        });
      } else if (other !== undefined) {
        issues.push({
          path: ["services", i, "ports", j],
          message: `${formatRange(range)} overlaps services[${other.service}] ` +
            `(${protocol} ${svc.vip} ${describeRange(other.range)})`,
        });
      }
      own.push({ range, service: i, group: true });
    });
  }
  claims.set(key, [...earlier, ...own]);
}

/** Health-check rules across a service's block and its reals' overrides. */
function healthCheckIssues(svc: Record<string, unknown>, i: number, issues: RawIssue[]): void {
  const report = (problems: ReturnType<typeof healthCheckProblems>, realIndex?: number) => {
    for (const p of problems) {
      const base: PathSegment[] = p.block === "real" && realIndex !== undefined
        ? ["services", i, "reals", realIndex, "health_check"]
        : ["services", i, "health_check"];
      issues.push({ path: [...base, ...p.path], message: p.message });
    }
  };
  report(healthCheckProblems(svc.health_check, undefined));
  const forward = svc.forward ?? CONFIG_DEFAULTS.forward;
  const sorryPort = asRecord(svc.sorry_server)?.port;
  if ((forward === "dr" || forward === "tunnel") && typeof sorryPort === "number") {
    // As a DR/tunnel real: the packet reaches it unchanged (keepalived resets the port).
    if (servesAnyPort(svc)) {
      issues.push({
        path: ["services", i, "sorry_server", "port"],
        message: `a ${forward} sorry server serves the port the client asked for; remove port`,
      });
    } else if (typeof svc.port === "number" && sorryPort !== svc.port) {
      issues.push({
        path: ["services", i, "sorry_server", "port"],
        message: `a ${forward} sorry server serves the service's port ${svc.port}, unchanged ` +
          `(got ${sorryPort}); remove port`,
      });
    }
  }
  if (!Array.isArray(svc.reals)) return;
  const serviceCheck = asRecord(svc.health_check);
  svc.reals.forEach((entry, j) => {
    const real = asRecord(entry);
    if (real === null) return;
    const realCheck = asRecord(real.health_check);
    if (real.health_check !== undefined) {
      report(healthCheckProblems(svc.health_check, real.health_check), j);
    }
    // A real that takes the client's port has no port of its own for a check to probe.
    const type = realCheck?.type ?? serviceCheck?.type;
    const probes = type === "tcp" || type === "http" || type === "https" || type === "udp";
    const port = realCheck?.port ?? serviceCheck?.port;
    if (probes && real.port === undefined && servesAnyPort(svc) && port === undefined) {
      issues.push({
        path: ["services", i, "reals", j],
        message: `a real without a port needs health_check.port: the port a ${type} check probes`,
      });
    }
  });
}

function semanticIssues(raw: unknown): RawIssue[] {
  const issues: RawIssue[] = [];
  const root = asRecord(raw);
  const services = root?.services;
  if (!Array.isArray(services)) return issues;
  const globalPool = Array.isArray(root?.local_addresses) ? root.local_addresses : [];
  // A firewall-mark service's `vips` are VIPs as much as a service's `vip`.
  const vips = new Set(
    services.flatMap((s) => {
      const svc = asRecord(s);
      return [svc?.vip, ...(Array.isArray(svc?.vips) ? svc.vips : [])];
    }).filter((v) => typeof v === "string"),
  );
  const checkPool = (pool: unknown[], path: (string | number)[]) =>
    pool.forEach((addr, k) => {
      if (typeof addr === "string" && vips.has(addr)) {
        issues.push({
          path: [...path, k],
          message: `${addr} is a VIP; local addresses must differ`,
        });
      }
    });
  checkPool(globalPool, ["local_addresses"]);
  const byName = new Map<string, number>();
  const byEndpoint = new Map<string, number>();
  const claims = new Map<string, PortClaim[]>();
  const marks = new Map<number, number>();
  services.forEach((entry, i) => {
    const svc = asRecord(entry);
    if (svc === null) return;
    fwmarkIssues(svc, i, marks, issues);
    const own = svc.local_addresses;
    if (svc.forward === "fullnat") {
      // No local address (yet) is allowed, as in DPVS, where the reals are added first and the
      // local addresses after them (seed 004): until one exists, new connections are dropped
      // (no_local_port).
      if (Array.isArray(own)) checkPool(own, ["services", i, "local_addresses"]);
    } else if (own !== undefined) {
      issues.push({
        path: ["services", i, "local_addresses"],
        message: "local_addresses apply to forward: fullnat only",
      });
    }
    if (svc.toa === true) {
      // TOA rides on the connection FULLNAT opens to the real: other methods keep the client's
      // address, and UDP has no options to carry it.
      if ((svc.forward ?? CONFIG_DEFAULTS.forward) !== "fullnat") {
        issues.push({
          path: ["services", i, "toa"],
          message: "toa applies to forward: fullnat only",
        });
      } else if ((svc.protocol ?? CONFIG_DEFAULTS.protocol) !== "tcp") {
        issues.push({ path: ["services", i, "toa"], message: "toa applies to protocol: tcp only" });
      }
    }
    if (svc.synproxy === true) {
      const forward = svc.forward ?? CONFIG_DEFAULTS.forward;
      if (forward === "dr" || forward === "tunnel") {
        issues.push({
          path: ["services", i, "synproxy"],
          message: `synproxy needs forward: nat or fullnat; with ${forward} the real's replies ` +
            "go to the client without passing the director, which therefore cannot translate " +
            "their sequence numbers to the SYN cookie the client was given",
        });
      } else if ((svc.protocol ?? CONFIG_DEFAULTS.protocol) !== "tcp") {
        issues.push({
          path: ["services", i, "synproxy"],
          message: "synproxy applies to protocol: tcp only (UDP has no handshake)",
        });
      }
    }
    if (typeof svc.name === "string") {
      const first = byName.get(svc.name);
      if (first !== undefined) {
        issues.push({
          path: ["services", i, "name"],
          message: `duplicate service name ${JSON.stringify(svc.name)} (already used by ` +
            `services[${first}])`,
        });
      } else byName.set(svc.name, i);
    }
    const protocol = svc.protocol ?? CONFIG_DEFAULTS.protocol;
    const endpoint = endpointKey(svc.vip, svc.port);
    if (typeof protocol === "string" && endpoint !== null) {
      const key = `${protocol}/${endpoint}`;
      const first = byEndpoint.get(key);
      if (first !== undefined) {
        issues.push({
          path: ["services", i],
          message: `duplicate service ${protocol} ${svc.vip}:${svc.port} (already defined by ` +
            `services[${first}])`,
        });
      } else byEndpoint.set(key, i);
    }
    if (svc.fwmark === undefined) portIssues(svc, i, claims, issues);
    healthCheckIssues(svc, i, issues);
    if (Array.isArray(svc.scheduler_flags)) {
      const scheduler = svc.scheduler ?? CONFIG_DEFAULTS.scheduler;
      svc.scheduler_flags.forEach((flag, j) => {
        if (typeof flag !== "string") return;
        const owner = flag.split("-")[0];
        if ((SCHEDULER_FLAGS as readonly string[]).includes(flag) && owner !== scheduler) {
          issues.push({
            path: ["services", i, "scheduler_flags", j],
            message: `${flag} applies to the ${owner} scheduler only (this service uses ` +
              `${JSON.stringify(scheduler)})`,
          });
        }
      });
    }
    if (!Array.isArray(svc.reals)) return;
    const reals = new Map<string, number>();
    svc.reals.forEach((realEntry, j) => {
      const real = asRecord(realEntry);
      if (real === null) return;
      const { upper_threshold: upper, lower_threshold: lower } = real;
      if (typeof upper === "number" && typeof lower === "number" && upper > 0 && lower > upper) {
        issues.push({
          path: ["services", i, "reals", j, "lower_threshold"],
          message: `must not exceed upper_threshold (${lower} > ${upper})`,
        });
      }
      const forward = svc.forward ?? CONFIG_DEFAULTS.forward;
      if ((forward === "dr" || forward === "tunnel") && typeof real.port === "number") {
        // The packet reaches the real unchanged: IPVS ignores a real's port with -g/-i, which
        // would silently serve the wrong port, so say it instead.
        if (servesAnyPort(svc)) {
          issues.push({
            path: ["services", i, "reals", j, "port"],
            message: `a ${forward} real serves the port the client asked for; remove port`,
          });
        } else if (typeof svc.port === "number" && real.port !== svc.port) {
          issues.push({
            path: ["services", i, "reals", j, "port"],
            message: `a ${forward} real serves the service's port ${svc.port}, unchanged ` +
              `(got ${real.port}); remove port or use forward: nat or fullnat to change it`,
          });
        }
      }
      const port = real.port ?? (servesAnyPort(svc) ? 0 : svc.port);
      const key = endpointKey(real.address, port);
      if (key === null) return;
      const first = reals.get(key);
      if (first !== undefined) {
        const endpoint = port === 0 ? `${real.address} (no port)` : `${real.address}:${port}`;
        issues.push({
          path: ["services", i, "reals", j],
          message: `duplicate real ${endpoint} (already listed as reals[${first}])`,
        });
      } else reals.set(key, j);
    });
  });
  return issues;
}

/** Zod reports all unknown keys of a map in one issue; operators want one line per key. */
function zodIssues(issues: readonly z.core.$ZodIssue[]): RawIssue[] {
  const out: RawIssue[] = [];
  for (const iss of issues) {
    const path = iss.path.filter((s): s is PathSegment => typeof s !== "symbol");
    if (iss.code === "unrecognized_keys") {
      for (const key of iss.keys) {
        out.push({
          path: [...path, key],
          message: `unknown key ${JSON.stringify(key)}; ${iss.message}`,
          preferKey: true,
        });
      }
    } else {
      out.push({ path, message: iss.message });
    }
  }
  return out;
}

/** A real's notify_up/notify_down as words, each present when configured. */
function notifyCommands(
  up: string | string[] | undefined,
  down: string | string[] | undefined,
): { notifyUp?: string[]; notifyDown?: string[] } {
  return {
    ...(up === undefined ? {} : { notifyUp: commandWords(up) }),
    ...(down === undefined ? {} : { notifyDown: commandWords(down) }),
  };
}

function toModel(out: SchemaOutput): ApplianceConfig {
  const listen = parseAdminListen(out.admin.listen);
  if (typeof listen === "string") throw new Error(`unreachable: validated listen ${listen}`);
  return {
    admin: {
      listen: out.admin.listen,
      ...listen,
      ...(out.admin.token_file === undefined ? {} : { tokenFile: out.admin.token_file }),
    },
    dataplane: {
      tun: out.dataplane.tun,
      offloads: out.dataplane.offloads,
      ...(out.dataplane.workers === undefined ? {} : { workers: out.dataplane.workers }),
      io: out.dataplane.io,
    },
    host: {
      ...(out.host.uplink === undefined ? {} : { uplink: out.host.uplink }),
      ...(out.host.realside === undefined ? {} : { realside: out.host.realside }),
    },
    timeouts: { ...out.timeouts },
    localAddresses: [...out.local_addresses],
    ...(out.synproxy === undefined
      ? {}
      : { synproxy: { mss: out.synproxy.mss, keyRotation: out.synproxy.key_rotation } }),
    services: out.services.map((s) => {
      const port = s.port ?? 0;
      // A real without a port in a service of many ports takes the client's port (port 0).
      const realDefaultPort = s.ports !== undefined ? 0 : port;
      return {
        name: s.name,
        protocol: s.protocol,
        vip: s.vip ?? FWMARK_SERVICE_VIP,
        port,
        ...(s.fwmark === undefined ? {} : { fwmark: s.fwmark, vips: [...(s.vips ?? [])] }),
        ...(s.ports === undefined ? {} : { ports: s.ports.map(([a, b]): PortRange => [a, b]) }),
        ...(s.persistence === undefined ? {} : { persistence: { ...s.persistence } }),
        ...(s.one_packet === true ? { onePacket: true as const } : {}),
        scheduler: s.scheduler,
        schedulerFlags: [...new Set(s.scheduler_flags)],
        forward: s.forward,
        localAddresses: s.forward === "fullnat"
          ? [...(s.local_addresses ?? out.local_addresses)]
          : [],
        ...(s.toa === true ? { toa: true as const } : {}),
        ...(s.synproxy === true ? { synproxy: true as const } : {}),
        reals: s.reals.map((r) => {
          const healthCheck = resolveHealthCheck(s.health_check, r.health_check);
          return {
            address: r.address,
            port: r.port ?? realDefaultPort,
            weight: r.weight,
            upperThreshold: r.upper_threshold,
            lowerThreshold: r.lower_threshold,
            ...(r.drain === true ? { drain: true as const } : {}),
            ...(healthCheck === undefined ? {} : { healthCheck }),
            ...(r.inhibit_on_failure === undefined
              ? {}
              : { inhibitOnFailure: r.inhibit_on_failure }),
            ...notifyCommands(r.notify_up ?? s.notify_up, r.notify_down ?? s.notify_down),
          };
        }),
        ...(s.health_check === undefined
          ? {}
          : { healthCheck: resolveHealthCheck(s.health_check, undefined) }),
        ...(s.inhibit_on_failure === true ? { inhibitOnFailure: true as const } : {}),
        ...(s.expire_on_failure === true ? { expireOnFailure: true as const } : {}),
        ...(s.sorry_server === undefined ? {} : {
          sorryServer: { address: s.sorry_server.address, port: s.sorry_server.port ?? port },
        }),
        ...(s.quorum === undefined ? {} : { quorum: s.quorum }),
        ...(s.hysteresis === undefined ? {} : { hysteresis: s.hysteresis }),
      };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/**
 * The source ports replies come from for a real of `svc` on `port`: that port, or, for a real
 * that takes the client's port (0), every port the service serves (what a reply rule must match).
 */
export function realReplyPorts(svc: ServiceConfig, port: number): PortRange[] {
  if (port !== 0) return [[port, port]];
  if (svc.ports !== undefined) return svc.ports.map(([a, b]): PortRange => [a, b]);
  return [[1, 65535]];
}

/** toJS only fails on aliases: an undefined anchor, or too many expansions (billion laughs). */
function aliasIssue(doc: Document, source: SourceMap, file: string, e: unknown): ConfigIssue {
  let message = `cannot expand aliases: ${e instanceof Error ? e.message : String(e)}`;
  let pos: Position = { line: 1, col: 1 };
  visit(doc, {
    Alias: (_key, node) => {
      if (node.resolve(doc) !== undefined || !node.range) return;
      message = `unknown alias "*${node.source}" (its anchor "&${node.source}" must come first)`;
      pos = source.at(node.range[0]);
      return visit.BREAK;
    },
  });
  return { file, line: pos.line, col: pos.col, path: "", message };
}

/** Parses and validates appliance.yaml text; throws ConfigError listing every problem found. */
export function parseConfig(text: string, file: string = DEFAULT_CONFIG_PATH): ApplianceConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const source = new SourceMap(doc, lineCounter);
  const issue = (pos: Position, path: string, message: string): ConfigIssue => ({
    file,
    line: pos.line,
    col: pos.col,
    path,
    message,
  });

  // A document with syntax errors has no trustworthy structure to validate.
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => {
      const at = source.at(e.pos[0]);
      const keyPath = e.code === "DUPLICATE_KEY" ? source.pathOfKeyAt(e.pos[0]) : null;
      if (keyPath === null) return issue(at, "", e.message);
      const key = JSON.stringify(keyPath[keyPath.length - 1]);
      return issue(at, formatPath(keyPath), `duplicate key ${key}; each key may appear only once`);
    }));
  }

  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (e) {
    throw new ConfigError([aliasIssue(doc, source, file, e)]);
  }
  if (raw === null || raw === undefined) {
    throw new ConfigError([
      issue(
        { line: 1, col: 1 },
        "",
        'the configuration is empty; expected a mapping with at least a "services" list',
      ),
    ]);
  }

  const parsed = configSchema.safeParse(raw, { error: structuralMessage });
  const found = [
    ...(parsed.success ? [] : zodIssues(parsed.error.issues)),
    ...semanticIssues(raw),
  ];
  if (found.length > 0) {
    const seen = new Set<string>();
    const issues: ConfigIssue[] = [];
    for (const f of found) {
      const i = issue(source.locate(f.path, f.preferKey), formatPath(f.path), f.message);
      const key = formatIssue(i);
      if (!seen.has(key)) {
        seen.add(key);
        issues.push(i);
      }
    }
    issues.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(issues);
  }
  if (!parsed.success) throw new Error("unreachable: schema failed without issues");
  return toModel(parsed.data);
}

/** Reads a config file's text; a missing or unreadable file is a ConfigError at 1:1. */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    const message = e instanceof Deno.errors.NotFound
      ? "config file not found"
      : `cannot read config file: ${e instanceof Error ? e.message : String(e)}`;
    throw new ConfigError([{ file: path, line: 1, col: 1, path: "", message }]);
  }
}

/** Reads and validates a config file; a missing or unreadable file is a ConfigError at 1:1. */
export async function loadConfig(path: string): Promise<ApplianceConfig> {
  return parseConfig(await readConfigText(path), path);
}
