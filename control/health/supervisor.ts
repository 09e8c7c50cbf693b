/**
 * Turns health into dataplane changes: keeps a HealthMonitor checking the reals the
 * configuration asks to check, holds each real's state (checked, forced by an operator) and
 * each service's quorum state, and computes the configuration the dataplane should run
 * (`effective`) as an overlay on the operator's. When a change alters that overlay it asks the
 * appliance to re-apply (`reapply`), logs it with its reason and timing, emits a HealthEvent,
 * counts it, and runs the real's notify_up / notify_down command in the background.
 *
 * Reals without a check (no `health_check:` or type none) are up unless an operator forces
 * them down. A configuration change keeps the state of reals whose check did not change; a real
 * whose check changed keeps its current state until its new check decides otherwise, so a
 * reload never makes a real flap. Operator overrides (force, pause) survive reloads.
 *
 * Connections: a real that leaves the service on failure drains by default (IPVS without
 * expire_nodest_conn); with the service's `expire_on_failure: true` the re-apply asks to cut
 * them. A real kept at weight 0 (inhibit_on_failure) keeps its connections either way.
 */
import type { ApplianceConfig, RealConfig, ServiceConfig } from "../config.ts";
import { log as defaultLog, type LogValue } from "../log.ts";
import { type Clock, systemClock } from "./clock.ts";
import {
  type ForcedState,
  HealthMonitor,
  type HealthMonitorOptions,
  type LastCheck,
} from "./monitor.ts";
import {
  DEFAULT_NOTIFY_TIMEOUT_MS,
  type NotifyOutcome,
  type NotifyRunner,
  notifySucceeded,
  runNotifyCommand,
} from "./notify.ts";
import {
  type LivenessOf,
  overlayReals,
  quorumSettings,
  type RealLiveness,
  serviceLiveWeight,
} from "./overlay.ts";
import { initialQuorumUp, nextQuorumUp, quorumDownThreshold, quorumUpThreshold } from "./quorum.ts";
import { type CheckTarget, HEALTH_CHECK_TYPES, type HealthCheckConfig } from "./types.ts";

/** A real's state changed (checks, operator, configuration). */
export interface RealStateEvent {
  kind: "real";
  service: string;
  address: string;
  port: number;
  state: "up" | "down";
  reason: string;
  /** What decided it. */
  cause: "check" | "operator" | "config";
  /** Clock time of the change, ms. */
  at: number;
  /** How long the real had been in its previous state, ms. */
  previousForMs: number;
  /** The deciding check's latency, when a check decided. */
  latencyMs?: number;
}

/** A service gained or lost its quorum. */
export interface ServiceStateEvent {
  kind: "service";
  service: string;
  state: "up" | "down";
  reason: string;
  at: number;
  /** How long the service had been in its previous state, ms; null at start. */
  previousForMs: number | null;
  /** Sum of the weights of its live reals. */
  liveWeight: number;
  /** The threshold that was crossed (quorum ± hysteresis). */
  threshold: number;
  /** Whether the sorry server now takes the new connections. */
  sorryActive: boolean;
}

/** A dynamic exec check asked for a new weight. */
export interface WeightEvent {
  kind: "weight";
  service: string;
  address: string;
  port: number;
  weight: number;
  /** The weight it replaced (dynamic or configured). */
  previous: number;
  at: number;
}

/** An operator paused, resumed or forced a real, or a real left the configuration. */
export interface ControlEvent {
  kind: "control";
  service: string;
  address: string;
  port: number;
  action: "pause" | "resume" | "force" | "removed";
  /** For force: the override set (null: cleared). */
  forced?: ForcedState;
  at: number;
}

/** What the event stream and the logs receive. */
export type HealthEvent = RealStateEvent | ServiceStateEvent | WeightEvent | ControlEvent;

/** A real's health as the API shows it. */
export interface RealHealthView {
  service: string;
  address: string;
  port: number;
  /** Effective state: the forced one, else the checked one (up when not checked). */
  state: "up" | "down";
  /** What the checks say; equals state unless forced. */
  checked: "up" | "down";
  forced: ForcedState;
  paused: boolean;
  /** The checker, or "none" when the real is not checked. */
  check: HealthCheckConfig["type"];
  /** Configured weight. */
  weight: number;
  /** The weight a dynamic check asked for, if any. */
  dynamicWeight?: number;
  /** Weight in the dataplane: 0 when kept inhibited, null when not scheduled at all. */
  effectiveWeight: number | null;
  /** Consecutive passing / failing rounds. */
  successes: number;
  failures: number;
  last: LastCheck | null;
  /** Clock time the real entered its state (or was registered), ms. */
  since: number;
  transitions: { up: number; down: number };
}

