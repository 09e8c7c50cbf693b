/**
 * Per-real health state with keepalived's semantics, and the scheduler that runs the checks.
 *
 * Each real runs rounds: an attempt, then up to `retry` more after `delayBeforeRetry` while they
 * fail; the round passes on the first passing attempt and fails when all fail. `rise` passing
 * rounds in a row bring a down real up, `fall` failing rounds take an up real down, so one lost
 * probe never moves traffic. The next round starts `interval` after the previous one ends, plus
 * a random jitter so that reals configured alike do not probe in lockstep. Operators can pause a
 * real's checks and force it up or down; the effective state is the forced one when set.
 * Every effective change goes to `onChange`, the hook the dataplane integration uses.
 */
import { type Checker, checkerFor } from "./checker.ts";
import { type Clock, systemClock, type TimerId } from "./clock.ts";
import { Limiter } from "./limiter.ts";
import type { CheckTarget, HealthCheckConfig } from "./types.ts";

/** Called when a real's effective state changes; `reason` says what decided it. */
export type HealthChangeCallback = (
  service: string,
  real: CheckTarget,
  up: boolean,
  reason: string,
) => void;

/** Called when a dynamic exec check asks for a new weight. */
export type WeightChangeCallback = (service: string, real: CheckTarget, weight: number) => void;

/** Called after every round, before any state change it causes is reported. */
export type RoundCallback = (
  service: string,
  real: CheckTarget,
  type: HealthCheckConfig["type"],
  last: LastCheck,
) => void;

/** An operator's override: force the real up or down, or null to follow the checks. */
export type ForcedState = "up" | "down" | null;

/** How the monitor is wired; only onChange is required. */
export interface HealthMonitorOptions {
  onChange: HealthChangeCallback;
  onWeight?: WeightChangeCallback;
  onRound?: RoundCallback;
  clock?: Clock;
  /** Uniform [0, 1) source for the jitter. */
  random?: () => number;
  /** Checks in flight at once. */
  maxInFlight?: number;
  /** Upper bound of the jitter added before each round; also at most a tenth of the interval. */
  maxJitterMs?: number;
  /** Builds the checker for a config (tests inject fakes). */
  checkerFor?: (config: HealthCheckConfig) => Checker;
}

/** Default bound on checks in flight. */
export const DEFAULT_MAX_IN_FLIGHT = 32;
/** Default upper bound of the jitter. */
export const DEFAULT_MAX_JITTER_MS = 1000;

/** The last round's outcome, as the API shows it. */
export interface LastCheck {
  ok: boolean;
  latencyMs: number;
  reason: string;
  /** Attempts the round took (1 + retries used). */
  attempts: number;
  /** Clock time the round ended, ms. */
  at: number;
}

/** A real's health as the API shows it. */
export interface RealHealthStatus {
  service: string;
  address: string;
  port: number;
  type: HealthCheckConfig["type"];
  /** Effective state: the forced one, else the checked one. */
  up: boolean;
  checkedUp: boolean;
  forced: ForcedState;
  paused: boolean;
  /** Consecutive passing / failing rounds. */
  successes: number;
  failures: number;
  /** The weight a dynamic check last asked for. */
  weight?: number;
  last: LastCheck | null;
  /** Clock time of the last effective change, ms; null if none yet. */
  lastChange: number | null;
}

interface RealState {
  service: string;
  target: CheckTarget;
  /** Where checks go: the check's own port, else the real's. */
  probe: CheckTarget;
  config: HealthCheckConfig;
  checker: Checker;
  checkedUp: boolean;
  forced: ForcedState;
  paused: boolean;
  stopped: boolean;
  running: boolean;
  successes: number;
  failures: number;
  weight?: number;
  last: LastCheck | null;
  lastChange: number | null;
  timer: TimerId | null;
}

function key(service: string, target: CheckTarget): string {
  return `${service}\u0000${target.address}:${target.port}`;
}

function effective(r: RealState): boolean {
  return r.forced === null ? r.checkedUp : r.forced === "up";
}

function statusOf(r: RealState): RealHealthStatus {
  return {
    service: r.service,
    address: r.target.address,
    port: r.target.port,
    type: r.config.type,
    up: effective(r),
    checkedUp: r.checkedUp,
    forced: r.forced,
    paused: r.paused,
    successes: r.successes,
    failures: r.failures,
    ...(r.weight === undefined ? {} : { weight: r.weight }),
    last: r.last === null ? null : { ...r.last },
    lastChange: r.lastChange,
  };
}

/** Runs health checks for registered reals and reports their state changes. */
export class HealthMonitor {
  private readonly reals = new Map<string, RealState>();
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly limiter: Limiter;
  private readonly maxJitterMs: number;
  private readonly makeChecker: (config: HealthCheckConfig) => Checker;

