/**
 * keepalived.conf → appliance.yaml: each `virtual_server IP PORT` or `virtual_server fwmark N`
 * becomes a service (scheduler, forwarding method, persistence, quorum, sorry server, …), each
 * `real_server` a real, and each real's checker its health check (control/import/
 * keepalived_checks.ts). VRRP and global settings are keepalived's or the host's business and
 * named as such; every other keyword that cannot be carried over is named with its line.
 */
import { MAX_TIMEOUT_SECONDS, SCHEDULERS } from "../config.ts";
import { type RawMap, serviceName } from "../ipvsadm_rules.ts";
import { inetAton } from "../netdb.ts";
import { type ImportResult, keepValidServices, type Skipped } from "./imported_config.ts";
import {
  type CheckDefaults,
  CHECKERS,
  healthCheckFrom,
  readCheckDefault,
} from "./keepalived_checks.ts";
import { type KeepalivedNode, parseKeepalivedConf } from "./keepalived_conf.ts";
import { boolArg, numberArg, type SkipSink, statement } from "./keepalived_values.ts";

/** Top-level blocks that are not a load balancer's business, and whose business they are. */
const OUT_OF_SCOPE: [RegExp, string][] = [
  [/^vrrp_|^garp_group$/, "VRRP stays with keepalived (tunvs balances; keepalived moves the VIP)"],
  [/^global_defs$/, "keepalived's own global settings"],
  [/^static_(ipaddress|routes|rules)$/, "addresses, routes and rules are the host's"],
  [/^(track_file|track_process|bfd_instance)$/, "used by VRRP, which stays with keepalived"],
  [
    /^(linkbeat_use_polling|net_namespace|net_namespace_ipvs|namespace_with_ipsets|instance)$/,
    "keepalived's process settings",
  ],
  [/^(use_pid_dir|child_wait_time|use_symlink_paths)$/, "keepalived's process settings"],
];

/** virtual_server keywords keepalived knows that tunvs has no equivalent for. */
const VS_NOT_CARRIED: Record<string, string> = {
  ha_suspend: "tunvs checks reals whether or not the VIP is up",
  smtp_alert: "tunvs sends no mail (watch its event stream instead)",
  snmp_name: "tunvs has no SNMP agent (see /metrics)",
  omega: "tunvs runs no quorum or notification scripts",
  quorum_up: "tunvs runs no quorum scripts (watch its event stream instead)",
  quorum_down: "tunvs runs no quorum scripts (watch its event stream instead)",
  persistence_engine: "tunvs has no persistence engines",
  sorry_server_inhibit: "the sorry server is forwarded like the reals, with no inhibit of its own",
  sorry_server_lvs_method: "the sorry server is forwarded like the reals",
  warmup: "tunvs starts checks without a random warm-up delay",
  syn_proxy: "no synproxy setting in this importer",
};

/** real_server keywords keepalived knows that tunvs has no equivalent for. */
const RS_NOT_CARRIED: Record<string, string> = {
  smtp_alert: "tunvs sends no mail (watch its event stream instead)",
  snmp_name: "tunvs has no SNMP agent (see /metrics)",
  warmup: "tunvs starts checks without a random warm-up delay",
};

/** lb_kind / lvs_method values → config.ts's forward names. */
const METHODS: Record<string, string> = {
  NAT: "nat",
  DR: "dr",
  TUN: "tunnel",
  // Alibaba's keepalived for FULLNAT kernels, and DPVS's.
  FNAT: "fullnat",
  FULLNAT: "fullnat",
};

/** IPVS's numbered scheduler flags, by the names they have for sh and mh. */
const NUMBERED_FLAGS: Record<string, Record<string, string>> = {
  sh: { "flag-1": "sh-fallback", "flag-2": "sh-port" },
  mh: { "flag-1": "mh-fallback", "flag-2": "mh-port" },
};

const FLAG_KEYWORDS = new Set([
  "flag-1",
  "flag-2",
  "flag-3",
  "sh-port",
  "sh-fallback",
  "mh-port",
  "mh-fallback",
]);

