/**
 * What health does to a service's reals, as keepalived does it to IPVS (ipwrapper.c,
 * ipvswrapper.c): a down real leaves the service, or stays with weight 0 under
 * `inhibit_on_failure` (keepalived edits the destination to weight 0 instead of deleting it);
 * a dynamic exec check's weight replaces the configured one; while the service has lost its
 * quorum and has a sorry server, the live reals leave too (inhibited ones stay at weight 0)
 * and the sorry server alone takes new connections, with weight 1.
 */
import type { RealConfig, ServiceConfig } from "../config.ts";
import { DEFAULT_HYSTERESIS, DEFAULT_QUORUM, type QuorumSettings } from "./quorum.ts";

/** A real's health as the overlay needs it. */
export interface RealLiveness {
  up: boolean;
  /** The weight a dynamic check asked for; absent: the configured weight. */
  weight?: number;
}

/** Looks up a real's liveness; reals health does not know are up. */
export type LivenessOf = (real: RealConfig) => RealLiveness;

/** A service's quorum settings, keepalived's defaults filled in. */
export function quorumSettings(svc: ServiceConfig): QuorumSettings {
  return {
    quorum: svc.quorum ?? DEFAULT_QUORUM,
    hysteresis: svc.hysteresis ?? DEFAULT_HYSTERESIS,
  };
}

/** Whether a failed real stays with weight 0: its own setting, else its service's. */
export function inhibitsOnFailure(svc: ServiceConfig, real: RealConfig): boolean {
  return real.inhibitOnFailure ?? svc.inhibitOnFailure === true;
}

/** The weight a real schedules with while up: the dynamic one, else the configured one. */
export function liveWeight(real: RealConfig, state: RealLiveness): number {
  if (!state.up || real.drain === true) return 0;
  return state.weight ?? real.weight;
}

/** keepalived's weigh_live_realservers: the sum of the weights of the live reals. */
export function serviceLiveWeight(svc: ServiceConfig, livenessOf: LivenessOf): number {
  let sum = 0;
  for (const real of svc.reals) sum += liveWeight(real, livenessOf(real));
  return sum;
}

/** The sorry server as a real: weight 1, no thresholds, no check. */
export function sorryReal(svc: ServiceConfig): RealConfig | null {
  const s = svc.sorryServer;
  if (s === undefined) return null;
  return { address: s.address, port: s.port, weight: 1, upperThreshold: 0, lowerThreshold: 0 };
}

/**
 * The reals `svc` runs with, given each real's liveness and whether the service holds its
 * quorum. New objects throughout; `svc` is not touched.
 */
export function overlayReals(
  svc: ServiceConfig,
  livenessOf: LivenessOf,
  quorumUp: boolean,
): RealConfig[] {
  const sorry = quorumUp ? null : sorryReal(svc);
  const out: RealConfig[] = [];
  for (const real of svc.reals) {
    if (sorry !== null && real.address === sorry.address && real.port === sorry.port) continue;
    const state = livenessOf(real);
    if (state.up && sorry === null) {
      out.push({ ...real, weight: state.weight ?? real.weight });
    } else if (inhibitsOnFailure(svc, real)) {
      out.push({ ...real, weight: 0 });
    }
  }
  if (sorry !== null) out.push(sorry);
  return out;
}