/** A service's health as the API shows it. */
export interface ServiceHealthView {
  service: string;
  reals: number;
  upReals: number;
  liveWeight: number;
  quorum: number;
  hysteresis: number;
  /** Weight needed to come up / weight below which it goes down. */
  upThreshold: number;
  downThreshold: number;
  state: "up" | "down";
  sorryServer: { address: string; port: number } | null;
  sorryActive: boolean;
  /** Clock time of the last quorum change (or the first sync), ms. */
  since: number;
  transitions: { up: number; down: number };
}

/**
 * Counters for /metrics. They never go back: totals of reals and services that left the
 * configuration stay (bounded by what was ever configured in this process).
 */
export interface HealthCounts {
  /** State changes per real, by the state it went to. */
  reals: { service: string; address: string; port: number; up: number; down: number }[];
  /** Per checker type: rounds run, rounds failed, attempts made (rounds plus retries). */
  checks: { type: HealthCheckConfig["type"]; run: number; failed: number; attempts: number }[];
  /** Quorum changes per service. */
  services: { service: string; up: number; down: number }[];
}

/** Thrown for a service or real the supervisor does not know (the API answers 404). */
export class HealthNotFoundError extends Error {
  /** Builds the message from what was looked up. */
  constructor(readonly what: "service" | "real", message: string) {
    super(message);
    this.name = "HealthNotFoundError";
  }
}

/** Thrown when pausing or resuming a real that has no health check (the API answers 409). */
export class NoHealthCheckError extends Error {
  /** Names the real in the message. */
  constructor(message: string) {
    super(message);
    this.name = "NoHealthCheckError";
  }
}

/** How the supervisor is wired; only reapply is required. */
export interface HealthSupervisorOptions {
  /**
   * Asks the appliance to apply `effective(current configuration)` to the dataplane,
   * serialized with other changes; `cut`: connections of reals that left are cut, not drained.
   * Must not throw; it is called from the check loop.
   */
  reapply(reason: string, cut: boolean): void;
  /** Receives every event (SSE stream, logs). */
  onEvent?(event: HealthEvent): void;
  /** Runs notify commands; default: runNotifyCommand. */
  notify?: NotifyRunner;
  /** Time a notify command may run. */
  notifyTimeoutMs?: number;
  clock?: Clock;
  /** Builds the monitor (tests inject fake checkers and clocks through it). */
  createMonitor?(options: HealthMonitorOptions): HealthMonitor;
  /** Where log lines go; default control/log.ts. */
  log?(message: string, fields: Record<string, LogValue>): void;
}

interface RealRecord {
  service: string;
  target: CheckTarget;
  /** The check in force; null: not checked. */
  check: HealthCheckConfig | null;
  /** Identity of `check`, to see whether a reload changed it. */
  checkKey: string;
  checkedUp: boolean;
  forced: ForcedState;
  paused: boolean;
  dynamicWeight?: number;
  /** Effective state last reported. */
  up: boolean;
  since: number;
  tally: Tally;
  last: LastCheck | null;
  notifyUp?: string[];
  notifyDown?: string[];
  /** Notify commands of this real run one after the other, in the order of its changes. */
  notifyChain: Promise<void>;
}

interface ServiceRecord {
  up: boolean;
  since: number;
  tally: Tally;
}

/** Transitions to up and to down. */
interface Tally {
  up: number;
  down: number;
}

function realKey(service: string, address: string, port: number): string {
  return `${service}\u0000${address}:${port}`;
}

function effectiveUp(r: RealRecord): boolean {
  return r.forced === null ? r.checkedUp : r.forced === "up";
}

function activeCheck(real: RealConfig): HealthCheckConfig | null {
  const c = real.healthCheck;
  return c === undefined || c.type === "none" ? null : c;
}

function describeReal(r: { service: string; target: CheckTarget }): string {
  return `${r.service} ${r.target.address}:${r.target.port}`;
}

/** A service's overlay as a comparable set: real → weight. */
type Published = Map<string, number>;