/** keepalived's persistence_timeout without a value: 6 minutes. */
const DEFAULT_PERSISTENCE_TIMEOUT = 360;

const UINT32_MAX = 0xffffffff;

function isIpv6(text: string): boolean {
  return text.includes(":");
}

/** A port argument, or undefined with the reason reported. */
function portArg(node: KeepalivedNode, text: string, skip: SkipSink, min = 0): number | undefined {
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (port >= min && port <= 65535) return port;
  skip(node, `port ${JSON.stringify(text)} must be a number from ${min} to 65535`);
  return undefined;
}

/** lb_kind / lvs_method: the method, or undefined when tunvs has none (reported). */
function methodArg(node: KeepalivedNode, skip: SkipSink): string | undefined {
  const method = METHODS[node.args[0]?.toUpperCase() ?? ""];
  if (method === undefined) {
    skip(node, "needs NAT, DR, TUN or FNAT; the default (NAT) is used");
    return undefined;
  }
  // TUN type ipip is what tunvs does; gue and gre are not.
  const type = node.args.indexOf("type");
  if (method === "tunnel" && type >= 0 && node.args[type + 1] !== "ipip") {
    skip(node, "tunvs tunnels with ipip only; ipip is used");
  }
  return method;
}

/** persistence_granularity: a dotted netmask, or a prefix length turned into one. */
function netmaskArg(node: KeepalivedNode, skip: SkipSink): string | undefined {
  const text = node.args[0] ?? "";
  if (node.args.length === 1 && /^[0-9]{1,2}$/.test(text) && Number(text) <= 32) {
    const bits = Number(text);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    return [24, 16, 8, 0].map((s) => (mask >>> s) & 0xff).join(".");
  }
  if (node.args.length === 1 && inetAton(text) !== null) return text;
  skip(node, "needs an IPv4 netmask such as 255.255.255.0");
  return undefined;
}

/** `local_address_group NAME { ADDR … }` blocks (Alibaba's keepalived for FULLNAT), by name. */
function localAddressGroups(nodes: KeepalivedNode[], skip: SkipSink): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const node of nodes) {
    if (node.keyword !== "local_address_group") continue;
    const addresses: string[] = [];
    for (const entry of node.children) {
      if (entry.args.length === 0 && inetAton(entry.keyword) !== null) {
        addresses.push(entry.keyword);
      } else skip(entry, "tunvs takes single IPv4 addresses here");
    }
    groups.set(node.args[0] ?? "", addresses);
  }
  return groups;
}

/** What a virtual_server block sets, before its reals are read. */
interface VirtualServerSettings {
  protocol: string;
  scheduler: string;
  flags: KeepalivedNode[];
  forward: string;
  persistence?: number;
  granularity?: { node: KeepalivedNode; netmask: string };
  onePacket: boolean;
  quorum?: number;
  hysteresis?: number;
  inhibit?: boolean;
  sorry?: RawMap;
  localAddresses?: string[];
  checks: CheckDefaults;
  /** Set when the whole virtual_server cannot be carried over. */
  unsupported?: string;
}

