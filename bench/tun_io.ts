/**
 * The TUN I/O benchmark: packets per second of writing and reading 64-byte IPv4/UDP packets on a
 * real TUN device, through today's one write(2) / read(2) per packet over FFI (TunDevice) against
 * one io_uring_enter per batch of 64 (TunUringIo).
 *
 * Everything runs in a child process (this module with `--child`) inside a throwaway network
 * namespace. Writes go to a UDP socket in the namespace that never reads, so each packet crosses
 * the whole receive path and is dropped at the full socket. Reads drain a queue filled beforehand:
 * the namespace sends datagrams routed into the TUN (its txqueuelen raised so that none is
 * dropped), then the queue is read until empty, timed. No sender runs while reading, so the
 * figure is the reader's alone. writev(2) and friends are no alternative on TUN: one write is one
 * packet, whatever the iovecs, so they are not measured.
 *
 * @module
 */

import { IoUringError } from "../dataplane/io_uring.ts";
import { libc } from "../dataplane/libc.ts";
import { PacketBatch, TunDevice } from "../dataplane/tun.ts";
import { TunUringIo } from "../dataplane/tun_uring_io.ts";
import { checksum } from "../dataplane/wire/checksum.ts";
import { set16, set32 } from "../dataplane/wire/bytes.ts";
import {
  type Benchmark,
  type BenchOptions,
  type BenchOutcome,
  formatColumns,
  formatRate,
  formatRatio,
} from "./bench.ts";

/** Packets per batch, as the worker reads them. */
const BATCH = 64;
/** Bytes of every packet: IPv4 (20) + UDP (8) + 36 bytes of payload. */
const PACKET_BYTES = 64;
const IFNAME = "tvsbench0";
const LOCAL = 0x0a620001; // 10.98.0.1, the namespace's end of the TUN
const PEER = 0x0a620002; // 10.98.0.2, routed into the TUN
const TXQUEUELEN = 70_000;

/** One way of doing batch I/O: TunDevice itself, or TunUringIo. */
interface BatchIo {
  readBatch(batch: PacketBatch): number;
  writeBatch(batch: PacketBatch, from?: number, to?: number): { written: number };
}

/** A measured rate. */
export interface RateSample {
  packets: number;
  ms: number;
  pps: number;
  nsPerPacket: number;
}

/** What the child measured: the best round of each, and every round. */
export interface TunIoResult {
  rounds: number;
  /** Fills and drains of the queue per round. */
  drains: number;
  /** `ratio`: best io_uring ÷ best syscalls; `medianRatio`: the median of each round's ratio,
   * the two measured back to back, so less at the mercy of load from outside. */
  write: { syscalls: RateSample; io_uring: RateSample; ratio: number; medianRatio: number };
  read: { syscalls: RateSample; io_uring: RateSample; ratio: number; medianRatio: number };
  /** readBatch on an empty queue (the cost of a wake-up that finds nothing), ns per call. */
  emptyRead: { syscallsNs: number; ioUringNs: number };
  all: { write: [number, number][]; read: [number, number][] };
}

function sample(packets: number, ms: number): RateSample {
  const elapsed = Math.max(ms, 0.001);
  return {
    packets,
    ms,
    pps: (packets / elapsed) * 1000,
    nsPerPacket: packets > 0 ? (elapsed * 1e6) / packets : 0,
  };
}

/** Fills every slot of `batch` with a 64-byte UDP packet from PEER to LOCAL:`port`. */
function fillWrites(batch: PacketBatch, port: number): void {
  for (let i = 0; i < batch.slots; i++) {
    const b = batch.buf;
    const o = batch.offset(i);
    b.fill(0, o, o + PACKET_BYTES);
    b[o] = 0x45;
    set16(b, o + 2, PACKET_BYTES);
    b[o + 8] = 64;
    b[o + 9] = 17;
    set32(b, o + 12, PEER);
    set32(b, o + 16, LOCAL);
    set16(b, o + 10, checksum(b, o, 20));
    set16(b, o + 20, 7000 + i);
    set16(b, o + 22, port);
    set16(b, o + 24, PACKET_BYTES - 20); // UDP checksum 0: none, allowed on IPv4
    batch.lengths[i] = PACKET_BYTES;
  }
  batch.count = batch.slots;
}