/** Keeps reals' health, derives the dataplane's configuration from it, and reports changes. */
export class HealthSupervisor {
  private readonly clock: Clock;
  private readonly monitor: HealthMonitor;
  private readonly notifyRunner: NotifyRunner;
  private readonly notifyTimeoutMs: number;
  private readonly write: (message: string, fields: Record<string, LogValue>) => void;
  private readonly reals = new Map<string, RealRecord>();
  private readonly services = new Map<string, ServiceRecord>();
  private readonly serviceConfigs = new Map<string, ServiceConfig>();
  private readonly published = new Map<string, Published>();
  private readonly realTallies = new Map<
    string,
    { service: string; address: string; port: number; tally: Tally }
  >();
  private readonly serviceTallies = new Map<string, Tally>();
  private readonly checkCounts = new Map<
    string,
    { run: number; failed: number; attempts: number }
  >();
  private readonly pendingNotifies = new Set<Promise<void>>();
  private syncing = false;
  private stopped = false;

  /** Wires the hooks; nothing is checked until sync(). */
  constructor(private readonly options: HealthSupervisorOptions) {
    this.clock = options.clock ?? systemClock;
    this.notifyRunner = options.notify ?? runNotifyCommand;
    this.notifyTimeoutMs = options.notifyTimeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
    this.write = options.log ?? defaultLog;
    for (const type of HEALTH_CHECK_TYPES) {
      this.checkCounts.set(type, { run: 0, failed: 0, attempts: 0 });
    }
    const monitorOptions: HealthMonitorOptions = {
      clock: this.clock,
      onChange: (service, real, up, reason) =>
        this.guard(() => this.onCheckedChange(service, real, up, reason)),
      onWeight: (service, real, weight) =>
        this.guard(() => this.onDynamicWeight(service, real, weight)),
      onRound: (service, real, type, last) =>
        this.guard(() => this.onRound(service, real, type, last)),
    };
    this.monitor = options.createMonitor?.(monitorOptions) ?? new HealthMonitor(monitorOptions);
  }

  /**
   * Makes the checks follow `config`: registers new reals, forgets removed ones, re-registers
   * reals whose check changed and keeps the rest as they are. Does not call reapply: the caller
   * applies effective(config) itself.
   */
  sync(config: ApplianceConfig): void {
    if (this.stopped) throw new Error("the health supervisor is stopped");
    this.syncing = true;
    try {
      this.syncReals(config);
      this.syncServices(config);
      for (const svc of config.services) this.published.set(svc.name, this.overlayOf(svc));
    } finally {
      this.syncing = false;
    }
  }

  /**
   * The configuration the dataplane should run: `config` with down reals removed (or at weight
   * 0 under inhibit_on_failure), dynamic weights in place, and the sorry server alone for a
   * service that lost its quorum. Pure: `config` is not modified.
   */
  effective(config: ApplianceConfig): ApplianceConfig {
    return {
      ...config,
      services: config.services.map((svc) => ({
        ...svc,
        reals: overlayReals(svc, this.livenessIn(svc.name), this.quorumUpOf(svc)),
      })),
    };
  }

  /** Suspends a real's checks; its state stays as it is. */
  pause(service: string, address: string, port: number): void {
    const r = this.checkedRecord(service, address, port);
    if (r.paused) return;
    r.paused = true;
    this.monitor.pause(service, r.target);
    this.control(r, "pause");
  }

  /** Resumes a real's checks with a round at once. */
  resume(service: string, address: string, port: number): void {
    const r = this.checkedRecord(service, address, port);
    if (!r.paused) return;
    r.paused = false;
    this.monitor.resume(service, r.target);
    this.control(r, "resume");
  }

  /** Forces a real up or down (maintenance), or back to what its checks say with null. */
  force(service: string, address: string, port: number, state: ForcedState): void {
    const r = this.record(service, address, port);
    if (r.forced === state) return;
    r.forced = state;
    this.control(r, "force", state);
    const reason = state === null
      ? `operator cleared the override; checks say ${r.checkedUp ? "up" : "down"}`
      : `forced ${state} by operator`;
    this.settle(r, reason, "operator");
  }

  /** Every real's health, in configuration order. */
  status(): RealHealthView[] {
    const views: RealHealthView[] = [];
    for (const [name, svc] of this.serviceConfigs) {
      const overlay = this.published.get(name) ?? new Map<string, number>();
      for (const real of svc.reals) {
        const r = this.reals.get(realKey(name, real.address, real.port));
        if (r !== undefined) views.push(this.viewOf(r, real, overlay));
      }
    }
    return views;
  }

