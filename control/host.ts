/**
 * Host integration: brings the TUN up and steers traffic into it — VIP routes,
 * proxy ARP on the uplink, a policy rule for replies from the real servers,
 * forwarding — recording every change so that `undo` puts the host back.
 */
import { announce } from "./arp.ts";
import { log } from "./log.ts";

/** Routing table and rule priority tunvs uses for replies from the real-server side. */
export const REPLY_TABLE = 30326;
/** Priority of the policy rule; after the local table (0), so the host's own addresses stay local. */
export const REPLY_RULE_PRIORITY = 30326;

/** Why the host could not be set up. */
export class HostError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "HostError";
  }
}

/** What the host integration needs to know. */
export interface HostPlan {
  tun: string;
  vips: string[];
  /** Real servers whose replies must come back through the TUN (NAT). */
  /** Each with the source ports its replies come from: `[lo, hi]` ranges. */
  natReals: { address: string; ports: [number, number][]; protocol: "tcp" | "udp" }[];
  uplink?: string;
  realside?: string;
  /** FULLNAT local addresses: routed into the TUN and answered for like VIPs. */
  localAddresses?: string[];
}

/** An IPv4 address configured on an interface of this host. */
export interface LocalAddress {
  ifname: string;
  address: string;
  prefixlen: number;
}

