/**
 * What ipvsadm prints, laid out byte for byte as upstream ipvsadm 1.31 prints
 * it (its printf formats, its column widths, its truncations and its sort
 * order), from plain data: the virtual service table (`-L`, `--stats`,
 * `--rate`, `--thresholds`, `--persistent-conn`, `--tun-info`), the rules
 * (`-S`), the connection entries (`-Lc`), the timeouts, and DPVS's local
 * address listing (`-G`) and forwarding name `FullNat`.
 */
import type { ConnectionEntry } from "../dataplane/stats/conn_listing.ts";
import type { TrafficStats } from "../dataplane/stats/service_stats.ts";
import type { ListFormat } from "./ipvsadm_options.ts";
import { inetAton, type NameDb } from "./netdb.ts";

/** The IPVS version and connection table size the header names, as a stock kernel reports them. */
export const IPVS_VERSION = "1.2.1";
/** The connection hash table size the header names (the kernel's default, 2^12). */
export const IPVS_TABLE_SIZE = 4096;

/** Counters and rates of a service or a real (the --stats and --rate columns). */
export type Traffic = TrafficStats;

/** A real server as the listing shows it. */
export interface ListedReal {
  address: string;
  port: number;
  /** The forwarding name: Masq, Route, Tunnel, Local, or DPVS's FullNat. */
  forward: string;
  weight: number;
  activeConns: number;
  inactiveConns: number;
  persistConns: number;
  upperThreshold: number;
  lowerThreshold: number;
  traffic: Traffic;
}

/** A virtual service as the listing shows it. */
export interface ListedService {
  protocol: "tcp" | "udp" | "sctp";
  /** IPv4 dotted quad. */
  vip: string;
  port: number;
  /** Set for a firewall-mark service, listed as `FWM  N`. */
  fwmark?: number;
  scheduler: string;
  /** Scheduler flags by their ipvsadm -b names (sh-fallback, mh-port, flag-3, …). */
  schedulerFlags: string[];
  persistence: { timeout: number; netmask: string } | null;
  onePacket: boolean;
  synproxy: boolean;
  /** FULLNAT local addresses (DPVS `-P … -z`). */
  localAddresses: string[];
  reals: ListedReal[];
  traffic: Traffic;
}

/** One connection entry (`-Lc`), addresses as "a.b.c.d:port". */
export type ListedConnection = Pick<
  ConnectionEntry,
  "protocol" | "expires" | "state" | "client" | "virtual" | "real"
>;

/** The timeouts `--timeout` shows and `--set` sets, in seconds. */
export interface ListedTimeouts {
  tcp: number;
  tcpfin: number;
  udp: number;
}

// ---------------------------------------------------------------------------------------------
// printf's conversions, as ipvsadm uses them.

/** `%-Ns`. */
function left(s: string | number, width: number): string {
  return String(s).padEnd(width);
}

/** `%Ns` / `%Nllu`. */
function right(s: string | number, width: number): string {
  return String(s).padStart(width);
}

/** A counter as ipvsadm's print_largenum: 9 columns, scaled K/M/G/T from 100 million unless exact. */
export function largeNumber(n: number, exact: boolean): string {
  const i = Math.max(0, Math.floor(n));
  if (exact) {
    const digits = String(i);
    return right(digits, digits.length <= 8 ? 9 : digits.length + 1);
  }
  if (i < 100_000_000) return right(i, 9);
  if (i < 1_000_000_000) return `${right(Math.floor(i / 1e3), 8)}K`;
  if (i < 100_000_000_000) return `${right(Math.floor(i / 1e6), 8)}M`;
  if (i < 100_000_000_000_000) return `${right(Math.floor(i / 1e9), 8)}G`;
  return `${right(Math.floor(i / 1e12), 8)}T`;
}

/** The protocol's name for service lookups (getservbyport). */
function protoKey(protocol: string): string {
  return protocol.toLowerCase();
}

/**
 * ipvsadm's addrport_to_anyname: "addr:port" with -n, else host and service
 * names where the databases have them; cut at 59 characters like its buffer.
 */
export function addrPortName(
  addr: string,
  port: number,
  protocol: string,
  numeric: boolean,
  names: NameDb,
): string {
  const v6 = addr.includes(":");
  let host = addr;
  let service = String(port);
  if (!numeric) {
    const a = v6 ? null : inetAton(addr);
    host = (a === null ? null : names.hostName(a)) ?? addr;
    service = names.serviceName(port, protoKey(protocol)) ?? service;
  }
  const text = v6 ? `[${host}]:${service}` : `${host}:${service}`;
  return text.slice(0, 59);
}

