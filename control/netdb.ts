/**
 * Host and service names as the C library's files backend knows them
 * (/etc/hosts, /etc/services), for ipvsadm's name forms: `-t web:http`, and
 * listings without `-n`. DNS is not consulted: the admin commands must not
 * hang on a resolver the director's namespace may not reach.
 */

/** Looks names up in both directions; every method answers null when it knows nothing. */
export interface NameDb {
  /** The IPv4 address (host order) of host `name`, as gethostbyname. */
  hostAddress(name: string): number | null;
  /** The official name of IPv4 address `addr` (host order), as gethostbyaddr. */
  hostName(addr: number): string | null;
  /** The port of service `name` for `protocol` ("tcp", "udp", "sctp"), as getservbyname. */
  servicePort(name: string, protocol: string): number | null;
  /** The official name of `port` for `protocol`, as getservbyport. */
  serviceName(port: number, protocol: string): string | null;
}

/** A NameDb that knows no names: numeric forms only. */
export const NO_NAMES: NameDb = {
  hostAddress: () => null,
  hostName: () => null,
  servicePort: () => null,
  serviceName: () => null,
};

/**
 * Parses an IPv4 address the way inet_aton does: one to four parts, each
 * decimal, octal (leading 0) or hex (0x); the last part fills the remaining
 * bytes ("10.1" is 10.0.0.1). Returns the address in host order, or null.
 */
export function inetAton(s: string): number | null {
  const parts = s.split(".");
  if (parts.length > 4) return null;
  const values: number[] = [];
  for (const part of parts) {
    let v: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(part)) v = part.length === 2 ? 0 : parseInt(part.slice(2), 16);
    else if (/^0[0-7]*$/.test(part)) v = part.length === 1 ? 0 : parseInt(part.slice(1), 8);
    else if (/^[1-9][0-9]*$/.test(part)) v = Number(part);
    else return null;
    if (!Number.isSafeInteger(v) || v > 0xffffffff) return null;
    values.push(v);
  }
  const last = values.pop()!;
  // Leading parts are one byte each; the last one must fit the bytes left over.
  if (values.some((v) => v > 255)) return null;
  if (last >= 2 ** (8 * (4 - values.length))) return null;
  let addr = 0;
  values.forEach((v, i) => addr += v * 2 ** (8 * (3 - i)));
  return addr + last;
}

/** Formats a host-order IPv4 address as a dotted quad. */
export function dottedQuad(addr: number): string {
  return [addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255].join(".");
}

interface HostLine {
  addr: number;
  names: string[];
}

interface ServiceLine {
  name: string;
  aliases: string[];
  port: number;
  protocol: string;
}

/** Splits a database file into its lines' fields, comments (from "#") left out. */
function fields(text: string): string[][] {
  return text.split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((line) => line !== "")
    .map((line) => line.split(/\s+/));
}

/** Parses /etc/hosts text (IPv4 lines only). */
export function parseHosts(text: string): HostLine[] {
  const out: HostLine[] = [];
  for (const [addrText, ...names] of fields(text)) {
    if (!/^[0-9.]+$/.test(addrText) || names.length === 0) continue;
    const addr = inetAton(addrText);
    if (addr !== null) out.push({ addr, names });
  }
  return out;
}

/** Parses /etc/services text. */
export function parseServices(text: string): ServiceLine[] {
  const out: ServiceLine[] = [];
  for (const [name, portProto, ...aliases] of fields(text)) {
    const m = /^([0-9]{1,5})\/([a-z]+)$/.exec(portProto ?? "");
    if (m === null || Number(m[1]) > 65535) continue;
    out.push({ name, aliases, port: Number(m[1]), protocol: m[2] });
  }
  return out;
}

/** A NameDb over the contents of a hosts and a services file; the first entry found wins. */
export function nameDbFrom(hostsText: string, servicesText: string): NameDb {
  const hosts = parseHosts(hostsText);
  const services = parseServices(servicesText);
  return {
    hostAddress: (name) => hosts.find((h) => h.names.includes(name))?.addr ?? null,
    hostName: (addr) => hosts.find((h) => h.addr === addr)?.names[0] ?? null,
    servicePort: (name, protocol) =>
      services.find((s) => s.protocol === protocol && (s.name === name || s.aliases.includes(name)))
        ?.port ?? null,
    serviceName: (port, protocol) =>
      services.find((s) => s.protocol === protocol && s.port === port)?.name ?? null,
  };
}

function readOrEmpty(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** The system's /etc/hosts and /etc/services, read once on first use. */
export function systemNameDb(): NameDb {
  let db: NameDb | null = null;
  const get = () => db ??= nameDbFrom(readOrEmpty("/etc/hosts"), readOrEmpty("/etc/services"));
  return {
    hostAddress: (name) => get().hostAddress(name),
    hostName: (addr) => get().hostName(addr),
    servicePort: (name, protocol) => get().servicePort(name, protocol),
    serviceName: (port, protocol) => get().serviceName(port, protocol),
  };
}
