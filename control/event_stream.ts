/**
 * The event bus as Server-Sent Events (`GET /api/v1/events`): one SSE event per bus event, with
 * `id:` (none for lagged notices, so a reconnecting client asks again from what it really got),
 * `event:` the type and `data:` the JSON envelope `{id, type, time, data}`. A comment line every
 * `heartbeatMs` keeps proxies from closing an idle stream. `Last-Event-ID` replays what the client
 * missed; `?types=health,config` filters. When the client goes away the subscription and the
 * heartbeat end with it.
 */
import type { Context, Handler } from "hono";
import { streamSSE } from "hono/streaming";
import {
  EVENT_TYPES,
  type EventBus,
  type EventType,
  isEventType,
  SubscribeError,
  type SubscriberEvent,
  type Subscription,
} from "./events.ts";

/** Default time between heartbeat comments. */
export const HEARTBEAT_MS = 15_000;

/** Options of eventStreamHandler. */
export interface EventStreamOptions {
  /** Milliseconds between heartbeat comments (default HEARTBEAT_MS). */
  heartbeatMs?: number;
}

/** The JSON an SSE event's `data:` carries. */
export function eventEnvelope(ev: SubscriberEvent): string {
  return JSON.stringify({
    id: ev.id,
    type: ev.type,
    time: new Date(ev.time).toISOString(),
    data: ev.data,
  });
}

function badRequest(c: Context, field: string, message: string): Response {
  return c.json({ error: `${field}: ${message}`, field }, 400);
}

/** Parses `?types=a,b`: a non-empty list of known event types. */
function parseTypes(s: string): Set<EventType> | string {
  const names = s.split(",").map((t) => t.trim());
  if (names.some((t) => t === "")) {
    return `must be a comma-separated list of ${EVENT_TYPES.join(", ")}`;
  }
  const unknown = names.find((t) => !isEventType(t));
  if (unknown !== undefined) {
    return `unknown event type ${JSON.stringify(unknown)}; known: ${EVENT_TYPES.join(", ")}`;
  }
  return new Set(names as EventType[]);
}

/** A Hono handler streaming `bus` as Server-Sent Events. */
export function eventStreamHandler(bus: EventBus, options: EventStreamOptions = {}): Handler {
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  return (c) => {
    const query = c.req.queries();
    for (const [name, values] of Object.entries(query)) {
      if (name !== "types") return badRequest(c, name, "unknown query parameter");
      if (values.length > 1) return badRequest(c, "types", "give it once");
    }
    let types: Set<EventType> | undefined;
    if (query.types !== undefined) {
      const parsed = parseTypes(query.types[0]);
      if (typeof parsed === "string") return badRequest(c, "types", parsed);
      types = parsed;
    }
    // The SSE spec sends back whatever id the client last saw; an empty one means none.
    const header = c.req.header("Last-Event-ID")?.trim() ?? "";
    let lastEventId: number | undefined;
    if (header !== "") {
      if (!/^[0-9]{1,15}$/.test(header)) {
        return badRequest(c, "Last-Event-ID", `must be an event id (decimal), got ${header}`);
      }
      lastEventId = Number(header);
    }
    let subscription: Subscription;
    try {
      subscription = bus.subscribe({ lastEventId, types });
    } catch (err) {
      if (err instanceof SubscribeError) return c.json({ error: err.message }, 503);
      throw err;
    }
    return streamSSE(c, async (stream) => {
      // A heartbeat is skipped while a write is pending: a client that does not read gets no
      // pile of comments, only its bounded subscription queue.
      let pending = 0;
      const counted = async (write: () => Promise<unknown>) => {
        pending++;
        try {
          await write();
        } finally {
          pending--;
        }
      };
      const heartbeat = setInterval(() => {
        if (pending === 0 && !stream.aborted) void counted(() => stream.write(": heartbeat\n\n"));
      }, heartbeatMs);
      stream.onAbort(() => subscription.close());
      // Closed by the bus (shutdown): end the response even if a write waits on a client that
      // does not read, or the HTTP server's shutdown would wait for it forever.
      void subscription.ended.then(() => stream.abort());
      try {
        await counted(() => stream.write(": connected\n\n"));
        for await (const ev of subscription) {
          await counted(() =>
            stream.writeSSE({
              id: ev.id === null ? undefined : String(ev.id),
              event: ev.type,
              data: eventEnvelope(ev),
            })
          );
          if (stream.aborted) break;
        }
      } finally {
        clearInterval(heartbeat);
        subscription.close();
      }
    });
  };
}
