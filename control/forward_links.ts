/**
 * What the dataplane needs to reach tunnel and DR reals, asked of the kernel: for a tunnel, the
 * director's address towards the real (the route's preferred source) and the path MTU; for DR,
 * the interface on the real's segment and the real's MAC from the neighbour table, which is made
 * to resolve it when it has none. Resolved at start (a real that cannot be reached is a clear
 * startup error) and again periodically, posting what changed to the worker.
 */
import type { RealLink } from "../dataplane/direct_routes.ts";
import { errno, libc, size, strerror } from "../dataplane/libc.ts";
import type { DataplaneSpec } from "../dataplane/service.ts";
import { formatIpv4, parseIpv4Address } from "../dataplane/wire/ipv4.ts";
import { HostError, ip } from "./host.ts";
import { log } from "./log.ts";

/** How long start-up waits for a DR real's MAC address. */
export const NEIGHBOUR_TIMEOUT_MS = 3000;
/** How often links are resolved again (MAC changes, route changes, path MTU). */
export const LINK_REFRESH_MS = 15_000;

/** The refresh interval: LINK_REFRESH_MS, or TUNVS_LINK_REFRESH_MS (ms, at least 100) if set. */
export function linkRefreshMs(): number {
  const v = Number(Deno.env.get("TUNVS_LINK_REFRESH_MS"));
  return Number.isInteger(v) && v >= 100 ? v : LINK_REFRESH_MS;
}

/** What `ip -j route get` says about the way to an address. */
export interface RouteInfo {
  dev: string;
  gateway?: string;
  prefsrc?: string;
  /** The route's MTU (a route metric, or a path-MTU exception the kernel learnt). */
  mtu?: number;
  /** The route's type when not unicast ("local", "unreachable", ...). */
  type?: string;
}

/** Parses `ip -j route get ADDR` output; throws HostError when it names no way out. */
export function parseRouteGet(address: string, json: string): RouteInfo {
  const routes = JSON.parse(json) as {
    dev?: string;
    gateway?: string;
    prefsrc?: string;
    type?: string;
    metrics?: { mtu?: number }[];
  }[];
  const r = routes[0];
  if (r?.dev === undefined) throw new HostError(`no route to ${address}`);
  const mtu = r.metrics?.find((m) => typeof m.mtu === "number")?.mtu;
  return {
    dev: r.dev,
    ...(r.gateway === undefined ? {} : { gateway: r.gateway }),
    ...(r.prefsrc === undefined ? {} : { prefsrc: r.prefsrc }),
    ...(mtu === undefined ? {} : { mtu }),
    ...(r.type === undefined || r.type === "unicast" ? {} : { type: r.type }),
  };
}

/** A neighbour table entry as `ip -j neigh show` gives it. */
export interface Neighbour {
  lladdr?: string;
  state: string[];
}

/** The entry for `address` in `ip -j neigh show ADDR dev DEV` output, or null. */
export function parseNeighbour(address: string, json: string): Neighbour | null {
  const entries = JSON.parse(json) as { dst?: string; lladdr?: string; state?: string[] }[];
  const e = entries.find((n) => n.dst === address);
  if (e === undefined) return null;
  return { ...(e.lladdr === undefined ? {} : { lladdr: e.lladdr }), state: e.state ?? [] };
}

/** Whether an entry's MAC can be sent to now (a STALE one still can, while it is revalidated). */
export function neighbourUsable(n: Neighbour | null): boolean {
  return n !== null && n.lladdr !== undefined &&
    !n.state.some((s) => s === "FAILED" || s === "INCOMPLETE" || s === "NONE");
}

async function route(address: string, tun: string): Promise<RouteInfo> {
  const r = parseRouteGet(address, await ip(["-j", "route", "get", address]));
  if (r.type !== undefined || r.dev === "lo") {
    throw new HostError(`real ${address} is not reachable through a network (${r.type ?? "lo"})`);
  }
  if (r.dev === tun) {
    throw new HostError(`real ${address} is routed into ${tun} itself; it must not be a VIP`);
  }
  return r;
}

