/**
 * The control plane's handle on the dataplane: one worker per TUN queue (docs/workers.md).
 * Starts them, sends each request to all and merges their answers (control/worker_merge.ts) so
 * that callers see one dataplane, stops them.
 */
import type { RealLink } from "../dataplane/direct_routes.ts";
import { closeHandoffShared, type HandoffShared, makeHandoffShared } from "../dataplane/handoff.ts";
import type { DataplaneSpec } from "../dataplane/service.ts";
import type { ConnectionQuery } from "../dataplane/stats/conn_listing.ts";
import { DEFAULT_TUN_IO, type TunIoChoice } from "../dataplane/tun_io_choice.ts";
import type { MarkDevice } from "../dataplane/tun_set.ts";
import type {
  ApplyResult,
  FromWorker,
  ToWorker,
  WorkerRequestName,
  WorkerRequests,
  WorkerStats,
} from "../dataplane/worker.ts";
import { listAcrossWorkers, mergeApply, mergeStats, mergeTraffic } from "./worker_merge.ts";

/** A request the worker refused (bad parameters, unknown service): the operator's mistake. */
export class DataplaneRequestError extends Error {}

/** How a request ends: with the worker's result, or its error message. */
type Settle = { result: unknown } | { error: string };

/** One running dataplane worker. */
class WorkerHandle {
  readonly #worker: Worker;
  readonly #pending = new Map<number, (answer: Settle) => void>();
  #nextId = 1;
  readonly stopped: Promise<void>;
  #resolveStopped!: () => void;
  #failed: ((message: string) => void) | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  /** Starts a worker with `start`; resolves once it runs. */
  static start(
    start: Extract<ToWorker, { type: "start" }>,
    onFailure: (message: string) => void,
  ): Promise<WorkerHandle> {
    const worker = new Worker(new URL("../dataplane/worker.ts", import.meta.url), {
      type: "module",
    });
    const handle = new WorkerHandle(worker);
    return new Promise((resolve, reject) => {
      let started = false;
      worker.onerror = (ev) => {
        ev.preventDefault();
        const message = `dataplane worker crashed: ${ev.message}`;
        if (started) onFailure(message);
        else reject(new Error(message));
        handle.#resolveStopped();
      };
      worker.onmessage = (ev: MessageEvent<FromWorker>) => {
        const msg = ev.data;
        switch (msg.type) {
          case "started":
            started = true;
            handle.#failed = onFailure;
            resolve(handle);
            break;
          case "error":
            if (started) handle.#failed?.(msg.message);
            else reject(new Error(msg.message));
            handle.#resolveStopped();
            break;
          case "response":
            handle.#pending.get(msg.id)?.(msg);
            handle.#pending.delete(msg.id);
            break;
          case "stopped":
            handle.#resolveStopped();
            break;
        }
      };
      handle.send(start);
    });
  }

  /** Sends request `name` and resolves with the worker's result (see DataplaneHandle.request). */
  request(name: WorkerRequestName, params: unknown, timeoutMs: number): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`dataplane worker did not answer ${name}`));
      }, timeoutMs);
      this.#pending.set(id, (answer) => {
        clearTimeout(timer);
        if ("error" in answer) reject(new DataplaneRequestError(answer.error));
        else resolve(answer.result);
      });
      this.send({ type: "request", id, name, params });
    });
  }

  /** Asks the loop to stop; `stopped` resolves when it has. */
  stop(): void {
    this.#failed = null;
    this.send({ type: "stop" });
  }

  /** Ends the worker's thread. */
  terminate(): void {
    this.#worker.terminate();
  }

  /** Posts `msg` to the worker. */
  send(msg: ToWorker): void {
    this.#worker.postMessage(msg);
  }
}

/** The running dataplane: its workers, one per TUN queue. */
export class DataplaneHandle {
  readonly #workers: WorkerHandle[];
  readonly #handoff: HandoffShared | null;
  /** The spec every worker runs: what a failed apply rolls the others back to. */
  #spec: DataplaneSpec;

  private constructor(workers: WorkerHandle[], handoff: HandoffShared | null, spec: DataplaneSpec) {
    this.#workers = workers;
    this.#handoff = handoff;
    this.#spec = spec;
  }

  /** How many workers run. */
  get workers(): number {
    return this.#workers.length;
  }

  /**
   * Starts one worker per open TUN queue descriptor of `fds` (a number: one queue), opened with
   * the TUN_F `offloads` (0 for none), each reading and writing its batches through `io`;
   * resolves once all run.
   */
  static async start(
    fds: number | number[],
    tun: string,
    spec: DataplaneSpec,
    onFailure: (message: string) => void,
    offloads = 0,
    io: TunIoChoice = DEFAULT_TUN_IO,
  ): Promise<DataplaneHandle> {
    const queues = typeof fds === "number" ? [fds] : fds;
    const workers = queues.length;
    const handoff = workers > 1 ? makeHandoffShared(workers) : null;
    const started = await Promise.allSettled(queues.map((fd, worker) =>
      WorkerHandle.start({
        type: "start",
        fd,
        tun,
        offloads,
        io,
        spec,
        worker,
        workers,
        ...(handoff === null ? {} : { handoff }),
      }, onFailure)
    ));
    const running = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    const failed = started.find((s) => s.status === "rejected");
    if (failed !== undefined) {
      const dp = new DataplaneHandle(running, handoff, spec);
      await dp.stop();
      throw (failed as PromiseRejectedResult).reason;
    }
    return new DataplaneHandle(running, handoff, spec);
  }

