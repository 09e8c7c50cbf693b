/**
 * Host integration: brings the TUN up and steers traffic into it — VIP routes,
 * proxy ARP on the uplink, a policy rule for replies from the real servers,
 * forwarding — recording every change so that `undo` puts the host back.
 */
import { announce } from "./arp.ts";
import { log } from "./log.ts";
import type { MarkTun } from "./mark_devices.ts";

/** Routing table and rule priority tunvs uses for replies from the real-server side. */
export const REPLY_TABLE = 30326;
/** Priority of the policy rule; after the local table (0), so the host's own addresses stay local. */
export const REPLY_RULE_PRIORITY = 30326;
/** Priority of the `fwmark N lookup TABLE` rules of firewall-mark services: before the main table. */
export const MARK_RULE_PRIORITY = 30325;
/**
 * Priority of the `iif TUN lookup main` rules that go with them: what tunvs writes into its
 * devices (a NAT request now for a real) is routed by the main table even when a broad mark
 * rule marks it again, so it cannot loop back into a mark's device.
 */
export const MARK_GUARD_PRIORITY = 30324;

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
  /** Firewall-mark services' devices: each gets its mark's packets through its own table. */
  markTuns?: MarkTun[];
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

/** One piece of host state a plan needs, with how to make and unmake it. */
interface HostItem {
  what: string;
  make: () => Promise<unknown>;
  revert: () => Promise<unknown>;
}

/**
 * The host changes tunvs made, each with the step that reverts it. Settings the appliance needs
 * whatever it serves (link up, forwarding, the TUN's sysctls) are made once by `apply`; the
 * per-address state (VIP routes, proxy ARP, reply rules) follows the configuration through
 * `sync`, which adds what a new plan needs and removes what it no longer does.
 */
export class HostChanges {
  readonly #undo: { what: string; revert: () => Promise<unknown> }[] = [];
  readonly #items = new Map<string, HostItem>();
  #base: HostPlan | null = null;

