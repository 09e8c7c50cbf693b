/**
 * Topologies replaying the seed tutorials inside network namespaces.
 */
import { addVipOnLoopback } from "./bypass_reals.ts";
import { type IpipDecap, startIpipDecap } from "./ipip_decap.ts";
import type { Lab } from "./netns.ts";

/** A real server of a topology: its namespace, address and the name its pages carry. */
export interface RealServerHost {
  /** Lab role (also the host name the seed gives it). */
  name: string;
  /** Namespace name. */
  ns: string;
  /** Its address on the real-server network. */
  addr: string;
}

/** Seed 000's NAT lab: client ─ director ─ bridge ─ {web01, web02}. */
export interface Seed000 {
  /** Namespace names. */
  client: string;
  director: string;
  web01: string;
  web02: string;
  /** The virtual IP (not local anywhere: the appliance routes it into its TUN and proxy-ARPs it). */
  vip: string;
  /** The client's address. */
  clientAddr: string;
  /** The director's own address on the client side (the client's gateway). */
  directorAddr: string;
  /** The director's address on the real-server side (the seed's DIP, the reals' gateway). */
  dip: string;
  /** Director interface facing the client. */
  uplink: string;
  /** Director bridge facing the real servers. */
  bridge: string;
  reals: RealServerHost[];
}

/** Addresses of seed 000 (CentOS LVS-NAT tutorial), the director's uplink moved to .30. */
export const SEED000 = {
  vip: "192.168.1.31",
  clientAddr: "192.168.1.35",
  directorAddr: "192.168.1.30",
  dip: "10.10.10.110",
  prefix: 24,
  uplink: "up0",
  bridge: "rs0",
  reals: [
    { name: "web01", addr: "10.10.10.11" },
    { name: "web02", addr: "10.10.10.12" },
  ],
} as const;

/** Options for {@linkcode buildSeed000}. */
export interface Seed000Options {
  /** Keep IPv6 on (off by default so no router solicitations or DAD chatter reach the TUN). */
  ipv6?: boolean;
}

/**
 * Builds seed 000's NAT topology in `lab`. The director gets no forwarding and no proxy ARP:
 * the appliance under test turns those on itself (and must undo them).
 */
export async function buildSeed000(lab: Lab, opts: Seed000Options = {}): Promise<Seed000> {
  const s = SEED000;
  const roles = ["client", "director", ...s.reals.map((r) => r.name)];
  for (const role of roles) {
    await lab.addNamespace(role);
    if (!opts.ipv6) {
      await lab.sysctl(role, "net.ipv6.conf.all.disable_ipv6", 1);
      await lab.sysctl(role, "net.ipv6.conf.default.disable_ipv6", 1);
    }
  }
  // New namespaces inherit IPv4 settings from the host; pin the ones the appliance must manage
  // so that "it restored them" means "back to off".
  await lab.sysctl("director", "net.ipv4.ip_forward", 0);
  await lab.sysctl("director", "net.ipv4.conf.all.proxy_arp", 0);
  await lab.sysctl("director", "net.ipv4.conf.default.proxy_arp", 0);

  await lab.link("client", "eth0", "director", s.uplink);
  await lab.addAddress("client", "eth0", `${s.clientAddr}/${s.prefix}`);
  await lab.defaultRoute("client", s.directorAddr);
  await lab.addAddress("director", s.uplink, `${s.directorAddr}/${s.prefix}`);

  await lab.bridge("director", s.bridge);
  await lab.addAddress("director", s.bridge, `${s.dip}/${s.prefix}`);
  const reals: RealServerHost[] = [];
  for (const real of s.reals) {
    const port = `rs-${real.name}`;
    await lab.link(real.name, "eth0", "director", port);
    await lab.attach("director", port, s.bridge);
    await lab.addAddress(real.name, "eth0", `${real.addr}/${s.prefix}`);
    await lab.defaultRoute(real.name, s.dip);
    reals.push({ name: real.name, ns: lab.nsName(real.name), addr: real.addr });
  }

  return {
    client: lab.nsName("client"),
    director: lab.nsName("director"),
    web01: lab.nsName("web01"),
    web02: lab.nsName("web02"),
    vip: s.vip,
    clientAddr: s.clientAddr,
    directorAddr: s.directorAddr,
    dip: s.dip,
    uplink: s.uplink,
    bridge: s.bridge,
    reals,
  };
}

/**
 * Creates the namespaces of a routed topology with IPv6 off (no solicitations reach the TUN),
 * a director that does not forward until the appliance says so, and a forwarding router.
 */
