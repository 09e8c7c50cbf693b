/**
 * Hot reload on the control side: the host plan a configuration needs, what a reload would have
 * to change on the host, and the result the operator sees.
 *
 * For now a reload only uses host state already in place: VIPs, NAT reply rules and FULLNAT
 * local addresses set up at start (or by an earlier configuration) stay until exit, so removing
 * a VIP or real needs nothing, and re-adding one the host already serves works; anything new
 * (a new VIP, NAT real, local address, other interfaces) is refused with a message that says a
 * restart applies it.
 *
 * @module
 */
import type { ApplyResult } from "../dataplane/apply.ts";
import { type ApplianceConfig, realReplyPorts } from "./config.ts";
import type { HostPlan } from "./host.ts";

/** A reload that did not happen: the running configuration is unchanged. */
export class ReloadError extends Error {}

/** What a reload did. */
export interface ReloadResult {
  /** What the dataplane did with the new spec. */
  dataplane: ApplyResult;
  /** Services and reals in the configuration now in force. */
  services: number;
  reals: number;
  /** Whether connections of removed reals were cut (else they drain). */
  cut: boolean;
}

/** The host integration `config` needs. */
export function hostPlan(config: ApplianceConfig): HostPlan {
  return {
    tun: config.dataplane.tun,
    vips: [...new Set(config.services.map((s) => s.vip))],
    natReals: config.services.filter((s) => s.forward === "nat").flatMap((s) =>
      s.reals.map((r) => ({
        address: r.address,
        ports: realReplyPorts(s, r),
        protocol: s.protocol,
      }))
    ),
    uplink: config.host.uplink,
    realside: config.host.realside,
    localAddresses: [...new Set(config.services.flatMap((s) => s.localAddresses))],
  };
}

/** One NAT reply rule a plan needs, as a comparable string. */
function replyRules(plan: HostPlan): Set<string> {
  const rules = new Set<string>();
  for (const r of plan.natReals) {
    for (const [lo, hi] of r.ports) rules.add(`${r.protocol} from ${r.address} sport ${lo}-${hi}`);
  }
  return rules;
}

/**
 * What `next` needs from the host that `applied` (everything set up so far) lacks, in words;
 * empty when a reload can do without host changes.
 */
export function hostChangesNeeded(applied: HostPlan[], next: HostPlan): string[] {
  const needs: string[] = [];
  const first = applied[0];
  if (first !== undefined) {
    if (next.tun !== first.tun) needs.push(`tun device ${next.tun} (running ${first.tun})`);
    if (next.uplink !== first.uplink) needs.push(`uplink ${next.uplink ?? "(auto)"}`);
    if (next.realside !== first.realside) needs.push(`realside ${next.realside ?? "(auto)"}`);
  }
  const vips = new Set(applied.flatMap((p) => p.vips));
  for (const vip of next.vips) if (!vips.has(vip)) needs.push(`new VIP ${vip}`);
  const rules = new Set(applied.flatMap((p) => [...replyRules(p)]));
  for (const rule of replyRules(next)) if (!rules.has(rule)) needs.push(`NAT reply rule ${rule}`);
  const locals = new Set(applied.flatMap((p) => p.localAddresses ?? []));
  for (const a of next.localAddresses ?? []) {
    if (!locals.has(a)) needs.push(`new local address ${a}`);
  }
  return needs;
}
