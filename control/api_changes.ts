/**
 * The admin endpoints that read and change the configuration: the configuration itself
 * (read, validate, reload, replace the services), services and reals (create, replace, delete,
 * weight, drain and restore) and the timeouts.
 *
 * Every change names the version it is based on (If-Match), is made on the configuration in
 * appliance.yaml's own shape, validated as the file is, applied, and written back with the
 * operator's comments kept — or refused with nothing changed (see RunningConfig).
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import { MAX_TIMEOUT_SECONDS } from "../dataplane/stats/requests.ts";
import type { AdminSource, RawEdit } from "./admin_source.ts";
import {
  basedOn,
  conflict,
  etag,
  fail,
  notFound,
  parse,
  readJson,
  RequestError,
} from "./api_request.ts";
import { serviceView } from "./api_views.ts";
import { ConfigError, parseConfig } from "./config.ts";
import { stringify } from "yaml";

type Raw = Record<string, unknown>;

const RawObject = z.record(z.string(), z.unknown(), "must be a JSON object");

const timeoutSeconds = z.int(`must be an integer 1..${MAX_TIMEOUT_SECONDS}`)
  .min(1, `must be an integer 1..${MAX_TIMEOUT_SECONDS}`)
  .max(MAX_TIMEOUT_SECONDS, `must be an integer 1..${MAX_TIMEOUT_SECONDS}`);

/** Body of PUT /api/v1/timeouts: seconds, as `ipvsadm --set tcp tcpfin udp`. */
const TimeoutsBody = z.strictObject({
  tcp: timeoutSeconds.optional(),
  tcpfin: timeoutSeconds.optional(),
  udp: timeoutSeconds.optional(),
}, "must be a JSON object with tcp, tcpfin and/or udp");

/** Body of PUT …/weight. */
const WeightBody = z.strictObject({
  weight: z.int("must be an integer 0..65535").min(0, "must be an integer 0..65535")
    .max(65535, "must be an integer 0..65535"),
}, "must be a JSON object with weight");

/** Body of POST /api/v1/config/reload (optional). */
const ReloadBody = z.strictObject({
  cut: z.boolean("must be true or false").optional(),
}, "must be a JSON object with an optional cut");

/** Body of PUT /api/v1/config/services. */
const ServicesBody = z.strictObject({
  services: z.array(RawObject, "must be a list of services"),
}, "must be a JSON object with services");

/** Body of POST /api/v1/config/validate as JSON. */
const ValidateBody = z.strictObject({ config: RawObject }, "must be a JSON object with config");

/** `?cut=`: whether removing reals cuts their connections instead of letting them drain. */
const CutQuery = z.strictObject({
  cut: z.enum(["true", "false", "1", "0"], "must be true or false").optional(),
});

function cutOf(c: Context): boolean {
  const { cut } = parse(CutQuery, c.req.query());
  return cut === "true" || cut === "1";
}

/** The raw services list, created when the file has none. */
function rawServices(raw: Raw): Raw[] {
  if (!Array.isArray(raw.services)) raw.services = [];
  return raw.services as Raw[];
}

function rawService(raw: Raw, name: string): Raw {
  const svc = rawServices(raw).find((s) => s?.name === name);
  if (svc === undefined) return notFound(`Service not defined: no service named ${name}`);
  return svc;
}

/** The port a raw real serves on, with the service's default filled in as the model does. */
function effectivePort(svc: Raw, real: Raw): number {
  if (typeof real.port === "number") return real.port;
  if (svc.ports !== undefined) return 0;
  return typeof svc.port === "number" ? svc.port : 0;
}

function rawReals(svc: Raw): Raw[] {
  if (!Array.isArray(svc.reals)) svc.reals = [];
  return svc.reals as Raw[];
}

/** Index of the real at `address`:`port` in the raw service; 404 when there is none. */
function rawRealIndex(svc: Raw, address: string, port: number): number {
  const i = rawReals(svc).findIndex((r) =>
    r?.address === address && effectivePort(svc, r) === port
  );
  if (i < 0) return notFound(`No such destination: ${address}:${port} in service ${svc.name}`);
  return i;
}