async function addRoutedHosts(lab: Lab, roles: string[]): Promise<void> {
  for (const role of roles) {
    await lab.addNamespace(role);
    await lab.sysctl(role, "net.ipv6.conf.all.disable_ipv6", 1);
    await lab.sysctl(role, "net.ipv6.conf.default.disable_ipv6", 1);
  }
  await lab.sysctl("director", "net.ipv4.ip_forward", 0);
  await lab.sysctl("router", "net.ipv4.ip_forward", 1);
}

/** Seed 004's FULLNAT addresses: reals in two other subnets, behind a router. */
export const SEED004 = {
  vip: "172.10.0.9",
  clientAddr: "172.10.0.100",
  directorAddr: "172.10.0.1",
  /** The director's own address towards the router (the pool address must not be local). */
  directorInside: "10.0.3.254",
  routerInside: "10.0.3.253",
  localAddress: "10.0.3.1",
  reals: [
    { name: "web1", addr: "10.0.4.2", gateway: "10.0.4.1" },
    { name: "web2", addr: "10.0.5.2", gateway: "10.0.5.1" },
  ],
} as const;

/** What {@linkcode buildSeed004} made. */
export interface Seed004 {
  vip: string;
  clientAddr: string;
  localAddress: string;
  reals: RealServerHost[];
}

/**
 * Seed 004's FULLNAT topology: client — director — router — web1 (10.0.4.0/24) and web2
 * (10.0.5.0/24). The reals route only to the router: they have no route to the client's network,
 * so only FULLNAT (requests from the local address 10.0.3.1) can reach them and be answered.
 */
export async function buildSeed004(lab: Lab): Promise<Seed004> {
  const s = SEED004;
  await addRoutedHosts(lab, ["client", "director", "router", ...s.reals.map((r) => r.name)]);

  await lab.link("client", "eth0", "director", "up0");
  await lab.addAddress("client", "eth0", `${s.clientAddr}/24`);
  await lab.defaultRoute("client", s.directorAddr);
  await lab.addAddress("director", "up0", `${s.directorAddr}/24`);

  await lab.link("director", "in0", "router", "dir0");
  await lab.addAddress("director", "in0", `${s.directorInside}/24`);
  await lab.addAddress("router", "dir0", `${s.routerInside}/24`);

  const reals: RealServerHost[] = [];
  for (const real of s.reals) {
    const net = real.addr.replace(/\.\d+$/, ".0/24");
    await lab.link(real.name, "eth0", "router", real.name);
    await lab.addAddress("router", real.name, `${real.gateway}/24`);
    await lab.addAddress(real.name, "eth0", `${real.addr}/24`);
    await lab.defaultRoute(real.name, real.gateway);
    await lab.ip("director", "route", "add", net, "via", s.routerInside);
    reals.push({ name: real.name, ns: lab.nsName(real.name), addr: real.addr });
  }
  return { vip: s.vip, clientAddr: s.clientAddr, localAddress: s.localAddress, reals };
}

/** Seed 001's DR addresses: one public VIP, reals with private addresses, a router in front. */
export const SEED001 = {
  vip: "172.10.0.9",
  clientAddr: "10.10.0.1",
  /** The router's side towards the client (eth0) and its two addresses on the segment (eth1). */
  routerOutside: "10.10.0.88",
  routerVipNet: "172.10.0.1",
  routerInside: "192.168.60.1",
  /** The director's DIP on the segment (eth0). */
  dip: "192.168.60.4",
  /** The director's interface on the segment: it answers ARP for the VIP there. */
  directorIf: "eth0",
  reals: [
    { name: "real1", addr: "192.168.60.8" },
    { name: "real2", addr: "192.168.60.9" },
  ],
} as const;

/** What {@linkcode buildSeed001} made. */
export interface Seed001 {
  vip: string;
  clientAddr: string;
  dip: string;
  directorIf: string;
  reals: RealServerHost[];
}

/**
 * Seed 001's DR topology: client (10.10.0.1/8) — router — one L2 segment (a bridge in the router
 * namespace, the router's eth1 with 172.10.0.1/16 and 192.168.60.1/24) holding the director
 * (192.168.60.4) and real1/real2 (192.168.60.8/.9). The reals carry the VIP on `lo` with
 * arp_ignore=1/arp_announce=2 and route everything via the router, so their replies go to the
 * client without the director. The director has no address in 172.10.0.0/16: the appliance
 * routes the VIP into its TUN and answers ARP for it on eth0 (`host.uplink: eth0`).
 */
