/**
 * The steering program (dataplane/steering/owner_program.ts) against the owner function it is
 * compiled from: loaded into this kernel and run by BPF_PROG_TEST_RUN on packets of every kind the
 * owner rules distinguish, plus random bytes, each result compared with
 * `PacketOwners.ownerOfPacket`. Needs root (bpf(2)).
 */
import assert from "node:assert/strict";
import { BpfAssembler } from "../../dataplane/steering/bpf_assembler.ts";
import {
  BpfError,
  closeBpf,
  loadSocketFilter,
  testRunSocketFilter,
} from "../../dataplane/steering/bpf_syscall.ts";
import { MAX_STEERING_ADDRESSES, ownerProgram } from "../../dataplane/steering/owner_program.ts";
import { PacketOwners } from "../../dataplane/owner.ts";
import { PROTO_TCP, PROTO_UDP } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_SYN } from "../../dataplane/wire/tcp.ts";
import type { DataplaneSpec } from "../../dataplane/service.ts";
import { dataplaneSpec, real, REAL1, REAL2, service, VIP } from "../fixtures/dataplane_specs.ts";
import { addr } from "../fixtures/packets.ts";
import { echoRequest, fragment, icmpError, tcp, udp } from "../fixtures/packet_builders.ts";
import { needsRoot } from "../e2e/root.ts";

const LOCAL1 = addr("10.0.3.1");
const LOCAL2 = addr("10.0.3.2");
const VIP2 = addr("192.168.0.200");

/** NAT on VIP, FULLNAT with two local addresses on VIP2, a persistent /24 UDP service. */
const mixedSpec: DataplaneSpec = dataplaneSpec([
  service("web", PROTO_TCP, 80, 8080),
  service("full", PROTO_TCP, 443, 8443, {
    vip: VIP2,
    forward: "fullnat",
    localAddresses: [LOCAL1, LOCAL2],
    reals: [real(REAL1, 8443)],
  }),
  service("dns", PROTO_UDP, 53, 8053, {
    persistence: { timeoutMs: 300_000, netmask: addr("255.255.255.0") },
  }),
]);

/** A deterministic generator, so a failure names a reproducible packet. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Packets of every shape the owner rules tell apart, addressed around `spec`'s addresses. */
function corpus(seed: number): Uint8Array[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const port = () => 1 + Math.floor(rnd() * 65535);
  const client = () => (addr("172.16.0.0") + Math.floor(rnd() * 4096)) >>> 0;
  const any = () => Math.floor(rnd() * 2 ** 32) >>> 0;
  const ours = [VIP, VIP2, LOCAL1, LOCAL2, REAL1, REAL2];
  const out: Uint8Array[] = [];
  for (let i = 0; i < 400; i++) {
    const src = rnd() < 0.5 ? client() : pick([...ours, any()]);
    const dst = rnd() < 0.7 ? pick(ours) : any();
    const p = rnd() < 0.5
      ? tcp(src, port(), dst, port(), pick([TCP_SYN, TCP_ACK]), "x".repeat(Math.floor(rnd() * 40)))
      : udp(src, port(), dst, port(), "y".repeat(Math.floor(rnd() * 40)));
    out.push(p);
    // Fragments: the first carries ports, later ones none.
    if (rnd() < 0.2) out.push(...fragment(p, 8));
    // ICMP errors quoting a packet the director sent, whole or cut at every length.
    const quoteLen = pick([p.length, 28, 24, 22, 20, 8]);
    out.push(icmpError(any(), pick([client(), ...ours]), pick([3, 4, 5, 11, 12]), 0, p, quoteLen));
    out.push(echoRequest(client(), pick(ours), i, i));
  }
  // Odd headers: options (IHL 6..15), a short IHL, other IP versions, truncated packets.
  for (let i = 0; i < 200; i++) {
    const p = tcp(client(), port(), pick(ours), port(), TCP_SYN, "z".repeat(60));
    if (i % 4 === 0) p[0] = 0x40 | Math.floor(rnd() * 16);
    if (i % 4 === 1) p[0] = Math.floor(rnd() * 256);
    out.push(p.subarray(0, Math.floor(rnd() * p.length)));
    out.push(p);
  }
  for (let i = 0; i < 200; i++) {
    const p = new Uint8Array(Math.floor(rnd() * 64));
    for (let j = 0; j < p.length; j++) p[j] = Math.floor(rnd() * 256);
    if (p.length > 0 && rnd() < 0.7) p[0] = 0x45;
    if (p.length > 9 && rnd() < 0.5) p[9] = pick([1, 6, 17]);
    out.push(p);
  }
  return out;
}