  /**
   * Sends request `name` with `params` to every worker and resolves with their merged result;
   * rejects with DataplaneRequestError when a worker refuses it, or with an Error when one does
   * not answer within `timeoutMs`.
   */
  async request<K extends WorkerRequestName>(
    name: K,
    params: WorkerRequests[K]["params"],
    timeoutMs = 2000,
  ): Promise<WorkerRequests[K]["result"]> {
    type R = WorkerRequests[K]["result"];
    const ws = this.#workers;
    if (ws.length === 1) return await ws[0].request(name, params, timeoutMs) as R;
    switch (name) {
      case "connections":
        return await this.#connections(params as ConnectionQuery, timeoutMs) as R;
      case "apply": {
        const p = params as WorkerRequests["apply"]["params"];
        return await this.apply(p.spec, p.cut === true, timeoutMs) as R;
      }
      case "setTimeouts": {
        // Checked by the first, so a refusal changes nothing; then the same for all.
        const first = await ws[0].request(name, params, timeoutMs);
        await Promise.all(ws.slice(1).map((w) => w.request(name, params, timeoutMs)));
        return first as R;
      }
    }
    const all = await Promise.all(ws.map((w) => w.request(name, params, timeoutMs)));
    switch (name) {
      case "stats":
        return mergeStats(all as WorkerStats[]) as R;
      case "traffic":
        return mergeTraffic(all as WorkerRequests["traffic"]["result"][]) as R;
      case "cutConnections":
        return {
          cut: (all as { cut: number }[]).reduce((sum, r) => sum + r.cut, 0),
        } as R;
      default:
        // zeroStats, getTimeouts: every worker answers alike.
        return all[0] as R;
    }
  }

  /** One page of the listing across workers: the cursor names the worker and its entry id. */
  async #connections(q: ConnectionQuery, timeoutMs: number) {
    const ws = this.#workers;
    try {
      return await listAcrossWorkers(
        ws.length,
        (w, query) =>
          ws[w].request("connections", query, timeoutMs) as Promise<
            WorkerRequests["connections"]["result"]
          >,
        q,
      );
    } catch (err) {
      // A bad cursor is the caller's mistake, as a worker's refusal is.
      if (err instanceof RangeError) throw new DataplaneRequestError(err.message);
      throw err;
    }
  }

  /** Asks the workers for a snapshot of their counters and connections, merged. */
  stats(timeoutMs = 2000): Promise<WorkerStats> {
    return this.request("stats", {}, timeoutMs);
  }

  /**
   * Makes the workers take `spec` without dropping established connections; connections of
   * removed reals drain, or are removed at once with `cut`. The first worker checks it: if it
   * refuses, nothing changed; if a later one fails, those that took it go back to the old spec.
   */
  async apply(spec: DataplaneSpec, cut = false, timeoutMs = 10_000): Promise<ApplyResult> {
    const ws = this.#workers;
    const results: ApplyResult[] = [
      await ws[0].request("apply", { spec, cut }, timeoutMs) as ApplyResult,
    ];
    const rest = await Promise.allSettled(
      ws.slice(1).map((w) => w.request("apply", { spec, cut }, timeoutMs)),
    );
    const failed = rest.find((r) => r.status === "rejected");
    if (failed !== undefined) {
      const previous = this.#spec;
      await Promise.allSettled(
        ws.filter((_, i) => i === 0 || rest[i - 1].status === "fulfilled")
          .map((w) => w.request("apply", { spec: previous, cut: false }, timeoutMs)),
      );
      throw (failed as PromiseRejectedResult).reason;
    }
    for (const r of rest) results.push((r as PromiseFulfilledResult<unknown>).value as ApplyResult);
    this.#spec = spec;
    return mergeApply(results);
  }

  /**
   * Hands the firewall-mark services' devices, all of them, to the first worker: it reads them
   * and hands each packet to its owner (docs/workers.md).
   */
  setMarkDevices(devices: MarkDevice[]): void {
    this.#workers[0].send({ type: "devices", devices });
  }

  /** Hands every worker re-resolved tunnel and DR links (per service, per real). */
  updateLinks(links: RealLink[][]): void {
    for (const w of this.#workers) w.send({ type: "links", links });
  }

  /** Stops the workers' loops and ends them. */
  async stop(timeoutMs = 2000): Promise<void> {
    for (const w of this.#workers) w.stop();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(this.#workers.map((w) => w.stopped)),
      new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
    for (const w of this.#workers) w.terminate();
    if (this.#handoff !== null) closeHandoffShared(this.#handoff);
  }
}
