/**
 * Applying a configuration to a running appliance, on the control side: the host plan a
 * configuration needs, and what the operator sees of an applied change.
 *
 * @module
 */
import type { ApplyResult } from "../dataplane/apply.ts";
import { type ApplianceConfig, realReplyPorts } from "./config.ts";
import type { HostPlan } from "./host.ts";
import type { MarkTun } from "./mark_devices.ts";

/** A change that was not applied: the running configuration is unchanged. */
export class ReloadError extends Error {}

/** What applying a configuration did. */
export interface ReloadResult {
  /** What the dataplane did with the new spec. */
  dataplane: ApplyResult;
  /** Services and reals in the configuration now in force. */
  services: number;
  reals: number;
  /** Whether connections of removed reals were cut (else they drain). */
  cut: boolean;
}

/**
 * The host integration `config` needs, with the devices of its firewall marks (`markTuns`).
 * Sorry servers of NAT services count as NAT reals from the start, so that failing over to one
 * needs no host change. A firewall-mark service's reals answer over TCP and UDP alike, and its
 * VIPs are the ones it lists.
 */
export function hostPlan(config: ApplianceConfig, markTuns: MarkTun[] = []): HostPlan {
  const natReals: HostPlan["natReals"] = [];
  for (const s of config.services) {
    if (s.forward !== "nat") continue;
    const protocols = s.fwmark === undefined ? [s.protocol] : ["tcp", "udp"] as const;
    for (const r of [...s.reals, ...(s.sorryServer === undefined ? [] : [s.sorryServer])]) {
      for (const protocol of protocols) {
        natReals.push({ address: r.address, ports: realReplyPorts(s, r.port), protocol });
      }
    }
  }
  return {
    tun: config.dataplane.tun,
    vips: [
      ...new Set(config.services.flatMap((s) => s.fwmark === undefined ? [s.vip] : s.vips ?? [])),
    ],
    ...(markTuns.length === 0 ? {} : { markTuns }),
    natReals,
    uplink: config.host.uplink,
    realside: config.host.realside,
    localAddresses: [...new Set(config.services.flatMap((s) => s.localAddresses))],
  };
}
