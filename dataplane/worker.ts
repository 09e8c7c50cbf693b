/**
 * A dataplane worker: owns a TUN descriptor and runs the engine over it in
 * batches. Runs as a Web Worker; talks to the control plane by messages only.
 */
/// <reference lib="deno.worker" />
import { DROP, Engine, ENGINE_COUNTER_NAMES } from "./engine.ts";
import { CONN_STATE_NAMES } from "./conn/state.ts";
import { type DataplaneSpec, RealCounter } from "./service.ts";
import { PacketBatch, TunDevice } from "./tun.ts";

/** Packets read per batch. */
const BATCH_SLOTS = 64;
/** How often the wheel of connection timeouts advances. */
const TICK_MS = 250;
/** How long a busy loop runs before letting messages from the control plane in. */
const YIELD_MS = 20;

/** Messages the control plane sends a worker. */
export type ToWorker =
  | { type: "start"; fd: number; tun: string; spec: DataplaneSpec }
  | { type: "stats"; id: number }
  | { type: "stop" };

/** Counters of one real, as the worker reports them. */
export interface RealStats {
  address: number;
  port: number;
  weight: number;
  activeConns: number;
  inactiveConns: number;
  connections: number;
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
}

/** A snapshot of the worker's state for the admin endpoint. */
export interface WorkerStats {
  connections: number;
  connectionsByState: Record<string, number>;
  counters: Record<string, number>;
  writeFailures: number;
  services: { name: string; reals: RealStats[] }[];
}

/** Messages a worker sends back. */
export type FromWorker =
  | { type: "started" }
  | { type: "stats"; id: number; stats: WorkerStats }
  | { type: "error"; message: string }
  | { type: "stopped" };

let stopping = false;
let engine: Engine | null = null;
let writeFailures = 0;

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

function snapshot(e: Engine): WorkerStats {
  const byState: Record<string, number> = {};
  e.conns.forEach((id) => {
    const name = CONN_STATE_NAMES[e.conns.state[id]] ?? "UNKNOWN";
    byState[name] = (byState[name] ?? 0) + 1;
  });
  const counters: Record<string, number> = {};
  ENGINE_COUNTER_NAMES.forEach((name, i) => counters[name] = e.counters[i]);
  return {
    connections: e.conns.size,
    connectionsByState: byState,
    counters,
    writeFailures,
    services: e.services.services.map((svc) => ({
      name: svc.spec.name,
      reals: Array.from({ length: svc.count }, (_, r) => ({
        address: svc.addr[r],
        port: svc.port[r],
        weight: svc.weight[r],
        activeConns: svc.active[r],
        inactiveConns: svc.inactive[r],
        connections: svc.counter(r, RealCounter.CONNS),
        inPackets: svc.counter(r, RealCounter.IN_PACKETS),
        inBytes: svc.counter(r, RealCounter.IN_BYTES),
        outPackets: svc.counter(r, RealCounter.OUT_PACKETS),
        outBytes: svc.counter(r, RealCounter.OUT_BYTES),
      })),
    })),
  };
}

async function run(tun: TunDevice, e: Engine): Promise<void> {
  const batch = new PacketBatch(BATCH_SLOTS);
  const buf = batch.buf;
  let lastTick = 0;
  let lastYield = performance.now();
  while (!stopping) {
    const now = performance.now();
    e.now = now;
    if (now - lastTick >= TICK_MS) {
      e.tick(now);
      lastTick = now;
    }
    const n = tun.readBatch(batch);
    if (n === 0) {
      await tun.waitReadable(TICK_MS);
      lastYield = performance.now();
      continue;
    }
    for (let i = 0; i < n; i++) {
      const out = e.process(buf, batch.offset(i), batch.lengths[i]);
      batch.lengths[i] = out === DROP ? -1 : out;
    }
    writeFailures += tun.writeBatch(batch).failed;
    if (now - lastYield >= YIELD_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      lastYield = performance.now();
    }
  }
}

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const msg = ev.data;
  switch (msg.type) {
    case "start": {
      try {
        const tun = TunDevice.adopt(msg.fd, msg.tun);
        engine = new Engine(msg.spec);
        post({ type: "started" });
        run(tun, engine).then(
          () => post({ type: "stopped" }),
          (err) => post({ type: "error", message: String(err?.message ?? err) }),
        );
      } catch (err) {
        post({ type: "error", message: String((err as Error)?.message ?? err) });
      }
      break;
    }
    case "stats":
      if (engine) post({ type: "stats", id: msg.id, stats: snapshot(engine) });
      break;
    case "stop":
      stopping = true;
      if (engine === null) post({ type: "stopped" });
      break;
  }
};
