/**
 * Turns the dataplane's drop counters into "drops" events: every `intervalMs` it asks the worker
 * for its counters and, when any `drop_*` counter grew since the last poll, publishes one event
 * with the growth by reason (`no_service`, not `drop_no_service`, as the metrics label it).
 * Nothing is published while nothing grows.
 *
 * Polls never overlap: the next is scheduled only once the previous one has settled, so a worker
 * that answers slowly is asked less often rather than queued up. The first poll only takes the
 * baseline: drops from before the watch are not news. A counter that went down (a new worker)
 * restarts from its new value, which counts as its growth.
 */
import type { DataplaneRequester } from "./admin_source.ts";
import type { EventBus } from "./events.ts";

/** Default time between polls. */
export const DROP_POLL_MS = 1000;

const DROP_PREFIX = "drop_";

/** The data of a "drops" event. */
export interface DropsEventData {
  /** Packets dropped since the previous poll, by reason; only reasons that grew. */
  drops: Record<string, number>;
  /** Their sum. */
  total: number;
  /** Milliseconds since the previous poll. */
  intervalMs: number;
}

/** Options of a DropWatcher. */
export interface DropWatcherOptions {
  /** Milliseconds between polls (default DROP_POLL_MS). */
  intervalMs?: number;
  /** Called when a poll fails (the watch goes on); default: nothing. */
  onError?: (err: unknown) => void;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
}

/** Polls the dataplane's drop counters and publishes their growth as "drops" events. */
export class DropWatcher {
  readonly #request: DataplaneRequester;
  readonly #bus: EventBus;
  readonly #intervalMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #now: () => number;
  #baseline: Map<string, number> | null = null;
  #baselineAt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #inFlight: Promise<DropsEventData | null> | null = null;
  #running = false;
  /** Set by stop(): a poll settling afterwards publishes nothing. */
  #stopped = false;

  /** A watcher asking `request` for "stats" and publishing on `bus`; start() starts it. */
  constructor(request: DataplaneRequester, bus: EventBus, options: DropWatcherOptions = {}) {
    const interval = options.intervalMs ?? DROP_POLL_MS;
    if (!Number.isFinite(interval) || interval <= 0) {
      throw new RangeError(`intervalMs must be a positive number, got ${interval}`);
    }
    this.#request = request;
    this.#bus = bus;
    this.#intervalMs = interval;
    this.#onError = options.onError ?? (() => {});
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether it is started. */
  get running(): boolean {
    return this.#running;
  }

  /** Starts polling: the first poll (the baseline) at once. Does nothing when running. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Stops polling; resolves once a poll in flight has settled (it publishes nothing more). */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#inFlight?.catch(() => {});
  }

  /**
   * One poll now: resolves with the growth it found (published unless stopped), or null when
   * nothing grew or it took the baseline. While a poll is in flight, returns that one instead.
   */
  poll(): Promise<DropsEventData | null> {
    if (this.#inFlight !== null) return this.#inFlight;
    const p = this.#pollOnce().finally(() => this.#inFlight = null);
    this.#inFlight = p;
    return p;
  }

  async #pollOnce(): Promise<DropsEventData | null> {
    const { counters } = await this.#request("stats", {});
    const at = this.#now();
    const current = new Map<string, number>();
    for (const [name, value] of Object.entries(counters)) {
      if (name.startsWith(DROP_PREFIX)) current.set(name.slice(DROP_PREFIX.length), value);
    }
    const before = this.#baseline;
    const since = this.#baselineAt;
    this.#baseline = current;
    this.#baselineAt = at;
    if (before === null) return null;
    const drops: Record<string, number> = {};
    let total = 0;
    for (const [reason, value] of current) {
      const prev = before.get(reason) ?? 0;
      const grew = value >= prev ? value - prev : value;
      if (grew > 0) {
        drops[reason] = grew;
        total += grew;
      }
    }
    if (total === 0) return null;
    const data: DropsEventData = { drops, total, intervalMs: Math.round(at - since) };
    if (!this.#stopped) this.#bus.publish("drops", data);
    return data;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const started = this.#now();
      this.poll().catch((err) => this.#onError(err)).finally(() => {
        if (!this.#running) return;
        this.#schedule(Math.max(0, this.#intervalMs - (this.#now() - started)));
      });
    }, delayMs);
  }
}
