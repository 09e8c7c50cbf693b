/**
 * Unit tests of the live event bus (ids, replay by id, lag handling, bounds) and of its
 * Server-Sent-Events face mounted on a small Hono app: framing, Last-Event-ID, the types filter
 * and its validation, heartbeats, slow clients, and cleanup when the client goes away (Deno's test
 * sanitizers fail a test that leaves a timer or a pending op behind).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Hono } from "hono";
import { eventEnvelope, eventStreamHandler } from "../../control/event_stream.ts";
import {
  type BusEvent,
  EventBus,
  SubscribeError,
  type SubscriberEvent,
  type Subscription,
} from "../../control/events.ts";

/** A bus on a fake clock whose ids start at 100. */
function fakeBus(options: { capacity?: number; maxQueue?: number; maxSubscribers?: number } = {}) {
  let now = 1_700_000_000_000;
  const bus = new EventBus({ ...options, firstId: 100, now: () => now });
  return { bus, tick: (ms: number) => now += ms };
}

/** Reads `n` events that are already queued (fails rather than waits when fewer are). */
async function take(sub: Subscription, n: number): Promise<SubscriberEvent[]> {
  const out: SubscriberEvent[] = [];
  for (let i = 0; i < n; i++) {
    assert.ok(sub.queued > 0 || i === 0 || out.at(-1)?.type === "lagged", `event ${i} queued`);
    const r = await sub.next();
    assert.equal(r.done, false);
    out.push(r.value as SubscriberEvent);
  }
  return out;
}

const ids = (evs: SubscriberEvent[]) => evs.map((e) => e.id);

Deno.test("bus: ids increase by one from firstId, with the clock's time and a detached copy of the data", () => {
  const { bus, tick } = fakeBus();
  assert.equal(bus.lastId, 99);
  const data = { real: "10.0.0.1:80", nested: { up: false } };
  const a = bus.publish("health", data);
  tick(5);
  const b = bus.publish("config", { version: 2 });
  assert.deepEqual([a.id, b.id], [100, 101]);
  assert.equal(b.time - a.time, 5);
  data.nested.up = true;
  assert.deepEqual(a.data, { real: "10.0.0.1:80", nested: { up: false } }, "history unchanged");
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.data));
  assert.equal(bus.lastId, 101);
  assert.throws(() => bus.publish("bogus" as "health", {}), /unknown event type: bogus/);
  assert.throws(() => bus.publish("health", [] as unknown as Record<string, unknown>), TypeError);
  assert.equal(bus.lastId, 101, "refused events take no id");
});

Deno.test("bus: ids of a new bus start at its creation time, above an earlier run's", () => {
  const before = Date.now();
  const bus = new EventBus();
  assert.ok(bus.firstId >= before && bus.firstId <= Date.now());
  assert.equal(bus.publish("drops", {}).id, bus.firstId);
});

Deno.test("bus: a subscriber without an id gets live events only, in order; with one, the replay first", async () => {
  const { bus } = fakeBus();
  bus.publish("health", { n: 0 });
  bus.publish("config", { n: 1 });
  const live = bus.subscribe();
  const replay = bus.subscribe({ lastEventId: 100 });
  assert.equal(live.queued, 0);
  assert.equal(replay.queued, 1);
  bus.publish("drops", { n: 2 });
  assert.deepEqual(ids(await take(live, 1)), [102]);
  assert.deepEqual(ids(await take(replay, 2)), [101, 102]);
  // A reader waiting for the next event gets it when it is published.
  const waiting = live.next();
  bus.publish("health", { n: 3 });
  assert.deepEqual((await waiting).value?.data, { n: 3 });
  // Up to date: replays nothing.
  assert.equal(bus.subscribe({ lastEventId: 103 }).queued, 0);
});

Deno.test("bus: the types filter applies to replay and live events", async () => {
  const { bus } = fakeBus();
  bus.publish("health", {});
  bus.publish("config", {});
  const sub = bus.subscribe({ lastEventId: 99, types: new Set(["config", "drops"] as const) });
  bus.publish("health", {});
  bus.publish("drops", {});
  assert.deepEqual((await take(sub, 2)).map((e) => `${e.id}:${e.type}`), [
    "101:config",
    "103:drops",
  ]);
  assert.equal(sub.queued, 0);
});

