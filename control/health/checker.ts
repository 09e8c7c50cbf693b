/** Picks the checker a health-check config names and binds its settings. */
import { execCheck } from "./exec.ts";
import { httpCheck } from "./http.ts";
import { noneCheck } from "./none.ts";
import { tcpCheck } from "./tcp.ts";
import {
  type CheckResult,
  type CheckTarget,
  HEALTH_CHECK_DEFAULTS,
  type HealthCheckConfig,
} from "./types.ts";
import { udpCheck } from "./udp.ts";

/** One check attempt against a target, ending by the time `signal` aborts. */
export type Checker = (target: CheckTarget, signal: AbortSignal) => Promise<CheckResult>;

/** The checker for `config`: its type with its settings (defaults when the block is absent). */
export function checkerFor(config: HealthCheckConfig): Checker {
  switch (config.type) {
    case "tcp":
      return tcpCheck;
    case "http":
    case "https": {
      const settings = config.http ??
        {
          ...HEALTH_CHECK_DEFAULTS.http,
          status: [...HEALTH_CHECK_DEFAULTS.http.status],
          digest: null,
          substring: null,
          host: null,
        };
      const tls = config.type === "https";
      return (target, signal) => httpCheck(target, settings, tls, signal);
    }
    case "udp": {
      const settings = config.udp ?? { payload: "", expect: null };
      return (target, signal) => udpCheck(target, settings, signal);
    }
    case "exec": {
      const settings = config.exec;
      if (settings === undefined) throw new Error("exec health check without exec settings");
      return (target, signal) => execCheck(target, settings, signal);
    }
    case "none":
      return noneCheck;
  }
}
