/**
 * Runs the tunvs appliance (`mod.ts run --config FILE`) inside a lab namespace and talks to its
 * admin endpoint from inside that namespace.
 */
import { parse as parseYaml } from "yaml";
import { type Lab, OutputCollector, pollUntil, stopProcess } from "./netns.ts";

/** Root of the repository (the directory holding mod.ts). */
export const REPO_ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The admin endpoint used when the configuration names none. */
export const DEFAULT_ADMIN_LISTEN = "127.0.0.1:9180";

/** Options for {@linkcode startAppliance}. */
export interface ApplianceOptions {
  /** Arguments appended after `run --config FILE`. */
  extraArgs?: string[];
  /** How long to wait for /healthz (default 20 s). */
  readyTimeoutMs?: number;
  /** Extra environment variables for the appliance. */
  env?: Record<string, string>;
  /** Arguments for Deno itself, before the script (e.g. `--v8-flags=--perf-basic-prof`). */
  denoFlags?: string[];
}

/** Answer of {@linkcode ApplianceProcess.request}. */
export interface AdminResponse {
  /** HTTP status; 0 when the endpoint did not answer. */
  status: number;
  /** Raw body. */
  body: string;
}

/** A running appliance. */
export interface ApplianceProcess {
  /** Namespace role it runs in. */
  role: string;
  /** Admin base URL as seen from inside the namespace, e.g. `http://127.0.0.1:9180`. */
  admin: string;
  /** OS pid (of the appliance itself: `ip netns exec` execs it). */
  pid: number;
  /** Signals it and waits for its exit (SIGKILL after 15 s); idempotent. */
  stop(signal?: Deno.Signal): Promise<{ code: number; stderr: string }>;
  /** Everything it wrote so far (stderr, then any stdout). */
  logs(): string;
  /** GETs `path` on the admin endpoint and parses JSON; throws on non-2xx. */
  api(path: string): Promise<unknown>;
  /** Sends any request to the admin endpoint with extra headers; never throws for HTTP errors. */
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<AdminResponse>;
  /** Resolves with the exit code when it exits (on its own or by stop()). */
  exited: Promise<number>;
}

/** Reads `admin.listen` from a configuration file; the default when absent or unreadable. */
export async function adminListenOf(configPath: string): Promise<string> {
  try {
    const doc = parseYaml(await Deno.readTextFile(configPath)) as
      | { admin?: { listen?: unknown } }
      | null;
    const listen = doc?.admin?.listen;
    return typeof listen === "string" && listen.includes(":") ? listen : DEFAULT_ADMIN_LISTEN;
  } catch {
    return DEFAULT_ADMIN_LISTEN;
  }
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/**
 * Starts `deno run -A mod.ts run --config <configPath>` inside `role`'s namespace and waits until
 * its /healthz answers 200 there; throws with its stderr if it exits or times out first.
 */
export async function startAppliance(
  lab: Lab,
  role: string,
  configPath: string,
  opts: ApplianceOptions = {},
): Promise<ApplianceProcess> {
  const config = absolute(configPath);
  const admin = `http://${await adminListenOf(config)}`;
  const cmd = [
    Deno.execPath(),
    "run",
    "-A",
    ...(opts.denoFlags ?? []),
    `${REPO_ROOT}/mod.ts`,
    "run",
    "--config",
    config,
    ...(opts.extraArgs ?? []),
  ];
  const child = lab.spawn(role, cmd, {
    stdout: "piped",
    stderr: "piped",
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", ...opts.env },
  });
  const stderr = new OutputCollector(child.stderr);
  const stdout = new OutputCollector(child.stdout);
  const logs = () => {
    const out = stdout.text();
    return out ? `${stderr.text()}\n--- stdout ---\n${out}` : stderr.text();
  };
  let exitCode: number | null = null;
  const exited = child.status.then(async (s) => {
    await Promise.all([stderr.done, stdout.done]);
    exitCode = s.code; // 128 + signal number when killed by a signal

    return exitCode;
  });

  const request = async (
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<AdminResponse> => {
    const args = ["curl", "-sS", "--noproxy", "*", "--max-time", "5", "-X", method];
    for (const [name, value] of Object.entries(headers)) args.push("-H", `${name}: ${value}`);
    if (body !== undefined) {
      args.push("-H", "content-type: application/json", "--data-binary", "@-");
    }
    args.push("-w", "\n%{http_code}", `${admin}${path}`);
    const res = await lab.exec(role, args, {
      allowFail: true,
      stdin: body === undefined ? undefined : JSON.stringify(body),
    });
    const nl = res.stdout.lastIndexOf("\n");
    return {
      status: Number(res.stdout.slice(nl + 1)) || 0,
      body: nl >= 0 ? res.stdout.slice(0, nl) : "",
    };
  };

  const ready = await pollUntil(
    async () => {
      if (exitCode !== null) return true;
      return (await request("GET", "/healthz")).status === 200;
    },
    opts.readyTimeoutMs ?? 20_000,
    200,
  );
  if (exitCode !== null || !ready) {
    if (exitCode === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited in between.
      }
    }
    const code = await exited;
    throw new Error(
      `appliance in ${lab.nsName(role)} ${
        ready ? `exited with ${code} before it was healthy` : "did not answer /healthz in time"
      }\ncommand: ${cmd.join(" ")}\n${logs().trim()}`,
    );
  }

  let stopping: Promise<{ code: number; stderr: string }> | null = null;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    stopping ??= (async () => {
      // Undoing host changes takes a moment; only a hung appliance needs the SIGKILL.
      if (exitCode === null) await stopProcess(child, signal, 15_000);
      return { code: await exited, stderr: logs() };
    })();
    return stopping;
  };
  // A test that fails before stop() still gets a graceful shutdown, so its undo code runs.
  lab.onDestroy(() => stop());

  return {
    role,
    admin,
    pid: child.pid,
    stop,
    logs,
    exited,
    request,
    api: async (path: string) => {
      const res = await request("GET", path);
      if (res.status < 200 || res.status > 299) {
        throw new Error(`GET ${admin}${path} → ${res.status || "no answer"}: ${res.body}`);
      }
      return JSON.parse(res.body);
    },
  };
}