/** Runs `ip ARGS…` and returns its stdout; throws HostError with ip's own message on failure. */
export async function ip(args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new HostError(`ip ${args.join(" ")}: ${err || `exit ${out.code}`}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** The IPv4 addresses configured on this host's interfaces. */
export async function localAddresses(): Promise<LocalAddress[]> {
  const links = JSON.parse(await ip(["-j", "-4", "addr", "show"])) as {
    ifname: string;
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  return links.flatMap((l) =>
    (l.addr_info ?? []).map((a) => ({
      ifname: l.ifname,
      address: a.local,
      prefixlen: a.prefixlen,
    }))
  );
}

function toU32(a: string): number {
  return a.split(".").reduce((acc, p) => (acc * 256) + Number(p), 0);
}

/** Whether `addr` lies in `net`/`prefixlen`. */
export function inSubnet(addr: string, net: string, prefixlen: number): boolean {
  if (prefixlen === 0) return true;
  const mask = prefixlen >= 32 ? 0xffffffff : (~((1 << (32 - prefixlen)) - 1)) >>> 0;
  return ((toU32(addr) & mask) >>> 0) === ((toU32(net) & mask) >>> 0);
}

/** The interface the host would use to reach `addr`. */
export async function routeDevice(addr: string): Promise<string> {
  const routes = JSON.parse(await ip(["-j", "route", "get", addr])) as { dev?: string }[];
  const dev = routes[0]?.dev;
  if (!dev) throw new HostError(`no route to ${addr}`);
  return dev;
}

// Keys are paths under /proc/sys ("net/ipv4/conf/eth0.100/rp_filter"): interface names may hold dots.
async function readSysctl(key: string): Promise<string> {
  return (await Deno.readTextFile(`/proc/sys/${key}`)).trim();
}

async function writeSysctl(key: string, value: string): Promise<void> {
  await Deno.writeTextFile(`/proc/sys/${key}`, value);
}

/** The host changes tunvs made, newest last, each with the step that reverts it. */
export class HostChanges {
  readonly #undo: { what: string; revert: () => Promise<unknown> }[] = [];

  /** What has been changed, oldest first. */
  get applied(): string[] {
    return this.#undo.map((u) => u.what);
  }

  /** Applies the plan: link up, sysctls, VIP routes, proxy ARP, reply rule. */
  async apply(plan: HostPlan): Promise<void> {
    const locals = await localAddresses();
    const steered = [
      ...plan.vips.map((address) => ({ address, what: "VIP" })),
      ...(plan.localAddresses ?? []).map((address) => ({
        address,
        what: "FULLNAT local address",
      })),
    ];
    for (const { address, what } of steered) {
      const own = locals.find((l) => l.address === address);
      if (own) {
        throw new HostError(
          `${what} ${address} is a local address of this host (on ${own.ifname}); ` +
            `the kernel would answer it itself. Remove it from ${own.ifname} ` +
            `(ip addr del ${address}/${own.prefixlen} dev ${own.ifname}) or choose another ${what}`,
        );
      }
    }
    await this.#removeStaleRules();

    await ip(["link", "set", plan.tun, "up"]);
    this.#record(`link ${plan.tun} up`, () => ip(["link", "set", plan.tun, "down"]));

    await this.#sysctl("net/ipv4/ip_forward", "1");
    await this.#disableReversePathFilter(plan.tun);
    // The director's own ICMP errors (e.g. fragmentation needed, sent from a local address
    // to the VIP) come back out of the TUN translated for a real: accept local sources there.
    await this.#sysctl(`net/ipv4/conf/${plan.tun}/accept_local`, "1");

    for (const { address: vip, what } of steered) {
      await ip(["route", "replace", `${vip}/32`, "dev", plan.tun]);
      this.#record(
        `route ${vip} dev ${plan.tun}`,
        () => ip(["route", "del", `${vip}/32`, "dev", plan.tun]).catch(() => {}),
      );
      // The uplink setting names where clients are; local addresses face the reals.
      const uplink = (what === "VIP" ? plan.uplink : undefined) ??
        locals.find((l) => l.ifname !== plan.tun && inSubnet(vip, l.address, l.prefixlen))
          ?.ifname;
      if (uplink === undefined) {
        log(`${what} is on no connected subnet; a router must route it to this host`, {
          address: vip,
        });
        continue;
      }
      // Answer ARP at once instead of after the default random proxy delay.
      await this.#sysctl(`net/ipv4/neigh/${uplink}/proxy_delay`, "0");
      await ip(["neigh", "replace", "proxy", vip, "dev", uplink]);
      this.#record(
        `proxy arp ${vip} dev ${uplink}`,
        () => ip(["neigh", "del", "proxy", vip, "dev", uplink]).catch(() => {}),
      );
      await announce(uplink, vip).catch((err) =>
        log("gratuitous ARP failed", { vip, uplink, error: err.message })
      );
    }

    // Only the reals' replies enter the TUN: a rule per real address, protocol and source
    // port. A rule on the interface alone would also steer the reverse-path lookups of
    // traffic towards the reals, and strict rp_filter on the uplink would then drop it.
    const rules: string[][] = [];
    for (const real of plan.natReals) {
      const dev = plan.realside ?? await routeDevice(real.address);
      if (dev === plan.tun || dev === "lo") continue;
      for (const [lo, hi] of real.ports) {
        const rule = [
          "iif",
          dev,
          "from",
          `${real.address}/32`,
          "ipproto",
          real.protocol,
          "sport",
          lo === hi ? String(lo) : `${lo}-${hi}`,
          "lookup",
          String(REPLY_TABLE),
          "pref",
          String(REPLY_RULE_PRIORITY),
        ];
        if (!rules.some((r) => r.join(" ") === rule.join(" "))) rules.push(rule);
      }
      // ICMP errors from a real about a client's packet (port unreachable, fragmentation
      // needed) must be translated too, so they come back from the VIP.
      const icmp = [
        "iif",
        dev,
        "from",
        `${real.address}/32`,
        "ipproto",
        "icmp",
        "lookup",
        String(REPLY_TABLE),
        "pref",
        String(REPLY_RULE_PRIORITY),
      ];
      if (!rules.some((r) => r.join(" ") === icmp.join(" "))) rules.push(icmp);
    }
    if (rules.length > 0) {
      await ip(["route", "replace", "default", "dev", plan.tun, "table", String(REPLY_TABLE)]);
      this.#record(
        `default dev ${plan.tun} table ${REPLY_TABLE}`,
        () => ip(["route", "flush", "table", String(REPLY_TABLE)]).catch(() => {}),
      );
    }
    for (const rule of rules) {
      await ip(["rule", "add", ...rule]);
      this.#record(`rule ${rule.join(" ")}`, () => ip(["rule", "del", ...rule]).catch(() => {}));
    }
  }

  /** Reverts every recorded change, newest first; never throws. */
  async undo(): Promise<void> {
    while (this.#undo.length > 0) {
      const step = this.#undo.pop()!;
      try {
        await step.revert();
      } catch (err) {
        log("could not revert host change", { change: step.what, error: String(err) });
      }
    }
  }

  async #sysctl(key: string, value: string): Promise<void> {
    const old = await readSysctl(key);
    if (old === value) return;
    await writeSysctl(key, value);
    this.#record(`sysctl ${key}=${value} (was ${old})`, () => writeSysctl(key, old));
  }

  /**
   * Packets written back into the TUN carry sources routed via other
   * interfaces, and a TUN without an address fails even loose reverse-path
   * checks, so filtering is turned off for the TUN. The kernel applies
   * max(all, interface): when `all` is set, it is cleared and every other
   * interface keeps its effective value by getting it set on itself.
   */
  async #disableReversePathFilter(tun: string): Promise<void> {
    await this.#sysctl(`net/ipv4/conf/${tun}/rp_filter`, "0");
    const all = Number(await readSysctl("net/ipv4/conf/all/rp_filter"));
    if (all === 0) return;
    for await (const entry of Deno.readDir("/proc/sys/net/ipv4/conf")) {
      if (["all", "default", tun].includes(entry.name)) continue;
      const key = `net/ipv4/conf/${entry.name}/rp_filter`;
      const own = Number(await readSysctl(key));
      if (own < all) await this.#sysctl(key, String(all));
    }
    await this.#sysctl("net/ipv4/conf/all/rp_filter", "0");
  }

  #record(what: string, revert: () => Promise<unknown>): void {
    this.#undo.push({ what, revert });
  }

  /** Removes reply rules left by a tunvs that was killed before it could clean up. */
  async #removeStaleRules(): Promise<void> {
    const rules = JSON.parse(await ip(["-j", "rule", "show"])) as {
      priority: number;
      table?: string;
    }[];
    for (const r of rules) {
      if (r.priority === REPLY_RULE_PRIORITY && r.table === String(REPLY_TABLE)) {
        log("removing a reply rule left by an earlier run", { priority: r.priority });
        await ip([
          "rule",
          "del",
          "pref",
          String(REPLY_RULE_PRIORITY),
          "table",
          String(REPLY_TABLE),
        ]);
      }
    }
  }
}
