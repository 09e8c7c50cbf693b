/**
 * How services and reals look in the admin API's answers: the configuration together with the
 * dataplane's live counters.
 *
 * @module
 */
import { FORWARD_METHODS } from "../dataplane/service.ts";
import type { RealStats } from "../dataplane/stats/requests.ts";
import { parseIpv4Address } from "../dataplane/wire/ipv4.ts";
import type { ServiceConfig } from "./config.ts";

/**
 * One real of `svc` with its live counters. `live` absent: not in the running dataplane (health
 * took it out) when `scheduled` is false, else not known (zeros and the configured weight).
 */
function realView(
  svc: ServiceConfig,
  index: number,
  live: RealStats | undefined,
  scheduled = true,
) {
  const r = svc.reals[index];
  return {
    address: r.address,
    port: r.port,
    weight: live?.weight ?? (r.drain === true || !scheduled ? 0 : r.weight),
    scheduled,
    configuredWeight: r.weight,
    drained: r.drain === true,
    forward: FORWARD_METHODS[svc.forward],
    activeConns: live?.activeConns ?? 0,
    inactiveConns: live?.inactiveConns ?? 0,
    connections: live?.connections ?? 0,
    inPackets: live?.inPackets ?? 0,
    inBytes: live?.inBytes ?? 0,
    outPackets: live?.outPackets ?? 0,
    outBytes: live?.outBytes ?? 0,
    persistConns: live?.persistConns ?? 0,
    upperThreshold: r.upperThreshold,
    lowerThreshold: r.lowerThreshold,
  };
}

/**
 * One service with its reals. The dataplane lists a service's reals by their place in the
 * running spec, which may differ from the configuration's (a failed real is left out), so reals
 * are matched by address and port.
 */
export function serviceView(svc: ServiceConfig, live: { reals: RealStats[] } | undefined) {
  return {
    name: svc.name,
    protocol: svc.protocol,
    vip: svc.vip,
    port: svc.port,
    // A firewall-mark service: its mark (ipvsadm lists it as `FWM  N`) and the VIPs it lists.
    ...(svc.fwmark === undefined ? {} : { fwmark: svc.fwmark, vips: svc.vips ?? [] }),
    scheduler: svc.scheduler,
    forward: svc.forward,
    // What ipvsadm's listings and -S show besides the reals.
    ports: svc.ports ?? null,
    persistence: svc.persistence ?? null,
    onePacket: svc.onePacket === true,
    schedulerFlags: svc.schedulerFlags,
    localAddresses: svc.localAddresses,
    reals: svc.reals.map((r, i) => {
      const addr = parseIpv4Address(r.address);
      const found = live?.reals.find((l) => l.address === addr && l.port === r.port);
      // The dataplane runs this service without this real: health checks took it out.
      return realView(svc, i, found, live === undefined || found !== undefined);
    }),
  };
}