  /** Wires the callbacks; nothing runs until add(). */
  constructor(private readonly options: HealthMonitorOptions) {
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.limiter = new Limiter(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
    this.maxJitterMs = options.maxJitterMs ?? DEFAULT_MAX_JITTER_MS;
    this.makeChecker = options.checkerFor ?? checkerFor;
  }

  /** Checks in flight now (bounded by maxInFlight). */
  get inFlight(): number {
    return this.limiter.inFlight;
  }

  /**
   * Starts checking a real; its first round runs at once (after the jitter). Returns the state
   * it starts in: `initialUp` when given (a real whose check changed keeps its state), else
   * down with `alpha` and up without. A real already registered is replaced. Checks probe
   * `config.port` when set, else the target's port.
   */
  add(
    service: string,
    target: CheckTarget,
    config: HealthCheckConfig,
    initialUp?: boolean,
  ): boolean {
    this.remove(service, target);
    const r: RealState = {
      service,
      target: { address: target.address, port: target.port },
      probe: { address: target.address, port: config.port ?? target.port },
      config,
      checker: this.makeChecker(config),
      checkedUp: initialUp ?? !config.alpha,
      forced: null,
      paused: false,
      stopped: false,
      running: false,
      successes: 0,
      failures: 0,
      last: null,
      lastChange: null,
      timer: null,
    };
    this.reals.set(key(service, target), r);
    this.schedule(r, 0);
    return r.checkedUp;
  }

  /** Stops checking a real and forgets it; a round in flight is discarded. */
  remove(service: string, target: CheckTarget): void {
    const r = this.reals.get(key(service, target));
    if (r === undefined) return;
    this.cancel(r);
    this.reals.delete(key(service, target));
  }

  /** Stops every real's checks. */
  stop(): void {
    for (const r of this.reals.values()) this.cancel(r);
    this.reals.clear();
  }

  /** Suspends a real's checks; its state stays as it is. */
  pause(service: string, target: CheckTarget): void {
    const r = this.get(service, target);
    r.paused = true;
    if (r.timer !== null && !r.running) {
      this.clock.clearTimeout(r.timer);
      r.timer = null;
    }
  }

  /** Resumes a paused real's checks with a round at once. */
  resume(service: string, target: CheckTarget): void {
    const r = this.get(service, target);
    if (!r.paused) return;
    r.paused = false;
    if (!r.running && r.timer === null) this.schedule(r, 0);
  }

  /** Forces a real up or down (maintenance), or back to its checked state with null. */
  force(service: string, target: CheckTarget, state: ForcedState): void {
    const r = this.get(service, target);
    const before = effective(r);
    r.forced = state;
    const after = effective(r);
    if (before !== after) {
      const reason = state === null
        ? `operator cleared the override; checks say ${after ? "up" : "down"}`
        : `forced ${state} by operator`;
      this.changed(r, after, reason);
    }
  }

  /** Whether a real is up now (effective state). */
  isUp(service: string, target: CheckTarget): boolean {
    return effective(this.get(service, target));
  }

  /** Every real's health, in registration order. */
  status(): RealHealthStatus[] {
    return [...this.reals.values()].map(statusOf);
  }

  /** One real's health, or undefined when it is not registered. */
  statusOf(service: string, target: CheckTarget): RealHealthStatus | undefined {
    const r = this.reals.get(key(service, target));
    return r === undefined ? undefined : statusOf(r);
  }

  private get(service: string, target: CheckTarget): RealState {
    const r = this.reals.get(key(service, target));
    if (r === undefined) {
      throw new Error(`no health check for ${service} ${target.address}:${target.port}`);
    }
    return r;
  }

  private cancel(r: RealState): void {
    r.stopped = true;
    if (r.timer !== null) this.clock.clearTimeout(r.timer);
    r.timer = null;
  }

  /** The jitter's bound for a real: small next to its interval. */
  jitterBoundMs(config: HealthCheckConfig): number {
    return Math.min(this.maxJitterMs, config.interval * 100);
  }

  private schedule(r: RealState, delayMs: number): void {
    const jitter = Math.floor(this.random() * this.jitterBoundMs(r.config));
    r.timer = this.clock.setTimeout(() => {
      r.timer = null;
      void this.round(r);
    }, delayMs + jitter);
  }

  private sleep(r: RealState, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      r.timer = this.clock.setTimeout(() => {
        r.timer = null;
        resolve();
      }, ms);
    });
  }

  private async attempt(r: RealState) {
    await this.limiter.acquire();
    const controller = new AbortController();
    const timer = this.clock.setTimeout(() => controller.abort(), r.config.timeout * 1000);
    try {
      return await r.checker(r.probe, controller.signal);
    } catch (e) {
      return { ok: false, latencyMs: 0, reason: e instanceof Error ? e.message : String(e) };
    } finally {
      this.clock.clearTimeout(timer);
      this.limiter.release();
    }
  }

  private async round(r: RealState): Promise<void> {
    if (r.stopped || r.paused) return;
    r.running = true;
    let attempts = 0;
    let result;
    for (;;) {
      result = await this.attempt(r);
      attempts++;
      if (r.stopped) return;
      if (result.ok || attempts > r.config.retry) break;
      await this.sleep(r, r.config.delayBeforeRetry * 1000);
      if (r.stopped) return;
    }
    r.running = false;
    r.last = {
      ok: result.ok,
      latencyMs: result.latencyMs,
      reason: result.reason,
      attempts,
      at: this.clock.now(),
    };
    this.options.onRound?.(r.service, { ...r.target }, r.config.type, { ...r.last });
    this.record(r, result.ok, result.reason, result.weight);
    if (!r.paused) this.schedule(r, r.config.interval * 1000);
  }

  private record(r: RealState, ok: boolean, reason: string, weight: number | undefined): void {
    const before = effective(r);
    if (ok) {
      r.successes++;
      r.failures = 0;
      if (!r.checkedUp && r.successes >= r.config.rise) r.checkedUp = true;
    } else {
      r.failures++;
      r.successes = 0;
      if (r.checkedUp && r.failures >= r.config.fall) r.checkedUp = false;
    }
    if (weight !== undefined && weight !== r.weight) {
      r.weight = weight;
      this.options.onWeight?.(r.service, r.target, weight);
    }
    const after = effective(r);
    if (before !== after) {
      const count = ok ? `${r.successes} passing` : `${r.failures} failing`;
      this.changed(r, after, `${reason} (${count} in a row)`);
    }
  }

  private changed(r: RealState, up: boolean, reason: string): void {
    r.lastChange = this.clock.now();
    this.options.onChange(r.service, { ...r.target }, up, reason);
  }
}
