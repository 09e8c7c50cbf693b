/**
 * ipvsadm's command line: upstream ipvsadm 1.31's grammar (popt-style short
 * bundles and long options, the command first, then its options in any order)
 * and its rules for which options go with which command, plus DPVS's
 * `--fullnat`, `--laddr`/`-z`, `--synproxy` and its local-address commands
 * `-P`/`-Q`/`-G`. Parsing only: nothing here talks to the appliance. Every
 * refusal carries the message and exit status ipvsadm gives it.
 */
import { dottedQuad, inetAton, type NameDb } from "./netdb.ts";

/** ipvsadm's commands, by the names its messages use. */
export const COMMANDS = [
  "add-service",
  "edit-service",
  "delete-service",
  "flush",
  "list",
  "add-server",
  "delete-server",
  "edit-server",
  "set",
  "start-daemon",
  "stop-daemon",
  "restore",
  "save",
  "zero",
  // DPVS's local-address commands.
  "add-laddr",
  "del-laddr",
  "get-laddr",
] as const;

/** A command name. */
export type CommandName = (typeof COMMANDS)[number];

/** ipvsadm's option classes, in the order its checks visit them (and by their message names). */
export const OPTIONS = [
  "numeric",
  "connection",
  "service-address",
  "scheduler",
  "persistent",
  "netmask",
  "real-server",
  "forwarding-method",
  "weight",
  "u-threshold",
  "l-threshold",
  "mcast-interface",
  "timeout",
  "daemon",
  "stats",
  "rate",
  "thresholds",
  "persistent-conn",
  "nosort",
  "syncid",
  "exact",
  "ops",
  "pe",
  "sched-flags",
  "mcast-group",
  "mcast-port",
  "mcast-ttl",
  "sync-maxlen",
  "tun-info",
  "tun-type",
  "tun-port",
  "tun-nocsum",
  "tun-csum",
  "tun-remcsum",
  // DPVS's.
  "local-address",
  "synproxy",
] as const;

/** An option class name. */
export type OptionName = (typeof OPTIONS)[number];

/**
 * Which options each command takes: those it needs, those it may have, and a
 * group of which at most one may be given. Every other option is illegal with
 * it. These are the rules of upstream's command/option table (and DPVS's for
 * its additions).
 */
const COMMAND_RULES: Record<
  CommandName,
  { required?: OptionName[]; optional?: OptionName[]; oneOf?: OptionName[] }
> = {
  "add-service": {
    required: ["service-address"],
    optional: ["scheduler", "persistent", "netmask", "ops", "pe", "sched-flags", "synproxy"],
  },
  "edit-service": {
    required: ["service-address"],
    optional: ["scheduler", "persistent", "netmask", "ops", "pe", "sched-flags", "synproxy"],
  },
  "delete-service": { required: ["service-address"] },
  "flush": {},
  "list": {
    optional: [
      "numeric",
      "stats",
      "rate",
      "thresholds",
      "persistent-conn",
      "nosort",
      "syncid",
      "exact",
      "tun-info",
    ],
    oneOf: ["connection", "service-address", "timeout", "daemon"],
  },
  "add-server": {
    required: ["service-address", "real-server"],
    optional: [
      "forwarding-method",
      "weight",
      "u-threshold",
      "l-threshold",
      "tun-type",
      "tun-port",
      "tun-nocsum",
      "tun-csum",
      "tun-remcsum",
    ],
  },
  "delete-server": { required: ["service-address", "real-server"] },
  "edit-server": {
    required: ["service-address", "real-server"],
    optional: [
      "forwarding-method",
      "weight",
      "u-threshold",
      "l-threshold",
      "tun-type",
      "tun-port",
      "tun-nocsum",
      "tun-csum",
      "tun-remcsum",
    ],
  },
  "set": {},
  "start-daemon": {
    optional: [
      "mcast-interface",
      "syncid",
      "mcast-group",
      "mcast-port",
      "mcast-ttl",
      "sync-maxlen",
    ],
  },
  "stop-daemon": { optional: ["syncid"] },
  "restore": {},
  "save": { optional: ["numeric"] },
  "zero": { optional: ["service-address"] },
  "add-laddr": { required: ["service-address", "local-address"] },
  "del-laddr": { required: ["service-address", "local-address"] },
  "get-laddr": { optional: ["service-address"] },
};

