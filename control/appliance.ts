/**
 * `tunvs run`: loads the configuration, opens the TUN, sets up the host,
 * starts the dataplane and the admin endpoint, and undoes it all on
 * SIGINT/SIGTERM or on a fatal error.
 */
import { TunDevice } from "../dataplane/tun.ts";
import { offloadNames } from "../dataplane/tun_offloads.ts";
import { type AdminServer, serveAdmin } from "./admin_server.ts";
import { createAdminApp } from "./api.ts";
import { type ApplianceConfig, dataplaneWorkers } from "./config.ts";
import { DataplaneHandle } from "./dataplane_handle.ts";
import { compileDataplaneSpec } from "./dataplane_spec.ts";
import {
  LinkRefresher,
  linkRefreshMs,
  logLinks,
  resolveLinks,
  withLinks,
} from "./forward_links.ts";
import { DropWatcher } from "./drop_watcher.ts";
import { EventBus } from "./events.ts";
import { HealthSupervisor } from "./health/supervisor.ts";
import { HostChanges } from "./host.ts";
import { log } from "./log.ts";
import { MarkDevices } from "./mark_devices.ts";
import { hostPlan, ReloadError, type ReloadResult } from "./reload.ts";
import { type ChangeOutcome, RunningConfig } from "./running_config.ts";