  /** One real's health; throws HealthNotFoundError when unknown. */
  realStatus(service: string, address: string, port: number): RealHealthView {
    const r = this.record(service, address, port);
    const svc = this.serviceConfigs.get(service)!;
    const real = svc.reals.find((x) => x.address === address && x.port === port)!;
    return this.viewOf(r, real, this.published.get(service) ?? new Map());
  }

  /** Every service's quorum and sorry-server state, in configuration order. */
  serviceStatus(): ServiceHealthView[] {
    return [...this.serviceConfigs.values()].map((svc) => {
      const rec = this.services.get(svc.name)!;
      const q = quorumSettings(svc);
      const liveness = this.livenessIn(svc.name);
      return {
        service: svc.name,
        reals: svc.reals.length,
        upReals: svc.reals.filter((real) => liveness(real).up).length,
        liveWeight: serviceLiveWeight(svc, liveness),
        quorum: q.quorum,
        hysteresis: q.hysteresis,
        upThreshold: quorumUpThreshold(q),
        downThreshold: quorumDownThreshold(q),
        state: rec.up ? "up" : "down",
        sorryServer: svc.sorryServer === undefined ? null : { ...svc.sorryServer },
        sorryActive: !rec.up && svc.sorryServer !== undefined,
        since: rec.since,
        transitions: { ...rec.tally },
      };
    });
  }

  /** Counters for /metrics. */
  counts(): HealthCounts {
    return {
      reals: [...this.realTallies.values()].map((t) => ({
        service: t.service,
        address: t.address,
        port: t.port,
        ...t.tally,
      })),
      checks: HEALTH_CHECK_TYPES.filter((t) => t !== "none").map((type) => ({
        type,
        ...this.checkCounts.get(type)!,
      })),
      services: [...this.serviceTallies].map(([service, t]) => ({ service, ...t })),
    };
  }

  /** Resolves once every notify command started so far has ended. */
  async idle(): Promise<void> {
    while (this.pendingNotifies.size > 0) await Promise.all([...this.pendingNotifies]);
  }

  /** Stops every check; nothing is reported afterwards. Notify commands running finish. */
  stop(): void {
    this.stopped = true;
    this.monitor.stop();
  }

  // -------------------------------------------------------------------------------------------

  private syncReals(config: ApplianceConfig): void {
    const seen = new Set<string>();
    const counts = { added: 0, changed: 0, removed: 0 };
    for (const svc of config.services) {
      for (const real of svc.reals) {
        const key = realKey(svc.name, real.address, real.port);
        seen.add(key);
        const check = activeCheck(real);
        const existing = this.reals.get(key);
        if (existing === undefined) {
          this.reals.set(key, this.register(svc.name, real, check));
          counts.added++;
          continue;
        }
        existing.notifyUp = real.notifyUp;
        existing.notifyDown = real.notifyDown;
        if (existing.checkKey !== JSON.stringify(check)) {
          this.recheck(existing, check);
          counts.changed++;
        }
      }
    }
    for (const [key, r] of this.reals) {
      if (seen.has(key)) continue;
      counts.removed++;
      if (r.check !== null) this.monitor.remove(r.service, r.target);
      this.reals.delete(key);
      this.control(r, "removed");
      // keepalived runs notify_down for a live real that leaves the configuration.
      if (r.up) this.notify(r, false, "removed from the configuration");
    }
    if (counts.added + counts.changed + counts.removed > 0) {
      let checked = 0;
      for (const r of this.reals.values()) if (r.check !== null) checked++;
      this.write("health checks updated", { reals: this.reals.size, checked, ...counts });
    }
  }

  private register(service: string, real: RealConfig, check: HealthCheckConfig | null) {
    const target = { address: real.address, port: real.port };
    const checkedUp = check === null ? true : this.monitor.add(service, target, check);
    const r: RealRecord = {
      service,
      target,
      check,
      checkKey: JSON.stringify(check),
      checkedUp,
      forced: null,
      paused: false,
      up: checkedUp,
      since: this.clock.now(),
      tally: this.realTally(service, target),
      last: null,
      notifyUp: real.notifyUp,
      notifyDown: real.notifyDown,
      notifyChain: Promise.resolve(),
    };
    return r;
  }

