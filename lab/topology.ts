/**
 * Topologies replaying the seed tutorials inside network namespaces.
 */
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
  const roles = ["client", "director", "router", ...s.reals.map((r) => r.name)];
  for (const role of roles) {
    await lab.addNamespace(role);
    await lab.sysctl(role, "net.ipv6.conf.all.disable_ipv6", 1);
    await lab.sysctl(role, "net.ipv6.conf.default.disable_ipv6", 1);
  }
  await lab.sysctl("director", "net.ipv4.ip_forward", 0);
  await lab.sysctl("router", "net.ipv4.ip_forward", 1);

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
