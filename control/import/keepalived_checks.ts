/**
 * keepalived's checkers → appliance.yaml's `health_check` blocks: TCP_CHECK → tcp, HTTP_GET →
 * http, SSL_GET → https, MISC_CHECK → exec, UDP_CHECK → udp, with keepalived's inheritance
 * (virtual_server settings are the real_server's defaults, a real_server's the checker's) and
 * its defaults written out (keepalived.conf(5) of keepalived 2.2): delay_loop 60, connect_timeout
 * 5, retry 1 (MISC_CHECK 0), delay_before_retry 3 for HTTP_GET/SSL_GET and 1 otherwise,
 * status_code 200-299, misc_timeout the virtual_server's delay_loop.
 */
import type { RawMap } from "../ipvsadm_rules.ts";
import type { KeepalivedNode } from "./keepalived_conf.ts";
import { boolArg, numberArg, type SkipSink } from "./keepalived_values.ts";

/** Check settings a virtual_server or a real_server hands down to its checkers. */
export interface CheckDefaults {
  delayLoop?: number;
  connectTimeout?: number;
  retry?: number;
  delayBeforeRetry?: number;
  alpha?: boolean;
  virtualhost?: string;
}

/** keepalived's defaults for what nothing sets. */
export const KEEPALIVED_CHECK_DEFAULTS = {
  delayLoop: 60,
  connectTimeout: 5,
  retry: 1,
  miscRetry: 0,
  delayBeforeRetry: 1,
  httpDelayBeforeRetry: 3,
} as const;

/** The checkers keepalived knows, and what tunvs runs for each (null: none). */
export const CHECKERS: Record<string, "tcp" | "http" | "https" | "exec" | "udp" | null> = {
  TCP_CHECK: "tcp",
  HTTP_GET: "http",
  SSL_GET: "https",
  MISC_CHECK: "exec",
  UDP_CHECK: "udp",
  SMTP_CHECK: null,
  DNS_CHECK: null,
  PING_CHECK: null,
  BFD_CHECK: null,
  FILE_CHECK: null,
};

/** config.ts's limits for the values written. */
const LIMITS = {
  interval: { min: 0.1, max: 86400 },
  timeout: { min: 0.1, max: 3600 },
  retry: { min: 0, max: 100, integer: true },
  delayBeforeRetry: { min: 0, max: 3600 },
  port: { min: 1, max: 65535, integer: true },
};

/**
 * Reads `node` into `defaults` when it is one of the settings handed down to checkers; false
 * when it is not one of them.
 */
export function readCheckDefault(
  node: KeepalivedNode,
  defaults: CheckDefaults,
  skip: SkipSink,
): boolean {
  switch (node.keyword) {
    case "delay_loop":
      defaults.delayLoop = numberArg(node, skip, LIMITS.interval) ?? defaults.delayLoop;
      return true;
    case "connect_timeout":
      defaults.connectTimeout = numberArg(node, skip, LIMITS.timeout) ?? defaults.connectTimeout;
      return true;
    case "retry":
    case "nb_get_retry":
      defaults.retry = numberArg(node, skip, LIMITS.retry) ?? defaults.retry;
      return true;
    case "delay_before_retry":
      defaults.delayBeforeRetry = numberArg(node, skip, LIMITS.delayBeforeRetry) ??
        defaults.delayBeforeRetry;
      return true;
    case "alpha":
      defaults.alpha = boolArg(node, skip) ?? defaults.alpha;
      return true;
    case "virtualhost":
      if (node.args.length === 1) defaults.virtualhost = node.args[0];
      else skip(node, "needs one host name");
      return true;
    default:
      return false;
  }
}

/** status_code's arguments (codes and FIRST-LAST ranges) as a list of codes; null if unreadable. */
function statusCodes(args: readonly string[]): number[] | null {
  const codes: number[] = [];
  for (const arg of args) {
    const m = /^([0-9]{3})(?:-([0-9]{3}))?$/.exec(arg);
    if (m === null) return null;
    const first = Number(m[1]);
    const last = Number(m[2] ?? m[1]);
    if (first < 100 || last > 599 || first > last) return null;
    for (let c = first; c <= last; c++) if (!codes.includes(c)) codes.push(c);
  }
  return codes.length > 0 ? codes : null;
}

