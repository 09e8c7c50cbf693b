/**
 * The admin HTTP endpoint (Hono on Deno.serve): liveness and the services
 * with their reals and counters.
 */
import { Hono } from "hono";
import type { WorkerStats } from "../dataplane/worker.ts";
import { FORWARD_METHODS } from "../dataplane/service.ts";
import type { ApplianceConfig } from "./config.ts";

/** What the admin endpoint reads from the running appliance. */
export interface AdminSource {
  config(): ApplianceConfig;
  stats(): Promise<WorkerStats>;
}

/** Builds the admin app over `source`. */
export function createAdminApp(source: AdminSource): Hono {
  const app = new Hono();

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/api/v1/services", async (c) => {
    const config = source.config();
    const stats = await source.stats();
    return c.json({
      services: config.services.map((svc) => {
        const live = stats.services.find((s) => s.name === svc.name);
        return {
          name: svc.name,
          protocol: svc.protocol,
          vip: svc.vip,
          port: svc.port,
          scheduler: svc.scheduler,
          forward: svc.forward,
          reals: svc.reals.map((r, i) => {
            const s = live?.reals[i];
            return {
              address: r.address,
              port: r.port,
              weight: s?.weight ?? r.weight,
              forward: FORWARD_METHODS[svc.forward],
              activeConns: s?.activeConns ?? 0,
              inactiveConns: s?.inactiveConns ?? 0,
              connections: s?.connections ?? 0,
              inPackets: s?.inPackets ?? 0,
              inBytes: s?.inBytes ?? 0,
              outPackets: s?.outPackets ?? 0,
              outBytes: s?.outBytes ?? 0,
            };
          }),
        };
      }),
      connections: stats.connections,
      connectionsByState: stats.connectionsByState,
      counters: stats.counters,
    });
  });

  app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}