  private realTally(service: string, target: CheckTarget): Tally {
    const key = realKey(service, target.address, target.port);
    let t = this.realTallies.get(key);
    if (t === undefined) {
      t = { service, address: target.address, port: target.port, tally: { up: 0, down: 0 } };
      this.realTallies.set(key, t);
    }
    return t.tally;
  }

  /** A reload changed a real's check: the new one starts from the real's current state. */
  private recheck(r: RealRecord, check: HealthCheckConfig | null): void {
    const before = r.check?.type ?? "none";
    if (check === null) {
      this.monitor.remove(r.service, r.target);
      r.checkedUp = true;
      r.paused = false;
      r.last = null;
    } else {
      this.monitor.add(r.service, r.target, check, r.checkedUp);
      if (r.paused) this.monitor.pause(r.service, r.target);
    }
    if (check === null || check.type !== "exec" || check.exec?.dynamic !== true) {
      delete r.dynamicWeight;
    }
    r.check = check;
    r.checkKey = JSON.stringify(check);
    this.write("health check changed", {
      service: r.service,
      real: `${r.target.address}:${r.target.port}`,
      from: before,
      to: check?.type ?? "none",
    });
    this.settle(r, check === null ? "health check removed" : "health check changed", "config");
  }

  private syncServices(config: ApplianceConfig): void {
    const names = new Set(config.services.map((s) => s.name));
    for (const name of [...this.serviceConfigs.keys()]) {
      if (names.has(name)) continue;
      this.serviceConfigs.delete(name);
      this.services.delete(name);
      this.published.delete(name);
    }
    for (const svc of config.services) {
      this.serviceConfigs.set(svc.name, svc);
      if (this.services.has(svc.name)) {
        this.updateQuorum(svc, "configuration changed");
        continue;
      }
      const weight = serviceLiveWeight(svc, this.livenessIn(svc.name));
      const q = quorumSettings(svc);
      const up = initialQuorumUp(weight, q);
      let tally = this.serviceTallies.get(svc.name);
      if (tally === undefined) this.serviceTallies.set(svc.name, tally = { up: 0, down: 0 });
      this.services.set(svc.name, { up, since: this.clock.now(), tally });
      if (!up) {
        this.serviceChanged(svc, false, "starting with quorum down", weight, null);
      }
    }
  }

  /** Reports a real's effective change, if any, and what it does to its service. */
  private settle(r: RealRecord, reason: string, cause: RealStateEvent["cause"]): void {
    const up = effectiveUp(r);
    if (up !== r.up) {
      const now = this.clock.now();
      const previousForMs = now - r.since;
      r.up = up;
      r.since = now;
      if (up) r.tally.up++;
      else r.tally.down++;
      const latencyMs = cause === "check" ? r.last?.latencyMs : undefined;
      this.write(up ? "real server up" : "real server down", {
        service: r.service,
        real: `${r.target.address}:${r.target.port}`,
        reason,
        cause,
        check: r.check?.type ?? "none",
        after_ms: previousForMs,
        latency_ms: latencyMs,
        forced: r.forced ?? undefined,
      });
      this.emit({
        kind: "real",
        service: r.service,
        address: r.target.address,
        port: r.target.port,
        state: up ? "up" : "down",
        reason,
        cause,
        at: now,
        previousForMs,
        ...(latencyMs === undefined ? {} : { latencyMs }),
      });
      this.notify(r, up, reason);
    }
    // During a sync the services are brought up to date once the reals are.
    if (this.syncing) return;
    this.serviceMayHaveChanged(r.service, `${describeReal(r)} ${up ? "up" : "down"}: ${reason}`);
  }

  private serviceMayHaveChanged(service: string, reason: string): void {
    const svc = this.serviceConfigs.get(service);
    if (svc === undefined) return;
    this.updateQuorum(svc, reason);
    this.publish(svc, reason);
  }

  private updateQuorum(svc: ServiceConfig, reason: string): void {
    const rec = this.services.get(svc.name);
    if (rec === undefined) return;
    const weight = serviceLiveWeight(svc, this.livenessIn(svc.name));
    const up = nextQuorumUp(rec.up, weight, quorumSettings(svc));
    if (up === rec.up) return;
    const now = this.clock.now();
    const previousForMs = now - rec.since;
    rec.up = up;
    rec.since = now;
    if (up) rec.tally.up++;
    else rec.tally.down++;
    this.serviceChanged(svc, up, reason, weight, previousForMs);
  }