/** Splits "a.b.c.d:port" (or "[v6]:port"). */
function splitAddrPort(s: string): { addr: string; port: number } {
  const colon = s.lastIndexOf(":");
  const addr = s.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return { addr, port: Number(s.slice(colon + 1)) };
}

// ---------------------------------------------------------------------------------------------
// Sorting as ipvsadm sorts (ipvs_cmp_services/ipvs_cmp_dests through glibc's qsort).

/** An unsigned difference read back as a C int, as ipvsadm's comparators compute it. */
function cDiff(a: number, b: number): number {
  return (a - b) | 0;
}

const PROTOCOL_NUMBERS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };

function compareServices(a: ListedService, b: ListedService): number {
  return cDiff(a.fwmark ?? 0, b.fwmark ?? 0) ||
    PROTOCOL_NUMBERS[a.protocol] - PROTOCOL_NUMBERS[b.protocol] ||
    cDiff(inetAton(a.vip) ?? 0, inetAton(b.vip) ?? 0) ||
    a.port - b.port;
}

function compareReals(a: ListedReal, b: ListedReal): number {
  return cDiff(inetAton(a.address) ?? 0, inetAton(b.address) ?? 0) || a.port - b.port;
}

/**
 * glibc's qsort (a top-down merge sort): ipvsadm's comparators are not
 * transitive across addresses 2^31 apart, so only the same algorithm gives the
 * same order.
 */
export function glibcSort<T>(items: readonly T[], cmp: (a: T, b: T) => number): T[] {
  if (items.length <= 1) return items.slice();
  const half = items.length >>> 1;
  const b1 = glibcSort(items.slice(0, half), cmp);
  const b2 = glibcSort(items.slice(half), cmp);
  const out: T[] = [];
  let i = 0;
  let j = 0;
  while (i < b1.length && j < b2.length) out.push(cmp(b1[i], b2[j]) <= 0 ? b1[i++] : b2[j++]);
  return out.concat(b1.slice(i), b2.slice(j));
}

/** The services in ipvsadm's listing order (kept as given with --nosort). */
export function sortServices(services: readonly ListedService[], nosort: boolean): ListedService[] {
  return nosort ? services.slice() : glibcSort(services, compareServices);
}

// ---------------------------------------------------------------------------------------------
// The service table.

/** The header `-L` prints before the table (not for one service, nor for -S). */
export function versionHeader(): string {
  return `IP Virtual Server version ${IPVS_VERSION} (size=${IPVS_TABLE_SIZE})\n`;
}

/** The column titles for `format` (print_title). */
export function listTitle(format: ListFormat): string {
  const lead = left("Prot LocalAddress:Port", 33);
  const remote = "  -> RemoteAddress:Port\n";
  if (format.stats) {
    return `${lead} ${
      ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"].map((s) => right(s, 8)).join(" ")
    }\n${remote}`;
  }
  if (format.rate) {
    return `${lead} ${
      ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"].map((s) => right(s, 8)).join(" ")
    }\n${remote}`;
  }
  if (format.thresholds) {
    return `${lead} ${
      ["Uthreshold", "Lthreshold", "ActiveConn", "InActConn"].map((s) => left(s, 10)).join(" ")
    }\n${remote}`;
  }
  if (format.persistentConn) {
    return `${lead} ${left("Weight", 9)} ${left("PersistConn", 11)} ${left("ActiveConn", 10)} ${
      left("InActConn", 10)
    }\n${remote}`;
  }
  if (format.tunInfo) {
    return "Prot LocalAddress:Port Scheduler Flags\n" +
      "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n";
  }
  return "Prot LocalAddress:Port Scheduler Flags\n" +
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
}

/** The flag bit each -b name sets: names differ per scheduler, bits do not. */
function schedFlagBits(names: readonly string[]): Set<number> {
  const bits = new Set<number>();
  for (const name of names) {
    if (name === "flag-1" || name.endsWith("-fallback")) bits.add(1);
    else if (name === "flag-2" || name.endsWith("-port")) bits.add(2);
    else if (name === "flag-3") bits.add(3);
  }
  return bits;
}

/** The flags as ipvsadm names them for `scheduler` (print_sched_flags), comma-separated. */
export function schedFlagsText(scheduler: string, names: readonly string[]): string {
  const bits = schedFlagBits(names);
  const label = (bit: number) => {
    if (bit === 3) return "flag-3";
    if (scheduler === "sh" || scheduler === "mh") {
      return `${scheduler}-${bit === 1 ? "fallback" : "port"}`;
    }
    return `flag-${bit}`;
  };
  return [1, 2, 3].filter((b) => bits.has(b)).map(label).join(",");
}

