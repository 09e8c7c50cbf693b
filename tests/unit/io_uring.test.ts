/**
 * Tests of the io_uring binding and of TUN batch I/O through it. The ring arithmetic needs
 * nothing; rings need a kernel that allows io_uring (skipped, saying so, when io_uring_setup is
 * refused); the TUN round trip needs root and runs, like tun.test.ts, as this very file spawned
 * inside a throwaway network namespace.
 *
 * @module
 */

import assert from "node:assert/strict";
import { IoUring, IoUringError, IoUringOp } from "../../dataplane/io_uring.ts";
import { ringAdvance, ringFree, ringSlot, ringUsed } from "../../dataplane/io_uring_ring.ts";
import { PacketBatch, TunDevice } from "../../dataplane/tun.ts";
import { useTunIo } from "../../dataplane/tun_io_choice.ts";
import { get16 } from "../../dataplane/wire/bytes.ts";
import { udp } from "../fixtures/packet_builders.ts";

const LOCAL = "10.99.1.1";
const PEER = "10.99.1.2";
const IFNAME = "tvsuring0";

/** Why rings cannot be tested here, or null when io_uring_setup works. */
const refused: string | null = (() => {
  try {
    IoUring.setup(2).close();
    return null;
  } catch (e) {
    if (e instanceof IoUringError) return e.message;
    throw e;
  }
})();

