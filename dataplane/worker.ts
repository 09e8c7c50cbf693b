/**
 * A dataplane worker: owns a TUN descriptor and runs the engine over it in
 * batches. Runs as a Web Worker; talks to the control plane by messages only:
 * a start message, then requests answered by id (see `WorkerRequests`).
 */
/// <reference lib="deno.worker" />
import { applyLinks, DirectRoutes, type RealLink } from "./direct_routes.ts";
import { DROP, Engine, EngineCounter, SENT } from "./engine.ts";
import type { DataplaneSpec } from "./service.ts";
import { DataplaneRequests, type WorkerRequestName } from "./stats/requests.ts";
import { SPILL_PACKET_BYTES, SPILL_SLOTS } from "./forward/segmentation.ts";
import { strerror } from "./libc.ts";
import { Outbox } from "./outbox.ts";
import { Handoff, HANDOFF_COUNTER_NAMES, type HandoffShared } from "./handoff.ts";
import { PacketBatch, SLOT_BYTES, TunDevice } from "./tun.ts";
import { type MarkDevice, TunSet } from "./tun_set.ts";
import { type TunIoChoice, useTunIo } from "./tun_io_choice.ts";
import { QueueSteering } from "./steering/queue_steering.ts";

export type { ApplyResult } from "./apply.ts";
export type {
  RealStats,
  WorkerRequestName,
  WorkerRequests,
  WorkerStats,
  ZeroResult,
} from "./stats/requests.ts";

/** Packets read per batch. */
const BATCH_SLOTS = 64;
/** How often the wheel of connection timeouts advances. */
const TICK_MS = 250;
/** How long a busy loop runs before letting messages from the control plane in. */
const YIELD_MS = 20;

/** Messages the control plane sends a worker. */
export type ToWorker =
  | {
    type: "start";
    /** This worker's queue of the TUN. */
    fd: number;
    tun: string;
    offloads: number;
    /** How the worker's queue reads and writes its batches (io_uring falls back, logged). */
    io: TunIoChoice;
    spec: DataplaneSpec;
    /** This worker's index and how many there are (absent: 0 of 1). */
    worker?: number;
    workers?: number;
    /** The rings and eventfds of the hand-off between workers (absent with one worker). */
    handoff?: HandoffShared;
  }
  | { type: "request"; id: number; name: WorkerRequestName; params: unknown }
  | { type: "links"; links: RealLink[][] }
  /** The firewall-mark services' devices, all of them: new ones adopted, missing ones closed. */
  | { type: "devices"; devices: MarkDevice[] }
  | { type: "stop" };

/** Messages a worker sends back: a response carries either a result or an error. */
export type FromWorker =
  | { type: "started" }
  | { type: "response"; id: number; result: unknown }
  | { type: "response"; id: number; error: string }
  | { type: "error"; message: string }
  | { type: "stopped" };

let stopping = false;
let requests: DataplaneRequests | null = null;
let running: { spec: DataplaneSpec; engine: Engine; direct: DirectRoutes | null } | null = null;
let devices: TunSet | null = null;
/** The hand-off to other workers; null with a single worker. */
let handoff: Handoff | null = null;
/** Worker 0's hold on the TUN's steering program; null in other workers and with one worker. */
let steering: QueueSteering | null = null;

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

function errorMessage(err: unknown): string {
  return String((err as Error)?.message ?? err);
}

/** Milliseconds between two log lines about the same kind of refusal. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;
let refusalsLogged = 0;
let lastRefusalLog = -Infinity;

/** Logs, at most every 10 s, how many connections the FULLNAT pool refused since the last line. */
function logPoolExhaustion(e: Engine, now: number): void {
  const refused = e.counters[EngineCounter.DROP_NO_LOCAL_PORT];
  if (refused === refusalsLogged || now - lastRefusalLog < REFUSAL_LOG_INTERVAL_MS) return;
  console.error(
    `${new Date().toISOString()} tunvs: FULLNAT local ports exhausted, connections refused ` +
      `refused=${refused - refusalsLogged} total=${refused} (add local_addresses)`,
  );
  refusalsLogged = refused;
  lastRefusalLog = now;
}

let directFailuresLogged = 0;
let lastDirectLog = -Infinity;

/** Logs, at most every 10 s, how many DR sends the packet socket refused since the last line. */
function logDirectFailures(d: DirectRoutes, now: number): void {
  if (d.failures === directFailuresLogged || now - lastDirectLog < REFUSAL_LOG_INTERVAL_MS) return;
  console.error(
    `${new Date().toISOString()} tunvs: direct routing sends failed ` +
      `failed=${d.failures - directFailuresLogged} total=${d.failures} ` +
      `last_error=${JSON.stringify(strerror(d.lastError))}`,
  );
  directFailuresLogged = d.failures;
  lastDirectLog = now;
}