  private serviceChanged(
    svc: ServiceConfig,
    up: boolean,
    reason: string,
    weight: number,
    previousForMs: number | null,
  ): void {
    const q = quorumSettings(svc);
    const threshold = up ? quorumUpThreshold(q) : quorumDownThreshold(q);
    const sorryActive = !up && svc.sorryServer !== undefined;
    this.write(up ? "service quorum gained" : "service quorum lost", {
      service: svc.name,
      reason,
      live_weight: weight,
      quorum: q.quorum,
      hysteresis: q.hysteresis,
      sorry_server: svc.sorryServer === undefined
        ? undefined
        : `${svc.sorryServer.address}:${svc.sorryServer.port} ${sorryActive ? "on" : "off"}`,
      after_ms: previousForMs ?? undefined,
    });
    this.emit({
      kind: "service",
      service: svc.name,
      state: up ? "up" : "down",
      reason,
      at: this.clock.now(),
      previousForMs,
      liveWeight: weight,
      threshold,
      sorryActive,
    });
  }

  /**
   * Asks for a re-apply when the service's overlay changed; with expire_on_failure, cuts the
   * connections of configured reals that left (a sorry server leaving after recovery drains).
   */
  private publish(svc: ServiceConfig, reason: string): void {
    const next = this.overlayOf(svc);
    const before = this.published.get(svc.name) ?? new Map<string, number>();
    const configured = new Set(svc.reals.map((r) => `${r.address}:${r.port}`));
    let same = next.size === before.size;
    let removed = false;
    for (const [key, weight] of before) {
      const now = next.get(key);
      if (now === undefined && configured.has(key)) removed = true;
      if (now !== weight) same = false;
    }
    if (same) return;
    this.published.set(svc.name, next);
    this.options.reapply(reason, removed && svc.expireOnFailure === true);
  }

  private overlayOf(svc: ServiceConfig): Published {
    const out: Published = new Map();
    for (const real of overlayReals(svc, this.livenessIn(svc.name), this.quorumUpOf(svc))) {
      out.set(`${real.address}:${real.port}`, real.weight);
    }
    return out;
  }

  private livenessIn(service: string): LivenessOf {
    return (real: RealConfig): RealLiveness => {
      const r = this.reals.get(realKey(service, real.address, real.port));
      if (r === undefined) return { up: true };
      const up = effectiveUp(r);
      return r.dynamicWeight === undefined ? { up } : { up, weight: r.dynamicWeight };
    };
  }

  private quorumUpOf(svc: ServiceConfig): boolean {
    const rec = this.services.get(svc.name);
    if (rec !== undefined) return rec.up;
    return initialQuorumUp(serviceLiveWeight(svc, this.livenessIn(svc.name)), quorumSettings(svc));
  }

  private onCheckedChange(service: string, real: CheckTarget, up: boolean, reason: string): void {
    const r = this.reals.get(realKey(service, real.address, real.port));
    if (r === undefined || this.stopped) return;
    r.checkedUp = up;
    if (r.forced !== null) {
      this.write("health check changed while forced", {
        service,
        real: `${real.address}:${real.port}`,
        checked: up ? "up" : "down",
        forced: r.forced,
        reason,
      });
      return;
    }
    this.settle(r, `${r.check?.type ?? "none"} check: ${reason}`, "check");
  }

  private onDynamicWeight(service: string, real: CheckTarget, weight: number): void {
    const r = this.reals.get(realKey(service, real.address, real.port));
    const svc = this.serviceConfigs.get(service);
    if (r === undefined || svc === undefined || this.stopped) return;
    const configured = svc.reals.find((x) => x.address === real.address && x.port === real.port);
    const previous = r.dynamicWeight ?? configured?.weight ?? 0;
    r.dynamicWeight = weight;
    if (previous === weight) return;
    this.write("real server weight changed", {
      service,
      real: `${real.address}:${real.port}`,
      from: previous,
      to: weight,
      reason: "dynamic exec check",
    });
    this.emit({
      kind: "weight",
      service,
      address: real.address,
      port: real.port,
      weight,
      previous,
      at: this.clock.now(),
    });
    this.serviceMayHaveChanged(service, `${describeReal(r)} weight ${previous} → ${weight}`);
  }

