/**
 * What the admin endpoint reads from and does to the running appliance; the appliance provides
 * it, tests fake it.
 *
 * @module
 */
import type { WorkerRequestName, WorkerRequests } from "../dataplane/worker.ts";
import type { ApplianceConfig } from "./config.ts";
import type { EventBus } from "./events.ts";
import type { HealthSupervisor } from "./health/supervisor.ts";
import type { MetricsExtras } from "./metrics.ts";
import type { ReloadResult } from "./reload.ts";
import type { ChangeOutcome } from "./running_config.ts";

/** Sends one request to the dataplane and resolves with its result. */
export type DataplaneRequester = <K extends WorkerRequestName>(
  name: K,
  params: WorkerRequests[K]["params"],
) => Promise<WorkerRequests[K]["result"]>;

/** The configuration in force, as RunningConfig shows it. */
export interface ConfigView {
  readonly config: ApplianceConfig;
  readonly version: string;
  readonly text: string;
  raw(): Record<string, unknown>;
}

/** A function from the raw configuration (appliance.yaml's shape) to the next one. */
export type RawEdit = (raw: Record<string, unknown>) => Record<string, unknown>;

/** What the admin endpoint reads from the running appliance. */
export interface AdminSource {
  running: ConfigView;
  request: DataplaneRequester;
  /**
   * Applies `edit` to the configuration based on version `basedOn` (null: any) and writes it
   * back; `cut` cuts the connections of reals it removes (else they drain).
   */
  change?(
    basedOn: string | null,
    edit: RawEdit,
    cut: boolean,
  ): Promise<ChangeOutcome<ReloadResult>>;
  /** Re-reads and applies the configuration file, changing nothing when it cannot. */
  reload?(cut: boolean): Promise<ChangeOutcome<ReloadResult>>;
  /** Whether the dataplane runs with the configuration applied. */
  ready?(): boolean;
  /** Health checks: status and the operator's pause/resume/force. */
  health?: Pick<
    HealthSupervisor,
    "status" | "realStatus" | "serviceStatus" | "pause" | "resume" | "force"
  >;
  /** Live events for GET /api/v1/events. */
  events?: EventBus;
  /** Health, synproxy and config figures for /metrics, gathered per scrape. */
  metricsExtras?(): MetricsExtras;
}