/** The `:port` path segment as a number. */
function pathPort(text: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535) {
    return fail("port", `must be a port number 0..65535, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** The service `name` as given in a path: the configuration's name rules, checked early. */
function pathName(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(text)) {
    return fail("name", `no service can be named ${JSON.stringify(text.slice(0, 80))}`);
  }
  return text;
}

/** Turns a refused candidate configuration into a 422 naming the field of its first issue. */
function configRefusal(err: ConfigError): RequestError {
  const first = err.issues[0];
  const e = new RequestError(422, first?.path ?? "", first?.message ?? err.message);
  Object.assign(e, { issues: err.issues.map((i) => ({ path: i.path, message: i.message })) });
  return e;
}

/** Registers the configuration-changing endpoints on `app`. */
export function registerChangeRoutes(app: Hono, source: AdminSource): void {
  /** Runs one change and answers with its outcome and the new ETag. */
  const change = async (
    c: Context,
    edit: RawEdit,
    cut: boolean,
    extra: Record<string, unknown> = {},
    status: 200 | 201 = 200,
  ) => {
    if (source.change === undefined) {
      return c.json({ error: "changes are not available" }, 501);
    }
    const version = basedOn(c);
    let outcome;
    try {
      outcome = await source.change(version, edit, cut);
    } catch (err) {
      if (err instanceof ConfigError) throw configRefusal(err);
      throw err;
    }
    c.header("ETag", etag(outcome.version));
    return c.json({
      ...extra,
      version: outcome.version,
      previousVersion: outcome.previousVersion,
      written: outcome.written,
      result: outcome.applied,
    }, status);
  };

  app.get("/api/v1/config", (c) => {
    const running = source.running;
    c.header("ETag", etag(running.version));
    const format = c.req.query("format") ?? "json";
    const view = c.req.query("view") ?? "file";
    if (view !== "file" && view !== "effective") return fail("view", "must be file or effective");
    if (format === "yaml") {
      // The file as applied (comments kept), or what runs with every default filled in.
      const text = view === "file" ? running.text : stringify(running.config);
      return c.body(text, 200, { "Content-Type": "application/yaml; charset=utf-8" });
    }
    if (format !== "json") return fail("format", "must be json or yaml");
    return c.json({ version: running.version, config: running.raw(), effective: running.config });
  });

  app.post("/api/v1/config/validate", async (c) => {
    const type = c.req.header("content-type") ?? "";
    let text: string;
    if (/json/i.test(type)) {
      const body = parse(ValidateBody, await readJson(c, "{config}"));
      text = stringify(body.config);
    } else if (type === "" || /yaml|text\/plain/i.test(type)) {
      text = await c.req.text();
    } else {
      throw new RequestError(
        415,
        "",
        "send appliance.yaml as application/yaml or {config} as JSON",
      );
    }
    try {
      parseConfig(text, "candidate");
      return c.json({ valid: true, issues: [] });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return c.json({
        valid: false,
        issues: err.issues.map((i) => ({
          line: i.line,
          col: i.col,
          path: i.path,
          message: i.message,
        })),
      }, 422);
    }
  });

  app.post("/api/v1/config/reload", async (c) => {
    if (source.reload === undefined) return c.json({ error: "reload is not available" }, 501);
    const { cut } = parse(ReloadBody, await readJson(c, "{cut?: boolean}", {}));
    let outcome;
    try {
      outcome = await source.reload(cut === true);
    } catch (err) {
      if (err instanceof ConfigError) throw configRefusal(err);
      throw err;
    }
    c.header("ETag", etag(outcome.version));
    return c.json({
      ...outcome.applied,
      version: outcome.version,
      previousVersion: outcome.previousVersion,
    });
  });

  // The whole services list at once: what `ipvsadm -R` and each ipvsadm rule change send.
  app.put("/api/v1/config/services", async (c) => {
    const { services } = parse(ServicesBody, await readJson(c, "{services: [...]}"));
    return await change(c, (raw) => ({ ...raw, services }), cutOf(c));
  });

  app.get("/api/v1/services/:name", async (c) => {
    const name = pathName(c.req.param("name"));
    const svc = source.running.config.services.find((s) => s.name === name);
    if (svc === undefined) return notFound(`Service not defined: no service named ${name}`);
    const stats = await source.request("stats", {});
    c.header("ETag", etag(source.running.version));
    return c.json(serviceView(svc, stats.services.find((s) => s.name === name)));
  });

  app.post("/api/v1/services", async (c) => {
    const body = parse(RawObject, await readJson(c, "a service as in appliance.yaml"));
    if (typeof body.name !== "string") return fail("name", "a new service needs a name");
    const name = pathName(body.name);
    return await change(
      c,
      (raw) => {
        if (rawServices(raw).some((s) => s?.name === name)) {
          return conflict(`Service already exists: ${name}`);
        }
        rawServices(raw).push(body);
        return raw;
      },
      false,
      { service: name },
      201,
    );
  });

  // Replaces the service's settings; its reals stay unless the body lists them.
  app.put("/api/v1/services/:name", async (c) => {
    const name = pathName(c.req.param("name"));
    const body = parse(RawObject, await readJson(c, "a service as in appliance.yaml"));
    if (body.name !== undefined && body.name !== name) {
      return fail(
        "name",
        `must be ${name} (the service in the path) or absent; rename by delete and create`,
      );
    }
    return await change(
      c,
      (raw) => {
        const services = rawServices(raw);
        const old = rawService(raw, name);
        const next: Raw = { name, ...body };
        if (body.reals === undefined && old.reals !== undefined) next.reals = old.reals;
        services[services.indexOf(old)] = next;
        return raw;
      },
      cutOf(c),
      { service: name },
    );
  });

  app.delete("/api/v1/services/:name", async (c) => {
    const name = pathName(c.req.param("name"));
    return await change(
      c,
      (raw) => {
        const services = rawServices(raw);
        services.splice(services.indexOf(rawService(raw, name)), 1);
        return raw;
      },
      cutOf(c),
      { service: name },
    );
  });

  app.post("/api/v1/services/:name/reals", async (c) => {
    const name = pathName(c.req.param("name"));
    const body = parse(RawObject, await readJson(c, "a real as in appliance.yaml"));
    if (typeof body.address !== "string") return fail("address", "a new real needs an address");
    return await change(
      c,
      (raw) => {
        const svc = rawService(raw, name);
        const port = effectivePort(svc, body);
        if (
          rawReals(svc).some((r) => r?.address === body.address && effectivePort(svc, r) === port)
        ) {
          return conflict(`Destination already exists: ${body.address}:${port} in ${name}`);
        }
        rawReals(svc).push(body);
        return raw;
      },
      false,
      { service: name, address: body.address },
      201,
    );
  });

  /** Registers a change to one existing real. */
  const realRoute = (
    method: "put" | "delete" | "post",
    suffix: string,
    edit: (svc: Raw, index: number, body: unknown) => void,
    bodyShape: string | null,
  ) => {
    app[method](`/api/v1/services/:name/reals/:address/:port${suffix}`, async (c) => {
      const name = pathName(c.req.param("name"));
      const address = c.req.param("address");
      const port = pathPort(c.req.param("port"));
      const body = bodyShape === null ? undefined : await readJson(c, bodyShape);
      return await change(
        c,
        (raw) => {
          const svc = rawService(raw, name);
          edit(svc, rawRealIndex(svc, address, port), body);
          return raw;
        },
        cutOf(c),
        { service: name, address, port },
      );
    });
  };

  // Replaces the real's settings; its address and port come from the path.
  realRoute("put", "", (svc, i, body) => {
    const real = parse(RawObject, body);
    const old = rawReals(svc)[i];
    if (real.address !== undefined && real.address !== old.address) {
      fail("address", "must be the real in the path or absent; move a real by delete and create");
    }
    if (real.port !== undefined && real.port !== effectivePort(svc, old)) {
      fail("port", "must be the real's port in the path or absent");
    }
    rawReals(svc)[i] = {
      address: old.address,
      ...(old.port === undefined ? {} : { port: old.port }),
      ...Object.fromEntries(Object.entries(real).filter(([k]) => k !== "address" && k !== "port")),
    };
  }, "a real as in appliance.yaml");

  realRoute("delete", "", (svc, i) => {
    rawReals(svc).splice(i, 1);
  }, null);

  realRoute("put", "/weight", (svc, i, body) => {
    rawReals(svc)[i].weight = parse(WeightBody, body).weight;
  }, "{weight}");

  // Drain: weight 0 for new connections while its own weight is kept for restore.
  realRoute("post", "/drain", (svc, i) => {
    rawReals(svc)[i].drain = true;
  }, null);

  realRoute("post", "/restore", (svc, i) => {
    delete rawReals(svc)[i].drain;
  }, null);

  app.put("/api/v1/timeouts", async (c) => {
    const t = parse(TimeoutsBody, await readJson(c, "{tcp?, tcpfin?, udp?}"));
    if (t.tcp === undefined && t.tcpfin === undefined && t.udp === undefined) {
      return fail("", "name at least one of tcp, tcpfin, udp");
    }
    const response = await change(c, (raw) => {
      const old = typeof raw.timeouts === "object" && raw.timeouts !== null
        ? raw.timeouts as Raw
        : {};
      raw.timeouts = { ...old, ...t };
      return raw;
    }, false);
    if (response.status !== 200) return response;
    return c.json(await source.request("getTimeouts", {}));
  });
}
