/**
 * The admin HTTP endpoint (Hono on Deno.serve): liveness and readiness, the services with their
 * reals and counters, counters and rates (`ipvsadm --stats --rate`), zeroing (`-Z`) and the
 * connection listing (`-Lnc`); the configuration-changing endpoints are in api_changes.ts.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { CONN_STATE_NAMES } from "../dataplane/conn/state.ts";
import { LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT } from "../dataplane/stats/conn_listing.ts";
import { parseIpv4Address, PROTO_TCP, PROTO_UDP } from "../dataplane/wire/ipv4.ts";
import type { AdminSource } from "./admin_source.ts";
import { registerChangeRoutes } from "./api_changes.ts";
import { registerHealthRoutes } from "./api_health.ts";
import { etag, fail, notFound, parse, RequestError } from "./api_request.ts";
import { serviceView } from "./api_views.ts";
import type { ApplianceConfig } from "./config.ts";
import { DataplaneRequestError } from "./dataplane_handle.ts";
import { eventStreamHandler } from "./event_stream.ts";
import { collectMetricsSnapshot, metricsHandler } from "./metrics.ts";
import { OPENAPI } from "./openapi.ts";
import { ReloadError } from "./reload.ts";
import { FileChangedOnDisk, VersionConflict, WriteBackFailed } from "./running_config.ts";

export type { AdminSource, DataplaneRequester } from "./admin_source.ts";

/** A decimal integer in a query string. */
function queryInt(min: number, max: number) {
  const message = `must be an integer ${min}..${max}`;
  return z.string().regex(/^[0-9]{1,10}$/, message).transform(Number).pipe(
    z.int(message).min(min, message).max(max, message),
  );
}

const STATE_NAMES = CONN_STATE_NAMES as [string, ...string[]];

/** Query of GET /api/v1/connections. */
const ConnectionsQuery = z.strictObject({
  service: z.string().min(1, "must name a service").optional(),
  real: z.string().optional(),
  state: z.string().transform((s) => s.toUpperCase()).pipe(
    z.enum(STATE_NAMES, `must be one of ${CONN_STATE_NAMES.join(", ")}`),
  ).optional(),
  protocol: z.string().transform((s) => s.toLowerCase()).pipe(
    z.enum(["tcp", "udp"], "must be tcp or udp"),
  ).optional(),
  cursor: queryInt(0, 0x7fffffff).optional(),
  limit: queryInt(1, LIST_MAX_LIMIT).optional(),
});

/** Query of POST /api/v1/stats/zero. */
const ZeroQuery = z.strictObject({ service: z.string().min(1, "must name a service").optional() });

/** "A.B.C.D" or "A.B.C.D:PORT" → address and port (undefined when not given). */
function parseReal(s: string): { addr: number; port?: number } {
  const colon = s.lastIndexOf(":");
  const addr = parseIpv4Address(colon < 0 ? s : s.slice(0, colon));
  if (addr === null) return fail("real", `must be ADDRESS or ADDRESS:PORT, got ${s}`);
  if (colon < 0) return { addr };
  const port = s.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) {
    return fail("real", `port must be 0..65535, got ${port}`);
  }
  return { addr, port: Number(port) };
}

function knownService(config: ApplianceConfig, name: string | undefined): void {
  if (name !== undefined && !config.services.some((s) => s.name === name)) {
    fail("service", `no such service: ${name}`);
  }
}

/** Builds the admin app over `source`. */
export function createAdminApp(source: AdminSource): Hono {
  const app = new Hono();

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  // Ready: the dataplane runs and the configuration is applied (load balancers in front of a
  // pair of directors, and systemd's start-up ordering, ask this).
  app.get("/ready", (c) => {
    const ready = source.ready?.() ?? true;
    return c.json(
      { ready, version: source.running.version },
      ready ? 200 : 503,
    );
  });

  app.get("/api/v1/services", async (c) => {
    const config = source.running.config;
    const stats = await source.request("stats", {});
    c.header("ETag", etag(source.running.version));
    return c.json({
      version: source.running.version,
      services: config.services.map((svc) =>
        serviceView(svc, stats.services.find((s) => s.name === svc.name))
      ),
      connections: stats.connections,
      connectionsByState: stats.connectionsByState,
      counters: stats.counters,
    });
  });

  app.get("/api/v1/stats", async (c) => {
    return c.json({ services: await source.request("traffic", {}) });
  });

  app.post("/api/v1/stats/zero", async (c) => {
    const { service } = parse(ZeroQuery, c.req.query());
    knownService(source.running.config, service);
    return c.json(await source.request("zeroStats", service === undefined ? {} : { service }));
  });

  app.get("/api/v1/connections", async (c) => {
    const q = parse(ConnectionsQuery, c.req.query());
    knownService(source.running.config, q.service);
    const real = q.real === undefined ? undefined : parseReal(q.real);
    const page = await source.request("connections", {
      service: q.service,
      realAddr: real?.addr,
      realPort: real?.port,
      state: q.state,
      protocol: q.protocol === undefined ? undefined : q.protocol === "tcp" ? PROTO_TCP : PROTO_UDP,
      cursor: q.cursor ?? 0,
      limit: q.limit ?? LIST_DEFAULT_LIMIT,
    });
    return c.json(page);
  });

  app.get("/api/v1/timeouts", async (c) => c.json(await source.request("getTimeouts", {})));

  // Cuts one real's connections now (its clients reconnect, to it or elsewhere); not a
  // configuration change, so no version is needed.
  app.post("/api/v1/services/:name/reals/:address/:port/cut", async (c) => {
    const { name, address, port } = c.req.param();
    const svc = source.running.config.services.find((s) => s.name === name);
    if (svc === undefined) return notFound(`Service not defined: no service named ${name}`);
    const real = svc.reals.find((r) => r.address === address && String(r.port) === port);
    const addr = parseIpv4Address(address);
    if (real === undefined || addr === null) {
      return notFound(`No such destination: ${address}:${port} in service ${name}`);
    }
    const { cut } = await source.request("cutConnections", {
      service: name,
      address: addr,
      port: real.port,
    });
    return c.json({ service: name, address, port: real.port, cut });
  });

  registerChangeRoutes(app, source);
  registerHealthRoutes(app, source);
  app.get("/api/v1/openapi.json", (c) => c.json(OPENAPI));

  app.get(
    "/metrics",
    metricsHandler(() =>
      collectMetricsSnapshot(
        source.request,
        source.running.config,
        source.metricsExtras?.() ?? {},
      )
    ),
  );
  const events = source.events;
  app.get(
    "/api/v1/events",
    events === undefined
      ? (c) => c.json({ error: "the event stream is not available" }, 501)
      : eventStreamHandler(events),
  );

  app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    if (err instanceof RequestError) {
      const issues = (err as RequestError & { issues?: unknown }).issues;
      return c.json({
        error: err.message,
        ...(err.field === "" ? {} : { field: err.field }),
        ...(issues === undefined ? {} : { issues }),
      }, err.status);
    }
    if (err instanceof VersionConflict) {
      c.header("ETag", etag(err.current));
      return c.json({
        error: err.message,
        version: err.current,
        ...(err instanceof FileChangedOnDisk ? { fileChanged: true } : {}),
      }, 409);
    }
    if (err instanceof DataplaneRequestError) return c.json({ error: err.message }, 400);
    if (err instanceof ReloadError) return c.json({ error: err.message }, 422);
    if (err instanceof WriteBackFailed) return c.json({ error: err.message }, 500);
    return c.json({ error: err.message }, 500);
  });
  return app;
}
