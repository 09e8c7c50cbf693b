/**
 * Compiles the operator's configuration into the dataplane's specification:
 * addresses as numbers, protocols as IP protocol numbers.
 */
import type { DataplaneSpec, PortRange } from "../dataplane/service.ts";
import { parseIpv4Address, PROTO_TCP, PROTO_UDP } from "../dataplane/wire/ipv4.ts";
import type { ApplianceConfig } from "./config.ts";

/** Connections one worker can track (the table's memory is committed as it fills). */
export const DEFAULT_MAX_CONNECTIONS = 1 << 20;

function addr(s: string): number {
  const n = parseIpv4Address(s);
  // The configuration was validated; a bad address here is a programming error.
  if (n === null) throw new Error(`unvalidated address ${s}`);
  return n;
}

/** Turns a validated configuration into what the dataplane runs. */
export function compileDataplaneSpec(config: ApplianceConfig): DataplaneSpec {
  return {
    timeouts: { ...config.timeouts },
    maxConnections: DEFAULT_MAX_CONNECTIONS,
    ...(config.synproxy === undefined ? {} : {
      synproxy: { mss: config.synproxy.mss, keyRotationSeconds: config.synproxy.keyRotation },
    }),
    services: config.services.map((s) => ({
      name: s.name,
      // A firewall-mark service takes every marked packet: no protocol, VIP or port of its own.
      protocol: s.fwmark !== undefined ? 0 : s.protocol === "tcp" ? PROTO_TCP : PROTO_UDP,
      vip: s.fwmark !== undefined ? 0 : addr(s.vip),
      port: s.port,
      ...(s.fwmark === undefined ? {} : { fwmark: s.fwmark, vips: (s.vips ?? []).map(addr) }),
      ...(s.ports === undefined ? {} : { ports: s.ports.map(([a, b]): PortRange => [a, b]) }),
      ...(s.persistence === undefined ? {} : {
        persistence: {
          timeoutMs: s.persistence.timeout * 1000,
          netmask: addr(s.persistence.netmask),
        },
      }),
      ...(s.onePacket === true ? { onePacket: true } : {}),
      scheduler: s.scheduler,
      schedulerFlags: {
        port: s.schedulerFlags.some((f) => f.endsWith("-port")),
        fallback: s.schedulerFlags.some((f) => f.endsWith("-fallback")),
      },
      forward: s.forward,
      localAddresses: s.localAddresses.map(addr),
      ...(s.toa === true ? { toa: true } : {}),
      ...(s.synproxy === true ? { synproxy: true } : {}),
      reals: s.reals.map((r) => ({
        addr: addr(r.address),
        port: r.port,
        // A drained real takes no new connections; its own weight returns with restore.
        weight: r.drain === true ? 0 : r.weight,
        upperThreshold: r.upperThreshold,
        lowerThreshold: r.lowerThreshold,
      })),
    })),
  };
}
