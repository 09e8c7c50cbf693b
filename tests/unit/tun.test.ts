/**
 * Tests of the TUN device. Name validation needs nothing; everything else needs root and runs in a
 * throwaway network namespace: the test spawns this very file with `deno run` inside the namespace
 * (`ip netns exec`), where `Deno.test` is inert and `child()` does the work and prints its
 * findings as one JSON line for the test to check.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PacketBatch, TunDevice, TunError, validateInterfaceName } from "../../dataplane/tun.ts";
import { get16, get32 } from "../../dataplane/wire/bytes.ts";
import { checksum, l4Checksum } from "../../dataplane/wire/checksum.ts";
import { PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { udp } from "../fixtures/packet_builders.ts";

/** The namespace's end of the TUN link and the address routed through it. */
const LOCAL = "10.99.0.1";
const PEER = "10.99.0.2";
const IFNAME = "tvsunit0";
const EINVAL = 22;

const isRoot = Deno.uid() === 0;

function ipv4(s: string): number {
  return s.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function ipv4Text(a: number): string {
  return [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join(".");
}

// --- root-free -----------------------------------------------------------------------------------

Deno.test("invalid interface names fail with a TunError that says what is allowed", () => {
  const bad = ["", "a/b", "abcdefghijklmnop", ".", "..", "a b", "eth0:1", "tab\tname", "ééééééééé"];
  for (const name of bad) {
    for (const attempt of [() => validateInterfaceName(name), () => TunDevice.open(name)]) {
      assert.throws(attempt, (e: unknown) => {
        assert.ok(e instanceof TunError, String(e));
        assert.equal(e.name, "TunError");
        assert.equal(e.code, EINVAL);
        assert.match(e.message, /invalid interface name/);
        assert.ok(e.message.includes(JSON.stringify(name)), e.message);
        assert.match(e.message, /1-15 bytes/);
        return true;
      }, JSON.stringify(name));
    }
  }
  // The longest allowed names, and names with dots and dashes, pass.
  for (const name of ["abcdefghijklmno", "a", "tun-vs.0", "éééééé"]) validateInterfaceName(name);
});

Deno.test("PacketBatch slots hold a virtio_net_hdr and MAX_PACKET, and start empty", () => {
  const batch = new PacketBatch(3);
  assert.equal(batch.buf.length, 3 * 65545);
  assert.deepEqual([0, 1, 2].map((i) => batch.offset(i)), [0, 65545, 131090]);
  assert.equal(batch.count, 0);
  const base = Deno.UnsafePointer.value(Deno.UnsafePointer.of(batch.buf));
  const second = Deno.UnsafePointer.value(batch.pointer(1));
  assert.equal(BigInt(second) - BigInt(base), 65545n);
});

// --- the child, run inside the namespace ---------------------------------------------------------

/** What an attempt to open a TUN device gave. */
interface OpenOutcome {
  opened: boolean;
  error?: { type: string; message: string; code: number };
}

function outcome(f: () => TunDevice): [OpenOutcome, TunDevice | null] {
  try {
    return [{ opened: true }, f()];
  } catch (e) {
    const err = e as TunError;
    return [
      { opened: false, error: { type: err.name, message: err.message, code: err.code } },
      null,
    ];
  }
}

function interfaces(): string[] {
  return [...Deno.readDirSync("/sys/class/net")].map((e) => e.name).sort();
}

async function ip(...args: string[]): Promise<void> {
  const r = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!r.success) throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** An IPv4/UDP datagram with valid checksums. */
function udpPacket(src: string, sport: number, dst: string, dport: number, text: string) {
  return udp(ipv4(src), sport, ipv4(dst), dport, text);
}

/** A received datagram, described. */
interface Datagram {
  from: string;
  text: string;
}

/** Receives from `sock` with a timeout, keeping one receive pending across calls. */
function receiver(sock: Deno.DatagramConn): (ms: number) => Promise<Datagram | null> {
  let pending = sock.receive();
  pending.catch(() => {});
  return async (ms) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), ms);
    });
    const got = await Promise.race([pending, timeout]);
    clearTimeout(timer);
    if (got === null) return null;
    pending = sock.receive();
    pending.catch(() => {});
    const [data, remote] = got;
    const addr = remote as Deno.NetAddr;
    return { from: `${addr.hostname}:${addr.port}`, text: new TextDecoder().decode(data) };
  };
}