/** Tunnel types, numbered as IPVS numbers them. */
export const TUNNEL_TYPES = ["ipip", "gue", "gre"] as const;

/** The options each tunnel type takes ('+' needed, '1' at most one of those, 'x' illegal). */
const TUNNEL_RULES: Record<(typeof TUNNEL_TYPES)[number], Partial<Record<OptionName, string>>> = {
  ipip: { "tun-port": "x", "tun-nocsum": "x", "tun-csum": "x", "tun-remcsum": "x" },
  gue: { "tun-port": "+", "tun-nocsum": "1", "tun-csum": "1", "tun-remcsum": "1" },
  gre: { "tun-port": "x", "tun-nocsum": "1", "tun-csum": "1", "tun-remcsum": "x" },
};

/** ipvsadm's longest timeout, in seconds (31 days). */
export const MAX_TIMEOUT = 86400 * 31;
/** `-p` without a value. */
export const DEFAULT_PERSISTENT_TIMEOUT = 300;
/** The scheduler of a service added without `-s`. */
export const DEFAULT_SCHEDULER = "wlc";
const INT_MAX = 2147483647;

/** How ipvsadm ends: exit status and what it prints on the way out. */
export class IpvsadmExit extends Error {
  /** `code` is the exit status; `message` goes to stderr. */
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** ipvsadm's `fail(2, …)`: a refusal of what was asked, before anything is done. */
function fail(message: string): never {
  throw new IpvsadmExit(2, message);
}

/** A virtual service as named on the command line. */
export type ServiceArg =
  | {
    kind: "addr";
    /** "tcp", "udp" or "sctp". */
    protocol: "tcp" | "udp" | "sctp";
    af: 4 | 6;
    /** Dotted quad, or the IPv6 address as given. */
    addr: string;
    port: number;
  }
  | { kind: "fwmark"; fwmark: number; af: 4 | 6 };

/** An address and port (a real server's or a local address). */
export interface AddrPort {
  af: 4 | 6;
  addr: string;
  port: number;
}

/** Forwarding methods as `-g`, `-i`, `-m` and DPVS's `--fullnat` set them. */
export type ForwardArg = "route" | "tunnel" | "masq" | "fullnat";

/** What ipvsadm's listing options select (its FMT_* flags). */
export interface ListFormat {
  numeric: boolean;
  stats: boolean;
  rate: boolean;
  thresholds: boolean;
  persistentConn: boolean;
  tunInfo: boolean;
  nosort: boolean;
  exact: boolean;
}

/** One parsed ipvsadm invocation. Fields are set when their options were given. */
/** The listing format when no option asks for more (plain `ipvsadm`). */
export const PLAIN_FORMAT: Readonly<ListFormat> = {
  numeric: false,
  stats: false,
  rate: false,
  thresholds: false,
  persistentConn: false,
  tunInfo: false,
  nosort: false,
  exact: false,
};

export interface Invocation {
  command: CommandName;
  /** The options given, by class. */
  options: ReadonlySet<OptionName>;
  format: ListFormat;
  service?: ServiceArg;
  scheduler?: string;
  /** `-p`'s timeout in seconds. */
  persistent?: number;
  /** `-M`: a dotted quad (IPv4) or a prefix length (IPv6 firewall-mark services). */
  netmask?: string;
  real?: AddrPort;
  /** `-g` (the default), `-i`, `-m` or `--fullnat`. */
  forward: ForwardArg;
  weight: number;
  upperThreshold?: number;
  lowerThreshold?: number;
  onePacket: boolean;
  pe?: string;
  /** `-b`'s flags, as upstream names them for the scheduler in effect. */
  schedFlags: string[];
  /** `--set tcp tcpfin udp` in seconds; 0 leaves a timeout as it is. */
  timeouts?: { tcp: number; tcpfin: number; udp: number };
  daemon?: {
    state: "master" | "backup";
    mcastInterface?: string;
    syncid?: number;
    mcastGroup?: string;
    mcastPort?: number;
    mcastTtl?: number;
    syncMaxlen?: number;
  };
  tunnel: {
    type: (typeof TUNNEL_TYPES)[number];
    port?: number;
    csum?: "nocsum" | "csum" | "remcsum";
  };
  /** DPVS `--laddr`/`-z`. */
  localAddress?: AddrPort;
  /** DPVS `--synproxy enable|disable`. */
  synproxy?: boolean;
}

/** What a command line asks for: an invocation, or the help or version text. */
export type Parsed =
  | { kind: "run"; invocation: Invocation }
  | { kind: "help" }
  | { kind: "version" };

// ---------------------------------------------------------------------------------------------
// The option table: every spelling, whether it takes an argument, and what it is.

type ArgKind = "none" | "required" | "optional";

interface OptionSpec {
  long: string;
  short?: string;
  arg: ArgKind;
  /** The command it selects, when it is one of the command options. */
  command?: CommandName | "help" | "version";
}

const SPECS: OptionSpec[] = [
  { long: "add-service", short: "A", arg: "none", command: "add-service" },
  { long: "edit-service", short: "E", arg: "none", command: "edit-service" },
  { long: "delete-service", short: "D", arg: "none", command: "delete-service" },
  { long: "clear", short: "C", arg: "none", command: "flush" },
  { long: "list", short: "L", arg: "none", command: "list" },
  { long: "list", short: "l", arg: "none", command: "list" },
  { long: "zero", short: "Z", arg: "none", command: "zero" },
  { long: "add-server", short: "a", arg: "none", command: "add-server" },
  { long: "edit-server", short: "e", arg: "none", command: "edit-server" },
  { long: "delete-server", short: "d", arg: "none", command: "delete-server" },
  { long: "set", arg: "none", command: "set" },
  { long: "help", short: "h", arg: "none", command: "help" },
  { long: "version", short: "v", arg: "none", command: "version" },
  { long: "restore", short: "R", arg: "none", command: "restore" },
  { long: "save", short: "S", arg: "none", command: "save" },
  { long: "start-daemon", arg: "required", command: "start-daemon" },
  { long: "stop-daemon", arg: "required", command: "stop-daemon" },
  { long: "add-laddr", short: "P", arg: "none", command: "add-laddr" },
  { long: "del-laddr", short: "Q", arg: "none", command: "del-laddr" },
  { long: "get-laddr", short: "G", arg: "none", command: "get-laddr" },
  { long: "tcp-service", short: "t", arg: "required" },
  { long: "udp-service", short: "u", arg: "required" },
  { long: "sctp-service", arg: "required" },
  { long: "fwmark-service", short: "f", arg: "required" },
  { long: "scheduler", short: "s", arg: "required" },
  { long: "persistent", short: "p", arg: "optional" },
  { long: "netmask", short: "M", arg: "required" },
  { long: "real-server", short: "r", arg: "required" },
  { long: "masquerading", short: "m", arg: "none" },
  { long: "ipip", short: "i", arg: "none" },
  { long: "gatewaying", short: "g", arg: "none" },
  { long: "fullnat", arg: "none" },
  { long: "weight", short: "w", arg: "required" },
  { long: "u-threshold", short: "x", arg: "required" },
  { long: "l-threshold", short: "y", arg: "required" },
  { long: "numeric", short: "n", arg: "none" },
  { long: "connection", short: "c", arg: "none" },
  { long: "mcast-interface", arg: "required" },
  { long: "syncid", arg: "required" },
  { long: "timeout", arg: "none" },
  { long: "daemon", arg: "none" },
  { long: "stats", arg: "none" },
  { long: "rate", arg: "none" },
  { long: "thresholds", arg: "none" },
  { long: "persistent-conn", arg: "none" },
  { long: "nosort", arg: "none" },
  { long: "sort", arg: "none" },
  { long: "exact", short: "X", arg: "none" },
  { long: "ipv6", short: "6", arg: "none" },
  { long: "ops", short: "o", arg: "none" },
  { long: "pe", arg: "required" },
  { long: "sched-flags", short: "b", arg: "required" },
  { long: "mcast-group", arg: "required" },
  { long: "mcast-port", arg: "required" },
  { long: "mcast-ttl", arg: "required" },
  { long: "sync-maxlen", arg: "required" },
  { long: "tun-info", arg: "none" },
  { long: "tun-type", arg: "required" },
  { long: "tun-port", arg: "required" },
  { long: "tun-nocsum", arg: "none" },
  { long: "tun-csum", arg: "none" },
  { long: "tun-remcsum", arg: "none" },
  { long: "laddr", short: "z", arg: "required" },
  { long: "synproxy", arg: "required" },
];

const BY_LONG = new Map(SPECS.map((s) => [s.long, s]));
const BY_SHORT = new Map(SPECS.filter((s) => s.short).map((s) => [s.short!, s]));

/** One option as the scanner found it. */
interface Token {
  spec: OptionSpec;
  value?: string;
  /** The argument it was found in, as poptBadOption reports it. */
  text: string;
}

/** A popt-style scanner: options one by one, the other arguments put aside. */
class Scanner {
  readonly leftovers: string[] = [];
  #i = 0;
  /** The rest of a short-option bundle being read, and the argument it came from. */
  #bundle = "";
  #bundleText = "";

