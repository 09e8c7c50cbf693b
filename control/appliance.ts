/**
 * `tunvs run`: loads the configuration, opens the TUN, sets up the host,
 * starts the dataplane and the admin endpoint, and undoes it all on
 * SIGINT/SIGTERM or on a fatal error.
 */
import { TunDevice } from "../dataplane/tun.ts";
import { createAdminApp } from "./api.ts";
import { type ApplianceConfig, loadConfig } from "./config.ts";
import { DataplaneHandle } from "./dataplane_handle.ts";
import { compileDataplaneSpec } from "./dataplane_spec.ts";
import {
  LinkRefresher,
  linkRefreshMs,
  logLinks,
  resolveLinks,
  withLinks,
} from "./forward_links.ts";
import { HostChanges, type HostPlan } from "./host.ts";
import { log } from "./log.ts";
import { hostChangesNeeded, hostPlan, ReloadError, type ReloadResult } from "./reload.ts";

/** Runs the appliance in the foreground until a signal or a fatal error; returns the exit code. */
export async function runAppliance(configPath: string): Promise<number> {
  let config = await loadConfig(configPath);
  const spec = compileDataplaneSpec(config);
  const hostPlans: HostPlan[] = [];
  const host = new HostChanges();
  let tun: TunDevice | null = null;
  let dataplane: DataplaneHandle | null = null;
  let server: Deno.HttpServer | null = null;
  let links: LinkRefresher | null = null;

  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => finish = resolve);
  let stopping = false;
  const stop = (code: number, reason: string, fields: Record<string, string> = {}) => {
    if (stopping) return;
    stopping = true;
    log(code === 0 ? "stopping" : "fatal error, stopping", { reason, ...fields });
    finish(code);
  };
  const onSignal = (sig: Deno.Signal) => () => stop(0, sig);

  // Reloads run one at a time, each against the configuration the previous one left.
  let reloads: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const next = reloads.then(work);
    reloads = next.catch(() => {});
    return next;
  };
  /** Makes `next` the running configuration without dropping established connections. */
  const applyConfig = async (next: ApplianceConfig, cut: boolean): Promise<ReloadResult> => {
    if (dataplane === null || tun === null || stopping) {
      throw new ReloadError("the dataplane is not running");
    }
    const needs = hostChangesNeeded(hostPlans, hostPlan(next));
    if (needs.length > 0) {
      throw new ReloadError(
        `this change needs host changes a reload does not make yet (restart tunvs to apply ` +
          `it): ${needs.join("; ")}`,
      );
    }
    let nextSpec;
    try {
      nextSpec = compileDataplaneSpec(next);
    } catch (err) {
      throw new ReloadError((err as Error).message);
    }
    const resolved = await resolveLinks(nextSpec, tun.name);
    const nextLinked = withLinks(nextSpec, resolved);
    let applied;
    try {
      applied = await dataplane.apply(nextLinked, cut);
    } catch (err) {
      throw new ReloadError((err as Error).message);
    }
    config = next;
    links?.stop();
    links = new LinkRefresher(
      nextLinked,
      tun.name,
      resolved,
      (l) => dataplane?.updateLinks(l),
      linkRefreshMs(),
    );
    links.start();
    const result: ReloadResult = {
      dataplane: applied,
      services: next.services.length,
      reals: next.services.reduce((n, s) => n + s.reals.length, 0),
      cut,
    };
    log("configuration applied", {
      services: String(result.services),
      reals: String(result.reals),
      remapped: String(applied.connections.remapped),
      cut: String(applied.connections.cut),
      ms: applied.ms.toFixed(1),
      ...(applied.warnings.length > 0 ? { warnings: applied.warnings.join("; ") } : {}),
    });
    return result;
  };
  /** Re-reads the configuration file and applies it (SIGHUP, POST /api/v1/config/reload). */
  const reload = (cut: boolean): Promise<ReloadResult> =>
    serialized(async () => {
      let next: ApplianceConfig;
      try {
        next = await loadConfig(configPath);
      } catch (err) {
        throw new ReloadError((err as Error).message);
      }
      return await applyConfig(next, cut);
    });
  /** Changes one real's weight in the running configuration (in memory only). */
  const setWeight = (service: string, address: string, port: number, weight: number) =>
    serialized(() => {
      const next = structuredClone(config);
      const real = next.services.find((s) => s.name === service)?.reals.find((r) =>
        r.address === address && r.port === port
      );
      if (real === undefined) {
        return Promise.reject(new ReloadError(`no such real: ${service} ${address}:${port}`));
      }
      real.weight = weight;
      return applyConfig(next, false);
    });
  const onHangup = () => {
    log("reloading configuration", { reason: "SIGHUP", file: configPath });
    reload(false).catch((err) =>
      log("reload failed, running configuration kept", { error: (err as Error).message })
    );
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
    ["SIGHUP", onHangup],
  ];
  for (const [sig, fn] of signals) Deno.addSignalListener(sig, fn);
  const onRejection = (ev: PromiseRejectionEvent) => {
    ev.preventDefault();
    stop(1, "unhandled error", { error: String(ev.reason?.message ?? ev.reason) });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);

  let code: number;
  try {
    tun = TunDevice.open(config.dataplane.tun);
    log("tun device created", { name: tun.name });
    // Tunnel and DR reals are resolved before the host changes: one that cannot be reached
    // stops the start with nothing to undo.
    const resolved = await resolveLinks(spec, tun.name);
    logLinks(spec, resolved);
    const linked = withLinks(spec, resolved);
    hostPlans.push(hostPlan(config));
    await host.apply(hostPlans[0]);
    for (const change of host.applied) log("host changed", { change });
    dataplane = await DataplaneHandle.start(
      tun.fd,
      tun.name,
      linked,
      (message) => stop(1, "dataplane failed", { error: message }),
    );
    links = new LinkRefresher(
      linked,
      tun.name,
      resolved,
      (l) => dataplane?.updateLinks(l),
      linkRefreshMs(),
    );
    links.start();
    const app = createAdminApp({
      config: () => config,
      request: (name, params) => dataplane!.request(name, params),
      reload: (cut) => reload(cut),
      setWeight,
    });
    server = Deno.serve({
      hostname: config.admin.host,
      port: config.admin.port,
      onListen: ({ hostname, port }) => log("admin endpoint listening", { hostname, port }),
    }, app.fetch);
    log("ready", {
      services: config.services.length,
      reals: config.services.reduce((n, s) => n + s.reals.length, 0),
    });
    code = await finished;
  } catch (err) {
    stop(1, "startup failed", { error: (err as Error).message });
    code = 1;
  }

  links?.stop();
  await server?.shutdown().catch(() => {});
  await dataplane?.stop();
  await host.undo();
  tun?.close();
  for (const [sig, fn] of signals) Deno.removeSignalListener(sig, fn);
  globalThis.removeEventListener("unhandledrejection", onRejection);
  log("stopped; host changes undone", { exit: code });
  return code;
}