/** Writes full batches through `io` for `ms` milliseconds. */
function timeWrites(io: BatchIo, batch: PacketBatch, ms: number): RateSample {
  let packets = 0;
  const start = performance.now();
  const end = start + ms;
  let now = start;
  while (now < end) {
    for (let k = 0; k < 16; k++) packets += io.writeBatch(batch, 0, BATCH).written;
    now = performance.now();
  }
  return sample(packets, now - start);
}

/** A UDP socket through FFI and the address it sends to: PEER's discard port, into the TUN. */
function sender(): { fd: number; to: Uint8Array<ArrayBuffer> } {
  const fd = libc().socket(2, 2, 0); // AF_INET, SOCK_DGRAM
  if (fd < 0) throw new Error("socket failed");
  const to = new Uint8Array(16);
  set16(to, 0, 0x0200); // AF_INET in host (little-endian) order
  set16(to, 2, 9);
  set32(to, 4, PEER);
  return { fd, to };
}

/** Queues `count` 64-byte packets in the TUN by sending them from the namespace. */
function fillQueue(s: { fd: number; to: Uint8Array<ArrayBuffer> }, count: number): void {
  const payload = new Uint8Array(PACKET_BYTES - 28);
  const c = libc();
  for (let i = 0; i < count; i++) {
    if (c.sendto(s.fd, payload, BigInt(payload.length), 0, s.to, 16) < 0) {
      throw new Error(`sendto failed after ${i} packets`);
    }
  }
}

/** Reads the TUN queue through `io` until empty, timed. */
function timeDrain(io: BatchIo, batch: PacketBatch): RateSample {
  let packets = 0;
  const start = performance.now();
  for (;;) {
    const n = io.readBatch(batch);
    if (n === 0) break;
    packets += n;
  }
  return sample(packets, performance.now() - start);
}

/** ns per readBatch on an empty queue, over `calls` calls. */
function timeEmptyReads(io: BatchIo, batch: PacketBatch, calls: number): number {
  const start = performance.now();
  for (let i = 0; i < calls; i++) io.readBatch(batch);
  return ((performance.now() - start) * 1e6) / calls;
}

/** The median over rounds of io_uring ÷ syscalls. */
function medianRatio(rounds: [number, number][]): number {
  const r = rounds.map(([sys, uring]) => uring / sys).sort((a, b) => a - b);
  const m = r.length >> 1;
  return r.length % 2 === 1 ? r[m] : (r[m - 1] + r[m]) / 2;
}

async function ip(...args: string[]): Promise<void> {
  const r = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!r.success) throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** The measurement, run inside the namespace. */
