/**
 * The admin endpoints of the health checks: every real's and service's state with the last
 * check's result, latency and reason, and the operator's pause, resume and force (maintenance).
 * These are run-time controls, not configuration: they need no version and are not written to
 * appliance.yaml (a forced-down real stays down across reloads, not across restarts).
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import type { AdminSource } from "./admin_source.ts";
import { fail, notFound, parse, readJson, RequestError } from "./api_request.ts";
import { HealthNotFoundError, NoHealthCheckError } from "./health/supervisor.ts";

/** Body of PUT …/health/force. */
const ForceBody = z.strictObject({
  state: z.enum(["up", "down"], 'must be "up", "down" or null').nullable(),
}, "must be a JSON object with state");

const REAL = "/api/v1/services/:name/reals/:address/:port/health";

/** Registers the health endpoints on `app`. */
export function registerHealthRoutes(app: Hono, source: AdminSource): void {
  const health = () => {
    if (source.health === undefined) {
      throw new RequestError(404, "", "health checks are not available");
    }
    return source.health;
  };
  /** Runs `act` on the real in the path and answers with its state after it. */
  const onReal = (
    c: Context,
    act: (service: string, address: string, port: number) => void,
  ) => {
    const { name, address, port } = c.req.param();
    if (!/^[0-9]{1,5}$/.test(port)) return fail("port", `must be a port number, got ${port}`);
    try {
      act(name, address, Number(port));
      return c.json(health().realStatus(name, address, Number(port)));
    } catch (err) {
      if (err instanceof HealthNotFoundError) return notFound(err.message);
      if (err instanceof NoHealthCheckError) throw new RequestError(409, "", err.message);
      throw err;
    }
  };

  app.get(
    "/api/v1/health",
    (c) => c.json({ reals: health().status(), services: health().serviceStatus() }),
  );
  app.get(REAL, (c) => onReal(c, () => {}));
  app.post(`${REAL}/pause`, (c) => onReal(c, (s, a, p) => health().pause(s, a, p)));
  app.post(`${REAL}/resume`, (c) => onReal(c, (s, a, p) => health().resume(s, a, p)));
  app.put(`${REAL}/force`, async (c) => {
    const { state } = parse(ForceBody, await readJson(c, '{"state": "up" | "down" | null}'));
    return onReal(c, (s, a, p) => health().force(s, a, p, state));
  });
}
