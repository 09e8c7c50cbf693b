/**
 * The admin HTTP endpoint (Hono on Deno.serve): liveness, the services with
 * their reals and counters, counters and rates (`ipvsadm --stats --rate`),
 * zeroing (`-Z`), the connection listing (`-Lnc`) and the timeouts (`--set`).
 */
import { Hono } from "hono";
import { z } from "zod";
import { CONN_STATE_NAMES } from "../dataplane/conn/state.ts";
import { FORWARD_METHODS } from "../dataplane/service.ts";
import { LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT } from "../dataplane/stats/conn_listing.ts";
import { MAX_TIMEOUT_SECONDS } from "../dataplane/stats/requests.ts";
import type { WorkerRequestName, WorkerRequests } from "../dataplane/worker.ts";
import { parseIpv4Address, PROTO_TCP, PROTO_UDP } from "../dataplane/wire/ipv4.ts";
import type { ApplianceConfig } from "./config.ts";
import { DataplaneRequestError } from "./dataplane_handle.ts";
import { ReloadError, type ReloadResult } from "./reload.ts";

/** Sends one request to the dataplane and resolves with its result. */
export type DataplaneRequester = <K extends WorkerRequestName>(
  name: K,
  params: WorkerRequests[K]["params"],
) => Promise<WorkerRequests[K]["result"]>;

/** What the admin endpoint reads from the running appliance. */
export interface AdminSource {
  config(): ApplianceConfig;
  request: DataplaneRequester;
  /** Re-reads and applies the configuration file; rejects with ReloadError, changing nothing. */
  reload?(cut: boolean): Promise<ReloadResult>;
  /** Sets one real's weight in the running configuration (not written to the file). */
  setWeight?(service: string, address: string, port: number, weight: number): Promise<ReloadResult>;
}

/** Body of POST /api/v1/config/reload (optional). */
const ReloadBody = z.strictObject({
  cut: z.boolean("must be true or false").optional(),
}, "must be a JSON object with an optional cut");

/** Body of PUT …/weight. */
const WeightBody = z.strictObject({
  weight: z.int("must be an integer 0..65535").min(0, "must be an integer 0..65535")
    .max(65535, "must be an integer 0..65535"),
}, "must be a JSON object with weight");

/** An operator's mistake in a request: answered with 400 and the field it concerns. */
class BadRequest extends Error {
  constructor(readonly field: string, message: string) {
    super(field === "" ? message : `${field}: ${message}`);
  }
}

const timeoutSeconds = z.int(`must be an integer 1..${MAX_TIMEOUT_SECONDS}`)
  .min(1, `must be an integer 1..${MAX_TIMEOUT_SECONDS}`)
  .max(MAX_TIMEOUT_SECONDS, `must be an integer 1..${MAX_TIMEOUT_SECONDS}`);

/** Body of PUT /api/v1/timeouts: seconds, as `ipvsadm --set tcp tcpfin udp`. */
const TimeoutsBody = z.strictObject({
  tcp: timeoutSeconds.optional(),
  tcpfin: timeoutSeconds.optional(),
  udp: timeoutSeconds.optional(),
}, "must be a JSON object with tcp, tcpfin and/or udp");

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

/** Parses `input` with `schema`, turning its first issue into a BadRequest naming the field. */
function parse<T>(schema: z.ZodType<T>, input: unknown): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    return fail(issue.keys[0], "unknown field");
  }
  return fail(issue.path.join("."), issue.message);
}

function fail(field: string, message: string): never {
  throw new BadRequest(field, message);
}

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

  app.get("/api/v1/services", async (c) => {
    const config = source.config();
    const stats = await source.request("stats", {});
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
          // What ipvsadm's listings and -S show besides the reals.
          ports: svc.ports ?? null,
          persistence: svc.persistence ?? null,
          onePacket: svc.onePacket === true,
          schedulerFlags: svc.schedulerFlags,
          localAddresses: svc.localAddresses,
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
              persistConns: s?.persistConns ?? 0,
              upperThreshold: r.upperThreshold,
              lowerThreshold: r.lowerThreshold,
            };
          }),
        };
      }),
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
    knownService(source.config(), service);
    return c.json(await source.request("zeroStats", service === undefined ? {} : { service }));
  });

  app.get("/api/v1/connections", async (c) => {
    const q = parse(ConnectionsQuery, c.req.query());
    knownService(source.config(), q.service);
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

  app.put("/api/v1/timeouts", async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return fail("", "the body must be JSON: {tcp?, tcpfin?, udp?}");
    }
    const t = parse(TimeoutsBody, body);
    if (t.tcp === undefined && t.tcpfin === undefined && t.udp === undefined) {
      return fail("", "name at least one of tcp, tcpfin, udp");
    }
    return c.json(await source.request("setTimeouts", t));
  });

  app.post("/api/v1/config/reload", async (c) => {
    if (source.reload === undefined) return c.json({ error: "reload is not available" }, 501);
    const text = await c.req.text();
    let body: unknown = {};
    if (text.trim() !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        return fail("", "the body must be JSON: {cut?: boolean}");
      }
    }
    const { cut } = parse(ReloadBody, body);
    return c.json(await source.reload(cut === true));
  });

  // In memory only: the change is not written back to appliance.yaml (a reload or restart
  // returns to the file's weight).
  app.put("/api/v1/services/:name/reals/:address/:port/weight", async (c) => {
    if (source.setWeight === undefined) {
      return c.json({ error: "weight changes are not available" }, 501);
    }
    const { name, address, port } = c.req.param();
    const svc = source.config().services.find((s) => s.name === name);
    if (svc === undefined) return c.json({ error: `no such service: ${name}` }, 404);
    const real = /^[0-9]{1,5}$/.test(port)
      ? svc.reals.find((r) => r.address === address && r.port === Number(port))
      : undefined;
    if (real === undefined) {
      return c.json({ error: `no such real in ${name}: ${address}:${port}` }, 404);
    }
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return fail("", "the body must be JSON: {weight}");
    }
    const { weight } = parse(WeightBody, body);
    const result = await source.setWeight(name, real.address, real.port, weight);
    return c.json({
      service: name,
      address: real.address,
      port: real.port,
      weight,
      persisted: false,
      note: "in memory only: appliance.yaml is unchanged; a reload or restart restores its weight",
      result,
    });
  });

  app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    if (err instanceof BadRequest) {
      const body = err.field === ""
        ? { error: err.message }
        : { error: err.message, field: err.field };
      return c.json(body, 400);
    }
    if (err instanceof DataplaneRequestError) return c.json({ error: err.message }, 400);
    if (err instanceof ReloadError) return c.json({ error: err.message }, 422);
    return c.json({ error: err.message }, 500);
  });
  return app;
}