function readVirtualServer(
  vs: KeepalivedNode,
  groups: Map<string, string[]>,
  used: Set<string>,
  skip: SkipSink,
): VirtualServerSettings {
  const s: VirtualServerSettings = {
    protocol: "tcp",
    scheduler: "wlc",
    flags: [],
    forward: "nat",
    onePacket: false,
    checks: {},
  };
  for (const c of vs.children) {
    if (c.keyword === "real_server" || readCheckDefault(c, s.checks, skip)) continue;
    if (FLAG_KEYWORDS.has(c.keyword)) {
      s.flags.push(c);
      continue;
    }
    switch (c.keyword) {
      case "lb_algo":
      case "lvs_sched": {
        const name = c.args[0]?.toLowerCase() ?? "";
        if ((SCHEDULERS as readonly string[]).includes(name)) s.scheduler = name;
        else skip(c, "tunvs has no such scheduler; wlc (keepalived's default) is used");
        break;
      }
      case "lb_kind":
      case "lvs_method":
        s.forward = methodArg(c, skip) ?? s.forward;
        break;
      case "persistence_timeout":
        s.persistence = c.args.length === 0
          ? DEFAULT_PERSISTENCE_TIMEOUT
          : numberArg(c, skip, { min: 1, max: MAX_TIMEOUT_SECONDS, integer: true });
        break;
      case "persistence_granularity": {
        const netmask = netmaskArg(c, skip);
        if (netmask !== undefined) s.granularity = { node: c, netmask };
        break;
      }
      case "protocol": {
        const p = c.args[0]?.toUpperCase();
        if (p === "TCP" || p === "UDP") s.protocol = p.toLowerCase();
        else if (p === "SCTP") s.unsupported = "tunvs balances TCP and UDP, not SCTP";
        else skip(c, "needs TCP or UDP");
        break;
      }
      case "ops":
        s.onePacket = true;
        break;
      case "quorum":
        s.quorum = numberArg(c, skip, { min: 1, max: UINT32_MAX, integer: true });
        break;
      case "hysteresis":
        s.hysteresis = numberArg(c, skip, { min: 0, max: UINT32_MAX, integer: true });
        break;
      case "inhibit_on_failure":
        s.inhibit = boolArg(c, skip);
        break;
      case "sorry_server": {
        const [address, port, ...more] = c.args;
        if (address === undefined || more.length > 0 || isIpv6(address)) {
          skip(c, "needs an IPv4 address and an optional port");
          break;
        }
        s.sorry = { address };
        if (port !== undefined) {
          const p = portArg(c, port, skip, 1);
          if (p === undefined) s.sorry = undefined;
          else s.sorry.port = p;
        }
        break;
      }
      case "laddr_group_name": {
        const group = groups.get(c.args[0] ?? "");
        if (group === undefined) skip(c, "no local_address_group of that name");
        else {
          used.add(c.args[0]);
          s.localAddresses = [...group];
        }
        break;
      }
      case "ip_family":
        if (c.args[0] !== "inet") s.unsupported = "tunvs balances IPv4 only";
        break;
      default:
        if (c.keyword in VS_NOT_CARRIED) skip(c, VS_NOT_CARRIED[c.keyword]);
        else skip(c, "not a keepalived keyword (keepalived ignores it too)", "ignored");
    }
  }
  if (s.persistence === undefined && s.granularity !== undefined) {
    skip(s.granularity.node, "has no effect without persistence_timeout");
  }
  return s;
}

/** A real_server and what it hands its checker, as read. */
interface RealServer {
  node: KeepalivedNode;
  real: RawMap;
  check: RawMap | null;
  inhibit?: boolean;
}

