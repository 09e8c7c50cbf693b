/**
 * The control plane's handle on a dataplane worker: starts it on a TUN
 * descriptor, sends it requests and waits for their answers, stops it.
 */
import type { RealLink } from "../dataplane/direct_routes.ts";
import type { DataplaneSpec } from "../dataplane/service.ts";
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

/** A request the worker refused (bad parameters, unknown service): the operator's mistake. */
export class DataplaneRequestError extends Error {}

/** How a request ends: with the worker's result, or its error message. */
type Settle = { result: unknown } | { error: string };

/** A running dataplane worker. */
export class DataplaneHandle {
  readonly #worker: Worker;
  readonly #pending = new Map<number, (answer: Settle) => void>();
  #nextId = 1;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;
  #failed: ((message: string) => void) | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.#stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  /**
   * Starts a worker on the open TUN descriptor `fd` (opened with the TUN_F `offloads`, 0 for
   * none) and reading and writing its batches through `io`; resolves once it runs.
   */
  static start(
    fd: number,
    tun: string,
    spec: DataplaneSpec,
    onFailure: (message: string) => void,
    offloads = 0,
    io: TunIoChoice = DEFAULT_TUN_IO,
  ): Promise<DataplaneHandle> {
    const worker = new Worker(new URL("../dataplane/worker.ts", import.meta.url), {
      type: "module",
    });
    const handle = new DataplaneHandle(worker);
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
      // `io` rides along for the worker, which hands it to useTunIo (tun_io_choice.ts) on the
      // device it adopts; ToWorker's start message is to name it when the worker does.
      const start: ToWorker & { io: TunIoChoice } = { type: "start", fd, tun, offloads, spec, io };
      handle.#send(start);
    });
  }

  /**
   * Sends request `name` with `params` and resolves with the worker's result;
   * rejects with DataplaneRequestError when the worker refuses it, or with an
   * Error when it does not answer within `timeoutMs`.
   */
  request<K extends WorkerRequestName>(
    name: K,
    params: WorkerRequests[K]["params"],
    timeoutMs = 2000,
  ): Promise<WorkerRequests[K]["result"]> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`dataplane worker did not answer ${name}`));
      }, timeoutMs);
      this.#pending.set(id, (answer) => {
        clearTimeout(timer);
        if ("error" in answer) reject(new DataplaneRequestError(answer.error));
        else resolve(answer.result as WorkerRequests[K]["result"]);
      });
      this.#send({ type: "request", id, name, params });
    });
  }

  /** Asks the worker for a snapshot of its counters and connections. */
  stats(timeoutMs = 2000): Promise<WorkerStats> {
    return this.request("stats", {}, timeoutMs);
  }

  /**
   * Makes the worker take `spec` without dropping established connections; connections of
   * removed reals drain, or are removed at once with `cut`.
   */
  apply(spec: DataplaneSpec, cut = false, timeoutMs = 10_000): Promise<ApplyResult> {
    return this.request("apply", { spec, cut }, timeoutMs);
  }

  /**
   * Hands the worker the firewall-mark services' devices, all of them: it starts reading the
   * new ones and closes those missing from `devices`.
   */
  setMarkDevices(devices: MarkDevice[]): void {
    this.#send({ type: "devices", devices });
  }

  /** Hands the worker re-resolved tunnel and DR links (per service, per real). */
  updateLinks(links: RealLink[][]): void {
    this.#send({ type: "links", links });
  }

  /** Stops the worker's loop and ends the worker. */
  async stop(timeoutMs = 2000): Promise<void> {
    this.#failed = null;
    this.#send({ type: "stop" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#stopped,
      new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
    this.#worker.terminate();
  }

  #send(msg: ToWorker): void {
    this.#worker.postMessage(msg);
  }
}
