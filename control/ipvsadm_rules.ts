/**
 * ipvsadm's rule changes over tunvs's rule set: the `services` list of appliance.yaml in its raw
 * YAML shape (snake_case keys, exactly what control/config.ts accepts). Applying a parsed
 * invocation (`-A -E -D -C -a -e -d`, DPVS's `-P`/`-Q`) follows what IPVS does with it and refuses
 * with the words ipvsadm prints for the kernel's errors (`Service already exists`, `No such
 * destination`, …) and its exit status. Pure: the caller reads the list from the appliance and
 * writes the result back; keys and entries a command does not touch keep their values and order.
 */
import { SCHEDULERS } from "./config.ts";
import {
  type CommandName,
  type ForwardArg,
  type Invocation,
  IpvsadmExit,
  type ServiceArg,
} from "./ipvsadm_options.ts";

/** One raw mapping of appliance.yaml (a service, a real, …) as parsed YAML gives it. */
export type RawMap = Record<string, unknown>;

/** The status ipvsadm exits with when the kernel refuses an operation (its -1). */
export const OPERATION_FAILED = 255;

/** The commands that change the rule set, all applied by applyInvocation. */
export const RULE_COMMANDS: ReadonlySet<CommandName> = new Set<CommandName>([
  "add-service",
  "edit-service",
  "delete-service",
  "flush",
  "add-server",
  "edit-server",
  "delete-server",
  "add-laddr",
  "del-laddr",
]);

/** What a change may need to know about the configuration around the services. */
export interface RuleContext {
  /** The global FULLNAT pool (`local_addresses` at the top), which fullnat services inherit. */
  globalLocalAddresses: readonly string[];
}

const NO_CONTEXT: RuleContext = { globalLocalAddresses: [] };

/** config.ts's forward names by ipvsadm's forwarding options. */
const FORWARD_BY_ARG: Record<ForwardArg, string> = {
  route: "dr",
  masq: "nat",
  tunnel: "tunnel",
  fullnat: "fullnat",
};

/** How ipvsadm's help names each forwarding method, for messages. */
const FORWARD_OPTION: Record<string, string> = {
  dr: "-g (gatewaying)",
  nat: "-m (masquerading)",
  tunnel: "-i (ipip)",
  fullnat: "--fullnat",
};

/** IPVS's numbered scheduler flags, by the names they have for sh and mh. */
const NUMBERED_FLAGS: Record<string, Record<string, string>> = {
  sh: { "flag-1": "sh-fallback", "flag-2": "sh-port" },
  mh: { "flag-1": "mh-fallback", "flag-2": "mh-port" },
};

/** Persistence granularity when `-M` is not given (a single client address). */
const HOST_NETMASK = "255.255.255.255";

/** The kernel refused: ipvsadm prints its message and exits 255. */
function refuse(message: string): never {
  throw new IpvsadmExit(OPERATION_FAILED, message);
}

