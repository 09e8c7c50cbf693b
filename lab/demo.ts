/**
 * `deno task demo [--once] [--requests N] [--config FILE]`: replays seed 000 (LVS-NAT, round robin
 * over web01/web02) in network namespaces with tunvs as the director, then keeps the lab up until
 * Ctrl-C so the admin endpoint can be explored.
 */
import { parseArgs } from "node:util";
import { type ApplianceProcess, REPO_ROOT, startAppliance } from "./appliance.ts";
import { Lab } from "./netns.ts";
import { curl, startHttpServer } from "./servers.ts";
import { buildSeed000 } from "./topology.ts";

/** Parsed command line of the demo. */
export interface DemoArgs {
  once: boolean;
  requests: number;
  config: string;
}

/** Parses the demo's flags; throws a usage message on bad input. */
export function parseDemoArgs(argv: string[]): DemoArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      once: { type: "boolean", default: false },
      requests: { type: "string", default: "6" },
      config: { type: "string", default: `${REPO_ROOT}/appliance.yaml` },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) throw new UsageError("");
  const requests = Number(values.requests);
  if (!Number.isInteger(requests) || requests < 1 || requests > 10_000) {
    throw new UsageError(`--requests must be an integer 1..10000, got ${values.requests}`);
  }
  return { once: values.once, requests, config: values.config };
}

/** A command-line mistake; its message is shown with the usage text. */
export class UsageError extends Error {}

const USAGE = "usage: deno run -A lab/demo.ts [--once] [--requests N] [--config FILE]";

class Interrupted extends Error {}

function tail(text: string, lines: number): string {
  return text.trim().split("\n").slice(-lines).join("\n");
}

/** Renders GET /api/v1/services compactly, whatever its exact shape; falls back to JSON. */
export function describeServices(data: unknown): string[] {
  const list = Array.isArray(data)
    ? data
    : (data && typeof data === "object" && Array.isArray((data as { services?: unknown }).services))
    ? (data as { services: unknown[] }).services
    : null;
  if (!list) return [JSON.stringify(data).slice(0, 400)];
  const lines: string[] = [];
  for (const svc of list as Record<string, unknown>[]) {
    const proto = String(svc.protocol ?? "").toUpperCase();
    const addr = svc.vip !== undefined ? `${svc.vip}:${svc.port}` : String(svc.name ?? "?");
    const name = svc.name !== undefined ? ` (${svc.name})` : "";
    lines.push(`${proto} ${addr} ${svc.scheduler ?? ""}${name}`.trim());
    const reals = Array.isArray(svc.reals) ? svc.reals as Record<string, unknown>[] : [];
    for (const r of reals) {
      const extras = Object.entries(r)
        .filter(([k, v]) => !["address", "port"].includes(k) && typeof v !== "object")
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
      lines.push(`  -> ${r.address}:${r.port} ${extras}`.trimEnd());
    }
  }
  return lines;
}