/**
 * Attaches the steering program for `hand`'s owners and logs the outcome when it changes: with it
 * the kernel queues every packet for its owner; without it, mis-queued packets are handed over.
 */
function steer(s: QueueSteering, hand: Handoff, workers: number): void {
  const wasAttached = s.instructions !== 0;
  const before = s.lastError;
  if (s.update(hand.owners)) {
    if (!wasAttached) {
      console.error(
        `tunvs: ${workers} workers; the kernel queues each packet for its owner ` +
          `(steering program, ${s.instructions} instructions)`,
      );
    }
  } else if (s.lastError !== before) {
    console.error(
      `tunvs: steering program not attached (${s.lastError}); packets queued for the wrong ` +
        `worker are handed to their owner` + (wasAttached ? " under the previous program" : ""),
    );
  }
}

/**
 * Reads one batch from `dev` and forwards it: each packet through the engine as of firewall mark
 * `mark`, then written back on `dev`; a packet another worker owns is handed to it instead.
 * Returns how many packets were read.
 */
function forwardBatch(
  dev: TunDevice,
  mark: number,
  batch: PacketBatch,
  e: Engine,
  req: DataplaneRequests,
  hand: Handoff | null,
): number {
  const n = dev.readBatch(batch);
  if (n === 0) return 0;
  const header = dev.vnetHeader;
  if (hand !== null) {
    const buf = batch.buf;
    const owners = hand.owners;
    const self = hand.self;
    const fromMark = mark !== 0;
    for (let i = 0; i < n; i++) {
      const slot = batch.offset(i);
      const len = batch.lengths[i];
      const owner = owners.ownerOfPacket(buf, slot + header, len - header, fromMark);
      if (owner === self) continue;
      hand.send(owner, buf, slot, len, mark);
      batch.lengths[i] = -1;
    }
    hand.wakeOwners();
  }
  forwardSlots(dev, batch, n, mark, null, e, req);
  return n;
}

/**
 * Forwards the `n` packets of `batch` (a negative length: a slot to skip) through the engine,
 * each as of `marks[i]` if given, else of `mark`, and writes them on `dev`.
 */
function forwardSlots(
  dev: TunDevice,
  batch: PacketBatch,
  n: number,
  mark: number,
  marks: Uint32Array | null,
  e: Engine,
  req: DataplaneRequests,
): void {
  const buf = batch.buf;
  // With offloads each slot starts with the packet's virtio_net_hdr: the engine reads it from
  // `e.vnet`, changes it with the packet, and it is written back in front of the packet.
  const header = dev.vnetHeader;
  const vnet = e.vnet;
  let unwritten = 0;
  for (let i = 0; i < n; i++) {
    if (batch.lengths[i] < 0) continue;
    const slot = batch.offset(i);
    if (header !== 0) vnet.read(buf, slot);
    else vnet.clear();
    const m = marks === null ? mark : marks[i];
    const out = e.process(buf, slot + header, batch.lengths[i] - header, m);
    if (out === DROP || out === SENT) batch.lengths[i] = -1;
    else {
      if (header !== 0) vnet.write(buf, slot);
      batch.lengths[i] = out + header;
    }
    if (e.spill.count > 0) {
      // Segments the engine cut this packet into go out in the packet's place in the batch.
      req.writeFailures += dev.writeBatch(batch, unwritten, i + 1).failed;
      req.writeFailures += dev.writeOutbox(e.spill).failed;
      unwritten = i + 1;
    }
  }
  req.writeFailures += dev.writeBatch(batch, unwritten, n).failed;
}

/**
 * Forwards a batch of the packets other workers handed this one, written on this worker's queue
 * `dev` (which also steers the flow's next packets to it); returns how many.
 */
function forwardHandedIn(
  dev: TunDevice,
  batch: PacketBatch,
  marks: Uint32Array,
  e: Engine,
  req: DataplaneRequests,
  hand: Handoff,
): number {
  const n = hand.receive(batch.buf, SLOT_BYTES, batch.lengths, marks, batch.slots);
  if (n === 0) return 0;
  batch.count = n;
  forwardSlots(dev, batch, n, 0, marks, e, req);
  return n;
}