function isMap(v: unknown): v is RawMap {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The port a raw service is listed under: its port, or 0 (port groups, firewall marks). */
function listedPort(svc: RawMap): number {
  return typeof svc.port === "number" ? svc.port : 0;
}

/** Whether a service's reals take the client's destination port when they have none. */
function servesAnyPort(svc: RawMap): boolean {
  return Array.isArray(svc.ports) || listedPort(svc) === 0;
}

/** The port a raw real is reached on: its own, else the service's (0: the client's port). */
function realPort(svc: RawMap, real: RawMap): number {
  if (typeof real.port === "number") return real.port;
  return servesAnyPort(svc) ? 0 : listedPort(svc);
}

/** The forwarding method a raw service uses (config.ts's default when the key is absent). */
function forwardOf(svc: RawMap): string {
  return typeof svc.forward === "string" ? svc.forward : "nat";
}

function realsOf(svc: RawMap): RawMap[] {
  if (!Array.isArray(svc.reals)) svc.reals = [];
  return (svc.reals as unknown[]).filter(isMap);
}

/** Whether raw service `svc` is the one `arg` names. */
export function serviceMatches(svc: RawMap, arg: ServiceArg): boolean {
  if (arg.kind === "fwmark") return arg.af === 4 && svc.fwmark === arg.fwmark;
  return arg.af === 4 && svc.fwmark === undefined &&
    (typeof svc.protocol === "string" ? svc.protocol : "tcp") === arg.protocol &&
    svc.vip === arg.addr && listedPort(svc) === arg.port;
}

/** Name pattern config.ts accepts for a service. */
const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * The name a new service gets: `tcp-VIP-PORT`, `udp-VIP-PORT` or `fwmark-N`, with `-2`, `-3`, …
 * when an operator already gave that name to another service.
 */
export function serviceName(
  what: { protocol: string; vip: string; port: number } | { fwmark: number },
  taken: ReadonlySet<string>,
): string {
  const base = "fwmark" in what
    ? `fwmark-${what.fwmark}`
    : `${what.protocol}-${what.vip}-${what.port}`;
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
  if (!SERVICE_NAME.test(name)) throw new Error(`unreachable: generated name ${name}`);
  return name;
}

/**
 * Sets `key` on `map`: an existing key keeps its place; a new one goes before `reals` (where an
 * operator writes such keys), or last.
 */
function setKey(map: RawMap, key: string, value: unknown): void {
  if (Object.hasOwn(map, key) || !Object.hasOwn(map, "reals")) {
    map[key] = value;
    return;
  }
  const entries = Object.entries(map);
  for (const k of Object.keys(map)) delete map[k];
  for (const [k, v] of entries) {
    if (k === "reals") map[key] = value;
    map[k] = v;
  }
}

/** Sets `key` to `value`, or leaves it out when it is absent and `value` is its default. */
function setOrDefault(map: RawMap, key: string, value: unknown, fallback: unknown): void {
  if (!Object.hasOwn(map, key) && value === fallback) return;
  setKey(map, key, value);
}

/** What tunvs cannot serve at all, in ipvsadm's words for what the kernel lacks. */
function checkSupported(inv: Invocation): void {
  const svc = inv.service;
  if (svc?.af === 6 || inv.real?.af === 6 || inv.localAddress?.af === 6) {
    refuse("Operation not supported with IPv6");
  }
  if (svc?.kind === "addr" && svc.protocol === "sctp") {
    refuse("Protocol not available (tunvs balances tcp and udp)");
  }
}

/** The scheduler flags as config.ts names them (IPVS's numbered flags translated). */
function schedulerFlags(scheduler: string, flags: readonly string[]): string[] {
  const out: string[] = [];
  for (const flag of flags) {
    const name = NUMBERED_FLAGS[scheduler]?.[flag] ?? flag;
    if (/^flag-[0-9]$/.test(name)) {
      refuse(`Scheduler flag ${flag} means nothing to the ${scheduler} scheduler in tunvs`);
    }
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

/** -A and -E: the scheduler, flags, persistence, one-packet and synproxy settings given. */
function applyServiceOptions(svc: RawMap, inv: Invocation): void {
  const scheduler = inv.scheduler ?? "wlc";
  if (!(SCHEDULERS as readonly string[]).includes(scheduler) || inv.pe !== undefined) {
    refuse("Scheduler or persistence engine not found");
  }
  const flags = schedulerFlags(scheduler, inv.schedFlags);
  setOrDefault(svc, "scheduler", scheduler, "wlc");
  // IPVS replaces a service's flags on -E: what is not given is cleared.
  if (flags.length > 0) setKey(svc, "scheduler_flags", flags);
  else delete svc.scheduler_flags;
  if (inv.persistent !== undefined) {
    const old = isMap(svc.persistence) ? svc.persistence : {};
    const netmask = inv.netmask ?? HOST_NETMASK;
    const persistence: RawMap = { timeout: inv.persistent };
    if (netmask !== HOST_NETMASK || Object.hasOwn(old, "netmask")) persistence.netmask = netmask;
    setKey(svc, "persistence", persistence);
  } else {
    delete svc.persistence;
  }
  if (inv.onePacket) setKey(svc, "one_packet", true);
  else delete svc.one_packet;
  if (inv.synproxy === true) setKey(svc, "synproxy", true);
  else delete svc.synproxy;
}

function findService(services: RawMap[], arg: ServiceArg, missing: string): RawMap {
  const svc = services.find((s) => serviceMatches(s, arg));
  if (svc === undefined) refuse(missing);
  return svc;
}

function findReal(svc: RawMap, addr: string, port: number): RawMap | undefined {
  return realsOf(svc).find((r) => r.address === addr && realPort(svc, r) === port);
}

/**
 * Makes `svc` forward by `method` for a real being added or edited; `alone` says the real is (or
 * will be) the service's only one, so the service may change method with it; `first` that it is
 * the first real of the service.
 */
function adoptForward(
  svc: RawMap,
  inv: Invocation,
  alone: boolean,
  first: boolean,
): void {
  const method = FORWARD_BY_ARG[inv.forward];
  const current = forwardOf(svc);
  if (current === method) {
    // The first real names the method, so the service reads as it runs.
    if (first) setKey(svc, "forward", method);
    return;
  }
  if (!alone) {
    // -e without a method asks for ipvsadm's default, which surprises: say so.
    const given = inv.options.has("forwarding-method") ? "" : ", ipvsadm's default,";
    refuse(
      `Forwarding method ${FORWARD_OPTION[method]}${given} differs from the ` +
        `${FORWARD_OPTION[current]} of this service's other real servers: tunvs forwards all ` +
        "reals of a service one way",
    );
  }
  if (method !== "fullnat" && (svc.local_addresses !== undefined || svc.toa === true)) {
    refuse(
      `Forwarding method ${FORWARD_OPTION[method]} conflicts with this service's FULLNAT ` +
        "settings (local addresses, toa): use --fullnat, or remove them (-Q) first",
    );
  }
  setKey(svc, "forward", method);
}

/** -a and -e: the checks IPVS makes on a destination's settings. */
function checkDestination(inv: Invocation): void {
  const upper = inv.upperThreshold ?? 0;
  const lower = inv.lowerThreshold ?? 0;
  // IPVS refuses a lower threshold above the upper one (ERANGE); 0 means no upper limit here.
  if (upper > 0 && lower > upper) refuse("Numerical result out of range");
  if (inv.forward === "tunnel" && inv.tunnel.type !== "ipip") {
    refuse(`Tunnel type ${inv.tunnel.type} is not supported: tunvs tunnels with ipip only`);
  }
}

/** -a/-e's settings on a raw real (IPVS replaces them all on -e). */
function applyRealOptions(real: RawMap, inv: Invocation): void {
  setOrDefault(real, "weight", inv.weight, 1);
  for (
    const [key, value] of [["upper_threshold", inv.upperThreshold], [
      "lower_threshold",
      inv.lowerThreshold,
    ]] as const
  ) {
    if (value !== undefined && value > 0) real[key] = value;
    else delete real[key];
  }
}

/** The local addresses a service uses now: its own, or the global pool when it is fullnat. */
function localAddressesOf(svc: RawMap, ctx: RuleContext): string[] {
  if (Array.isArray(svc.local_addresses)) {
    return svc.local_addresses.filter((a): a is string => typeof a === "string");
  }
  return forwardOf(svc) === "fullnat" ? [...ctx.globalLocalAddresses] : [];
}

/**
 * Applies one parsed ipvsadm invocation to a copy of `services` and returns the copy; throws
 * IpvsadmExit with ipvsadm's message and status when IPVS would refuse it.
 */
export function applyInvocation(
  services: readonly RawMap[],
  inv: Invocation,
  ctx: RuleContext = NO_CONTEXT,
): RawMap[] {
  if (!RULE_COMMANDS.has(inv.command)) {
    throw new Error(`${inv.command} does not change rules`);
  }
  const next = structuredClone(services) as RawMap[];
  if (inv.command === "flush") return [];
  const arg = inv.service;
  if (arg === undefined) throw new Error(`unreachable: ${inv.command} without a service`);
  checkSupported(inv);
  switch (inv.command) {
    case "add-service": {
      if (next.some((s) => serviceMatches(s, arg))) refuse("Service already exists");
      const taken = new Set(next.map((s) => s.name).filter((n) => typeof n === "string"));
      const svc: RawMap = arg.kind === "fwmark"
        ? { name: serviceName({ fwmark: arg.fwmark }, taken), fwmark: arg.fwmark }
        : {
          name: serviceName({ protocol: arg.protocol, vip: arg.addr, port: arg.port }, taken),
          protocol: arg.protocol,
          vip: arg.addr,
          port: arg.port,
        };
      // A new service names its scheduler even when it is the default.
      svc.scheduler = inv.scheduler ?? "wlc";
      svc.reals = [];
      applyServiceOptions(svc, inv);
      next.push(svc);
      return next;
    }
    case "edit-service":
      applyServiceOptions(findService(next, arg, "No such service"), inv);
      return next;
    case "delete-service": {
      const svc = findService(next, arg, "No such service");
      return next.filter((s) => s !== svc);
    }
    case "add-server": {
      const svc = findService(next, arg, "Service not defined");
      const dest = inv.real!;
      checkDestination(inv);
      if (findReal(svc, dest.addr, dest.port) !== undefined) refuse("Destination already exists");
      const first = realsOf(svc).length === 0;
      adoptForward(svc, inv, first, first);
      const real: RawMap = { address: dest.addr };
      // A real on the service's own port could leave it out; written, it reads as ipvsadm -S.
      if (dest.port !== 0) real.port = dest.port;
      real.weight = inv.weight;
      applyRealOptions(real, inv);
      (svc.reals as unknown[]).push(real);
      return next;
    }
    case "edit-server": {
      const svc = findService(next, arg, "Service not defined");
      const dest = inv.real!;
      checkDestination(inv);
      const real = findReal(svc, dest.addr, dest.port);
      if (real === undefined) refuse("No such destination");
      adoptForward(svc, inv, realsOf(svc).length === 1, false);
      applyRealOptions(real, inv);
      return next;
    }
    case "delete-server": {
      const svc = findService(next, arg, "Service not defined");
      const dest = inv.real!;
      const real = findReal(svc, dest.addr, dest.port);
      if (real === undefined) refuse("No such destination");
      svc.reals = (svc.reals as unknown[]).filter((r) => r !== real);
      return next;
    }
    case "add-laddr": {
      const svc = findService(next, arg, "Service not defined");
      const addr = inv.localAddress!.addr;
      const own = localAddressesOf(svc, ctx);
      if (own.includes(addr)) refuse("Local address already exists");
      if (forwardOf(svc) !== "fullnat") {
        if (realsOf(svc).length > 0) {
          refuse(
            "Local addresses are for FULLNAT services (--fullnat); this service forwards by " +
              FORWARD_OPTION[forwardOf(svc)],
          );
        }
        setKey(svc, "forward", "fullnat");
      }
      setKey(svc, "local_addresses", [...own, addr]);
      return next;
    }
    case "del-laddr": {
      const svc = findService(next, arg, "Service not defined");
      const addr = inv.localAddress!.addr;
      const own = localAddressesOf(svc, ctx);
      if (!own.includes(addr)) refuse("No such Local address");
      const rest = own.filter((a) => a !== addr);
      // A service without a list of its own uses the global pool: an empty list says "none".
      if (rest.length > 0 || ctx.globalLocalAddresses.some((a) => a !== addr)) {
        setKey(svc, "local_addresses", rest);
      } else {
        delete svc.local_addresses;
      }
      return next;
    }
    default:
      throw new Error(`unreachable: ${inv.command}`);
  }
}