/**
 * Gives TUN `name` the test's address and brings it up (no IPv6 chatter, no reverse-path
 * filter), and binds a UDP socket on that address with a receiver for what reaches it.
 */
async function addressDevice(name: string) {
  await ip("link", "set", "lo", "up");
  await ip("addr", "add", `${LOCAL}/24`, "dev", name);
  Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1");
  await ip("link", "set", name, "up");
  for (const conf of ["all", "default", name]) {
    Deno.writeTextFileSync(`/proc/sys/net/ipv4/conf/${conf}/rp_filter`, "0");
  }
  const sock = Deno.listenDatagram({ transport: "udp", hostname: LOCAL, port: 0 });
  const port = (sock.addr as Deno.NetAddr).port;
  const receive = receiver(sock);
  return { sock, port, receive };
}

async function roundTrip(name: string): Promise<unknown> {
  const tun = TunDevice.open(name);
  const { sock, port, receive } = await addressDevice(name);

  // Kernel → TUN: a datagram routed to the peer comes out of the device.
  await sock.send(new TextEncoder().encode("to the tun"), {
    transport: "udp",
    hostname: PEER,
    port: 9999,
  });
  const batch = new PacketBatch(4);
  let read = null;
  let signalled = false;
  const deadline = Date.now() + 5_000;
  while (read === null && Date.now() < deadline) {
    if (await tun.waitReadable(500)) signalled = true;
    const n = tun.readBatch(batch);
    for (let i = 0; i < n; i++) {
      const b = batch.buf;
      const off = batch.offset(i);
      if (b[off] !== 0x45 || b[off + 9] !== PROTO_UDP || get16(b, off + 22) !== 9999) continue;
      const len = batch.lengths[i];
      read = {
        len,
        src: ipv4Text(get32(b, off + 12)),
        dst: ipv4Text(get32(b, off + 16)),
        sport: get16(b, off + 20),
        ipChecksum: checksum(b, off, 20),
        udpChecksum: l4Checksum(b, off, off + 20, len - 20, PROTO_UDP),
        text: new TextDecoder().decode(b.subarray(off + 28, off + len)),
      };
    }
  }
  // Nothing else queued: a read finds nothing without blocking, and a wait times out.
  const drained = tun.readBatch(batch);
  const idleWait = await tun.waitReadable(200);

  // A batch write skips slots with a negative length.
  const out = new PacketBatch(3);
  ["batch one", "must not be sent", "batch three"].forEach((text, i) => {
    const p = udpPacket(PEER, 7000 + i, LOCAL, port, text);
    out.buf.set(p, out.offset(i));
    out.lengths[i] = i === 1 ? -1 : p.length;
  });
  out.count = 3;
  const batchResult = tun.writeBatch(out);
  const batched: (Datagram | null)[] = [await receive(3_000), await receive(3_000)];
  const extra = await receive(300);

  tun.close();
  tun.close();
  sock.close();
  return {
    port,
    read,
    signalled,
    drained,
    idleWait,
    batchResult,
    batched,
    extra,
    afterClose: interfaces(),
  };
}

/**
 * Opens `name` asking for offloads (refused through the seam when `refuse`), has the kernel send
 * a UDP datagram through it and writes one back, with a virtio_net_hdr in front when offloads
 * are on; reports what was read and received.
 */
async function offloadRoundTrip(name: string, refuse: boolean): Promise<unknown> {
  const EPERM = 1;
  const tun = TunDevice.open(name, {
    offloads: true,
    ...(refuse ? { setOffload: () => EPERM } : {}),
  });
  const header = tun.vnetHeader;
  const { sock, port, receive } = await addressDevice(name);
  await sock.send(new TextEncoder().encode("offloaded"), {
    transport: "udp",
    hostname: PEER,
    port: 9999,
  });
  const batch = new PacketBatch(4);
  let read = null;
  const deadline = Date.now() + 5_000;
  while (read === null && Date.now() < deadline) {
    await tun.waitReadable(500);
    const n = tun.readBatch(batch);
    for (let i = 0; i < n; i++) {
      const b = batch.buf;
      const slot = batch.offset(i);
      const off = slot + header;
      if (b[off] !== 0x45 || b[off + 9] !== PROTO_UDP || get16(b, off + 22) !== 9999) continue;
      const vnet = [...b.subarray(slot, off)];
      read = {
        len: batch.lengths[i] - header,
        vnet,
        text: new TextDecoder().decode(b.subarray(off + 28, off + batch.lengths[i] - header)),
      };
    }
  }
  // Written back with an all-zero header (finished checksums, no GSO) in front.
  const out = new PacketBatch(1);
  const p = udpPacket(PEER, 7000, LOCAL, port, "back with a header");
  out.buf.set(p, out.offset(0) + header);
  out.lengths[0] = p.length + header;
  out.count = 1;
  const written = tun.writeBatch(out);
  const received = await receive(3_000);
  tun.close();
  sock.close();
  return { offloads: tun.offloads, header, read, written, received };
}

