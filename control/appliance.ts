/**
 * `tunvs run`: loads the configuration, opens the TUN, sets up the host,
 * starts the dataplane and the admin endpoint, and undoes it all on
 * SIGINT/SIGTERM or on a fatal error.
 */
import { TunDevice } from "../dataplane/tun.ts";
import { createAdminApp } from "./api.ts";
import { type ApplianceConfig, loadConfig, realReplyPorts } from "./config.ts";
import { DataplaneHandle } from "./dataplane_handle.ts";
import { compileDataplaneSpec } from "./dataplane_spec.ts";
import {
  LinkRefresher,
  linkRefreshMs,
  logLinks,
  resolveLinks,
  withLinks,
} from "./forward_links.ts";
import { HostChanges } from "./host.ts";
import { log } from "./log.ts";

/** Runs the appliance in the foreground until a signal or a fatal error; returns the exit code. */
export async function runAppliance(configPath: string): Promise<number> {
  const config = await loadConfig(configPath);
  const spec = compileDataplaneSpec(config);
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
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
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
    await host.apply(hostPlan(config));
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

function hostPlan(config: ApplianceConfig) {
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