/** Runs the appliance in the foreground until a signal or a fatal error; returns the exit code. */
export async function runAppliance(configPath: string): Promise<number> {
  const running = await RunningConfig.load(configPath);
  const config = running.config;
  const host = new HostChanges();
  let tun: TunDevice | null = null;
  /** The firewall-mark services' devices, opened as configurations gain marks. */
  let marks: MarkDevices | null = null;
  let dataplane: DataplaneHandle | null = null;
  let server: AdminServer | null = null;
  let links: LinkRefresher | null = null;
  /** The configuration the host and dataplane run now. */
  let applied: ApplianceConfig = config;
  let ready = false;
  const events = new EventBus();
  let drops: DropWatcher | null = null;
  // Health-driven changes wait their turn behind configuration changes and merge while they
  // wait: ten reals failing at once make one apply.
  let reapplyPending: { reasons: string[]; cut: boolean } | null = null;
  const health = new HealthSupervisor({
    reapply: (reason, cut) => {
      if (reapplyPending !== null) {
        reapplyPending.reasons.push(reason);
        reapplyPending.cut ||= cut;
        return;
      }
      reapplyPending = { reasons: [reason], cut };
      running.exclusive(async () => {
        const pending = reapplyPending!;
        reapplyPending = null;
        if (dataplane === null || stopping) return;
        try {
          await applyConfig(running.config, pending.cut, false);
        } catch (err) {
          log("health change not applied", {
            reason: pending.reasons.join("; "),
            error: (err as Error).message,
          });
        }
      }).catch(() => {});
    },
    onEvent: (event) => events.publish("health", event),
  });

  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => finish = resolve);
  let stopping = false;
  const stop = (code: number, reason: string, fields: Record<string, string> = {}) => {
    if (stopping) return;
    stopping = true;
    ready = false;
    log(code === 0 ? "stopping" : "fatal error, stopping", { reason, ...fields });
    finish(code);
  };
  const onSignal = (sig: Deno.Signal) => () => stop(0, sig);

  /**
   * Makes the operator's configuration `next` run on the host and, with the reals' health laid
   * over it, in the dataplane, without dropping established connections; on any failure puts
   * the host and the health checks back and throws ReloadError. Callers hold
   * `running.exclusive`, so one change is applied at a time. `sync`: `next` is a new
   * configuration whose reals the health checks must follow.
   */
  const applyConfig = async (
    next: ApplianceConfig,
    cut: boolean,
    sync = true,
  ): Promise<ReloadResult> => {
    if (dataplane === null || tun === null || marks === null || stopping) {
      throw new ReloadError("the dataplane is not running");
    }
    const devices = marks;
    // The TUN was opened with or without offloads at start; that cannot change under it.
    if (next.dataplane.offloads !== applied.dataplane.offloads) {
      throw new ReloadError(
        `dataplane.offloads ${next.dataplane.offloads} differs from the running ` +
          `${applied.dataplane.offloads}; restart tunvs to change it`,
      );
    }
    if (dataplaneWorkers(next) !== dataplane.workers) {
      throw new ReloadError(
        `dataplane.workers ${dataplaneWorkers(next)} differs from the running ` +
          `${dataplane.workers}; restart tunvs to change it`,
      );
    }
    // The worker set its batch I/O up at start.
    if (next.dataplane.io !== applied.dataplane.io) {
      throw new ReloadError(
        `dataplane.io ${next.dataplane.io} differs from the running ` +
          `${applied.dataplane.io}; restart tunvs to change it`,
      );
    }
    if (sync) health.sync(next);
    const undoSync = () => {
      if (sync) health.sync(applied);
    };
    let nextSpec;
    try {
      nextSpec = compileDataplaneSpec(health.effective(next));
    } catch (err) {
      undoSync();
      throw new ReloadError((err as Error).message);
    }
    const resolved = await resolveLinks(nextSpec, tun.name).catch((err) => {
      undoSync();
      throw new ReloadError((err as Error).message);
    });
    const nextLinked = withLinks(nextSpec, resolved);
    // A new firewall mark gets its device before the host routes the mark into it.
    let opened: number[];
    try {
      opened = devices.openFor(next);
    } catch (err) {
      undoSync();
      throw new ReloadError((err as Error).message);
    }
    // The host follows the operator's configuration, not the health overlay: a failed real
    // keeps its reply rules while its connections drain.
    try {
      await host.sync(hostPlan(next, devices.planFor(next)));
    } catch (err) {
      await host.sync(hostPlan(applied, devices.planFor(applied))).catch(() => {});
      devices.discard(opened);
      undoSync();
      throw new ReloadError((err as Error).message);
    }
    let result;
    try {
      result = await dataplane.apply(nextLinked, cut);
    } catch (err) {
      await host.sync(hostPlan(applied, devices.planFor(applied))).catch(() => {});
      devices.discard(opened);
      undoSync();
      throw new ReloadError((err as Error).message);
    }
    // The worker reads the new marks' devices and closes those of removed marks.
    dataplane.setMarkDevices(devices.handOver(next));
    applied = next;
    links?.stop();
    links = new LinkRefresher(
      nextLinked,
      tun.name,
      resolved,
      (l) => dataplane?.updateLinks(l),
      linkRefreshMs(),
    );
    links.start();
    const outcome: ReloadResult = {
      dataplane: result,
      services: next.services.length,
      reals: next.services.reduce((n, s) => n + s.reals.length, 0),
      cut,
    };
    log("configuration applied", {
      services: String(outcome.services),
      reals: String(outcome.reals),
      remapped: String(result.connections.remapped),
      cut: String(result.connections.cut),
      ms: result.ms.toFixed(1),
      ...(result.warnings.length > 0 ? { warnings: result.warnings.join("; ") } : {}),
    });
    return outcome;
  };
  /** Re-reads the configuration file and applies it (SIGHUP, POST /api/v1/config/reload). */
  const reload = (cut: boolean): Promise<ChangeOutcome<ReloadResult>> =>
    reported("reload", running.reload((next) => applyConfig(next, cut)));
  /** Counts and announces a configuration change (or its failure) on the event stream. */
  const reloads = { successes: 0, failures: 0, lastSeconds: undefined as number | undefined };
  const reported = async (
    cause: string,
    change: Promise<ChangeOutcome<ReloadResult>>,
  ): Promise<ChangeOutcome<ReloadResult>> => {
    try {
      const outcome = await change;
      reloads.successes++;
      reloads.lastSeconds = Date.now() / 1000;
      if (outcome.version !== outcome.previousVersion) {
        events.publish("config", {
          cause,
          version: outcome.version,
          previousVersion: outcome.previousVersion,
          written: outcome.written,
          services: outcome.applied?.services,
          reals: outcome.applied?.reals,
        });
      }
      return outcome;
    } catch (err) {
      reloads.failures++;
      events.publish("config", { cause, failed: true, error: (err as Error).message });
      throw err;
    }
  };
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
    health.sync(config);
    const spec = compileDataplaneSpec(health.effective(config));
    const workers = dataplaneWorkers(config);
    tun = TunDevice.open(config.dataplane.tun, {
      offloads: config.dataplane.offloads,
      queues: workers,
    });
    log("tun device created", {
      name: tun.name,
      offloads: offloadNames(tun.offloads),
      workers: String(workers),
    });
    marks = new MarkDevices(tun.name, tun.offloads);
    marks.openFor(config);
    for (const m of marks.planFor(config)) {
      log("tun device created", { name: m.tun, fwmark: String(m.mark) });
    }
    // Tunnel and DR reals are resolved before the host changes: one that cannot be reached
    // stops the start with nothing to undo.
    const resolved = await resolveLinks(spec, tun.name);
    logLinks(spec, resolved);
    const linked = withLinks(spec, resolved);
    await host.apply(hostPlan(config, marks.planFor(config)));
    for (const change of host.applied) log("host changed", { change });
    dataplane = await DataplaneHandle.start(
      [tun.fd, ...tun.queueFds],
      tun.name,
      linked,
      (message) => stop(1, "dataplane failed", { error: message }),
      tun.offloads,
      config.dataplane.io,
    );
    dataplane.setMarkDevices(marks.handOver(config));
    links = new LinkRefresher(
      linked,
      tun.name,
      resolved,
      (l) => dataplane?.updateLinks(l),
      linkRefreshMs(),
    );
    links.start();
    // Checks started with health.sync before the dataplane ran; what they found meanwhile
    // (a real down at start, alpha reals coming up) was not applied yet.
    await running.exclusive(() => applyConfig(running.config, false, false));
    drops = new DropWatcher((name, params) => dataplane!.request(name, params), events, {
      onError: (err) => log("drop watch failed", { error: (err as Error).message }),
    });
    drops.start();
    const app = createAdminApp({
      running,
      request: (name, params) => dataplane!.request(name, params),
      reload,
      change: (basedOn, edit, cut) =>
        reported("api", running.change(basedOn, edit, (next) => applyConfig(next, cut))),
      events,
      health,
      metricsExtras: () => ({
        realHealth: (service, address, port) => {
          try {
            const view = health.realStatus(service, address, port);
            return view.check === "none" ? undefined : view.state;
          } catch {
            return undefined;
          }
        },
        health: {
          ...health.counts(),
          servicesDown: health.serviceStatus().filter((s) => s.state === "down").map((s) =>
            s.service
          ),
        },
        config: {
          version: running.version,
          reloadSuccesses: reloads.successes,
          reloadFailures: reloads.failures,
          lastReloadSeconds: reloads.lastSeconds,
        },
      }),
      ready: () => ready,
    });
    server = await serveAdmin(app, config.admin);
    log("admin endpoint listening", {
      url: server.url,
      token: server.tokenRequired ? "required" : "none",
    });
    ready = true;
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
  health.stop();
  await drops?.stop();
  // Open event streams would hold the server's shutdown forever.
  events.close();
  await server?.shutdown().catch(() => {});
  await dataplane?.stop();
  await host.undo();
  marks?.closeUnhanded();
  tun?.close();
  for (const [sig, fn] of signals) Deno.removeSignalListener(sig, fn);
  globalThis.removeEventListener("unhandledrejection", onRejection);
  log("stopped; host changes undone", { exit: code });
  return code;
}