  constructor(readonly args: readonly string[]) {}

  /** The next option; null at the end; an IpvsadmExit-worthy popt error as a string. */
  next(): Token | null | { error: string; text: string } {
    if (this.#bundle !== "") return this.#short();
    while (this.#i < this.args.length) {
      const arg = this.args[this.#i++];
      if (arg === "--") {
        this.leftovers.push(...this.args.slice(this.#i));
        this.#i = this.args.length;
        return null;
      }
      if (arg.startsWith("--")) return this.#long(arg);
      if (arg.startsWith("-") && arg.length > 1) {
        this.#bundle = arg.slice(1);
        this.#bundleText = arg;
        return this.#short();
      }
      this.leftovers.push(arg);
    }
    return null;
  }

  #long(arg: string): Token | { error: string; text: string } {
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = BY_LONG.get(name);
    if (spec === undefined) return { error: "unknown option", text: arg };
    if (eq >= 0) {
      if (spec.arg === "none") return { error: "option does not take an argument", text: arg };
      return { spec, value: arg.slice(eq + 1), text: arg };
    }
    return this.#withArgument(spec, arg);
  }

  #short(): Token | { error: string; text: string } {
    const text = this.#bundleText;
    const c = this.#bundle[0];
    this.#bundle = this.#bundle.slice(1);
    const spec = BY_SHORT.get(c);
    if (spec === undefined) {
      this.#bundle = "";
      return { error: "unknown option", text };
    }
    if (spec.arg === "none") return { spec, text };
    if (this.#bundle !== "") {
      // The rest of the bundle is the argument: -t10.0.0.1:80, -p10.
      const value = this.#bundle.startsWith("=") ? this.#bundle.slice(1) : this.#bundle;
      this.#bundle = "";
      return { spec, value, text };
    }
    return this.#withArgument(spec, text);
  }

  /** Takes the option's argument from the next command-line argument. */
  #withArgument(spec: OptionSpec, text: string): Token | { error: string; text: string } {
    if (spec.arg === "none") return { spec, text };
    const next = this.args[this.#i];
    if (spec.arg === "optional") {
      if (next === undefined || next.startsWith("-")) return { spec, text };
      this.#i++;
      return { spec, value: next, text };
    }
    if (next === undefined) return { error: "missing argument", text };
    this.#i++;
    return { spec, value: next, text };
  }
}

// ---------------------------------------------------------------------------------------------
// Argument parsers, each as lenient or strict as the C library call ipvsadm uses.

/** strtol(s, 10) that must consume the whole string, in [min, max]; null otherwise. */
export function stringToNumber(s: string, min: number, max: number): number | null {
  if (!/^[ \t\n\v\f\r]*[+-]?[0-9]+$/.test(s)) return null;
  const n = Number(s.trim());
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : null;
}

/** A strict IPv6 textual address (inet_pton's forms, IPv4-mapped tails included). */
export function isIpv6(s: string): boolean {
  let text = s;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".") && lastColon >= 0) {
    const v4 = text.slice(lastColon + 1);
    if (!/^[0-9]{1,3}(\.[0-9]{1,3}){3}$/.test(v4) || v4.split(".").some((p) => Number(p) > 255)) {
      return false;
    }
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = (h: string) => h === "" ? [] : h.split(":");
  const all = halves.flatMap(groups);
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  return halves.length === 2 ? all.length <= 7 : all.length === 8;
}

/**
 * ipvsadm's parse_service: "host[:port]", "[v6addr]:port" or a bare IPv6
 * address; hosts and ports by number or by name. Null when it is none of those.
 */
export function parseServiceAddress(
  text: string,
  protocol: string,
  names: NameDb,
): { af: 4 | 6; addr: string; port: number | null } | null {
  if (/^[0-9]*$/.test(text)) return null;
  let af: 4 | 6;
  let addr: string;
  let portText: string | null = null;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return null;
    const inside = text.slice(1, close);
    if (!isIpv6(inside)) return null;
    af = 6;
    addr = inside.toLowerCase();
    portText = text.slice(close + 2);
  } else if (isIpv6(text)) {
    af = 6;
    addr = text.toLowerCase();
  } else {
    const colon = text.lastIndexOf(":");
    const host = colon < 0 ? text : text.slice(0, colon);
    if (colon >= 0) portText = text.slice(colon + 1);
    const v4 = inetAton(host) ?? names.hostAddress(host);
    if (v4 === null) return null;
    af = 4;
    addr = dottedQuad(v4);
  }
  if (portText === null) return { af, addr, port: null };
  const port = stringToNumber(portText, 0, 65535) ?? names.servicePort(portText, protocol);
  return port === null ? null : { af, addr, port };
}

function parseTimeout(text: string, min: number, max: number): number {
  const n = stringToNumber(text, min, max);
  if (n === null) fail(`invalid timeout value \`${text}' specified`);
  return n;
}

function parseFwmark(text: string): number {
  const n = stringToNumber(text, 1, 0xffffffff);
  // strtol takes leading blanks but no trailing ones; the number must be positive.
  if (n === null) fail(`invalid fwmark value \`${text}' specified`);
  return n;
}

/** `-b`: checked against the scheduler in effect, as upstream parses it after all options. */
function parseSchedFlags(text: string, scheduler: string | undefined): string[] {
  const sched = scheduler === undefined || scheduler === "" ? DEFAULT_SCHEDULER : scheduler;
  const flags: string[] = [];
  const items = text.split(",").filter((f) => f !== "");
  if (items.length === 0) fail(`invalid scheduler flag \`${text}'`);
  for (const flag of items) {
    if (/^flag-[123]$/.test(flag)) {
      flags.push(flag);
    } else if (flag === "sh-fallback" || flag === "sh-port") {
      if (sched !== "sh") fail(`incompatible scheduler flag \`${flag}'`);
      flags.push(flag);
    } else if (flag === "mh-fallback" || flag === "mh-port") {
      if (sched !== "mh") fail(`incompatible scheduler flag \`${flag}'`);
      flags.push(flag);
    } else {
      fail(`invalid scheduler flag \`${flag}'`);
    }
  }
  return flags;
}

function isMulticast4(s: string): boolean {
  const a = /^[0-9]{1,3}(\.[0-9]{1,3}){3}$/.test(s) ? inetAton(s) : null;
  return a !== null && a >>> 28 === 0xe;
}

// ---------------------------------------------------------------------------------------------

function emptyInvocation(command: CommandName): Invocation {
  return {
    command,
    options: new Set(),
    format: { ...PLAIN_FORMAT },
    forward: "route",
    weight: 1,
    onePacket: false,
    schedFlags: [],
    tunnel: { type: "ipip" },
  };
}

/** "Try `PROG -h' …" and exit status 255, as ipvsadm answers a line with no command first. */
export function tryHelp(program: string): IpvsadmExit {
  return new IpvsadmExit(
    255,
    `Try \`${program} -h' or '${program} --help' for more information.`,
  );
}

/**
 * Parses one ipvsadm command line (without the program name) as upstream does,
 * with `names` for host and service names. Throws IpvsadmExit with ipvsadm's
 * message and status for anything it would refuse.
 */
export function parseIpvsadm(args: readonly string[], program: string, names: NameDb): Parsed {
  const scan = new Scanner(args);
  const first = scan.next();
  if (first === null || "error" in first || first.spec.command === undefined) {
    throw tryHelp(program);
  }
  const what = first.spec.command;
  if (what === "help") return { kind: "help" };
  if (what === "version") return { kind: "version" };
  const inv = emptyInvocation(what);
  const given = inv.options as Set<OptionName>;
  const setOption = (o: OptionName) => {
    if (given.has(o)) fail(`multiple '${o}' options specified`);
    given.add(o);
  };
  if (what === "start-daemon" || what === "stop-daemon") {
    if (first.value === "master" || first.value === "backup") {
      inv.daemon = { state: first.value };
    } else {
      fail(
        what === "start-daemon"
          ? "illegal start-daemon parameter specified"
          : "illegal start_daemon specified",
      );
    }
  }

  let schedFlagsText = "";
  for (let t = scan.next(); t !== null; t = scan.next()) {
    if ("error" in t) throw new IpvsadmExit(255, `${t.text}: ${t.error}`);
    const v = t.value ?? "";
    switch (t.spec.long) {
      case "tcp-service":
      case "udp-service":
      case "sctp-service": {
        setOption("service-address");
        const protocol = t.spec.long === "tcp-service"
          ? "tcp"
          : t.spec.long === "udp-service"
          ? "udp"
          : "sctp";
        const p = parseServiceAddress(v, protocol, names);
        if (p === null) fail("illegal virtual server address[:port] specified");
        inv.service = { kind: "addr", protocol, af: p.af, addr: p.addr, port: p.port ?? 0 };
        break;
      }
      case "fwmark-service":
        setOption("service-address");
        inv.service = { kind: "fwmark", fwmark: parseFwmark(v), af: 4 };
        break;
      case "scheduler":
        setOption("scheduler");
        inv.scheduler = v;
        break;
      case "persistent":
        setOption("persistent");
        inv.persistent = t.value === undefined
          ? DEFAULT_PERSISTENT_TIMEOUT
          : parseTimeout(v, 1, MAX_TIMEOUT);
        break;
      case "netmask":
        setOption("netmask");
        if (inv.service?.af === 6) {
          const bits = stringToNumber(v, 1, 128);
          if (bits === null) fail("illegal ipv6 netmask specified");
          inv.netmask = String(bits);
        } else {
          const mask = inetAton(v) ?? names.hostAddress(v);
          if (mask === null) fail("illegal virtual server persistent mask specified");
          inv.netmask = dottedQuad(mask);
        }
        break;
      case "real-server": {
        setOption("real-server");
        const proto = inv.service?.kind === "addr" ? inv.service.protocol : "tcp";
        const p = parseServiceAddress(v, proto, names);
        if (p === null) fail("illegal real server address[:port] specified");
        // A real named without a port takes the service's port (as known at this point).
        const port = p.port ?? (inv.service?.kind === "addr" ? inv.service.port : 0);
        inv.real = { af: p.af, addr: p.addr, port };
        break;
      }
      case "masquerading":
      case "ipip":
      case "gatewaying":
      case "fullnat":
        setOption("forwarding-method");
        inv.forward = t.spec.long === "masquerading"
          ? "masq"
          : t.spec.long === "ipip"
          ? "tunnel"
          : t.spec.long === "gatewaying"
          ? "route"
          : "fullnat";
        break;
      case "weight": {
        setOption("weight");
        const w = stringToNumber(v, 0, 65535);
        if (w === null) fail("illegal weight specified");
        inv.weight = w;
        break;
      }
      case "u-threshold": {
        setOption("u-threshold");
        const x = stringToNumber(v, 0, INT_MAX);
        if (x === null) fail("illegal u_threshold specified");
        inv.upperThreshold = x;
        break;
      }
      case "l-threshold": {
        setOption("l-threshold");
        const y = stringToNumber(v, 0, INT_MAX);
        if (y === null) fail("illegal l_threshold specified");
        inv.lowerThreshold = y;
        break;
      }
      case "numeric":
        setOption("numeric");
        inv.format.numeric = true;
        break;
      case "connection":
        setOption("connection");
        break;
      case "mcast-interface":
        setOption("mcast-interface");
        if (inv.daemon) inv.daemon.mcastInterface = v;
        break;
      case "syncid": {
        setOption("syncid");
        const id = stringToNumber(v, 0, 255);
        if (id === null) fail("illegal syncid specified");
        if (inv.daemon) inv.daemon.syncid = id;
        break;
      }
      case "timeout":
        setOption("timeout");
        break;
      case "daemon":
        setOption("daemon");
        break;
      case "stats":
        setOption("stats");
        inv.format.stats = true;
        break;
      case "rate":
        setOption("rate");
        inv.format.rate = true;
        break;
      case "thresholds":
        setOption("thresholds");
        inv.format.thresholds = true;
        break;
      case "persistent-conn":
        setOption("persistent-conn");
        inv.format.persistentConn = true;
        break;
      case "nosort":
        setOption("nosort");
        inv.format.nosort = true;
        break;
      case "sort":
        // Sorting is the default; upstream keeps the option for old scripts.
        break;
      case "exact":
        setOption("exact");
        inv.format.exact = true;
        break;
      case "ipv6":
        if (inv.service?.kind !== "fwmark") fail("-6 used before -f\n");
        inv.service.af = 6;
        break;
      case "ops":
        setOption("ops");
        inv.onePacket = true;
        break;
      case "pe":
        setOption("pe");
        inv.pe = v;
        break;
      case "sched-flags":
        setOption("sched-flags");
        schedFlagsText = v;
        break;
      case "mcast-group":
        setOption("mcast-group");
        if (v.includes(":")) {
          if (!isIpv6(v) || !/^ff/i.test(v)) fail(`invalid IPv6 mcast-group \`${v}'`);
        } else if (!isMulticast4(v)) {
          fail(`invalid IPv4 mcast-group \`${v}'`);
        }
        if (inv.daemon) inv.daemon.mcastGroup = v;
        break;
      case "mcast-port": {
        setOption("mcast-port");
        const port = stringToNumber(v, 1, 65535);
        if (port === null) fail("illegal mcast-port specified");
        if (inv.daemon) inv.daemon.mcastPort = port;
        break;
      }
      case "mcast-ttl": {
        setOption("mcast-ttl");
        const ttl = stringToNumber(v, 1, 255);
        if (ttl === null) fail("illegal mcast-ttl specified");
        if (inv.daemon) inv.daemon.mcastTtl = ttl;
        break;
      }
      case "sync-maxlen": {
        setOption("sync-maxlen");
        // An IPv4 datagram's payload after the IP and UDP headers.
        const len = stringToNumber(v, 1, 65535 - 20 - 8);
        if (len === null) fail("illegal sync-maxlen specified");
        if (inv.daemon) inv.daemon.syncMaxlen = len;
        break;
      }
      case "tun-info":
        setOption("tun-info");
        inv.format.tunInfo = true;
        break;
      case "tun-type": {
        setOption("tun-type");
        const type = TUNNEL_TYPES.find((name) => name === v);
        if (type === undefined) fail("illegal tunnel type specified");
        inv.tunnel.type = type;
        break;
      }
      case "tun-port": {
        setOption("tun-port");
        const port = stringToNumber(v, 1, 65535);
        if (port === null) fail("illegal tunnel port specified");
        inv.tunnel.port = port;
        break;
      }
      case "tun-nocsum":
      case "tun-csum":
      case "tun-remcsum":
        setOption(t.spec.long as OptionName);
        inv.tunnel.csum = t.spec.long === "tun-nocsum"
          ? "nocsum"
          : t.spec.long === "tun-csum"
          ? "csum"
          : "remcsum";
        break;
      case "laddr": {
        setOption("local-address");
        const p = parseServiceAddress(v, "tcp", names);
        if (p === null) fail("illegal local address");
        inv.localAddress = { af: p.af, addr: p.addr, port: p.port ?? 0 };
        break;
      }
      case "synproxy":
        setOption("synproxy");
        if (v.startsWith("enable")) inv.synproxy = true;
        else if (v.startsWith("disable")) inv.synproxy = false;
        else fail("synproxy switch must be enable or disable");
        break;
      default:
        // A second command: popt knows the option, ipvsadm has no case for it here.
        fail(`invalid option \`${t.text}'`);
    }
  }

  const rest = [...scan.leftovers];
  if (what === "set") {
    if (rest.length < 3) fail("--set option requires 3 timeout values");
    const [tcp, tcpfin, udp] = rest.splice(0, 3);
    inv.timeouts = {
      tcp: parseTimeout(tcp, 0, MAX_TIMEOUT),
      tcpfin: parseTimeout(tcpfin, 0, MAX_TIMEOUT),
      udp: parseTimeout(udp, 0, MAX_TIMEOUT),
    };
  }
  if (rest.length > 0) fail(`unexpected argument ${rest[0]}`);
  if (schedFlagsText !== "") inv.schedFlags = parseSchedFlags(schedFlagsText, inv.scheduler);

  checkOptions(inv.command, given);
  checkCommand(inv);
  return { kind: "run", invocation: inv };
}

/** Upstream's generic_opt_check: the first misfit, in option order, is the one reported. */
export function checkOptions(command: CommandName, given: ReadonlySet<OptionName>): void {
  const rules = COMMAND_RULES[command];
  let exclusive: OptionName | null = null;
  for (const o of OPTIONS) {
    const required = rules.required?.includes(o) ?? false;
    if (!given.has(o)) {
      if (required) fail(`You need to supply the '${o}' option for the '${command}' command`);
      continue;
    }
    if (rules.oneOf?.includes(o)) {
      if (exclusive !== null) {
        fail(
          `The option '${o}' conflicts with the '${exclusive}' option in the '${command}' command`,
        );
      }
      exclusive = o;
    } else if (!required && !(rules.optional?.includes(o) ?? false)) {
      fail(`Illegal '${o}' option with the '${command}' command`);
    }
  }
}

/** The checks upstream makes once the options fit the command. */
function checkCommand(inv: Invocation): void {
  const svc = inv.service;
  const given = inv.options;
  if (inv.command === "add-service" || inv.command === "edit-service") {
    if (svc?.kind === "addr" && svc.port === 0 && inv.persistent === undefined) {
      fail("Zero port specified for non-persistent service");
    }
    if (inv.onePacket && svc?.kind === "addr" && svc.protocol !== "udp") {
      fail("One-Packet Scheduling is only for UDP virtual services");
    }
    inv.scheduler ||= DEFAULT_SCHEDULER;
  }
  if ((inv.command === "add-server" || inv.command === "edit-server") && inv.real) {
    // Direct routing and tunnels cannot change the port: the real gets the service's.
    if (svc?.kind === "addr" && (inv.forward === "route" || inv.forward === "tunnel")) {
      inv.real.port = svc.port;
    }
    if (svc !== undefined && inv.real.af !== svc.af && inv.forward !== "tunnel") {
      fail("Different address family is allowed only for tunneling servers");
    }
    const tunnelOptions: OptionName[] = [
      "tun-type",
      "tun-port",
      "tun-nocsum",
      "tun-csum",
      "tun-remcsum",
    ];
    if (tunnelOptions.some((o) => given.has(o)) && inv.forward !== "tunnel") {
      fail("Tunnel options conflict with forward method");
    }
    checkTunnelOptions(inv.tunnel.type, given);
  }
  if (inv.command === "list") {
    const oneView = given.has("connection") || given.has("timeout") || given.has("daemon");
    const figures = given.has("stats") || given.has("rate") || given.has("thresholds");
    if (
      (oneView && figures) ||
      ((given.has("timeout") || given.has("daemon")) && given.has("persistent-conn"))
    ) {
      fail("options conflicts in the list command");
    }
  }
}

function checkTunnelOptions(
  type: (typeof TUNNEL_TYPES)[number],
  given: ReadonlySet<OptionName>,
): void {
  const rules = TUNNEL_RULES[type];
  let exclusive: OptionName | null = null;
  for (const o of ["tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"] as const) {
    const rule = rules[o];
    if (!given.has(o)) {
      if (rule === "+") fail(`You need to supply the '${o}' option for the '${type}' tunnel type`);
      continue;
    }
    if (rule === "x") fail(`Illegal '${o}' option with the '${type}' tunnel type`);
    if (rule === "1") {
      if (exclusive !== null) {
        fail(
          `The option '${o}' conflicts with the '${exclusive}' option in the '${type}' tunnel type`,
        );
      }
      exclusive = o;
    }
  }
}

/**
 * Splits one line of `ipvsadm -R` input into arguments as ipvsadm's restore
 * does: blank-separated words, "ipvsadm" words dropped, and nothing after a
 * word that starts a "#" comment.
 */
export function restoreLineArgs(line: string): string[] {
  const out: string[] = [];
  for (const word of line.split(/[ \t\r]+/)) {
    if (word === "") continue;
    if (word.startsWith("#")) break;
    if (word !== "ipvsadm") out.push(word);
  }
  return out;
}