async function run(devices: TunSet, e: Engine, req: DataplaneRequests): Promise<void> {
  const tun = devices.main;
  // GSO segments for tunnel reals are cut into the batch's own buffer, behind the slots.
  const batch = new PacketBatch(BATCH_SLOTS, Outbox.bytesFor(SPILL_SLOTS, SPILL_PACKET_BYTES));
  e.spillInto(batch.buf, batch.extraOffset);
  const handedMarks = new Uint32Array(BATCH_SLOTS);
  const hand = handoff;
  let lastTick = 0;
  let lastYield = performance.now();
  while (!stopping) {
    const now = performance.now();
    e.now = now;
    if (now - lastTick >= TICK_MS) {
      e.tick(now);
      // RSTs the SYN proxy sent clients whose reals never answered.
      if (e.outbox.count > 0) req.writeFailures += tun.writeOutbox(e.outbox).failed;
      logPoolExhaustion(e, now);
      if (running?.direct) logDirectFailures(running.direct, now);
      lastTick = now;
    }
    req.tick(now);
    // Packets handed over by other workers first: they were read before anything this worker
    // reads now, and a flow's first packets may come that way while its next ones come straight.
    let read = hand !== null ? forwardHandedIn(tun, batch, handedMarks, e, req, hand) : 0;
    // A batch from each device in turn; a device's packets stand for its firewall mark.
    for (let d = 0; d < devices.count; d++) {
      read += forwardBatch(devices.device(d), devices.mark(d), batch, e, req, hand);
    }
    if (read === 0) {
      // Idle, the loop still wakes in time for the next rate sample, or when handed a packet.
      await devices.waitReadable(Math.min(TICK_MS, Math.ceil(req.untilNextSample(now)) + 1));
      // The wake is cleared before the rings are looked at again: a packet pushed after this
      // finds the eventfd set, and the next poll returns at once.
      hand?.clearWake();
      lastYield = performance.now();
      continue;
    }
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
        devices = new TunSet(useTunIo(TunDevice.adopt(msg.fd, msg.tun, msg.offloads), msg.io));
        const direct = DirectRoutes.open(msg.spec, msg.offloads !== 0);
        const engine = new Engine(msg.spec, direct ?? undefined);
        const workers = msg.workers ?? 1;
        const worker = msg.worker ?? 0;
        if (workers > 1 && msg.handoff !== undefined) {
          engine.shareLocalPorts(worker, workers);
          handoff = new Handoff(worker, workers, msg.handoff, msg.spec);
          devices.watchWake(handoff.wakeFd);
          if (worker === 0) {
            steering = new QueueSteering(msg.fd);
            steer(steering, handoff, workers);
          }
        }
        running = { spec: msg.spec, engine, direct };
        requests = new DataplaneRequests(engine, {
          extraCounters: () => {
            const out: Record<string, number> = {};
            HANDOFF_COUNTER_NAMES.forEach((name, i) => out[name] = handoff?.counters[i] ?? 0);
            return out;
          },
          check: (spec) => {
            // The packet socket is opened at start only, for a spec with DR services.
            if (direct === null && spec.services.some((s) => s.forward === "dr")) {
              throw new RangeError("direct routing added by a reload needs a restart");
            }
          },
          applied: (spec) => {
            if (running === null) return;
            running.spec = spec;
            running.direct?.replace(spec);
            handoff?.respec(spec);
            if (steering !== null && handoff !== null) steer(steering, handoff, handoff.workers);
          },
        });
        post({ type: "started" });
        run(devices, engine, requests).then(
          () => {
            direct?.close();
            devices?.closeMarkDevices();
            post({ type: "stopped" });
          },
          (err) => post({ type: "error", message: errorMessage(err) }),
        );
      } catch (err) {
        post({ type: "error", message: errorMessage(err) });
      }
      break;
    }
    case "request":
      if (requests === null) {
        post({ type: "response", id: msg.id, error: "the dataplane is not running" });
        break;
      }
      try {
        const result = requests.answer(msg.name, msg.params, performance.now());
        post({ type: "response", id: msg.id, result });
      } catch (err) {
        post({ type: "response", id: msg.id, error: errorMessage(err) });
      }
      break;
    case "links":
      // Re-resolved by the control plane: DR MACs, tunnel sources, path MTUs.
      if (running === null) break;
      applyLinks(running.engine.services, msg.links);
      try {
        running.direct?.update(running.spec, msg.links);
      } catch (err) {
        console.error(`tunvs: direct routes not updated: ${errorMessage(err)}`);
      }
      break;
    case "devices":
      try {
        devices?.replaceMarkDevices(msg.devices);
      } catch (err) {
        console.error(`tunvs: firewall-mark devices not updated: ${errorMessage(err)}`);
      }
      break;
    case "stop":
      stopping = true;
      if (requests === null) post({ type: "stopped" });
      break;
  }
};
