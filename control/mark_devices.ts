/**
 * The TUN devices of firewall-mark services: one per mark, opened when a configuration gains the
 * mark and handed to the worker, which reads them and closes those a later configuration drops.
 * Each has its own routing table, into which `ip rule fwmark N` sends the marked packets.
 *
 * @module
 */
import { TunDevice } from "../dataplane/tun.ts";
import type { MarkDevice } from "../dataplane/tun_set.ts";
import type { ApplianceConfig } from "./config.ts";

/** The first routing table of mark devices; each mark takes the lowest free one from here. */
export const MARK_TABLE_BASE = 30400;
/** Linux interface names hold at most 15 bytes. */
const IFNAME_MAX = 15;

/** A mark's device as the host plan needs it: the name, and the table its rule looks up. */
export interface MarkTun {
  mark: number;
  tun: string;
  table: number;
}

/**
 * The interface name of `mark`'s device: the main device's name, "m" and the mark
 * ("tunvs0m6666"), the main name cut short when the whole would pass 15 bytes.
 */
export function markDeviceName(tun: string, mark: number): string {
  const suffix = `m${mark}`;
  return `${tun.slice(0, IFNAME_MAX - suffix.length)}${suffix}`;
}

/** The firewall marks of `config`'s services, in the order of the services. */
export function configMarks(config: ApplianceConfig): number[] {
  return config.services.flatMap((s) => s.fwmark === undefined ? [] : [s.fwmark]);
}

/** The open mark devices of one appliance. */
export class MarkDevices {
  readonly #open = new Map<number, { device: TunDevice; table: number; handedOver: boolean }>();

  /**
   * Mark devices are named after `tun`, the main device, and opened with offloads when it has
   * them (`offloads`: its TUN_F bits), so the worker reads every device alike.
   */
  constructor(readonly tun: string, readonly offloads = 0) {}

  /**
   * Opens a device for every mark of `config` that has none yet; returns the marks it opened
   * (for `discard` should the change fail). Throws TunError, having opened nothing, when a
   * device cannot be created.
   */
  openFor(config: ApplianceConfig): number[] {
    const opened: number[] = [];
    try {
      for (const mark of configMarks(config)) {
        if (this.#open.has(mark)) continue;
        const device = TunDevice.open(markDeviceName(this.tun, mark), {
          offloads: this.offloads !== 0,
        });
        this.#open.set(mark, { device, table: this.#freeTable(), handedOver: false });
        opened.push(mark);
      }
    } catch (err) {
      this.discard(opened);
      throw err;
    }
    return opened;
  }

  /** Closes the devices of `marks` that were never handed to the worker (a change undone). */
  discard(marks: readonly number[]): void {
    for (const mark of marks) {
      const entry = this.#open.get(mark);
      if (entry === undefined || entry.handedOver) continue;
      entry.device.close();
      this.#open.delete(mark);
    }
  }

  /** The devices of `config`'s marks, for the host plan. */
  planFor(config: ApplianceConfig): MarkTun[] {
    return configMarks(config).flatMap((mark) => {
      const entry = this.#open.get(mark);
      return entry === undefined ? [] : [{ mark, tun: entry.device.name, table: entry.table }];
    });
  }

  /**
   * Hands the devices of `config`'s marks over to the worker and forgets the others: the worker
   * closes them once it has the returned list.
   */
  handOver(config: ApplianceConfig): MarkDevice[] {
    const wanted = new Set(configMarks(config));
    for (const mark of [...this.#open.keys()]) if (!wanted.has(mark)) this.#open.delete(mark);
    return [...this.#open].map(([mark, entry]) => {
      entry.handedOver = true;
      return {
        fd: entry.device.fd,
        name: entry.device.name,
        mark,
        offloads: entry.device.offloads,
      };
    });
  }

  /** Closes the devices the worker never took (the worker closes its own as it stops). */
  closeUnhanded(): void {
    this.discard([...this.#open.keys()]);
  }

  #freeTable(): number {
    const used = new Set([...this.#open.values()].map((e) => e.table));
    let table = MARK_TABLE_BASE;
    while (used.has(table)) table++;
    return table;
  }
}
