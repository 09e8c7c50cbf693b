/**
 * Live events for operators (health changes, configuration changes, drops): each published event
 * gets the next id and a timestamp, the last `capacity` stay in a ring for replay, and subscribers
 * read them as an async iterable that first replays what came after the id they last saw.
 *
 * Memory stays bounded whatever subscribers do: each has a queue of at most `maxQueue` events;
 * when a slow one overflows, its oldest events are dropped and it reads a `lagged` notice in their
 * place, naming how many it lost. A subscriber whose last id is older than the ring gets the same
 * notice before the replay.
 *
 * Ids start at the bus's creation time in milliseconds, so that ids of a later run of the
 * appliance are larger than those of an earlier one (at fewer than one event per millisecond on
 * average, which health, config and once-a-second drop events stay far below): a client
 * reconnecting with an id from before a restart is told so rather than misled.
 */

/** The kinds of events the bus carries. */
export const EVENT_TYPES = ["health", "config", "drops"] as const;

/** A kind of event. */
export type EventType = (typeof EVENT_TYPES)[number];

/** One published event. */
export interface BusEvent {
  readonly id: number;
  readonly type: EventType;
  /** Unix time in milliseconds when it was published. */
  readonly time: number;
  readonly data: Readonly<Record<string, unknown>>;
}

/** Why a subscriber lost events: its queue overflowed, the ring no longer held them, or its
 * last id came from an earlier run of the appliance. */
export type LagReason = "overflow" | "expired" | "restarted";

/** Stands in for events a subscriber lost; it has no id, so a client's last id stays put. */
export interface LaggedEvent {
  readonly id: null;
  readonly type: "lagged";
  readonly time: number;
  /** `missed` counts lost events of every type; null when unknown (restarted). */
  readonly data: { readonly missed: number | null; readonly reason: LagReason };
}

/** What a subscriber reads. */
export type SubscriberEvent = BusEvent | LaggedEvent;

/** Bounds and clock of an EventBus. */
export interface EventBusOptions {
  /** Events kept for replay (default 1000). */
  capacity?: number;
  /** Events queued per subscriber before its oldest are dropped (default: capacity). */
  maxQueue?: number;
  /** Subscribers at once (default 64). */
  maxSubscribers?: number;
  /** Unix time in ms (default Date.now). */
  now?: () => number;
  /** Id of the first event (default: now() at creation). */
  firstId?: number;
}

/** What to subscribe to. */
export interface SubscribeOptions {
  /** Replay the retained events after this id; live events only when absent. */
  lastEventId?: number;
  /** Only these types (lagged notices always come through); every type when absent. */
  types?: ReadonlySet<EventType>;
}

/** subscribe() refused: the bus has as many subscribers as it allows, or is closed. */
export class SubscribeError extends Error {}

/** Whether `s` names an event type. */
export function isEventType(s: string): s is EventType {
  return (EVENT_TYPES as readonly string[]).includes(s);
}

/** One subscriber's view of the bus: an async iterator over its events, closed with close(). */
export class Subscription implements AsyncIterableIterator<SubscriberEvent> {
  /** Settles when the subscription closes, whoever closed it. */
  readonly ended: Promise<void>;
  readonly #queue: BusEvent[] = [];
  /** Told before anything else: the replay could not give everything after the client's id. */
  #notice: LaggedEvent | null;
  /** Events dropped from the queue's head since the last overflow notice. */
  #overflowed = 0;
  #waiter: ((r: IteratorResult<SubscriberEvent>) => void) | null = null;
  #closed = false;
  readonly #maxQueue: number;
  readonly #now: () => number;
  readonly #onClose: (s: Subscription) => void;
  readonly #end: () => void;

  /** Made by EventBus.subscribe; `types` null takes every type. */
  constructor(
    readonly types: ReadonlySet<EventType> | null,
    maxQueue: number,
    now: () => number,
    notice: LaggedEvent | null,
    onClose: (s: Subscription) => void,
  ) {
    this.#maxQueue = maxQueue;
    this.#now = now;
    this.#notice = notice;
    this.#onClose = onClose;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.ended = promise;
    this.#end = resolve;
  }