async function measure(quick: boolean, writeMs: number, fill: number, rounds: number) {
  const drains = quick ? 1 : 5;
  const tun = TunDevice.open(IFNAME);
  const uring = TunUringIo.open(tun, BATCH);
  await ip("link", "set", "lo", "up");
  await ip("addr", "add", "10.98.0.1/24", "dev", IFNAME);
  Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${IFNAME}/disable_ipv6`, "1");
  await ip("link", "set", IFNAME, "txqueuelen", String(TXQUEUELEN), "up");
  const sink = Deno.listenDatagram({ transport: "udp", hostname: "10.98.0.1", port: 0 });
  const port = (sink.addr as Deno.NetAddr).port;
  const out = new PacketBatch(BATCH);
  fillWrites(out, port);
  const inb = new PacketBatch(BATCH);
  const s = sender();
  const ios: [string, BatchIo][] = [["syscalls", tun], ["io_uring", uring]];
  // Warm-up: both paths compiled and the socket buffer full before anything is timed.
  for (const [, io] of ios) {
    timeWrites(io, out, quick ? 20 : 200);
    fillQueue(s, 2_000);
    timeDrain(io, inb);
  }
  const writes: [number, number][] = [];
  const reads: [number, number][] = [];
  const best = { write: [sample(0, 1), sample(0, 1)], read: [sample(0, 1), sample(0, 1)] };
  for (let r = 0; r < rounds; r++) {
    const w: number[] = [];
    const d: number[] = [];
    ios.forEach(([, io], k) => {
      const ws = timeWrites(io, out, writeMs);
      // Several fills a round: one drain lasts only tens of milliseconds.
      let drained = 0;
      let drainMs = 0;
      for (let f = 0; f < drains; f++) {
        fillQueue(s, fill);
        const one = timeDrain(io, inb);
        if (one.packets < fill) throw new Error(`drained ${one.packets} of ${fill} queued packets`);
        drained += one.packets;
        drainMs += one.ms;
      }
      const rs = sample(drained, drainMs);
      if (ws.pps > best.write[k].pps) best.write[k] = ws;
      if (rs.pps > best.read[k].pps) best.read[k] = rs;
      w.push(ws.pps);
      d.push(rs.pps);
    });
    writes.push([w[0], w[1]]);
    reads.push([d[0], d[1]]);
  }
  const emptyCalls = quick ? 1_000 : 100_000;
  const emptyRead = {
    syscallsNs: timeEmptyReads(tun, inb, emptyCalls),
    ioUringNs: timeEmptyReads(uring, inb, emptyCalls),
  };
  uring.close();
  tun.close();
  sink.close();
  libc().close(s.fd);
  const result: TunIoResult = {
    rounds,
    drains,
    write: {
      syscalls: best.write[0],
      io_uring: best.write[1],
      ratio: best.write[1].pps / best.write[0].pps,
      medianRatio: medianRatio(writes),
    },
    read: {
      syscalls: best.read[0],
      io_uring: best.read[1],
      ratio: best.read[1].pps / best.read[0].pps,
      medianRatio: medianRatio(reads),
    },
    emptyRead,
    all: { write: writes, read: reads },
  };
  return result;
}

async function run(options: BenchOptions): Promise<BenchOutcome> {
  if (Deno.uid() !== 0) throw new Error("needs root (a network namespace and a TUN device)");
  const quick = options.quick;
  const writeMs = quick ? 50 : (options.seconds ?? 1) * 1000;
  const fill = quick ? 2_000 : 60_000;
  const rounds = quick ? 1 : 5;
  const ns = `tunvs-bench-io-${Deno.pid}`;
  await ip("netns", "add", ns);
  let result: TunIoResult;
  try {
    const file = new URL(import.meta.url).pathname;
    const r = await new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-net",
        file,
        "--child",
        String(quick),
        String(writeMs),
        String(fill),
        String(rounds),
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(600_000),
    }).output();
    const stdout = new TextDecoder().decode(r.stdout).trim();
    if (!r.success) {
      throw new Error(`child failed (${r.code}): ${new TextDecoder().decode(r.stderr).trim()}`);
    }
    result = JSON.parse(stdout.split("\n").at(-1)!);
  } finally {
    await ip("netns", "del", ns);
  }
  const row = (what: string, s: RateSample) => [
    what,
    formatRate(s.pps),
    s.nsPerPacket.toFixed(0),
  ];
  const rows = [
    row("write, write(2) per packet", result.write.syscalls),
    row("write, io_uring per 64", result.write.io_uring),
    ["write, io_uring ÷ syscalls: best", formatRatio(result.write.ratio), ""],
    ["write, io_uring ÷ syscalls: median round", formatRatio(result.write.medianRatio), ""],
    row("read, read(2) per packet", result.read.syscalls),
    row("read, io_uring per 64", result.read.io_uring),
    ["read, io_uring ÷ syscalls: best", formatRatio(result.read.ratio), ""],
    ["read, io_uring ÷ syscalls: median round", formatRatio(result.read.medianRatio), ""],
  ];
  const lines = [
    `tun_io: ${tunIoBenchmark.description}`,
    `  best of ${result.rounds} rounds; writes ${writeMs} ms a round into a UDP socket that ` +
    `never reads; reads drain ${fill} queued packets ${result.drains} times;`,
    "  writev is no alternative on TUN (one write is one packet), so it is not measured.",
    "",
    ...formatColumns(["64-byte UDP", "packets/s", "ns/packet"], rows),
    "",
    `  readBatch on an empty queue: ${result.emptyRead.syscallsNs.toFixed(0)} ns (read(2)), ` +
    `${result.emptyRead.ioUringNs.toFixed(0)} ns (io_uring)`,
  ];
  return { lines, data: { ...result }, targets: [] };
}

/** The TUN I/O benchmark, as `bench/run.ts` runs it. */
export const tunIoBenchmark: Benchmark = {
  name: "tun_io",
  description: "64-byte packets on a TUN: one syscall per packet vs one io_uring_enter per batch",
  run,
};

if (import.meta.main && Deno.args[0] === "--child") {
  const [, quick, writeMs, fill, rounds] = Deno.args;
  let result: TunIoResult;
  try {
    result = await measure(quick === "true", Number(writeMs), Number(fill), Number(rounds));
  } catch (e) {
    if (e instanceof IoUringError) console.error(`io_uring unavailable: ${e.message}`);
    throw e;
  }
  console.log(JSON.stringify(result));
  Deno.exit(0);
}
