/**
 * The control plane's handle on a dataplane worker: starts it on a TUN
 * descriptor, asks it for statistics, stops it.
 */
import type { DataplaneSpec } from "../dataplane/service.ts";
import type { FromWorker, ToWorker, WorkerStats } from "../dataplane/worker.ts";

/** A running dataplane worker. */
export class DataplaneHandle {
  readonly #worker: Worker;
  readonly #pending = new Map<number, (s: WorkerStats) => void>();
  #nextId = 1;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;
  #failed: ((message: string) => void) | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.#stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  /** Starts a worker on the open TUN descriptor `fd`; resolves once it runs. */
  static start(
    fd: number,
    tun: string,
    spec: DataplaneSpec,
    onFailure: (message: string) => void,
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
          case "stats":
            handle.#pending.get(msg.id)?.(msg.stats);
            handle.#pending.delete(msg.id);
            break;
          case "stopped":
            handle.#resolveStopped();
            break;
        }
      };
      handle.#send({ type: "start", fd, tun, spec });
    });
  }

  /** Asks the worker for a snapshot of its counters and connections. */
  stats(timeoutMs = 2000): Promise<WorkerStats> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error("dataplane worker did not answer"));
      }, timeoutMs);
      this.#pending.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.#send({ type: "stats", id });
    });
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