  /** What has been changed, oldest first. */
  get applied(): string[] {
    return [...this.#undo.map((u) => u.what), ...[...this.#items.values()].map((i) => i.what)];
  }

  /** Applies the plan: link up, sysctls, then everything `sync` makes. */
  async apply(plan: HostPlan): Promise<void> {
    await this.#checkAddresses(plan);
    await this.#removeStaleRules();

    await ip(["link", "set", plan.tun, "up"]);
    this.#record(`link ${plan.tun} up`, () => ip(["link", "set", plan.tun, "down"]));

    await this.#sysctl("net/ipv4/ip_forward", "1");
    await this.#disableReversePathFilter(plan.tun);
    // The director's own ICMP errors (e.g. fragmentation needed, sent from a local address
    // to the VIP) come back out of the TUN translated for a real: accept local sources there.
    await this.#sysctl(`net/ipv4/conf/${plan.tun}/accept_local`, "1");
    this.#base = plan;
    await this.sync(plan);
  }

  /**
   * Brings the per-address state in line with `plan`: new VIPs and local addresses are routed
   * and announced, NAT reals get reply rules; what `plan` lacks is removed. The TUN and the
   * interfaces must be the ones `apply` was given (a restart changes those).
   */
  async sync(plan: HostPlan): Promise<void> {
    const base = this.#base;
    if (base === null) throw new HostError("host changes were not applied yet");
    for (
      const [what, now, was] of [
        ["tun device", plan.tun, base.tun],
        ["uplink", plan.uplink, base.uplink],
        ["realside", plan.realside, base.realside],
      ] as const
    ) {
      if (now !== was) {
        throw new HostError(
          `${what} ${now ?? "(auto)"} differs from the running ${was ?? "(auto)"}; ` +
            "restart tunvs to change it",
        );
      }
    }
    await this.#checkAddresses(plan);
    const wanted = await this.#itemsFor(plan);
    const removed = [...this.#items.keys()].filter((k) => !wanted.has(k)).reverse();
    for (const key of removed) {
      const item = this.#items.get(key)!;
      this.#items.delete(key);
      await item.revert().catch((err) =>
        log("could not remove host state", { change: item.what, error: String(err) })
      );
    }
    for (const [key, item] of wanted) {
      if (this.#items.has(key)) continue;
      await item.make();
      this.#items.set(key, item);
    }
  }

  /** The per-address state `plan` needs, in the order it must be made. */
  async #itemsFor(plan: HostPlan): Promise<Map<string, HostItem>> {
    const items = new Map<string, HostItem>();
    const locals = await localAddresses();
    for (const { address, what } of steeredAddresses(plan)) {
      items.set(`route ${address}`, {
        what: `route ${address} dev ${plan.tun}`,
        make: () => ip(["route", "replace", `${address}/32`, "dev", plan.tun]),
        revert: () => ip(["route", "del", `${address}/32`, "dev", plan.tun]).catch(() => {}),
      });
      // The uplink setting names where clients are; local addresses face the reals.
      const uplink = (what === "VIP" ? plan.uplink : undefined) ??
        locals.find((l) => l.ifname !== plan.tun && inSubnet(address, l.address, l.prefixlen))
          ?.ifname;
      if (uplink === undefined) {
        items.set(`unrouted ${address}`, {
          what: `${what} ${address} on no connected subnet`,
          make: () => {
            log(`${what} is on no connected subnet; a router must route it to this host`, {
              address,
            });
            return Promise.resolve();
          },
          revert: () => Promise.resolve(),
        });
        continue;
      }
      items.set(`proxy ${address} ${uplink}`, {
        what: `proxy arp ${address} dev ${uplink}`,
        make: async () => {
          // Answer ARP at once instead of after the default random proxy delay.
          await this.#sysctl(`net/ipv4/neigh/${uplink}/proxy_delay`, "0");
          await ip(["neigh", "replace", "proxy", address, "dev", uplink]);
          await announce(uplink, address).catch((err) =>
            log("gratuitous ARP failed", { address, uplink, error: err.message })
          );
        },
        revert: () => ip(["neigh", "del", "proxy", address, "dev", uplink]).catch(() => {}),
      });
    }

    for (const [key, item] of markItems(plan)) items.set(key, item);
    const rules = await replyRules(plan);
    if (rules.length > 0) {
      items.set("reply table", {
        what: `default dev ${plan.tun} table ${REPLY_TABLE}`,
        make: () =>
          ip(["route", "replace", "default", "dev", plan.tun, "table", String(REPLY_TABLE)]),
        revert: () => ip(["route", "flush", "table", String(REPLY_TABLE)]).catch(() => {}),
      });
    }
    for (const rule of rules) {
      items.set(`rule ${rule.join(" ")}`, {
        what: `rule ${rule.join(" ")}`,
        make: () => ip(["rule", "add", ...rule]),
        revert: () => ip(["rule", "del", ...rule]).catch(() => {}),
      });
    }
    return items;
  }

  /** Refuses VIPs and local addresses the host itself owns: the kernel would answer them. */
  async #checkAddresses(plan: HostPlan): Promise<void> {
    const locals = await localAddresses();
    for (const { address, what } of steeredAddresses(plan)) {
      const own = locals.find((l) => l.address === address);
      if (own) {
        throw new HostError(
          `${what} ${address} is a local address of this host (on ${own.ifname}); ` +
            `the kernel would answer it itself. Remove it from ${own.ifname} ` +
            `(ip addr del ${address}/${own.prefixlen} dev ${own.ifname}) or choose another ${what}`,
        );
      }
    }
  }

  /** Reverts every recorded change, newest first; never throws. */
  async undo(): Promise<void> {
    for (const item of [...this.#items.values()].reverse()) {
      try {
        await item.revert();
      } catch (err) {
        log("could not revert host change", { change: item.what, error: String(err) });
      }
    }
    this.#items.clear();
    this.#base = null;
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
      if (r.priority === MARK_RULE_PRIORITY || r.priority === MARK_GUARD_PRIORITY) {
        log("removing a firewall-mark rule left by an earlier run", { priority: r.priority });
        await ip(["rule", "del", "pref", String(r.priority)]);
        continue;
      }
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

/**
 * The state of the firewall-mark devices: each device up and open to any source (as the main
 * TUN), a table whose default route is the device, and the rule sending the mark there; while
 * any exists, the guard rules keep tunvs's own output out of the mark rules. The devices vanish
 * when closed, and with them their settings and routes.
 */
function markItems(plan: HostPlan): Map<string, HostItem> {
  const items = new Map<string, HostItem>();
  const marks = plan.markTuns ?? [];
  for (const m of marks) {
    const at = `mark ${m.mark} ${m.tun} ${m.table}`;
    items.set(`${at} link`, {
      what: `link ${m.tun} up, rp_filter=0, accept_local=1 (firewall mark ${m.mark})`,
      make: async () => {
        await ip(["link", "set", m.tun, "up"]);
        await writeSysctl(`net/ipv4/conf/${m.tun}/rp_filter`, "0");
        await writeSysctl(`net/ipv4/conf/${m.tun}/accept_local`, "1");
      },
      revert: () => Promise.resolve(),
    });
    items.set(`${at} table`, {
      what: `default dev ${m.tun} table ${m.table}`,
      make: () => ip(["route", "replace", "default", "dev", m.tun, "table", String(m.table)]),
      revert: () => ip(["route", "flush", "table", String(m.table)]).catch(() => {}),
    });
    const rule = [
      "fwmark",
      String(m.mark),
      "lookup",
      String(m.table),
      "pref",
      String(MARK_RULE_PRIORITY),
    ];
    items.set(`${at} rule`, {
      what: `rule ${rule.join(" ")}`,
      make: () => ip(["rule", "add", ...rule]),
      revert: () => ip(["rule", "del", ...rule]).catch(() => {}),
    });
  }
  const devices = marks.length === 0 ? [] : [plan.tun, ...marks.map((m) => m.tun)];
  for (const tun of devices) {
    const rule = ["iif", tun, "lookup", "main", "pref", String(MARK_GUARD_PRIORITY)];
    items.set(`mark guard ${tun}`, {
      what: `rule ${rule.join(" ")}`,
      make: () => ip(["rule", "add", ...rule]),
      revert: () => ip(["rule", "del", ...rule]).catch(() => {}),
    });
  }
  return items;
}

/** The addresses a plan routes into the TUN, with what they are. */
function steeredAddresses(plan: HostPlan): { address: string; what: string }[] {
  return [
    ...plan.vips.map((address) => ({ address, what: "VIP" })),
    ...(plan.localAddresses ?? []).map((address) => ({ address, what: "FULLNAT local address" })),
  ];
}

/**
 * The policy rules that steer NAT reals' replies into the TUN: one per real address, protocol
 * and source port range, plus one for the ICMP errors they send about clients' packets. A rule
 * on the interface alone would also steer the reverse-path lookups of traffic towards the reals,
 * and strict rp_filter on the uplink would then drop it.
 */
async function replyRules(plan: HostPlan): Promise<string[][]> {
  const rules: string[][] = [];
  const add = (rule: string[]) => {
    if (!rules.some((r) => r.join(" ") === rule.join(" "))) rules.push(rule);
  };
  const tail = ["lookup", String(REPLY_TABLE), "pref", String(REPLY_RULE_PRIORITY)];
  for (const real of plan.natReals) {
    const dev = plan.realside ?? await routeDevice(real.address);
    if (dev === plan.tun || dev === "lo") continue;
    for (const [lo, hi] of real.ports) {
      // Every port (a real that takes the client's port): no sport at all, which is also the
      // only way to say it, as the kernel refuses a range ending at 65535.
      const any = lo <= 1 && hi >= 65535;
      const sport = any ? [] : ["sport", lo === hi ? String(lo) : `${lo}-${hi}`];
      add(["iif", dev, "from", `${real.address}/32`, "ipproto", real.protocol, ...sport, ...tail]);
    }
    add(["iif", dev, "from", `${real.address}/32`, "ipproto", "icmp", ...tail]);
  }
  return rules;
}