/** Runs one scenario inside the namespace and prints its result as JSON. */
async function child(mode: string, name: string): Promise<void> {
  let result: unknown;
  switch (mode) {
    case "lifecycle": {
      const before = interfaces();
      const [first, tun] = outcome(() => TunDevice.open(name));
      const whileOpen = interfaces();
      const [second] = outcome(() => TunDevice.open(name));
      // Another interface's name, not a TUN device of ours.
      const [lo] = outcome(() => TunDevice.open("lo"));
      tun?.close();
      const afterClose = interfaces();
      const [again, tun2] = outcome(() => TunDevice.open(name));
      tun2?.close();
      result = { before, first, whileOpen, second, lo, afterClose, again };
      break;
    }
    case "open": {
      const [res, tun] = outcome(() => TunDevice.open(name));
      tun?.close();
      result = { ...res, uid: Deno.uid() };
      break;
    }
    case "roundtrip":
      result = await roundTrip(name);
      break;
    case "offloads":
    case "offloads-refused":
      result = await offloadRoundTrip(name, mode === "offloads-refused");
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  console.log(JSON.stringify(result));
}

if (import.meta.main) {
  await child(Deno.args[0], Deno.args[1]);
  Deno.exit(0);
}

// --- root tests ----------------------------------------------------------------------------------

async function sh(...args: string[]): Promise<void> {
  const r = await new Deno.Command(args[0], { args: args.slice(1), stdout: "null" }).output();
  assert.ok(r.success, `${args.join(" ")} failed: ${new TextDecoder().decode(r.stderr)}`);
}

function which(cmd: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

let nsCounter = 0;

/** Runs `body` with a fresh network namespace that is deleted afterwards, whatever happens. */
async function withNamespace(body: (ns: string) => Promise<void>): Promise<void> {
  const ns = `tunvs-unit-${Deno.pid}-${nsCounter++}`;
  await sh("ip", "netns", "add", ns);
  try {
    await body(ns);
  } finally {
    await sh("ip", "netns", "del", ns);
  }
}

/**
 * Runs `child(mode, name)` inside `ns`, with `prefix` (e.g. setpriv) in front of deno, and
 * returns its JSON result.
 */
async function runChild(
  ns: string,
  mode: string,
  name: string,
  prefix: string[] = [],
  env: Record<string, string> = {},
): Promise<Record<string, unknown>> {
  const file = new URL(import.meta.url).pathname;
  const args = ["netns", "exec", ns, ...prefix, Deno.execPath(), "run", "-A", "--unstable-net"];
  const r = await new Deno.Command("ip", {
    args: [...args, "--no-config", "--no-lock", file, mode, name],
    cwd: "/",
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stdout = new TextDecoder().decode(r.stdout).trim();
  const stderr = new TextDecoder().decode(r.stderr);
  assert.ok(r.success, `child ${mode} failed (${r.code}):\n${stdout}\n${stderr}`);
  return JSON.parse(stdout.split("\n").at(-1)!);
}

Deno.test({
  name: "open creates the interface, a second open fails with 'already', close removes it",
  ignore: !isRoot,
  fn: () =>
    withNamespace(async (ns) => {
      const r = await runChild(ns, "lifecycle", IFNAME);
      assert.deepEqual(r.before, ["lo"]);
      assert.deepEqual(r.first, { opened: true });
      assert.deepEqual(r.whileOpen, ["lo", IFNAME]);
      const second = r.second as OpenOutcome;
      assert.equal(second.opened, false);
      assert.equal(second.error?.type, "TunError");
      assert.match(second.error!.message, /already/);
      assert.ok(second.error!.message.includes(IFNAME));
      assert.match((r.lo as OpenOutcome).error!.message, /already/);
      assert.deepEqual(r.afterClose, ["lo"]);
      assert.deepEqual(r.again, { opened: true });
    }),
});

Deno.test({
  name: "with offloads every packet has a virtio_net_hdr; refused offloads give a plain TUN",
  ignore: !isRoot,
  fn: () =>
    withNamespace(async (ns) => {
      const on = await runChild(ns, "offloads", IFNAME);
      assert.equal(on.header, 10);
      assert.equal((on.offloads as number) & 0x03, 0x03, "csum and tso4 taken");
      const read = on.read as { len: number; vnet: number[]; text: string };
      assert.equal(read.text, "offloaded");
      assert.equal(read.vnet.length, 10);
      // A local UDP datagram leaves its checksum to the device: NEEDS_CSUM at the UDP header.
      assert.deepEqual([read.vnet[0] & 1, read.vnet[6], read.vnet[8]], [1, 20, 6]);
      assert.deepEqual(on.written, { written: 1, failed: 0 });
      assert.equal((on.received as Datagram).text, "back with a header");

      const off = await runChild(ns, "offloads-refused", IFNAME);
      assert.equal(off.offloads, 0);
      assert.equal(off.header, 0);
      assert.deepEqual((off.read as { vnet: number[] }).vnet, []);
      assert.equal((off.read as { text: string }).text, "offloaded");
      assert.equal((off.received as Datagram).text, "back with a header");
    }),
});

const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const hasSetpriv = which("setpriv");

Deno.test({
  name: hasSetpriv
    ? "opening as an unprivileged user fails saying root or CAP_NET_ADMIN is needed"
    : "opening as an unprivileged user (skipped: setpriv not found to drop privileges)",
  ignore: !isRoot || !hasSetpriv,
  fn: () =>
    withNamespace(async (ns) => {
      // deno needs a cache directory the unprivileged user can write.
      const denoDir = await Deno.makeTempDir({ prefix: "tunvs-unit-deno-" });
      await Deno.chmod(denoDir, 0o777);
      try {
        const env = { DENO_DIR: denoDir, HOME: denoDir };
        const nobody = await runChild(ns, "open", IFNAME, NOBODY, env);
        assert.equal(nobody.uid, 65534);
        // Root without CAP_NET_ADMIN gets past opening /dev/net/tun and fails creating the device.
        const noCap = await runChild(ns, "open", IFNAME, [
          "setpriv",
          "--inh-caps=-net_admin",
          "--bounding-set=-net_admin",
        ]);
        assert.equal(noCap.uid, 0);
        for (const r of [nobody, noCap]) {
          assert.equal(r.opened, false);
          const error = r.error as NonNullable<OpenOutcome["error"]>;
          assert.equal(error.type, "TunError");
          assert.match(error.message, /needs root or CAP_NET_ADMIN/);
          assert.ok([1, 13].includes(error.code), `errno ${error.code}`);
        }
        assert.match((noCap.error as { message: string }).message, new RegExp(IFNAME));
      } finally {
        await Deno.remove(denoDir, { recursive: true });
      }
    }),
});

Deno.test({
  name: "packets routed to the device are read, packets written are delivered",
  ignore: !isRoot,
  fn: () =>
    withNamespace(async (ns) => {
      const r = await runChild(ns, "roundtrip", IFNAME);
      const read = r.read as Record<string, unknown> | null;
      assert.ok(read, "the datagram sent to the peer never came out of the TUN device");
      assert.equal(read.src, LOCAL);
      assert.equal(read.dst, PEER);
      assert.equal(read.sport, r.port);
      assert.equal(read.text, "to the tun");
      assert.equal(read.len, 28 + "to the tun".length);
      assert.equal(read.ipChecksum, 0);
      assert.equal(read.udpChecksum, 0);
      assert.equal(r.signalled, true, "waitReadable never reported the queued packet");
      assert.equal(r.drained, 0);
      assert.equal(r.idleWait, false);
      assert.deepEqual(r.batchResult, { written: 2, failed: 0 });
      assert.deepEqual(r.batched, [
        { from: `${PEER}:7000`, text: "batch one" },
        { from: `${PEER}:7002`, text: "batch three" },
      ]);
      assert.equal(r.extra, null, "a slot with a negative length was written");
      assert.deepEqual(r.afterClose, ["lo"]);
    }),
});