/** HTTP_GET/SSL_GET's first `url` block → `http:` settings; later ones are reported. */
function httpSettings(
  urls: KeepalivedNode[],
  host: string | undefined,
  skip: SkipSink,
): RawMap {
  // No status_code: tunvs's default is keepalived's own (any 2xx), so nothing is written.
  const http: RawMap = { path: "/" };
  let urlHost = host;
  const [first, ...rest] = urls;
  for (const extra of rest) skip(extra, "tunvs checks one url per real; the first one is kept");
  for (const option of first?.children ?? []) {
    switch (option.keyword) {
      case "path":
        if (option.args.length === 1 && option.args[0].startsWith("/")) http.path = option.args[0];
        else skip(option, 'needs one path starting with "/"');
        break;
      case "digest":
        if (option.args.length === 1 && /^[0-9a-fA-F]{32}$/.test(option.args[0])) {
          http.digest = option.args[0].toLowerCase();
        } else {
          skip(option, "needs an MD5 digest (32 hex digits, as genhash prints)");
        }
        break;
      case "status_code": {
        const codes = statusCodes(option.args);
        if (codes === null) skip(option, "needs status codes or ranges from 100 to 599");
        else http.status = codes;
        break;
      }
      case "virtualhost":
        if (option.args.length === 1) urlHost = option.args[0];
        else skip(option, "needs one host name");
        break;
      default:
        skip(option, "tunvs's http check has no such url setting");
    }
  }
  if (urlHost !== undefined) http.host = urlHost;
  return http;
}

/**
 * The `health_check` block for one checker of a real. `inherited` holds the virtual_server's
 * settings overridden by the real_server's; `vsDelayLoop` is the virtual_server's own (MISC_CHECK
 * times out after it). Null when tunvs has no such checker (reported).
 */
export function healthCheckFrom(
  checker: KeepalivedNode,
  inherited: CheckDefaults,
  vsDelayLoop: number | undefined,
  skip: SkipSink,
): RawMap | null {
  const type = CHECKERS[checker.keyword];
  if (type === undefined || type === null) {
    skip(checker, "tunvs has no such checker");
    return null;
  }
  const own: CheckDefaults = { ...inherited };
  let port: number | undefined;
  const urls: KeepalivedNode[] = [];
  let command: string | undefined;
  let miscTimeout: number | undefined;
  let dynamic = false;
  for (const option of checker.children) {
    if (type === "exec" && option.keyword === "connect_timeout") {
      skip(option, "MISC_CHECK has no connect_timeout (misc_timeout bounds its script)");
      continue;
    }
    if (readCheckDefault(option, own, skip)) continue;
    switch (option.keyword) {
      case "connect_port":
        port = numberArg(option, skip, LIMITS.port) ?? port;
        continue;
      case "url":
        if (type === "http" || type === "https") {
          urls.push(option);
          continue;
        }
        break;
      case "misc_path":
        if (type === "exec") {
          // The words keepalived would run, quoted or not: tunvs runs them without a shell.
          if (option.args.length > 0) command = option.args.join(" ");
          else skip(option, "needs the program to run");
          continue;
        }
        break;
      case "misc_timeout":
        if (type === "exec") {
          miscTimeout = numberArg(option, skip, LIMITS.timeout) ?? miscTimeout;
          continue;
        }
        break;
      case "misc_dynamic":
        if (type === "exec") {
          dynamic = true;
          continue;
        }
        break;
    }
    skip(option, `tunvs's ${type} check has no such setting`);
  }
  const d = KEEPALIVED_CHECK_DEFAULTS;
  if (type === "exec" && command === undefined) {
    skip(checker, "MISC_CHECK without misc_path runs nothing");
    return null;
  }
  const check: RawMap = {
    type,
    interval: own.delayLoop ?? d.delayLoop,
    // MISC_CHECK has no connect_timeout: its script runs for misc_timeout, else the
    // virtual_server's delay_loop (capped at the longest timeout appliance.yaml takes).
    timeout: type === "exec"
      ? miscTimeout ?? Math.min(vsDelayLoop ?? d.delayLoop, LIMITS.timeout.max)
      : own.connectTimeout ?? d.connectTimeout,
    retry: own.retry ?? (type === "exec" ? d.miscRetry : d.retry),
    delay_before_retry: own.delayBeforeRetry ??
      (type === "http" || type === "https" ? d.httpDelayBeforeRetry : d.delayBeforeRetry),
  };
  if (own.alpha === true) check.alpha = true;
  if (port !== undefined) check.port = port;
  if (type === "http" || type === "https") check.http = httpSettings(urls, own.virtualhost, skip);
  if (type === "exec") check.exec = { command: command!, ...(dynamic ? { dynamic: true } : {}) };
  return check;
}
