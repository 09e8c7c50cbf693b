/** Bounds how many checks are in flight at once, so many reals cannot swamp the host. */

/** A counting semaphore with FIFO waiters. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  /** `max`: slots; at least 1. */
  constructor(readonly max: number) {
    if (!(max >= 1)) throw new RangeError(`limiter needs at least one slot (got ${max})`);
  }

  /** Checks holding a slot now. */
  get inFlight(): number {
    return this.active;
  }

  /** Resolves once a slot is held; pair with release(). */
  acquire(): Promise<void> {
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Frees a slot, handing it straight to the oldest waiter. */
  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.active--;
  }
}