async function linkMtu(dev: string): Promise<number> {
  return Number((await Deno.readTextFile(`/sys/class/net/${dev}/mtu`)).trim());
}

/** The director's address towards a tunnel real and the path MTU to it. */
export async function resolveTunnelReal(address: string, tun: string): Promise<RealLink> {
  const r = await route(address, tun);
  if (r.prefsrc === undefined) {
    throw new HostError(
      `tunnel real ${address}: the route to it (dev ${r.dev}) gives no source address; ` +
        `give ${r.dev} an address`,
    );
  }
  const source = parseDotted(r.prefsrc);
  return { tunnelSource: source, mtu: r.mtu ?? await linkMtu(r.dev) };
}

/** The interface, MTU and MAC address a DR real is reached with; resolves the MAC if need be. */
export async function resolveDirectReal(
  address: string,
  tun: string,
  timeoutMs = NEIGHBOUR_TIMEOUT_MS,
): Promise<RealLink> {
  const r = await route(address, tun);
  if (r.gateway !== undefined) {
    throw new HostError(
      `DR real ${address} is reached through the router ${r.gateway} (dev ${r.dev}); direct ` +
        `routing needs the real on a segment of this host (use forward: tunnel across routers)`,
    );
  }
  const type = (await Deno.readTextFile(`/sys/class/net/${r.dev}/type`)).trim();
  if (type !== "1") {
    throw new HostError(`DR real ${address} is reached through ${r.dev}, not an Ethernet device`);
  }
  const ifindex = Number((await Deno.readTextFile(`/sys/class/net/${r.dev}/ifindex`)).trim());
  const mac = await resolveMac(address, r.dev, timeoutMs);
  return { ifindex, mac, mtu: r.mtu ?? await linkMtu(r.dev) };
}

async function neighbour(address: string, dev: string): Promise<Neighbour | null> {
  return parseNeighbour(address, await ip(["-j", "neigh", "show", address, "dev", dev]));
}

/**
 * The real's MAC from the kernel's neighbour table. A missing or failed entry is resolved first;
 * a STALE one is used as it is and revalidated, so that a real whose MAC changed is followed at
 * the next refresh.
 */
async function resolveMac(address: string, dev: string, timeoutMs: number): Promise<string> {
  const known = await neighbour(address, dev);
  const reachable = neighbourUsable(known) && known!.state.includes("REACHABLE");
  if (!reachable) await provokeResolution(address, dev);
  if (neighbourUsable(known)) return known!.lladdr!;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const n = await neighbour(address, dev);
    if (neighbourUsable(n)) return n!.lladdr!;
  }
  throw new HostError(
    `cannot resolve the MAC address of DR real ${address} on ${dev}: no ARP answer within ` +
      `${timeoutMs} ms (is it up, and on the segment of ${dev}?)`,
  );
}

/**
 * Makes the kernel (re)resolve `address`: `ip neigh replace … use` asks for exactly that
 * (NTF_USE); where iproute2 or the kernel refuses it, a one-byte UDP datagram to the discard port
 * does it, as any traffic towards the real would.
 */
