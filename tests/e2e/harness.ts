/**
 * What the end-to-end tests share: their Deno.test options, configuration
 * files for the appliance, and running it around a test body.
 */
import assert from "node:assert/strict";
import { type ApplianceProcess, startAppliance } from "../../lab/appliance.ts";
import type { Lab } from "../../lab/netns.ts";
import { needsRoot } from "./root.ts";

/** Deno.test options for a namespace test: skipped without root; processes outlive steps. */
export function e2eOptions(what: string) {
  return { ignore: needsRoot(what), sanitizeOps: false, sanitizeResources: false };
}

/** A service as the tests write it into appliance.yaml. */
export interface ServiceDef {
  name?: string;
  protocol?: "tcp" | "udp";
  vip: string;
  scheduler: string;
  /** Further YAML lines of the service, e.g. "port: 80" or "persistence: { timeout: 10 }". */
  settings: string[];
  reals: { address: string; port?: number; weight?: number }[];
}

/** Writes `dir`/`name`.yaml with `services` (and any top-level `header` lines); returns its path. */
export async function writeConfig(
  dir: string,
  name: string,
  services: ServiceDef[],
  header: string[] = [],
): Promise<string> {
  const lines = [...header, "services:"];
  for (const s of services) {
    lines.push(
      `  - name: ${s.name ?? "web"}`,
      `    protocol: ${s.protocol ?? "tcp"}`,
      `    vip: ${s.vip}`,
      `    scheduler: ${s.scheduler}`,
      ...s.settings.map((l) => `    ${l}`),
      "    reals:",
      ...s.reals.map((r) => {
        const fields = [`address: ${r.address}`];
        if (r.port !== undefined) fields.push(`port: ${r.port}`);
        if (r.weight !== undefined) fields.push(`weight: ${r.weight}`);
        return `      - { ${fields.join(", ")} }`;
      }),
    );
  }
  const path = `${dir}/${name}.yaml`;
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}

/**
 * Runs `fn` with the appliance up on `config` in the director namespace; always stops it,
 * requires a clean exit, and prints its log when anything fails.
 */
export async function withAppliance(
  lab: Lab,
  config: string,
  fn: (app: ApplianceProcess) => Promise<void>,
): Promise<void> {
  const app = await startAppliance(lab, "director", config);
  try {
    await fn(app);
  } catch (err) {
    console.error(`appliance log:\n${app.logs()}`);
    throw err;
  } finally {
    const { code } = await app.stop();
    assert.equal(code, 0, `appliance exit code\n${app.logs()}`);
  }
}