Deno.test("bus: the ring keeps the last `capacity`; an id older than it gets an expired notice", async () => {
  const { bus } = fakeBus({ capacity: 3 });
  for (let i = 0; i < 5; i++) bus.publish("health", { i });
  assert.deepEqual(bus.retained().map((e) => e.id), [102, 103, 104]);
  const sub = bus.subscribe({ lastEventId: 100 });
  const [notice, ...rest] = await take(sub, 4);
  assert.deepEqual({ id: notice.id, type: notice.type, data: notice.data }, {
    id: null,
    type: "lagged",
    data: { missed: 1, reason: "expired" },
  });
  assert.deepEqual(ids(rest), [102, 103, 104]);
  // Exactly the oldest kept minus one: nothing missed.
  assert.equal(bus.subscribe({ lastEventId: 101 }).queued, 3);
});

Deno.test("bus: an id from another run (below firstId or above the latest) replays all with a restarted notice", async () => {
  const { bus } = fakeBus({ capacity: 3 });
  bus.publish("health", {});
  bus.publish("health", {});
  for (const lastEventId of [7, 98, 102, 10 ** 14]) {
    const evs = await take(bus.subscribe({ lastEventId }), 3);
    assert.deepEqual(evs[0].data, { missed: null, reason: "restarted" }, `id ${lastEventId}`);
    assert.deepEqual(ids(evs.slice(1)), [100, 101]);
  }
});

Deno.test("bus: a slow subscriber keeps at most maxQueue events and reads a lagged notice for the rest", async () => {
  const { bus } = fakeBus({ maxQueue: 3 });
  const slow = bus.subscribe();
  const fast = bus.subscribe();
  const seen: number[] = [];
  for (let i = 0; i < 10; i++) {
    bus.publish("drops", { i });
    seen.push(((await fast.next()).value as BusEvent).id);
    assert.ok(slow.queued <= 3, "bounded");
  }
  assert.equal(seen.length, 10, "the fast one lost nothing");
  const evs = await take(slow, 4);
  assert.deepEqual(evs[0].data, { missed: 7, reason: "overflow" });
  assert.deepEqual(ids(evs.slice(1)), [107, 108, 109]);
  assert.equal(slow.queued, 0);
  bus.publish("drops", {});
  assert.deepEqual(ids(await take(slow, 1)), [110], "back to live events, no further notice");
});

Deno.test("bus: close() ends a waiting reader; break in for-await unsubscribes; bounds refuse", async () => {
  const { bus } = fakeBus({ maxSubscribers: 2 });
  const a = bus.subscribe();
  const waiting = a.next();
  await assert.rejects(a.next(), /one reader at a time/);
  a.close();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  assert.equal(bus.subscribers, 0);

  const b = bus.subscribe();
  bus.publish("health", { x: 1 });
  for await (const ev of b) {
    assert.equal(ev.id, 100);
    break;
  }
  assert.equal(b.closed, true);
  assert.equal(bus.subscribers, 0);

  bus.subscribe();
  const last = bus.subscribe();
  assert.throws(() => bus.subscribe(), SubscribeError);
  const pending = last.next();
  bus.close();
  assert.equal((await pending).done, true);
  assert.equal(bus.subscribers, 0);
  assert.throws(() => bus.subscribe(), /closed/);
  assert.throws(() => new EventBus({ capacity: 0 }), /capacity must be a positive integer/);
});

// ---- Server-Sent Events ----

function sseApp(bus: EventBus, heartbeatMs = 60_000): Hono {
  const app = new Hono();
  app.get("/api/v1/events", eventStreamHandler(bus, { heartbeatMs }));
  return app;
}