async function provokeResolution(address: string, dev: string): Promise<void> {
  try {
    await ip(["neigh", "replace", address, "dev", dev, "use", "nud", "none"]);
  } catch {
    sendDiscardDatagram(parseDotted(address));
  }
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const DISCARD_PORT = 9;

function sendDiscardDatagram(addr: number): void {
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new HostError(`cannot open a UDP socket: ${strerror(errno())}`);
  try {
    const sin = new Uint8Array(16);
    const v = new DataView(sin.buffer);
    v.setUint16(0, AF_INET, true);
    v.setUint16(2, DISCARD_PORT, false);
    v.setUint32(4, addr, false);
    c.sendto(fd, new Uint8Array(1), size(1), MSG_DONTWAIT, sin, sin.length);
  } finally {
    c.close(fd);
  }
}

function parseDotted(s: string): number {
  const addr = parseIpv4Address(s);
  if (addr === null) throw new HostError(`unexpected address ${JSON.stringify(s)} from ip`);
  return addr;
}

/** Resolves every tunnel and DR real of `spec` (per service, per real; empty for others). */
export async function resolveLinks(spec: DataplaneSpec, tun: string): Promise<RealLink[][]> {
  const out: RealLink[][] = [];
  for (const s of spec.services) {
    const links: RealLink[] = [];
    for (const r of s.reals) {
      const address = formatIpv4(r.addr);
      if (s.forward === "tunnel") links.push(await resolveTunnelReal(address, tun));
      else if (s.forward === "dr") links.push(await resolveDirectReal(address, tun));
      else links.push({});
    }
    out.push(links);
  }
  return out;
}

/** `spec` with each real's resolved link facts filled in. */
export function withLinks(spec: DataplaneSpec, links: RealLink[][]): DataplaneSpec {
  return {
    ...spec,
    services: spec.services.map((s, i) => ({
      ...s,
      reals: s.reals.map((r, j) => ({ ...r, ...links[i]?.[j] })),
    })),
  };
}

function describeLink(l: RealLink): Record<string, string | number> {
  return {
    ...(l.tunnelSource === undefined ? {} : { source: formatIpv4(l.tunnelSource) }),
    ...(l.ifindex === undefined ? {} : { ifindex: l.ifindex }),
    ...(l.mac === undefined ? {} : { mac: l.mac }),
    ...(l.mtu === undefined ? {} : { mtu: l.mtu }),
  };
}

/** Logs each tunnel and DR real's link, as resolved at start. */
export function logLinks(spec: DataplaneSpec, links: RealLink[][]): void {
  spec.services.forEach((s, i) =>
    s.reals.forEach((r, j) => {
      if (s.forward !== "tunnel" && s.forward !== "dr") return;
      log("real link", { service: s.name, real: formatIpv4(r.addr), ...describeLink(links[i][j]) });
    })
  );
}

function sameLink(a: RealLink, b: RealLink): boolean {
  return a.tunnelSource === b.tunnelSource && a.mtu === b.mtu && a.ifindex === b.ifindex &&
    a.mac === b.mac;
}

/**
 * Resolves the links again every `intervalMs` and hands the whole set to `post` when any changed.
 * A real that cannot be resolved for now keeps its last link (and is logged).
 */
export class LinkRefresher {
  #links: RealLink[][];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;

  /** Watches the tunnel and DR reals of `spec`, starting from `links`. */
  constructor(
    readonly spec: DataplaneSpec,
    readonly tun: string,
    links: RealLink[][],
    readonly post: (links: RealLink[][]) => void,
    readonly intervalMs = LINK_REFRESH_MS,
  ) {
    this.#links = links;
  }

  /** The links in force. */
  get links(): RealLink[][] {
    return this.#links;
  }

  /** Starts the periodic refresh (no-op without tunnel or DR services). */
  start(): void {
    if (!this.spec.services.some((s) => s.forward === "tunnel" || s.forward === "dr")) return;
    this.#schedule();
  }

  /** Stops it. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Resolves every link once; posts and returns true when any changed. */
  async refresh(): Promise<boolean> {
    let changed = false;
    const next: RealLink[][] = [];
    for (const [i, s] of this.spec.services.entries()) {
      const links: RealLink[] = [];
      for (const [j, r] of s.reals.entries()) {
        const old = this.#links[i]?.[j] ?? {};
        if (s.forward !== "tunnel" && s.forward !== "dr") {
          links.push(old);
          continue;
        }
        const address = formatIpv4(r.addr);
        let link = old;
        try {
          link = s.forward === "tunnel"
            ? await resolveTunnelReal(address, this.tun)
            : await resolveDirectReal(address, this.tun);
        } catch (err) {
          log("real link not refreshed", { service: s.name, real: address, error: String(err) });
        }
        if (!sameLink(old, link)) {
          changed = true;
          log("real link changed", { service: s.name, real: address, ...describeLink(link) });
        }
        links.push(link);
      }
      next.push(links);
    }
    if (this.#stopped) return false;
    this.#links = next;
    if (changed) this.post(next);
    return changed;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      await this.refresh().catch((err) => log("link refresh failed", { error: String(err) }));
      this.#schedule();
    }, this.intervalMs);
  }
}
