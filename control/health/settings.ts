/**
 * From the `health_check:` blocks of appliance.yaml to a HealthCheckConfig: a real's block
 * overrides its service's field by field (nested http/udp/exec blocks too), then keepalived's
 * defaults fill the rest. The schema in control/config.ts validates each block's fields; the
 * rules that need both blocks together live here.
 */
import {
  HEALTH_CHECK_DEFAULTS,
  type HealthCheckConfig,
  type HealthCheckType,
  type HttpCheckSettings,
} from "./types.ts";

/** A `health_check:` block as the schema passes it on: every key optional. */
export interface RawHealthCheck {
  type?: HealthCheckType;
  interval?: number;
  timeout?: number;
  retry?: number;
  delay_before_retry?: number;
  rise?: number;
  fall?: number;
  alpha?: boolean;
  port?: number;
  http?: {
    method?: string;
    path?: string;
    status?: number[];
    digest?: string | null;
    substring?: string | null;
    host?: string | null;
  };
  udp?: { payload?: string; expect?: string | null };
  exec?: { command?: string | string[]; dynamic?: boolean };
}

/** A problem with the combined blocks: where (relative to the block that caused it) and what. */
export interface HealthCheckProblem {
  /** Which block to point at. */
  block: "service" | "real";
  /** Keys inside that block. */
  path: string[];
  message: string;
}

type Section = "http" | "udp" | "exec";

function merge(service: RawHealthCheck | undefined, real: RawHealthCheck | undefined) {
  const out: RawHealthCheck = { ...service, ...real };
  for (const section of ["http", "udp", "exec"] as Section[]) {
    const a = service?.[section];
    const b = real?.[section];
    if (a !== undefined || b !== undefined) {
      (out as Record<Section, unknown>)[section] = { ...a, ...b };
    }
  }
  return out;
}

/** Splits a command line on whitespace (keepalived's misc_path, notify_up); a list is kept. */
export function commandWords(command: string | string[]): string[] {
  return typeof command === "string" ? command.trim().split(/\s+/).filter((w) => w !== "") : [
    ...command,
  ];
}

const SECTION_TYPES: Record<Section, HealthCheckType[]> = {
  http: ["http", "https"],
  udp: ["udp"],
  exec: ["exec"],
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * Rules across fields and blocks, on raw (possibly invalid) values: a type is set somewhere;
 * an exec check has a command; a settings block matches the type it applies to.
 */
export function healthCheckProblems(service: unknown, real: unknown): HealthCheckProblem[] {
  const s = isRecord(service) ? service : undefined;
  const r = isRecord(real) ? real : undefined;
  if (s === undefined && r === undefined) return [];
  const block: "service" | "real" = r !== undefined ? "real" : "service";
  const type = r?.type ?? s?.type;
  if (type === undefined) {
    return [{
      block,
      path: ["type"],
      message: "is required (tcp, http, https, udp, exec or none)",
    }];
  }
  if (typeof type !== "string") return [];
  const problems: HealthCheckProblem[] = [];
  for (const section of ["http", "udp", "exec"] as Section[]) {
    const owner = r?.[section] !== undefined
      ? "real"
      : s?.[section] !== undefined
      ? "service"
      : null;
    if (owner === null || SECTION_TYPES[section].includes(type as HealthCheckType)) continue;
    // A service's block may serve reals that override the type; only flag what is never used.
    if (owner === "service" && block === "real") continue;
    problems.push({
      block: owner,
      path: [section],
      message: `applies to type ${SECTION_TYPES[section].join(" or ")} only (this check is ` +
        `${JSON.stringify(type)})`,
    });
  }
  if (type === "exec") {
    const execOf = (b: Record<string, unknown> | undefined) =>
      isRecord(b?.exec) ? b.exec : undefined;
    const command = execOf(r)?.command ?? execOf(s)?.command;
    const empty = command === undefined ||
      (typeof command === "string" && command.trim() === "") ||
      (Array.isArray(command) && command.length === 0);
    if (empty) {
      problems.push({ block, path: ["exec"], message: "type exec needs exec.command" });
    }
  }
  return problems;
}

/** The effective check of a real, or undefined when neither block exists. Validated input only. */
export function resolveHealthCheck(
  service: RawHealthCheck | undefined,
  real: RawHealthCheck | undefined,
): HealthCheckConfig | undefined {
  if (service === undefined && real === undefined) return undefined;
  const m = merge(service, real);
  if (m.type === undefined) throw new Error("unreachable: health check without a type");
  const d = HEALTH_CHECK_DEFAULTS;
  const interval = m.interval ?? d.interval;
  const isHttp = m.type === "http" || m.type === "https";
  const config: HealthCheckConfig = {
    type: m.type,
    interval,
    // MISC_CHECK's misc_timeout defaults to delay_loop; connect_timeout does not apply to it.
    timeout: m.timeout ?? (m.type === "exec" ? interval : d.timeout),
    retry: m.retry ?? (m.type === "exec" ? d.execRetry : d.retry),
    delayBeforeRetry: m.delay_before_retry ??
      (isHttp ? d.httpDelayBeforeRetry : d.delayBeforeRetry),
    rise: m.rise ?? d.rise,
    fall: m.fall ?? d.fall,
    alpha: m.alpha ?? d.alpha,
  };
  if (m.port !== undefined) config.port = m.port;
  if (isHttp) {
    const h = m.http ?? {};
    const http: HttpCheckSettings = {
      method: h.method ?? d.http.method,
      path: h.path ?? d.http.path,
      status: [...(h.status ?? d.http.status)],
      digest: h.digest?.toLowerCase() ?? null,
      substring: h.substring ?? null,
      host: h.host ?? null,
    };
    config.http = http;
  } else if (m.type === "udp") {
    config.udp = { payload: m.udp?.payload ?? d.udp.payload, expect: m.udp?.expect ?? null };
  } else if (m.type === "exec") {
    const command = m.exec?.command;
    if (command === undefined) throw new Error("unreachable: exec health check without command");
    config.exec = { command: commandWords(command), dynamic: m.exec?.dynamic ?? false };
  }
  return config;
}