/** Builds the lab, starts everything and runs the checks; returns the running appliance. */
async function demo(args: DemoArgs, lab: Lab): Promise<ApplianceProcess> {
  console.log(`building seed 000's NAT topology (lab ${lab.id})`);
  const seed = await buildSeed000(lab);
  for (const real of seed.reals) {
    await startHttpServer(lab, real.name, { port: 80 });
    console.log(`  ${real.name} (${real.addr}) serves "${real.name} ${real.addr}" on port 80`);
  }
  console.log(`starting tunvs in ${seed.director} with ${args.config}`);
  const appliance: ApplianceProcess = await startAppliance(lab, "director", args.config);
  console.log(`  healthy; admin endpoint ${appliance.admin} inside ${seed.director}`);

  console.log(
    `\n${args.requests} requests from the client (${seed.clientAddr}) to http://${seed.vip}/`,
  );
  const tally = new Map<string, number>();
  let failures = 0;
  for (let i = 1; i <= args.requests; i++) {
    if (lab.destroyed) throw new Interrupted("lab destroyed");
    const res = await curl(lab, "client", `http://${seed.vip}/`, { timeoutSec: 5 });
    if (res.code === 200) {
      const who = res.body.trim();
      tally.set(who, (tally.get(who) ?? 0) + 1);
      console.log(`request ${i} → ${who}`);
    } else {
      failures++;
      console.log(
        `request ${i} → failed (HTTP ${res.code}, curl exit ${res.exitCode}${
          res.stderr ? `: ${res.stderr}` : ""
        })`,
      );
    }
  }
  console.log(`answers: ${[...tally].map(([who, n]) => `${who} ×${n}`).join(", ") || "none"}`);

  console.log(`\nGET ${appliance.admin}/api/v1/services`);
  try {
    for (const line of describeServices(await appliance.api("/api/v1/services"))) {
      console.log(`  ${line}`);
    }
  } catch (err) {
    console.log(`  (admin endpoint failed: ${(err as Error).message})`);
    failures++;
  }

  if (failures > 0) {
    throw new Error(
      `${failures} check(s) failed; appliance log:\n${tail(appliance.logs(), 40)}`,
    );
  }
  if (!args.once) {
    console.log(`
The lab is up. Explore it from another shell, e.g.:
  ip netns exec ${seed.director} curl -s ${appliance.admin}/api/v1/services
  ip netns exec ${seed.client} curl -s http://${seed.vip}/
  ip netns exec ${seed.director} ip route show table all
Press Ctrl-C to stop and clean up.`);
  }
  return appliance;
}

async function main(): Promise<number> {
  let args: DemoArgs;
  try {
    args = parseDemoArgs(Deno.args);
  } catch (err) {
    const msg = (err as Error).message;
    console.error(msg ? `demo: ${msg}\n${USAGE}` : USAGE);
    return err instanceof UsageError && !msg ? 0 : 2;
  }
  if (Deno.uid() !== 0) {
    console.error("demo: needs root to create network namespaces (try: sudo ./dev demo)");
    return 1;
  }
  try {
    await Deno.stat(args.config);
  } catch {
    console.error(`demo: configuration ${args.config} not found`);
    return 1;
  }

  const signal = Promise.withResolvers<Deno.Signal>();
  let cleaningUp = false;
  const onSignal = (sig: Deno.Signal) => () => {
    if (cleaningUp) console.error("demo: still cleaning up…");
    signal.resolve(sig);
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = onSignal(sig);
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  const interrupted = signal.promise.then((sig) => {
    throw new Interrupted(sig);
  });
  interrupted.catch(() => {});

  let code = 0;
  let lab: Lab | null = null;
  try {
    const removed = await Lab.sweepStale();
    if (removed.length > 0) console.log(`removed stale lab namespaces: ${removed.join(" ")}`);
    lab = await Lab.create("demo");
    const appliance = await Promise.race([demo(args, lab), interrupted]);
    // After the checks a signal is the normal way to finish, not an interruption.
    if (!args.once) await signal.promise;
    console.log("stopping tunvs");
    const stopped = await appliance.stop();
    if (stopped.code !== 0) {
      throw new Error(
        `tunvs exited with ${stopped.code} on SIGTERM; its log:\n${tail(stopped.stderr, 40)}`,
      );
    }
  } catch (err) {
    if (err instanceof Interrupted) {
      console.error(`\ndemo: interrupted (${err.message})`);
      code = 130;
    } else {
      console.error(`demo: FAILED: ${(err as Error).message}`);
      code = 1;
    }
  } finally {
    cleaningUp = true;
    if (lab) {
      console.log(`removing lab ${lab.id}`);
      try {
        await lab.destroy();
      } catch (err) {
        console.error(`demo: cleanup problem: ${(err as Error).message}`);
        code ||= 1;
      }
    }
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  }
  return code;
}

if (import.meta.main) Deno.exit(await main());