/** "TCP  vip:port" (cut at 33 characters) or "FWM  N"; the `-t vip:port` form for rules. */
function serviceName(svc: ListedService, rule: boolean, numeric: boolean, names: NameDb): string {
  if (svc.fwmark !== undefined && svc.fwmark > 0) {
    return rule ? `-f ${svc.fwmark}` : `FWM  ${svc.fwmark}`;
  }
  const vname = addrPortName(svc.vip, svc.port, svc.protocol, numeric, names);
  if (rule) {
    const flag = svc.protocol === "tcp" ? "-t" : svc.protocol === "udp" ? "-u" : "--sctp-service";
    return `${flag} ${vname}`;
  }
  return `${left(svc.protocol.toUpperCase(), 4)} ${vname}`.slice(0, 33);
}

const FORWARD_SWITCHES: Record<string, string> = {
  Masq: "-m",
  Tunnel: "-i",
  Route: "-g",
  Local: "-g",
  FullNat: "--fullnat",
};

/** What --tun-info shows for a real: the tunnel type for tunnels, else "n/a". */
function tunnelInfo(real: ListedReal): string {
  return real.forward === "Tunnel" ? "ipip" : "n/a";
}

/** The service line and its reals' lines (print_service_entry) for listings. */
function serviceEntry(
  svc: ListedService,
  format: ListFormat,
  names: NameDb,
): string {
  const name = serviceName(svc, false, format.numeric, names);
  const big = (n: number) => largeNumber(n, format.exact);
  const t = svc.traffic;
  let line: string;
  if (format.stats) {
    line = left(name, 33) + [t.conns, t.inPkts, t.outPkts, t.inBytes, t.outBytes].map(big).join("");
  } else if (format.rate) {
    line = left(name, 33) + [t.cps, t.inPps, t.outPps, t.inBps, t.outBps].map(big).join("");
  } else {
    line = `${name} ${svc.scheduler}`;
    const flags = schedFlagsText(svc.scheduler, svc.schedulerFlags);
    if (flags !== "") line += ` (${flags})`;
    if (svc.persistence !== null) {
      line += ` persistent ${svc.persistence.timeout}`;
      if (svc.persistence.netmask !== "255.255.255.255") line += ` mask ${svc.persistence.netmask}`;
    }
    if (svc.onePacket) line += " ops";
    if (svc.synproxy) line += " synproxy";
  }
  const lines = [line];
  const reals = format.nosort ? svc.reals : glibcSort(svc.reals, compareReals);
  for (const r of reals) {
    const dname = addrPortName(r.address, r.port, svc.protocol, format.numeric, names).slice(0, 28);
    const lead = `  -> ${left(dname, 28)}`;
    const rt = r.traffic;
    if (format.stats) {
      lines.push(
        lead + [rt.conns, rt.inPkts, rt.outPkts, rt.inBytes, rt.outBytes].map(big).join(""),
      );
    } else if (format.rate) {
      lines.push(
        `${lead} ${right(rt.cps, 8)} ${right(rt.inPps, 8)} ${right(rt.outPps, 8)}${big(rt.inBps)}${
          big(rt.outBps)
        }`,
      );
    } else if (format.thresholds) {
      lines.push(
        `${lead} ${left(r.upperThreshold, 10)} ${left(r.lowerThreshold, 10)} ${
          left(r.activeConns, 10)
        } ${left(r.inactiveConns, 10)}`,
      );
    } else if (format.persistentConn) {
      lines.push(
        `${lead} ${left(r.weight, 9)} ${left(r.persistConns, 11)} ${left(r.activeConns, 10)} ${
          left(r.inactiveConns, 10)
        }`,
      );
    } else if (format.tunInfo) {
      lines.push(
        `${lead} ${left(r.forward, 7)} ${left(tunnelInfo(r), 13)} ${left(r.weight, 6)} ${
          left(r.activeConns, 10)
        } ${left(r.inactiveConns, 10)}`,
      );
    } else {
      lines.push(
        `${lead} ${left(r.forward, 7)} ${left(r.weight, 6)} ${left(r.activeConns, 10)} ${
          left(r.inactiveConns, 10)
        }`,
      );
    }
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** `ipvsadm -L` with `format`: the header, the titles and every service (list_all). */
export function formatListing(
  services: readonly ListedService[],
  format: ListFormat,
  names: NameDb,
): string {
  return versionHeader() + listTitle(format) +
    sortServices(services, format.nosort).map((s) => serviceEntry(s, format, names)).join("");
}

/** `ipvsadm -L -t|-u service`: titles and the one service, no header (list_service). */
export function formatService(svc: ListedService, format: ListFormat, names: NameDb): string {
  return listTitle(format) + serviceEntry(svc, format, names);
}

/**
 * `ipvsadm -S`: the rules that make the table, `-A` then its `-a` lines, as
 * upstream writes them, and also what upstream loses: each real's `-x`/`-y`
 * thresholds, and (DPVS's `-P … -z`) a FULLNAT service's local addresses.
 */
export function formatSave(
  services: readonly ListedService[],
  format: ListFormat,
  names: NameDb,
): string {
  let out = "";
  for (const svc of sortServices(services, format.nosort)) {
    const name = serviceName(svc, true, format.numeric, names);
    let line = `-A ${name} -s ${svc.scheduler}`;
    if (svc.persistence !== null) {
      line += ` -p ${svc.persistence.timeout}`;
      if (svc.persistence.netmask !== "255.255.255.255") line += ` -M ${svc.persistence.netmask}`;
    }
    if (svc.onePacket) line += " -o";
    const flags = schedFlagsText(svc.scheduler, svc.schedulerFlags);
    if (flags !== "") line += ` -b ${flags}`;
    if (svc.synproxy) line += " --synproxy enable";
    out += `${line}\n`;
    const reals = format.nosort ? svc.reals : glibcSort(svc.reals, compareReals);
    for (const r of reals) {
      const dname = addrPortName(r.address, r.port, svc.protocol, format.numeric, names);
      let real = `-a ${name} -r ${dname} ${FORWARD_SWITCHES[r.forward] ?? "-g"} -w ${r.weight}`;
      if (r.forward === "Tunnel") real += " --tun-type ipip";
      if (r.upperThreshold > 0) real += ` -x ${r.upperThreshold}`;
      if (r.lowerThreshold > 0) real += ` -y ${r.lowerThreshold}`;
      out += `${real}\n`;
    }
    for (const laddr of svc.localAddresses) out += `-P ${name} -z ${laddr}\n`;
  }
  return out;
}

/** `ipvsadm -Lc` (list_conn): the title and one line per entry, expiry as mm:ss. */
export function formatConnections(
  entries: readonly ListedConnection[],
  format: ListFormat,
  names: NameDb,
): string {
  let out = "IPVS connection entries\n";
  out += format.persistentConn
    ? `pro expire ${left("state", 11)} ${left("source", 18)} ${left("virtual", 18)} ${
      left("destination", 18)
    } ${left("pe name", 16)} pe_data\n`
    : `pro expire ${left("state", 11)} ${left("source", 18)} ${left("virtual", 18)} destination\n`;
  const name = (s: string, protocol: string) => {
    const { addr, port } = splitAddrPort(s);
    return addrPortName(addr, port, protocol, format.numeric, names);
  };
  for (const c of entries) {
    const expire = `${String(Math.floor(c.expires / 60)).padStart(2, "0")}:${
      String(c.expires % 60).padStart(2, "0")
    }`;
    out += `${left(c.protocol, 3)} ${left(expire, 6)} ${left(c.state, 11)} ${
      left(name(c.client, c.protocol), 18)
    } ${left(name(c.virtual, c.protocol), 18)} ${name(c.real, c.protocol)}\n`;
  }
  return out;
}

/** `ipvsadm -L --timeout`. */
export function formatTimeouts(t: ListedTimeouts): string {
  return `Timeout (tcp tcpfin udp): ${t.tcp} ${t.tcpfin} ${t.udp}\n`;
}

/**
 * DPVS's `ipvsadm -G`: each service with its number of local addresses, then
 * the addresses. DPVS also shows per-address port conflicts and connections;
 * tunvs does not count those per address, so those columns say "-".
 */
export function formatLocalAddresses(
  services: readonly ListedService[],
  names: NameDb,
): string {
  let out = `${left("VIP:VPORT", 20)} ${left("TOTAL", 8)} ${left("SNAT_IP", 20)} ${
    left("CONFLICTS", 10)
  } ${left("CONNS", 10)}\n`;
  for (const svc of services) {
    const vname = addrPortName(svc.vip, svc.port, svc.protocol, true, names);
    out += `${left(vname, 20)} ${left(svc.localAddresses.length, 8)} \n`;
    for (const addr of svc.localAddresses) {
      out += `${left("", 20)} ${left("", 8)} ${left(addr, 20)} ${left("-", 10)} ${left("-", 10)}\n`;
    }
  }
  return out;
}
