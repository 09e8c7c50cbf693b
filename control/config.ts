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
import { parseIpv4Address } from "../dataplane/wire/ipv4.ts";

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

/** Values used for keys the operator leaves out. */
export const CONFIG_DEFAULTS = {
  adminListen: "127.0.0.1:9180",
  tun: "tunvs0",
  timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  protocol: "tcp",
  // ipvsadm's default.
  scheduler: "wlc",
  forward: "nat",
  weight: 1,
} as const satisfies {
  adminListen: string;
  tun: string;
  timeouts: { tcp: number; tcpfin: number; udp: number };
  protocol: Protocol;
  scheduler: SchedulerName;
  forward: ForwardMethod;
  weight: number;
};

/** Largest connection threshold: what fits the dataplane's signed 32-bit counters. */
export const MAX_THRESHOLD = 2147483647;

/** Largest timeout in seconds; keeps timeout*1000 within a signed 32-bit millisecond timer. */
export const MAX_TIMEOUT_SECONDS = 2147483;

/** One real server behind a virtual service. */
export interface RealConfig {
  address: string;
  port: number;
  weight: number;
  /** ipvsadm -x: no new connections at this many connections (0 = no limit). */
  upperThreshold: number;
  /** ipvsadm -y: new connections again below this many (0 = below 3/4 of the upper). */
  lowerThreshold: number;
}

/** Scheduler flags, as ipvsadm -b spells them; each belongs to one scheduler. */
export const SCHEDULER_FLAGS = ["sh-fallback", "sh-port", "mh-fallback", "mh-port"] as const;
/** A scheduler flag name. */
export type SchedulerFlagName = (typeof SCHEDULER_FLAGS)[number];

/** One virtual service (VIP:port/protocol) and its real servers. */
export interface ServiceConfig {
  name: string;
  protocol: Protocol;
  vip: string;
  port: number;
  scheduler: SchedulerName;
  schedulerFlags: SchedulerFlagName[];
  forward: ForwardMethod;
  reals: RealConfig[];
}

/** The whole validated appliance configuration, with every default filled in. */
export interface ApplianceConfig {
  admin: { listen: string; host: string; port: number };
  dataplane: { tun: string };
  host: { uplink?: string; realside?: string };
  timeouts: { tcp: number; tcpfin: number; udp: number };
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

const realSchema = strictMap({
  address: checkedString("an IPv4 address", unicastIpv4Problem),
  port: intInRange(1, 65535).optional(),
  weight: intInRange(0, 65535).default(CONFIG_DEFAULTS.weight),
  upper_threshold: intInRange(0, MAX_THRESHOLD).default(0),
  lower_threshold: intInRange(0, MAX_THRESHOLD).default(0),
});

const serviceSchema = strictMap({
  name: checkedString("a service name", serviceNameProblem),
  protocol: z.enum(PROTOCOLS).default(CONFIG_DEFAULTS.protocol),
  vip: checkedString("an IPv4 address", unicastIpv4Problem),
  port: intInRange(1, 65535),
  scheduler: z.enum(SCHEDULERS).default(CONFIG_DEFAULTS.scheduler),
  scheduler_flags: z.array(z.enum(SCHEDULER_FLAGS)).default([]),
  forward: z.enum(FORWARD_METHODS).default(CONFIG_DEFAULTS.forward),
  reals: z.array(realSchema).default([]),
});

const configSchema = strictMap({
  admin: strictMap({
    listen: checkedString("a HOST:PORT string, e.g. 127.0.0.1:9180", (s) => {
      const r = splitListen(s);
      return typeof r === "string" ? r : null;
    }).default(CONFIG_DEFAULTS.adminListen),
  }).prefault({}),
  dataplane: strictMap({ tun: interfaceName.default(CONFIG_DEFAULTS.tun) }).prefault({}),
  host: strictMap({ uplink: interfaceName.optional(), realside: interfaceName.optional() })
    .prefault({}),
  timeouts: strictMap({
    tcp: timeoutSeconds(CONFIG_DEFAULTS.timeouts.tcp),
    tcpfin: timeoutSeconds(CONFIG_DEFAULTS.timeouts.tcpfin),
    udp: timeoutSeconds(CONFIG_DEFAULTS.timeouts.udp),
  }).prefault({}),
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

function semanticIssues(raw: unknown): RawIssue[] {
  const issues: RawIssue[] = [];
  const services = asRecord(raw)?.services;
  if (!Array.isArray(services)) return issues;
  const byName = new Map<string, number>();
  const byEndpoint = new Map<string, number>();
  services.forEach((entry, i) => {
    const svc = asRecord(entry);
    if (svc === null) return;
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
      const port = real.port ?? svc.port;
      const key = endpointKey(real.address, port);
      if (key === null) return;
      const first = reals.get(key);
      if (first !== undefined) {
        issues.push({
          path: ["services", i, "reals", j],
          message: `duplicate real ${real.address}:${port} (already listed as reals[${first}])`,
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

function toModel(out: SchemaOutput): ApplianceConfig {
  const listen = splitListen(out.admin.listen);
  if (typeof listen === "string") throw new Error(`unreachable: validated listen ${listen}`);
  return {
    admin: { listen: out.admin.listen, host: listen.host, port: listen.port },
    dataplane: { tun: out.dataplane.tun },
    host: {
      ...(out.host.uplink === undefined ? {} : { uplink: out.host.uplink }),
      ...(out.host.realside === undefined ? {} : { realside: out.host.realside }),
    },
    timeouts: { ...out.timeouts },
    services: out.services.map((s) => ({
      name: s.name,
      protocol: s.protocol,
      vip: s.vip,
      port: s.port,
      scheduler: s.scheduler,
      schedulerFlags: [...new Set(s.scheduler_flags)],
      forward: s.forward,
      reals: s.reals.map((r) => ({
        address: r.address,
        port: r.port ?? s.port,
        weight: r.weight,
        upperThreshold: r.upper_threshold,
        lowerThreshold: r.lower_threshold,
      })),
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// Entry points.

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

/** Reads and validates a config file; a missing or unreadable file is a ConfigError at 1:1. */
export async function loadConfig(path: string): Promise<ApplianceConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const message = e instanceof Deno.errors.NotFound
      ? "config file not found"
      : `cannot read config file: ${e instanceof Error ? e.message : String(e)}`;
    throw new ConfigError([{ file: path, line: 1, col: 1, path: "", message }]);
  }
  return parseConfig(text, path);
}
