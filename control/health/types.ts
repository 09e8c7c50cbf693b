/**
 * Health-check model shared by the checkers, the per-real state machine and the config:
 * what a check targets, what it answers, and the settings keepalived operators know.
 */

/** Checker kinds accepted in `health_check.type`. */
export const HEALTH_CHECK_TYPES = ["tcp", "http", "https", "udp", "exec", "none"] as const;
/** A checker kind. */
export type HealthCheckType = (typeof HEALTH_CHECK_TYPES)[number];

/** Where a check goes: a real server's address and the port to probe. */
export interface CheckTarget {
  address: string;
  port: number;
}

/** The outcome of one check attempt. */
export interface CheckResult {
  ok: boolean;
  /** Time from the start of the attempt to its outcome. */
  latencyMs: number;
  /** Why it failed, or what it saw when it passed ("connected", "status 200"). */
  reason: string;
  /** A weight the check asks for (MISC_CHECK's dynamic exit codes); absent otherwise. */
  weight?: number;
}

/** HTTP and HTTPS checker settings (keepalived's HTTP_GET / SSL_GET `url` block). */
export interface HttpCheckSettings {
  method: string;
  path: string;
  /** Status codes that count as healthy. */
  status: number[];
  /** MD5 of the response body, lower-case hex, as keepalived's `digest`; null: not checked. */
  digest: string | null;
  /** Text the body must contain; null: not checked. */
  substring: string | null;
  /** Host header; null: the target's address. */
  host: string | null;
}

/** UDP checker settings. */
export interface UdpCheckSettings {
  /** Bytes sent, as text. */
  payload: string;
  /** Text a reply must contain; null: any reply; absent reply is only a failure when set. */
  expect: string | null;
}

/** Exec checker settings (keepalived's MISC_CHECK). */
export interface ExecCheckSettings {
  /** Program and arguments; run without a shell. */
  command: string[];
  /** keepalived's misc_dynamic: exit 2..255 means healthy with weight exit-2. */
  dynamic: boolean;
}

/** One health check's settings, every default filled in; times in seconds as configured. */
export interface HealthCheckConfig {
  type: HealthCheckType;
  /** Seconds between rounds (keepalived's delay_loop). */
  interval: number;
  /** Seconds each attempt may take (connect_timeout). */
  timeout: number;
  /** Extra attempts after a failed one before the round counts as failed (retry/nb_get_retry). */
  retry: number;
  /** Seconds between a failed attempt and its retry. */
  delayBeforeRetry: number;
  /** Consecutive passing rounds that bring a down real up. */
  rise: number;
  /** Consecutive failing rounds that take an up real down. */
  fall: number;
  /** Start the real down until it passes (keepalived's alpha); otherwise it starts up. */
  alpha: boolean;
  /** Port probed; absent: the real's port. */
  port?: number;
  http?: HttpCheckSettings;
  udp?: UdpCheckSettings;
  exec?: ExecCheckSettings;
}

/** keepalived's HTTP_GET/SSL_GET default: any 2xx status (HTTP_DEFAULT_STATUS_CODE_MIN..MAX). */
export const HTTP_DEFAULT_STATUS: readonly number[] = Array.from(
  { length: 100 },
  (_, i) => 200 + i,
);

/**
 * keepalived's defaults, as keepalived.conf(5) (2.2.7) and its check code give them:
 * delay_loop 60 (KEEPALIVED_DEFAULT_DELAY), connect_timeout 5, retry 1 (MISC_CHECK: 0),
 * delay_before_retry 1 (HTTP_GET/SSL_GET: 3, check_http.c), url status_code 200-299. MISC_CHECK
 * has no connect_timeout: its misc_timeout defaults to delay_loop, so an exec check's timeout
 * does too. rise/fall 1 is keepalived's behaviour of acting on one failed round.
 */
export const HEALTH_CHECK_DEFAULTS = {
  interval: 60,
  timeout: 5,
  retry: 1,
  execRetry: 0,
  delayBeforeRetry: 1,
  httpDelayBeforeRetry: 3,
  rise: 1,
  fall: 1,
  alpha: false,
  http: { method: "GET", path: "/", status: HTTP_DEFAULT_STATUS },
  udp: { payload: "" },
} as const;

/** Milliseconds elapsed since `start` (a performance.now() reading), rounded to 0.1 ms. */
export function elapsedMs(start: number): number {
  return Math.round((performance.now() - start) * 10) / 10;
}

/** Text of an error for a failure reason. */
export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