function readRealServer(
  rs: KeepalivedNode,
  vs: VirtualServerSettings,
  servicePort: number,
  skip: SkipSink,
): RealServer | null {
  const [address, portText, ...more] = rs.args;
  if (address === undefined || isIpv6(address) || more.length > 0) {
    skip(rs, "needs an IPv4 address and an optional port; the real is left out");
    return null;
  }
  const real: RawMap = { address };
  if (portText !== undefined) {
    const port = portArg(rs, portText, skip, 1);
    if (port === undefined) return null;
    if (vs.forward === "dr" || vs.forward === "tunnel") {
      // The packet reaches a DR or tunnelled real unchanged: it serves the client's port.
      if (servicePort !== 0 && port === servicePort) real.port = port;
      else if (servicePort !== 0 || port !== 0) {
        skip(rs, `port ${port}: a ${vs.forward} real serves the port the client asked for`);
      }
    } else {
      real.port = port;
    }
  }
  real.weight = 1;
  const checks: CheckDefaults = { ...vs.checks };
  const checkers: KeepalivedNode[] = [];
  let inhibit: boolean | undefined;
  for (const c of rs.children) {
    if (c.keyword in CHECKERS) {
      checkers.push(c);
      continue;
    }
    if (readCheckDefault(c, checks, skip)) continue;
    switch (c.keyword) {
      case "weight":
        real.weight = numberArg(c, skip, { min: 0, max: 65535, integer: true }) ?? real.weight;
        break;
      case "uthreshold": {
        const v = numberArg(c, skip, { min: 0, max: 2147483647, integer: true });
        if (v !== undefined && v > 0) real.upper_threshold = v;
        break;
      }
      case "lthreshold": {
        const v = numberArg(c, skip, { min: 0, max: 2147483647, integer: true });
        if (v !== undefined && v > 0) real.lower_threshold = v;
        break;
      }
      case "lb_kind":
      case "lvs_method": {
        const method = methodArg(c, skip);
        if (method !== undefined && method !== vs.forward) {
          skip(c, `tunvs forwards all reals of a service one way; this one uses ${vs.forward}`);
        }
        break;
      }
      case "inhibit_on_failure":
        inhibit = boolArg(c, skip);
        break;
      case "notify_up":
      case "notify_down":
        // keepalived: the script (quoted when it has arguments), then an optional user/group.
        if (c.args.length === 0) skip(c, "needs a script");
        else {
          real[c.keyword] = c.args[0];
          if (c.args.length > 1) {
            skip(c, "the script runs as tunvs's user; the user/group is dropped");
          }
        }
        break;
      default:
        if (c.keyword in RS_NOT_CARRIED) skip(c, RS_NOT_CARRIED[c.keyword]);
        else skip(c, "not a keepalived keyword (keepalived ignores it too)", "ignored");
    }
  }
  let check: RawMap | null = null;
  for (const checker of checkers) {
    if (check !== null) {
      skip(checker, "tunvs runs one check per real; the first one is kept");
      continue;
    }
    check = healthCheckFrom(checker, checks, vs.checks.delayLoop, skip);
  }
  return { node: rs, real, check, ...(inhibit === undefined ? {} : { inhibit }) };
}

/** One virtual_server → a raw service, or null when it cannot be one (reported). */
function convertVirtualServer(
  vs: KeepalivedNode,
  groups: Map<string, string[]>,
  used: Set<string>,
  taken: Set<string>,
  skip: SkipSink,
): RawMap | null {
  const [first, second, ...more] = vs.args;
  if (first === "group") {
    skip(vs, "virtual_server groups are not read: write one virtual_server per address");
    return null;
  }
  if (first === undefined || second === undefined && first === "fwmark") {
    skip(vs, "needs an address and a port, or fwmark N");
    return null;
  }
  if (more.length > 0 && first !== "fwmark") {
    skip(vs, "needs an address and a port, or fwmark N");
    return null;
  }
  const settings = readVirtualServer(vs, groups, used, skip);
  if (settings.unsupported !== undefined) {
    skip(vs, settings.unsupported);
    return null;
  }
  let svc: RawMap;
  let port = 0;
  if (first === "fwmark") {
    const mark = /^[0-9]+$/.test(second) ? Number(second) : NaN;
    if (!(mark >= 1 && mark <= UINT32_MAX)) {
      skip(vs, "the firewall mark must be a number from 1 to 4294967295");
      return null;
    }
    svc = { name: serviceName({ fwmark: mark }, taken), fwmark: mark };
  } else {
    if (isIpv6(first)) {
      skip(vs, "tunvs balances IPv4 only");
      return null;
    }
    if (second !== undefined) {
      const p = portArg(vs, second, skip);
      if (p === undefined) return null;
      port = p;
    }
    svc = {
      name: serviceName({ protocol: settings.protocol, vip: first, port }, taken),
      protocol: settings.protocol,
      vip: first,
      port,
    };
  }
  if (settings.persistence !== undefined) {
    svc.persistence = {
      timeout: settings.persistence,
      ...(settings.granularity === undefined ? {} : { netmask: settings.granularity.netmask }),
    };
  }
  if (settings.onePacket) svc.one_packet = true;
  svc.scheduler = settings.scheduler;
  const flags: string[] = [];
  for (const f of settings.flags) {
    const name = NUMBERED_FLAGS[settings.scheduler]?.[f.keyword] ?? f.keyword;
    if (!name.startsWith(`${settings.scheduler}-`)) {
      skip(f, `means nothing to the ${settings.scheduler} scheduler in tunvs`);
    } else if (!flags.includes(name)) flags.push(name);
  }
  if (flags.length > 0) svc.scheduler_flags = flags;
  svc.forward = settings.forward;
  if (settings.localAddresses !== undefined) svc.local_addresses = settings.localAddresses;

  const reals = vs.children.filter((c) => c.keyword === "real_server")
    .map((rs) => readRealServer(rs, settings, port, skip))
    .filter((r): r is RealServer => r !== null);
  // inhibit_on_failure goes on the service when the reals agree, else on each real.
  const inhibits = reals.map((r) => r.inhibit ?? settings.inhibit ?? false);
  const inhibit = inhibits.length > 0 && inhibits.every((i) => i === inhibits[0])
    ? inhibits[0]
    : settings.inhibit ?? false;
  // A real that differs from the service keeps its own setting.
  reals.forEach((r, i) => {
    if (inhibits[i] !== inhibit) r.real.inhibit_on_failure = inhibits[i];
  });
  if (inhibit) svc.inhibit_on_failure = true;
  if (settings.sorry !== undefined) svc.sorry_server = settings.sorry;
  if (settings.quorum !== undefined) svc.quorum = settings.quorum;
  if (settings.hysteresis !== undefined) svc.hysteresis = settings.hysteresis;
  // One check for all reals reads best on the service; different ones stay on their reals.
  const checks = reals.map((r) => JSON.stringify(r.check));
  const shared = reals.length > 0 && reals[0].check !== null &&
    checks.every((c) => c === checks[0]);
  if (shared) svc.health_check = reals[0].check;
  svc.reals = reals.map((r) =>
    shared || r.check === null ? r.real : { ...r.real, health_check: r.check }
  );
  return svc;
}