function compare(spec: DataplaneSpec, workers: number, packets: Uint8Array[]): void {
  const owners = new PacketOwners(workers, spec);
  const fd = loadSocketFilter(ownerProgram(owners), "tunvs_test");
  try {
    for (const p of packets) {
      const want = owners.ownerOfPacket(p, 0, p.length, false);
      const got = testRunSocketFilter(fd, p);
      if (got !== want) {
        const hex = Array.from(p, (x) => x.toString(16).padStart(2, "0")).join("");
        assert.fail(`workers ${workers}: program ${got}, owner function ${want} for ${hex}`);
      }
    }
  } finally {
    closeBpf(fd);
  }
}

Deno.test({
  name: "steering program: the kernel computes the owner function's worker for every packet",
  ignore: needsRoot("the steering program tests"),
  fn() {
    const packets = corpus(1);
    for (const workers of [2, 3, 4, 7, 16]) compare(mixedSpec, workers, packets);
    // A spread of owners, so agreement is not agreement on "always 0".
    const owners = new PacketOwners(4, mixedSpec);
    const seen = new Set(packets.map((p) => owners.ownerOfPacket(p, 0, p.length, false)));
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
  },
});

Deno.test({
  name: "steering program: many VIPs and local addresses search as one tree",
  ignore: needsRoot("the steering program tests"),
  fn() {
    const services = [];
    for (let i = 0; i < 600; i++) {
      services.push(
        service(`s${i}`, PROTO_TCP, 80, 8080, {
          vip: (addr("10.128.0.1") + i * 7) >>> 0,
          ...(i % 3 === 0
            ? { forward: "fullnat" as const, localAddresses: [(addr("10.200.0.1") + i) >>> 0] }
            : {}),
        }),
      );
    }
    // Addresses above 2^31 too: the compares must be unsigned.
    services.push(service("high", PROTO_TCP, 80, 8080, { vip: addr("250.1.2.3") }));
    const spec = dataplaneSpec(services);
    const rnd = prng(7);
    const packets: Uint8Array[] = [];
    for (const s of services) {
      const c = (addr("172.16.0.0") + Math.floor(rnd() * 65536)) >>> 0;
      packets.push(tcp(c, 1000 + packets.length, s.vip, 80, TCP_SYN));
      packets.push(tcp(REAL1, 8080, c, 1000 + packets.length, TCP_ACK));
      for (const l of s.localAddresses ?? []) packets.push(tcp(REAL1, 8080, l, 40001, TCP_ACK));
      packets.push(tcp(c, 2000, (s.vip + 1) >>> 0, 80, TCP_SYN));
    }
    compare(spec, 5, packets);
  },
});

Deno.test("steering program: too many addresses is refused with the cap", () => {
  const services = Array.from(
    { length: MAX_STEERING_ADDRESSES + 1 },
    (_, i) => service(`s${i}`, PROTO_TCP, 80, 8080, { vip: (addr("10.0.0.1") + i) >>> 0 }),
  );
  assert.throws(
    () => ownerProgram(new PacketOwners(2, dataplaneSpec(services))),
    /4097 VIPs and local addresses; a steering program takes at most 4096/,
  );
});

Deno.test("bpf assembler: encodes jumps relative to the next instruction and refuses unknown labels", () => {
  const a = new BpfAssembler();
  a.jump("eq", 1, -1, "end").alu("mov", 0, 7).label("end").exit();
  const insns = a.assemble();
  assert.deepEqual(
    Array.from(insns.subarray(0, 8)),
    [0x16, 0x01, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff],
  );
  assert.deepEqual(Array.from(insns.subarray(8, 16)), [0xb4, 0x00, 0, 0, 7, 0, 0, 0]);
  assert.deepEqual(Array.from(insns.subarray(16, 24)), [0x95, 0, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => new BpfAssembler().goto("nowhere").assemble(), /undefined label nowhere/);
});

Deno.test({
  name: "bpf: a program the verifier refuses comes back with its log",
  ignore: needsRoot("the steering program tests"),
  fn() {
    // Exit without setting r0: the verifier says "R0 !read_ok".
    const bad = new BpfAssembler().exit().assemble();
    assert.throws(() => loadSocketFilter(bad, "tunvs_bad"), (e: unknown) => {
      assert.ok(e instanceof BpfError);
      assert.equal(e.errno, 13);
      assert.match(e.message, /R0 !read_ok/);
      return true;
    });
  },
});