  private onRound(
    service: string,
    real: CheckTarget,
    type: HealthCheckConfig["type"],
    last: LastCheck,
  ): void {
    const counts = this.checkCounts.get(type);
    if (counts !== undefined) {
      counts.run++;
      counts.attempts += last.attempts;
      if (!last.ok) counts.failed++;
    }
    const r = this.reals.get(realKey(service, real.address, real.port));
    if (r !== undefined) r.last = last;
  }

  private notify(r: RealRecord, up: boolean, reason: string): void {
    const command = up ? r.notifyUp : r.notifyDown;
    if (command === undefined || command.length === 0) return;
    const real = `${r.target.address}:${r.target.port}`;
    const env = {
      TUNVS_SERVICE: r.service,
      TUNVS_REAL: real,
      TUNVS_STATE: up ? "up" : "down",
      TUNVS_REASON: reason,
    };
    const run = r.notifyChain.then(() =>
      this.notifyRunner(command, env, this.notifyTimeoutMs).then(
        (outcome) => this.logNotify(r.service, real, up, command, outcome),
        (e) => this.write("notify command failed", { service: r.service, real, error: String(e) }),
      )
    );
    r.notifyChain = run;
    this.pendingNotifies.add(run);
    void run.finally(() => this.pendingNotifies.delete(run));
  }

  private logNotify(
    service: string,
    real: string,
    up: boolean,
    command: string[],
    o: NotifyOutcome,
  ): void {
    const fields: Record<string, LogValue> = {
      service,
      real,
      state: up ? "up" : "down",
      command: command.join(" "),
      ms: o.ms,
      exit: o.code ?? undefined,
      signal: o.signal ?? undefined,
      timed_out: o.timedOut || undefined,
      error: o.error,
      stderr: o.stderr === "" ? undefined : o.stderr,
    };
    this.write(notifySucceeded(o) ? "notify command ran" : "notify command failed", fields);
  }

  private control(r: RealRecord, action: ControlEvent["action"], forced?: ForcedState): void {
    this.write(`real server ${action === "removed" ? "removed from health checks" : action}`, {
      service: r.service,
      real: `${r.target.address}:${r.target.port}`,
      ...(action === "force" ? { forced: forced ?? "cleared" } : {}),
    });
    this.emit({
      kind: "control",
      service: r.service,
      address: r.target.address,
      port: r.target.port,
      action,
      ...(action === "force" ? { forced: forced ?? null } : {}),
      at: this.clock.now(),
    });
  }

  private emit(event: HealthEvent): void {
    if (this.stopped) return;
    try {
      this.options.onEvent?.(event);
    } catch (e) {
      this.write("health event listener failed", { error: String(e) });
    }
  }

  /** Callbacks run inside the monitor's check loop: an error there must not stop the loop. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.write("health supervisor error", {
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  private record(service: string, address: string, port: number): RealRecord {
    if (!this.serviceConfigs.has(service)) {
      throw new HealthNotFoundError("service", `no service named ${JSON.stringify(service)}`);
    }
    const r = this.reals.get(realKey(service, address, port));
    if (r === undefined) {
      throw new HealthNotFoundError("real", `service ${service} has no real ${address}:${port}`);
    }
    return r;
  }

  private checkedRecord(service: string, address: string, port: number): RealRecord {
    const r = this.record(service, address, port);
    if (r.check === null) {
      throw new NoHealthCheckError(
        `${service} ${address}:${port} has no health check to pause or resume`,
      );
    }
    return r;
  }

  private viewOf(r: RealRecord, real: RealConfig, overlay: Published): RealHealthView {
    const st = r.check === null ? undefined : this.monitor.statusOf(r.service, r.target);
    return {
      service: r.service,
      address: r.target.address,
      port: r.target.port,
      state: r.up ? "up" : "down",
      checked: r.checkedUp ? "up" : "down",
      forced: r.forced,
      paused: r.paused,
      check: r.check?.type ?? "none",
      weight: real.weight,
      ...(r.dynamicWeight === undefined ? {} : { dynamicWeight: r.dynamicWeight }),
      effectiveWeight: overlay.get(`${r.target.address}:${r.target.port}`) ?? null,
      successes: st?.successes ?? 0,
      failures: st?.failures ?? 0,
      last: r.last === null ? null : { ...r.last },
      since: r.since,
      transitions: { ...r.tally },
    };
  }
}