function ipv4(s: string): number {
  return s.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

// --- ring arithmetic -----------------------------------------------------------------------------

Deno.test("ring counters are free-running u32s: used and free stay right across the wrap", () => {
  assert.equal(ringUsed(5, 5), 0);
  assert.equal(ringUsed(5, 9), 4);
  // tail wrapped past 2^32, head not yet.
  assert.equal(ringUsed(0xfffffffe, 2), 4);
  assert.equal(ringFree(0xfffffffe, 2, 64), 60);
  // A full ring: tail − head = entries, also across the wrap.
  assert.equal(ringFree(0xffffffe0, 0x20, 64), 0);
  assert.equal(ringFree(7, 7 + 64, 64), 0);
  assert.equal(ringAdvance(0xffffffff, 1), 0);
  assert.equal(ringAdvance(0xfffffff0, 0x20), 0x10);
  assert.equal(ringSlot(0xffffffff, 63), 63);
  assert.equal(ringSlot(ringAdvance(0xffffffff, 1), 63), 0);
  assert.equal(ringSlot(130, 63), 2);
});

// --- rings ---------------------------------------------------------------------------------------

Deno.test({
  name: refused === null
    ? "a full SQ of NOPs submits in one enter; slots wrap round many times"
    : `a full SQ of NOPs (skipped: ${refused})`,
  ignore: refused !== null,
  fn: () => {
    const ring = IoUring.setup(4);
    try {
      assert.equal(ring.sqEntries, 4);
      assert.ok(ring.cqEntries >= 4);
      for (let round = 0; round < 10; round++) {
        assert.equal(ring.sqFree(), 4);
        for (let i = 0; i < 4; i++) ring.prepare(IoUringOp.NOP, 0, 0, 0, 0, 0, round * 4 + i);
        assert.equal(ring.sqFree(), 0, "the SQ is full");
        assert.equal(ring.submit(4), 4);
        assert.equal(ring.completions(), 4);
        const seen = [0, 1, 2, 3].map((k) => ring.completionUserData(k)).sort((a, b) => a - b);
        assert.deepEqual(seen, [0, 1, 2, 3].map((i) => round * 4 + i));
        for (let k = 0; k < 4; k++) assert.equal(ring.completionResult(k), 0);
        ring.consume(4);
        assert.equal(ring.completions(), 0);
      }
      // A READ on a descriptor that is not open completes with −EBADF.
      ring.prepare(IoUringOp.READ, 0, 1_000_000, 0, 0, 0, 7);
      ring.submit(1);
      assert.equal(ring.completionUserData(0), 7);
      assert.equal(ring.completionResult(0), -9);
      ring.consume(1);
    } finally {
      ring.close();
      ring.close();
    }
  },
});

Deno.test("useTunIo with syscalls leaves the device on read/write per packet and says so", () => {
  const logs: string[] = [];
  const tun = TunDevice.adopt(-1, "tvsnone0");
  assert.equal(useTunIo(tun, "syscalls", (line) => logs.push(line)), tun);
  assert.deepEqual(logs, [
    "tunvs: tvsnone0 batch I/O: syscalls (one read/write per packet, as configured)",
  ]);
  // The device reads with read(2): on descriptor −1 that fails with EBADF, not through a ring.
  assert.throws(() => tun.readBatch(new PacketBatch(1)), /read from tvsnone0 failed: Bad file/);
});

// --- the child, run inside the namespace ---------------------------------------------------------

async function ip(...args: string[]): Promise<void> {
  const r = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!r.success) throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/**
 * Reads and writes `IFNAME` through TunUringIo, set up as the worker sets it up (`useTunIo`);
 * prints what happened as JSON.
 */
async function child(): Promise<void> {
  const logs: string[] = [];
  const io = useTunIo(TunDevice.open(IFNAME), "io_uring", (line) => logs.push(line));
  const tun = io;
  await ip("link", "set", "lo", "up");
  await ip("addr", "add", `${LOCAL}/24`, "dev", IFNAME);
  Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${IFNAME}/disable_ipv6`, "1");
  await ip("link", "set", IFNAME, "up");
  const sock = Deno.listenDatagram({ transport: "udp", hostname: LOCAL, port: 0 });
  const port = (sock.addr as Deno.NetAddr).port;
  const batch = new PacketBatch(8);
  const emptyBefore = io.readBatch(batch);

  // Kernel → TUN: 20 datagrams routed to the peer, read through the ring in batches of 8.
  for (let i = 0; i < 20; i++) {
    await sock.send(new Uint8Array(36), { transport: "udp", hostname: PEER, port: 9000 + i });
  }
  const ports: number[] = [];
  const batches: number[] = [];
  const deadline = Date.now() + 5_000;
  while (ports.length < 20 && Date.now() < deadline) {
    await tun.waitReadable(200);
    const n = io.readBatch(batch);
    if (n > 0) batches.push(n);
    for (let i = 0; i < n; i++) {
      if (batch.lengths[i] === 64) ports.push(get16(batch.buf, batch.offset(i) + 22));
    }
  }
  const emptyAfter = io.readBatch(batch);

  // TUN → kernel: a batch of three, the middle one skipped.
  const out = new PacketBatch(3);
  ["ring one", "must not be sent", "ring three"].forEach((text, i) => {
    const p = udp(ipv4(PEER), 7000 + i, ipv4(LOCAL), port, text);
    out.buf.set(p, out.offset(i));
    out.lengths[i] = i === 1 ? -1 : p.length;
  });
  out.count = 3;
  const written = io.writeBatch(out);
  const received: string[] = [];
  for (let i = 0; i < 2; i++) {
    const [data] = await sock.receive();
    received.push(new TextDecoder().decode(data));
  }
  tun.close();
  sock.close();
  console.log(
    JSON.stringify({ logs, emptyBefore, ports, batches, emptyAfter, written, received }),
  );
}

if (import.meta.main) {
  await child();
  Deno.exit(0);
}

// --- root test -----------------------------------------------------------------------------------

const isRoot = Deno.uid() === 0;

Deno.test({
  name: refused !== null
    ? `a TUN round trip through io_uring (skipped: ${refused})`
    : !isRoot
    ? "a TUN round trip through io_uring (skipped: needs root for a namespace and a TUN)"
    : "a TUN set to io_uring reads every queued packet in order in batches, writes a batch skipping -1",
  ignore: refused !== null || !isRoot,
  fn: async () => {
    const ns = `tunvs-uring-${Deno.pid}`;
    await ip("netns", "add", ns);
    try {
      const file = new URL(import.meta.url).pathname;
      const r = await new Deno.Command("ip", {
        args: ["netns", "exec", ns, Deno.execPath(), "run", "-A", "--unstable-net", file],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const stdout = new TextDecoder().decode(r.stdout).trim();
      assert.ok(r.success, `child failed:\n${stdout}\n${new TextDecoder().decode(r.stderr)}`);
      const got = JSON.parse(stdout.split("\n").at(-1)!);
      assert.deepEqual(got.logs, [
        `tunvs: ${IFNAME} batch I/O: io_uring (one io_uring_enter per batch)`,
      ]);
      assert.equal(got.emptyBefore, 0);
      assert.deepEqual(got.ports, Array.from({ length: 20 }, (_, i) => 9000 + i));
      assert.ok(got.batches.every((n: number) => n <= 8), JSON.stringify(got.batches));
      assert.equal(got.emptyAfter, 0);
      assert.deepEqual(got.written, { written: 2, failed: 0 });
      assert.deepEqual(got.received.sort(), ["ring one", "ring three"]);
    } finally {
      await ip("netns", "del", ns);
    }
  },
});
