/**
 * The TUN devices one worker reads: the main device, and one device per firewall-mark service,
 * into which the host routes the packets of that mark (`ip rule fwmark N`). A TUN does not
 * carry the kernel's packet mark, so the device a packet comes from stands for it.
 */
import { libc } from "./libc.ts";
import { TunDevice } from "./tun.ts";

const POLLIN = 0x001;
const POLLFD_SIZE = 8;

/** A firewall-mark service's device as the control plane hands it over: an open descriptor. */
export interface MarkDevice {
  fd: number;
  name: string;
  mark: number;
  /** The TUN_F offloads the device was opened with (0: no virtio_net_hdr). */
  offloads: number;
}

/** The devices a worker reads, each with the mark its packets stand for (0: the main device). */
export class TunSet {
  /** The devices, the main one first. */
  #devices: TunDevice[];
  /** The mark of each device of `#devices`. */
  #marks: Uint32Array;
  /**
   * One `struct pollfd` per device, then one for `wakeFd` if any; replaced, never changed, while
   * a poll may be running.
   */
  #pollfds: Uint8Array<ArrayBuffer>;
  /** A descriptor polled besides the devices (the worker's hand-off eventfd); -1 for none. */
  #wakeFd = -1;

  /** A set of the main device only. */
  constructor(readonly main: TunDevice) {
    this.#devices = [main];
    this.#marks = new Uint32Array(1);
    this.#pollfds = pollfds(this.#devices, this.#wakeFd);
  }

  /** Makes `waitReadable` also return when `fd` (an eventfd) becomes readable. */
  watchWake(fd: number): void {
    this.#wakeFd = fd;
    this.#pollfds = pollfds(this.#devices, fd);
  }

  /** How many devices there are. */
  get count(): number {
    return this.#devices.length;
  }

  /** Device `i` (0 is the main device). */
  device(i: number): TunDevice {
    return this.#devices[i];
  }

  /** The firewall mark device `i`'s packets stand for; 0 for the main device. */
  mark(i: number): number {
    return this.#marks[i];
  }

  /**
   * Makes the mark devices exactly `wanted`: adopts the new descriptors and closes those no
   * longer wanted (their interfaces vanish with them). Called between batches only, so no read
   * is under way on a descriptor it closes.
   */
  replaceMarkDevices(wanted: readonly MarkDevice[]): void {
    const kept: TunDevice[] = [this.main];
    const marks = [0];
    for (const w of wanted) {
      const have = this.#devices.find((d) => d !== this.main && d.fd === w.fd && d.name === w.name);
      kept.push(have ?? TunDevice.adopt(w.fd, w.name, w.offloads));
      marks.push(w.mark);
    }
    for (const d of this.#devices) if (!kept.includes(d)) d.close();
    this.#devices = kept;
    this.#marks = Uint32Array.from(marks);
    this.#pollfds = pollfds(kept, this.#wakeFd);
  }

  /** Waits off-thread until any device has a packet or `timeoutMs` passes. */
  async waitReadable(timeoutMs: number): Promise<boolean> {
    const fds = this.#pollfds;
    const r = await libc().poll(fds, BigInt(fds.length / POLLFD_SIZE), timeoutMs);
    return r > 0;
  }

  /** Closes the mark devices (the main one is its owner's to close). */
  closeMarkDevices(): void {
    this.replaceMarkDevices([]);
  }
}

/** The `struct pollfd` array for `devices` and `wakeFd` (unless -1), waiting for input. */
function pollfds(devices: readonly TunDevice[], wakeFd: number): Uint8Array<ArrayBuffer> {
  const fds = devices.map((d) => d.fd);
  if (wakeFd >= 0) fds.push(wakeFd);
  const buf = new Uint8Array(fds.length * POLLFD_SIZE);
  const view = new DataView(buf.buffer);
  fds.forEach((fd, i) => {
    view.setInt32(i * POLLFD_SIZE, fd, true);
    view.setInt16(i * POLLFD_SIZE + 4, POLLIN, true);
  });
  return buf;
}
