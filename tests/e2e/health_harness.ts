/**
 * What the health checks' end-to-end tests share: reading the health API, waiting for a real's
 * state, and the appliance header their configuration files start with.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { RealHealthView, ServiceHealthView } from "../../control/health/supervisor.ts";
import type { ApplianceProcess } from "../../lab/appliance.ts";
import { pollUntil } from "../../lab/netns.ts";

/** The top of the tests' appliance.yaml: the lab's admin endpoint and TUN. */
export const HEADER = ["admin:", "  listen: 127.0.0.1:9180", "dataplane:", "  tun: tunvs0"];

/** Waits `ms` of wall-clock time. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET /api/v1/health. */
export async function health(app: ApplianceProcess) {
  return await app.api("/api/v1/health") as {
    reals: RealHealthView[];
    services: ServiceHealthView[];
  };
}

/** The health view of the real at `address` (in `service`, or in any when null). */
export async function healthOf(
  app: ApplianceProcess,
  service: string | null,
  address: string,
): Promise<RealHealthView> {
  const all = await health(app);
  const view = all.reals.find((r) =>
    (service === null || r.service === service) && r.address === address
  );
  assert.ok(view, `no health view of ${service ?? ""} ${address}: ${JSON.stringify(all)}`);
  return view;
}

/** Polls the health API until the real is in `state`; returns its view then. */
export async function waitState(
  app: ApplianceProcess,
  service: string | null,
  address: string,
  state: "up" | "down",
  timeoutMs: number,
): Promise<RealHealthView> {
  let view: RealHealthView | null = null;
  const ok = await pollUntil(
    async () => {
      view = await healthOf(app, service, address);
      return view.state === state;
    },
    timeoutMs,
    50,
  );
  assert.ok(
    ok,
    `${service ?? ""} ${address} not ${state} in ${timeoutMs} ms: ${JSON.stringify(view)}`,
  );
  return view!;
}

/** Waits until every checked real has passed a check, so a test starts from a settled state. */
export async function waitChecked(app: ApplianceProcess): Promise<void> {
  const ok = await pollUntil(
    async () => (await health(app)).reals.every((r) => r.check === "none" || r.last?.ok === true),
    5000,
    50,
  );
  assert.ok(ok, `some real never passed a check: ${JSON.stringify(await health(app))}`);
}

/** Asserts rr alternation between web01 and web02. */
export function alternates(answers: string[]): void {
  for (let i = 1; i < answers.length; i++) {
    assert.notEqual(answers[i], answers[i - 1], `rr alternation: ${answers}`);
  }
  assert.deepEqual([...new Set(answers)].sort(), ["web01", "web02"]);
}
