/**
 * Running totals of health checking for `/metrics`: state changes per real and checks run and
 * failed per checker type, fed as they happen (it fits HealthSupervisor's `counts` sink). Totals
 * of reals that leave the configuration are kept, so counters never go back; their number is
 * bounded by the reals ever configured in this process.
 */
import type { HealthMetrics } from "./metrics.ts";

interface Transitions {
  service: string;
  address: string;
  port: number;
  up: number;
  down: number;
}

/** Counts health transitions and checks; snapshot() gives the metrics' health part. */
export class HealthCounters {
  readonly #transitions = new Map<string, Transitions>();
  readonly #checks = new Map<string, { run: number; failed: number }>();

  /** Counts one change of a real's effective state. */
  transition(service: string, real: { address: string; port: number }, up: boolean): void {
    const key = `${service}\u0000${real.address}:${real.port}`;
    let t = this.#transitions.get(key);
    if (t === undefined) {
      t = { service, address: real.address, port: real.port, up: 0, down: 0 };
      this.#transitions.set(key, t);
    }
    if (up) t.up++;
    else t.down++;
  }

  /** Counts one finished check of checker `type`. */
  check(type: string, ok: boolean): void {
    let c = this.#checks.get(type);
    if (c === undefined) {
      c = { run: 0, failed: 0 };
      this.#checks.set(type, c);
    }
    c.run++;
    if (!ok) c.failed++;
  }

  /** The totals so far, with the services now down. */
  snapshot(servicesDown: string[] = []): HealthMetrics {
    return {
      reals: [...this.#transitions.values()].map((t) => ({ ...t })),
      checks: [...this.#checks].map(([type, c]) => ({ type, run: c.run, failed: c.failed })),
      servicesDown: [...servicesDown],
    };
  }
}