/**
 * Converts keepalived.conf text to appliance.yaml data that control/config.ts accepts, naming
 * everything left out. Throws KeepalivedSyntaxError when the text is not keepalived.conf syntax.
 */
export function importKeepalivedConf(text: string): ImportResult {
  const nodes = parseKeepalivedConf(text);
  const skipped: Skipped[] = [];
  const skip: SkipSink = (node, reason, kind = "lost") =>
    skipped.push({ line: node.line, keyword: statement(node), reason, kind });
  const groups = localAddressGroups(nodes, skip);
  const used = new Set<string>();
  const taken = new Set<string>();
  const services: RawMap[] = [];
  const origins: ImportResult["origins"] = [];
  for (const node of nodes) {
    const scope = OUT_OF_SCOPE.find(([pattern]) => pattern.test(node.keyword));
    if (node.keyword === "virtual_server") {
      const svc = convertVirtualServer(node, groups, used, taken, skip);
      if (svc === null) continue;
      taken.add(String(svc.name));
      services.push(svc);
      origins.push({ line: node.line, label: statement(node) });
    } else if (node.keyword === "local_address_group") {
      // Read above; named below if no virtual_server uses it.
    } else if (scope !== undefined) {
      skip(node, scope[1], "scope");
    } else if (node.keyword === "virtual_server_group") {
      skip(node, "write one virtual_server per address instead");
    } else if (node.keyword === "include") {
      skip(node, "included files are not read: import each of them");
    } else if (node.keyword === "SSL") {
      skip(node, "tunvs's https check has no client certificate settings");
    } else {
      skip(node, "not a keepalived keyword (keepalived ignores it too)", "ignored");
    }
  }
  for (const node of nodes) {
    if (node.keyword === "local_address_group" && !used.has(node.args[0] ?? "")) {
      skip(node, "no virtual_server uses it", "ignored");
    }
  }
  skipped.sort((a, b) => a.line - b.line);
  return keepValidServices({ config: { services }, origins, skipped });
}