export async function buildSeed001(lab: Lab): Promise<Seed001> {
  const s = SEED001;
  await addRoutedHosts(lab, ["client", "router", "director", ...s.reals.map((r) => r.name)]);

  await lab.link("client", "eth0", "router", "eth0");
  await lab.addAddress("client", "eth0", `${s.clientAddr}/8`);
  await lab.addAddress("router", "eth0", `${s.routerOutside}/8`);
  await lab.defaultRoute("client", s.routerOutside);

  await lab.bridge("router", "eth1");
  await lab.addAddress("router", "eth1", `${s.routerVipNet}/16`);
  await lab.addAddress("router", "eth1", `${s.routerInside}/24`);

  await lab.link("director", s.directorIf, "router", "p-dir");
  await lab.attach("router", "p-dir", "eth1");
  await lab.addAddress("director", s.directorIf, `${s.dip}/24`);
  // Only the director's own ICMP (frag-needed) goes back to clients; DR traffic never does.
  await lab.defaultRoute("director", s.routerInside);

  const reals: RealServerHost[] = [];
  for (const real of s.reals) {
    await lab.link(real.name, "eth0", "router", `p-${real.name}`);
    await lab.attach("router", `p-${real.name}`, "eth1");
    await lab.addAddress(real.name, "eth0", `${real.addr}/24`);
    await addVipOnLoopback(lab, real.name, s.vip);
    await lab.defaultRoute(real.name, s.routerInside);
    reals.push({ name: real.name, ns: lab.nsName(real.name), addr: real.addr });
  }
  return { vip: s.vip, clientAddr: s.clientAddr, dip: s.dip, directorIf: s.directorIf, reals };
}

/**
 * Seed 003's addresses (director and VIP in 10.0.2.0/24, reals .62 and .63), the reals moved
 * into subnets of their own behind a router: what a tunnel is for.
 */
export const SEED003 = {
  vip: "10.0.2.90",
  clientAddr: "10.0.1.100",
  routerClientSide: "10.0.1.1",
  routerDirectorSide: "10.0.2.1",
  directorAddr: "10.0.2.10",
  reals: [
    { name: "rs1", addr: "10.0.3.62", gateway: "10.0.3.1" },
    { name: "rs2", addr: "10.0.4.63", gateway: "10.0.4.1" },
  ],
} as const;

/** What {@linkcode buildSeed003Tunnel} made. */
export interface Seed003 {
  vip: string;
  clientAddr: string;
  directorAddr: string;
  reals: RealServerHost[];
  /** The reals' decapsulators, in `reals` order. */
  decaps: IpipDecap[];
}

/**
 * Seed 003 over IPIP: client (10.0.1.100) — router — director (10.0.2.10, VIP 10.0.2.90 on its
 * subnet) and rs1 (10.0.3.62), rs2 (10.0.4.63) in subnets of their own. The reals carry the VIP
 * on `lo` (ARP settings as seed 003's script), route everything via the router, and decapsulate
 * with the lab's IPIP helper (this kernel has no `tunl0`). The router does not filter by reverse
 * path: replies from the VIP arrive from the reals' subnets, not the VIP's.
 */
export async function buildSeed003Tunnel(lab: Lab): Promise<Seed003> {
  const s = SEED003;
  await addRoutedHosts(lab, ["client", "router", "director", ...s.reals.map((r) => r.name)]);
  await lab.sysctl("router", "net.ipv4.conf.all.rp_filter", 0);
  await lab.sysctl("router", "net.ipv4.conf.default.rp_filter", 0);

  await lab.link("client", "eth0", "router", "cl0");
  await lab.addAddress("client", "eth0", `${s.clientAddr}/24`);
  await lab.addAddress("router", "cl0", `${s.routerClientSide}/24`);
  await lab.defaultRoute("client", s.routerClientSide);

  await lab.link("director", "eth0", "router", "dir0");
  await lab.addAddress("director", "eth0", `${s.directorAddr}/24`);
  await lab.addAddress("router", "dir0", `${s.routerDirectorSide}/24`);
  await lab.defaultRoute("director", s.routerDirectorSide);

  const reals: RealServerHost[] = [];
  const decaps: IpipDecap[] = [];
  for (const real of s.reals) {
    await lab.link(real.name, "eth0", "router", real.name);
    await lab.addAddress("router", real.name, `${real.gateway}/24`);
    await lab.addAddress(real.name, "eth0", `${real.addr}/24`);
    await lab.defaultRoute(real.name, real.gateway);
    await addVipOnLoopback(lab, real.name, s.vip);
    // As for tunl0: inner packets come from clients routed via eth0.
    await lab.sysctl(real.name, "net.ipv4.conf.all.rp_filter", 0);
    decaps.push(await startIpipDecap(lab, real.name));
    reals.push({ name: real.name, ns: lab.nsName(real.name), addr: real.addr });
  }
  return { vip: s.vip, clientAddr: s.clientAddr, directorAddr: s.directorAddr, reals, decaps };
}