/** Reads a response body as text, chunk by chunk. */
class BodyReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  text = "";
  done = false;

  constructor(res: Response) {
    assert.ok(res.body !== null);
    this.#reader = res.body.getReader();
  }

  /** Reads until `text` satisfies `until`; fails after `timeoutMs`. */
  async readUntil(until: (text: string) => boolean, timeoutMs = 2000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!until(this.text)) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out; got ${JSON.stringify(this.text)}`)),
          Math.max(0, deadline - Date.now()),
        );
      });
      try {
        const r = await Promise.race([this.#reader.read(), timeout]);
        if (r.done) {
          this.done = true;
          break;
        }
        this.text += this.#decoder.decode(r.value, { stream: true });
      } finally {
        clearTimeout(timer);
      }
    }
    return this.text;
  }

  /** The client goes away. */
  cancel(): Promise<void> {
    return this.#reader.cancel();
  }
}

/** The SSE events in `text`: each frame's fields (comments left out). */
function frames(text: string): Record<string, string>[] {
  return text.split("\n\n").filter((f) => f !== "").map((f) => {
    const fields: Record<string, string> = {};
    for (const line of f.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(": ");
      fields[line.slice(0, colon)] = line.slice(colon + 2);
    }
    return fields;
  }).filter((f) => Object.keys(f).length > 0);
}

/** Waits until `cond` holds (event-loop turns, bounded). */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
}

Deno.test("sse: frames carry id, event and the JSON envelope; Last-Event-ID replays; live events follow", async () => {
  const { bus } = fakeBus();
  bus.publish("health", { service: "web", real: "10.0.0.1:80", up: false });
  bus.publish("config", { version: 7, text: "two\nlines" });
  const res = await sseApp(bus).request("/api/v1/events", { headers: { "Last-Event-ID": "100" } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  const body = new BodyReader(res);
  await body.readUntil((t) => t.includes("id: 101"));
  assert.ok(body.text.startsWith(": connected\n\n"));
  assert.equal(bus.subscribers, 1);
  bus.publish("drops", { drops: { no_service: 2 }, total: 2, intervalMs: 1000 });
  await body.readUntil((t) => t.includes("id: 102"));
  const got = frames(body.text);
  assert.deepEqual(got.map((f) => [f.id, f.event]), [["101", "config"], ["102", "drops"]]);
  const config = JSON.parse(got[0].data);
  assert.deepEqual(config, {
    id: 101,
    type: "config",
    time: new Date(1_700_000_000_000).toISOString(),
    data: { version: 7, text: "two\nlines" },
  });
  assert.ok(!got[0].data.includes("\n"), "one data line: JSON escapes the newline");
  assert.equal(
    body.text.split("\n\n").find((f) => f.includes("id: 102")),
    `event: drops\ndata: ${eventEnvelope(bus.retained()[2])}\nid: 102`,
  );
  await body.cancel();
  await eventually(() => bus.subscribers === 0, "the subscription ends with the client");
});

Deno.test("sse: ?types filters; bad filters, parameters and ids get 400 naming the field", async () => {
  const { bus } = fakeBus();
  const app = sseApp(bus);
  const cases: [string, Record<string, string>, string][] = [
    ["/api/v1/events?types=health,bogus", {}, "types"],
    ["/api/v1/events?types=", {}, "types"],
    ["/api/v1/events?types=health,", {}, "types"],
    ["/api/v1/events?types=health&types=config", {}, "types"],
    ["/api/v1/events?since=3", {}, "since"],
    ["/api/v1/events", { "Last-Event-ID": "abc" }, "Last-Event-ID"],
    ["/api/v1/events", { "Last-Event-ID": "-1" }, "Last-Event-ID"],
    ["/api/v1/events", { "Last-Event-ID": "1".repeat(16) }, "Last-Event-ID"],
  ];
  for (const [path, headers, field] of cases) {
    const res = await app.request(path, { headers });
    assert.equal(res.status, 400, path);
    const body = await res.json();
    assert.equal(body.field, field, path);
    assert.ok(body.error.startsWith(`${field}: `), body.error);
  }
  const unknown = await (await app.request("/api/v1/events?types=nope")).json();
  assert.match(unknown.error, /unknown event type "nope"; known: health, config, drops/);
  assert.equal(bus.subscribers, 0, "no subscription for a refused request");

  const res = await app.request("/api/v1/events?types=config,%20drops");
  const body = new BodyReader(res);
  await body.readUntil((t) => t.includes(": connected"));
  bus.publish("health", {});
  bus.publish("config", {});
  bus.publish("health", {});
  bus.publish("drops", {});
  await body.readUntil((t) => t.includes("id: 103"));
  assert.deepEqual(frames(body.text).map((f) => f.event), ["config", "drops"]);
  await body.cancel();
  await eventually(() => bus.subscribers === 0, "unsubscribed");
});

/**
 * Runs `fn` with setInterval/clearInterval watched; returns how many intervals were left armed.
 * (Deno's test sanitizers do not report a forgotten interval, so the test counts them itself.)
 */
async function armedIntervalsAfter(fn: () => Promise<void>): Promise<number> {
  const realSet = globalThis.setInterval;
  const realClear = globalThis.clearInterval;
  const armed = new Set<Parameters<typeof clearInterval>[0]>();
  globalThis.setInterval = ((cb: () => void, ms?: number) => {
    const id = realSet(cb, ms);
    armed.add(id);
    return id;
  }) as typeof setInterval;
  globalThis.clearInterval = ((id: Parameters<typeof clearInterval>[0]) => {
    armed.delete(id);
    realClear(id);
  }) as typeof clearInterval;
  try {
    await fn();
  } finally {
    globalThis.setInterval = realSet;
    globalThis.clearInterval = realClear;
  }
  const left = armed.size;
  for (const id of armed) realClear(id);
  return left;
}

Deno.test("sse: heartbeat comments while idle; the timer and subscription end when the client goes away", async () => {
  const { bus } = fakeBus();
  let during = 0;
  const left = await armedIntervalsAfter(async () => {
    const res = await sseApp(bus, 20).request("/api/v1/events");
    const body = new BodyReader(res);
    await body.readUntil((t) => t.split(": heartbeat\n\n").length >= 3);
    assert.deepEqual(frames(body.text), [], "comments only");
    during = bus.subscribers;
    await body.cancel();
    await eventually(() => bus.subscribers === 0, "unsubscribed");
    // A publish after the client left reaches nobody and breaks nothing.
    bus.publish("health", {});
    await new Promise((r) => setTimeout(r, 10));
  });
  assert.equal(during, 1);
  assert.equal(left, 0, "the heartbeat interval is cleared");
});

Deno.test("sse: closing the bus ends open streams (so the server can shut down)", async () => {
  const { bus } = fakeBus();
  const body = new BodyReader(await sseApp(bus).request("/api/v1/events"));
  await body.readUntil((t) => t.includes(": connected"));
  bus.publish("health", { last: true });
  await body.readUntil((t) => t.includes("id: 100"));
  bus.close();
  await body.readUntil(() => false);
  assert.equal(body.done, true);
  assert.equal(frames(body.text).length, 1);
  const refused = await sseApp(bus).request("/api/v1/events");
  assert.equal(refused.status, 503);
  assert.match((await refused.json()).error, /closed/);
});

Deno.test("sse: closing the bus ends a stream whose client stopped reading", async () => {
  const { bus } = fakeBus();
  const res = await sseApp(bus).request("/api/v1/events");
  const body = new BodyReader(res);
  await body.readUntil((t) => t.includes(": connected"));
  // The client reads nothing more: the handler's writes back up behind it.
  for (let i = 0; i < 50; i++) {
    bus.publish("drops", { i, pad: "x".repeat(1000) });
    await new Promise((r) => setTimeout(r, 0));
  }
  bus.close();
  assert.equal(bus.subscribers, 0);
  // Whatever was buffered, the body ends rather than hanging.
  await body.readUntil(() => false);
  assert.equal(body.done, true);
});

Deno.test("sse: a subscriber over the limit gets 503", async () => {
  const { bus } = fakeBus({ maxSubscribers: 1 });
  const app = sseApp(bus);
  const first = new BodyReader(await app.request("/api/v1/events"));
  await first.readUntil((t) => t.includes(": connected"));
  const second = await app.request("/api/v1/events");
  assert.equal(second.status, 503);
  assert.match((await second.json()).error, /too many subscribers/);
  await first.cancel();
  await eventually(() => bus.subscribers === 0, "unsubscribed");
});

Deno.test("sse: a client that does not read loses its oldest events, is told how many, and memory stays bounded", async () => {
  const { bus } = fakeBus({ maxQueue: 5 });
  const body = new BodyReader(await sseApp(bus).request("/api/v1/events"));
  await body.readUntil((t) => t.includes(": connected"));
  const published = 200;
  for (let i = 0; i < published; i++) {
    bus.publish("drops", { i });
    // Let the stream machinery run as it would between real publishes.
    if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  await body.readUntil((t) => t.includes(`id: ${100 + published - 1}\n`));
  const got = frames(body.text);
  const lagged = got.filter((f) => f.event === "lagged");
  const delivered = got.filter((f) => f.event === "drops");
  assert.ok(lagged.length >= 1, "told it lagged");
  assert.ok(lagged.every((f) => f.id === undefined), "notices carry no id");
  const missed = lagged.reduce((n, f) => n + JSON.parse(f.data).data.missed, 0);
  assert.equal(delivered.length + missed, published, "every event delivered or counted missed");
  assert.ok(delivered.length < 20, `only a bounded number got through: ${delivered.length}`);
  const deliveredIds = delivered.map((f) => Number(f.id));
  assert.deepEqual(deliveredIds, [...deliveredIds].sort((a, b) => a - b), "in order");
  await body.cancel();
  await eventually(() => bus.subscribers === 0, "unsubscribed");
});