  /** Whether close() was called (by the reader or by the bus). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Events waiting to be read. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * The bus hands it `ev`: given to a waiting reader, else queued (when its type is wanted),
   * dropping the oldest queued event when the queue is full.
   */
  deliver(ev: BusEvent): void {
    if (this.#closed || (this.types !== null && !this.types.has(ev.type))) return;
    if (this.#waiter !== null) {
      const w = this.#waiter;
      this.#waiter = null;
      w({ value: ev, done: false });
      return;
    }
    if (this.#queue.length >= this.#maxQueue) {
      this.#queue.shift();
      this.#overflowed++;
    }
    this.#queue.push(ev);
  }

  /** The next event; waits for one when none is queued; done once closed. */
  next(): Promise<IteratorResult<SubscriberEvent>> {
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    let value: SubscriberEvent | undefined;
    if (this.#notice !== null) {
      value = this.#notice;
      this.#notice = null;
    } else if (this.#overflowed > 0) {
      value = lagged(this.#now(), this.#overflowed, "overflow");
      this.#overflowed = 0;
    } else {
      value = this.#queue.shift();
    }
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.#waiter !== null) {
      return Promise.reject(new Error("a subscription has one reader at a time"));
    }
    return new Promise((resolve) => this.#waiter = resolve);
  }

  /** Ends the iteration (for-await's break): closes the subscription. */
  return(): Promise<IteratorResult<SubscriberEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** This subscription itself. */
  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Stops the subscription: a waiting next() ends, queued events are let go. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#notice = null;
    this.#waiter?.({ value: undefined, done: true });
    this.#waiter = null;
    this.#onClose(this);
    this.#end();
  }
}

function lagged(time: number, missed: number | null, reason: LagReason): LaggedEvent {
  return Object.freeze({ id: null, type: "lagged", time, data: Object.freeze({ missed, reason }) });
}

/** Publishes events to subscribers and keeps the latest for replay. */
export class EventBus {
  /** Events kept for replay. */
  readonly capacity: number;
  /** Events queued per subscriber at most. */
  readonly maxQueue: number;
  /** Subscribers at once at most. */
  readonly maxSubscribers: number;
  /** Id the first event of this bus got (or will get). */
  readonly firstId: number;
  readonly #now: () => number;
  /** The retained events, oldest first; a ring of `capacity` from `#head`. */
  readonly #ring: BusEvent[] = [];
  #head = 0;
  #nextId: number;
  readonly #subscribers = new Set<Subscription>();
  #closed = false;

  /** A bus with the given bounds; see EventBusOptions for the defaults. */
  constructor(options: EventBusOptions = {}) {
    this.capacity = positiveInt("capacity", options.capacity ?? 1000);
    this.maxQueue = positiveInt("maxQueue", options.maxQueue ?? this.capacity);
    this.maxSubscribers = positiveInt("maxSubscribers", options.maxSubscribers ?? 64);
    this.#now = options.now ?? Date.now;
    this.firstId = positiveInt("firstId", options.firstId ?? Math.floor(this.#now()));
    this.#nextId = this.firstId;
  }

  /** Subscribers now. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Id of the latest event, or firstId − 1 before any. */
  get lastId(): number {
    return this.#nextId - 1;
  }

  /**
   * Publishes an event of `type` with a copy of `data` (taken through JSON, so what subscribers
   * read is what the event stream sends, and later changes to `data` do not rewrite history).
   * Returns it. After close() it is still numbered and retained, but nobody is listening.
   */
  publish(type: EventType, data: object): BusEvent {
    if (!isEventType(type)) throw new RangeError(`unknown event type: ${String(type)}`);
    if (typeof data !== "object" || data === null || Array.isArray(data)) {
      throw new TypeError("event data must be an object");
    }
    const ev: BusEvent = Object.freeze({
      id: this.#nextId++,
      type,
      time: this.#now(),
      data: Object.freeze(JSON.parse(JSON.stringify(data))),
    });
    if (this.#ring.length < this.capacity) {
      this.#ring.push(ev);
    } else {
      this.#ring[this.#head] = ev;
      this.#head = (this.#head + 1) % this.capacity;
    }
    for (const s of this.#subscribers) s.deliver(ev);
    return ev;
  }

  /** The retained events, oldest first. */
  retained(): BusEvent[] {
    return [...this.#ring.slice(this.#head), ...this.#ring.slice(0, this.#head)];
  }

  /**
   * A new subscriber: it first reads the retained events after `lastEventId` (preceded by a
   * lagged notice when some are no longer retained), then live ones. Throws SubscribeError when
   * the bus is closed or full.
   */
  subscribe(options: SubscribeOptions = {}): Subscription {
    if (this.#closed) throw new SubscribeError("the event bus is closed");
    if (this.#subscribers.size >= this.maxSubscribers) {
      throw new SubscribeError(`too many subscribers (at most ${this.maxSubscribers})`);
    }
    const after = options.lastEventId;
    const events = after === undefined ? [] : this.retained();
    let notice: LaggedEvent | null = null;
    let replay = events;
    if (after !== undefined) {
      const oldest = events.length === 0 ? this.#nextId : events[0].id;
      if (after < this.firstId - 1 || after > this.lastId) {
        notice = lagged(this.#now(), null, "restarted");
      } else {
        if (after < oldest - 1) notice = lagged(this.#now(), oldest - 1 - after, "expired");
        replay = events.filter((ev) => ev.id > after);
      }
    }
    const sub = new Subscription(
      options.types === undefined ? null : new Set(options.types),
      this.maxQueue,
      this.#now,
      notice,
      (s) => this.#subscribers.delete(s),
    );
    for (const ev of replay) sub.deliver(ev);
    this.#subscribers.add(sub);
    return sub;
  }

  /** Ends every subscription and refuses new ones (before the HTTP server shuts down). */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#subscribers]) s.close();
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  return v;
}
