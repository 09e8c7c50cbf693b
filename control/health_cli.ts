/**
 * `tunvs health`: the health checks from the command line, over the admin API — each real's
 * state with its last check's result, latency and reason, and the operator's pause, resume and
 * force (maintenance). The endpoint is found as `tunvs ipvsadm` finds it.
 *
 * @module
 */
import { type AdminClient, AdminUnreachable } from "./ipvsadm.ts";

/** The usage text of `tunvs health`. */
export const HEALTH_USAGE = `usage:
  tunvs health [list]                          every real: state, checker, last result
  tunvs health pause SERVICE ADDRESS:PORT      stop checking it; its state stays
  tunvs health resume SERVICE ADDRESS:PORT     check it again
  tunvs health force up|down|auto SERVICE ADDRESS:PORT
                                               maintenance: force it down (or up); auto follows
                                               the checks again
  (--admin URL or --config FILE as for tunvs ipvsadm)
`;

/** What a run printed and its exit status. */
export interface HealthCliResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface RealHealth {
  service: string;
  address: string;
  port: number;
  state: string;
  checked: string;
  forced: string | null;
  paused: boolean;
  check: string;
  effectiveWeight: number | null;
  last: { ok: boolean; latencyMs: number; reason: string; attempts: number } | null;
}

/** One line per real, in columns. */
function formatHealthList(reals: readonly RealHealth[]): string {
  const rows = [["SERVICE", "REAL", "STATE", "CHECK", "WEIGHT", "LAST", "LATENCY", "REASON"]];
  for (const r of reals) {
    const state = r.forced !== null
      ? `${r.state} (forced)`
      : r.paused
      ? `${r.state} (paused)`
      : r.state;
    rows.push([
      r.service,
      `${r.address}:${r.port}`,
      state,
      r.check,
      r.effectiveWeight === null ? "-" : String(r.effectiveWeight),
      r.last === null ? "-" : r.last.ok ? "ok" : "fail",
      r.last === null ? "-" : `${r.last.latencyMs.toFixed(1)}ms`,
      r.last?.reason ?? "-",
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join("  "))
    .join("\n") + "\n";
}

function realPath(service: string, real: string): string | null {
  const m = /^([0-9.]+):([0-9]{1,5})$/.exec(real);
  if (m === null) return null;
  return `/api/v1/services/${encodeURIComponent(service)}/reals/${m[1]}/${m[2]}/health`;
}

/** Runs `tunvs health ARGS` against `admin`. */
export async function runHealthCli(
  args: readonly string[],
  admin: AdminClient,
): Promise<HealthCliResult> {
  const usage = (why: string): HealthCliResult => ({
    code: 2,
    stdout: "",
    stderr: `tunvs health: ${why}\n${HEALTH_USAGE}`,
  });
  const [command = "list", ...rest] = args;
  try {
    let method: "GET" | "POST" | "PUT";
    let path: string | null;
    let body: unknown;
    switch (command) {
      case "list": {
        if (rest.length > 0) return usage("list takes no arguments");
        const res = await admin.request("GET", "/api/v1/health");
        if (res.status !== 200) return failed(res.status, res.body);
        return {
          code: 0,
          stdout: formatHealthList((res.body as { reals: RealHealth[] }).reals),
          stderr: "",
        };
      }
      case "pause":
      case "resume":
        if (rest.length !== 2) return usage(`${command} needs SERVICE ADDRESS:PORT`);
        method = "POST";
        path = realPath(rest[0], rest[1]);
        if (path !== null) path += `/${command}`;
        break;
      case "force": {
        const [state, service, real] = rest;
        if (rest.length !== 3 || !["up", "down", "auto"].includes(state)) {
          return usage("force needs up, down or auto, then SERVICE ADDRESS:PORT");
        }
        method = "PUT";
        path = realPath(service, real);
        if (path !== null) path += "/force";
        body = { state: state === "auto" ? null : state };
        break;
      }
      case "help":
      case "--help":
      case "-h":
        return { code: 0, stdout: HEALTH_USAGE, stderr: "" };
      default:
        return usage(`unknown command ${JSON.stringify(command)}`);
    }
    if (path === null) return usage("the real must be ADDRESS:PORT, e.g. 10.10.10.11:80");
    const res = await admin.request(method, path, body);
    if (res.status !== 200) return failed(res.status, res.body);
    return { code: 0, stdout: formatHealthList([res.body as RealHealth]), stderr: "" };
  } catch (err) {
    if (err instanceof AdminUnreachable) {
      return { code: 2, stdout: "", stderr: `tunvs health: ${err.message}\n` };
    }
    throw err;
  }
}

function failed(status: number, body: unknown): HealthCliResult {
  const error = (body as { error?: unknown } | null)?.error;
  return {
    code: 1,
    stdout: "",
    stderr: `tunvs health: ${typeof error === "string" ? error : `HTTP ${status}`}\n`,
  };
}
