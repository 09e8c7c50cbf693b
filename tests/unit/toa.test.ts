/**
 * TOA on FULLNAT connections: the option's exact bytes, checksums and payload after the shift,
 * which client segments carry it (DPVS's rule), the SYN-ACK's MSS lowered by 8, the skips that
 * are counted, and the `toa` switch from appliance.yaml to the engine.
 */
import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../control/config.ts";
import { compileDataplaneSpec } from "../../control/dataplane_spec.ts";
import { DROP, Engine, EngineCounter } from "../../dataplane/engine.ts";
import { TCP_OPT_TOA, TOA_LENGTH } from "../../dataplane/forward/toa.ts";
import { MAX_PACKET } from "../../dataplane/tun.ts";
import { get16, get32, set16 } from "../../dataplane/wire/bytes.ts";
import { l4Checksum } from "../../dataplane/wire/checksum.ts";
import { ipDst, ipSrc, ipTotalLength, PROTO_TCP } from "../../dataplane/wire/ipv4.ts";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_OPT_NOP,
  TCP_OPT_TIMESTAMP,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  tcpDataOffset,
  tcpFindOption,
  tcpMss,
  tcpSrcPort,
} from "../../dataplane/wire/tcp.ts";
import { dataplaneSpec, real, REAL1, service, VIP } from "../fixtures/dataplane_specs.ts";
import { assertChecksums } from "../fixtures/engine_harness.ts";
import { addr } from "../fixtures/packets.ts";
import { ipv4 } from "../fixtures/packet_builders.ts";

const CLIENT = addr("172.10.0.100");
const CLIENT_PORT = 50026;
const LOCAL = addr("10.0.3.1");
const REAL_PORT = 8080;
const JUNK = 0xa5;

/** Options as Linux sends them: on the SYN, the SYN-ACK, and on later segments. */
const SYN_OPTIONS = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
const TS_OPTIONS = [TCP_OPT_NOP, TCP_OPT_NOP, TCP_OPT_TIMESTAMP, 10, 0, 0, 0, 2, 0, 0, 0, 1];
/** Timestamps and three SACK blocks: 40 bytes, a full header with no room left. */
const FULL_OPTIONS = [
  ...TS_OPTIONS,
  TCP_OPT_NOP,
  TCP_OPT_NOP,
  5,
  26,
  ...Array.from({ length: 24 }, (_, i) => i + 1),
];

/** The fields of a test segment. */
interface Segment {
  options?: number[];
  payload?: Uint8Array | string;
  seq?: number;
  ack?: number;
  frag?: number;
}

/** A TCP segment with options (padded to whole words) and valid checksums. */
function segment(
  src: number,
  sport: number,
  dst: number,
  dport: number,
  flags: number,
  s: Segment = {},
): Uint8Array {
  const opts = s.options ?? [];
  const optLen = (opts.length + 3) & ~3;
  const data = typeof s.payload === "string"
    ? new TextEncoder().encode(s.payload)
    : s.payload ?? new Uint8Array(0);
  const l4 = new Uint8Array(20 + optLen + data.length);
  set16(l4, 0, sport);
  set16(l4, 2, dport);
  new DataView(l4.buffer).setUint32(4, s.seq ?? 1000);
  new DataView(l4.buffer).setUint32(8, s.ack ?? 0);
  l4[12] = ((20 + optLen) >> 2) << 4;
  l4[13] = flags;
  set16(l4, 14, 64240);
  l4.set(opts, 20);
  l4.set(data, 20 + optLen);
  const b = ipv4(PROTO_TCP, src, dst, l4, { frag: s.frag ?? 0x4000 });
  set16(b, 36, l4Checksum(b, 0, 20, l4.length, PROTO_TCP));
  return b;
}

/** Bytes with a varied pattern, odd in length so the trailing byte's padding is exercised. */
function pattern(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
}

/** What one packet became. */
interface Fed {
  out: number;
  /** The packet as written back (`out` bytes; the input's length when dropped). */
  pkt: Uint8Array;
}

/**
 * Runs `pkt` through the engine at an odd offset of a junk-filled buffer with `spare` bytes
 * behind it, and checks that nothing outside the written-back packet changed.
 */
function feed(e: Engine, pkt: Uint8Array, spare = 64): Fed {
  const off = 37;
  const buf = new Uint8Array(off + pkt.length + spare).fill(JUNK);
  buf.set(pkt, off);
  const out = e.process(buf, off, pkt.length);
  const end = off + (out === DROP ? pkt.length : out);
  for (let i = 0; i < off; i++) assert.equal(buf[i], JUNK, `byte ${i} before the packet`);
  for (let i = end; i < buf.length; i++) assert.equal(buf[i], JUNK, `byte ${i - off} behind it`);
  const result = buf.slice(off, end);
  if (out !== DROP) assertChecksums(result, 0);
  return { out, pkt: result };
}

function toaEngine(toa = true): Engine {
  const e = new Engine(dataplaneSpec([
    service("web", PROTO_TCP, 80, REAL_PORT, {
      forward: "fullnat",
      localAddresses: [LOCAL],
      reals: [real(REAL1, REAL_PORT)],
      toa,
    }),
  ]));
  // The director's clock reads 1 at the SYN, the TSval the client's SYN has here, so that the
  // timestamps keep the client's values and options compare byte for byte (FULLNAT's timestamp
  // translation is fullnat_timestamps.test.ts's).
  e.tsClock.origin = 1 - e.now;
  return e;
}

const count = (e: Engine, c: number) => e.counters[c];

/** The TCP payload of an IPv4 packet without IP options. */
function payloadOf(pkt: Uint8Array): Uint8Array {
  return pkt.subarray(20 + tcpDataOffset(pkt, 20), ipTotalLength(pkt, 0));
}

/** A connection through SYN and the real's SYN-ACK; returns the local port and the SYN-ACK. */
function handshake(e: Engine, synAckOptions = SYN_OPTIONS) {
  const syn = feed(e, segment(CLIENT, CLIENT_PORT, VIP, 80, TCP_SYN, { options: SYN_OPTIONS }));
  assert.equal(syn.out, syn.pkt.length);
  const lport = tcpSrcPort(syn.pkt, 20);
  const synAck = feed(
    e,
    segment(REAL1, REAL_PORT, LOCAL, lport, TCP_SYN | TCP_ACK, {
      options: synAckOptions,
      seq: 5000,
      ack: 1001,
    }),
  );
  return { syn, synAck, lport };
}

/** A client segment after the handshake (acking the SYN-ACK unless told otherwise). */
function fromClient(flags: number, s: Segment = {}): Uint8Array {
  return segment(CLIENT, CLIENT_PORT, VIP, 80, flags, { seq: 1001, ack: 5001, ...s });
}

Deno.test("TOA: the option is kind 254, length 8, the client's port and address, in front", () => {
  const e = toaEngine();
  const { syn } = handshake(e);
  // Never on the SYN: the real's socket is made from the segment completing the handshake.
  assert.equal(tcpFindOption(syn.pkt, 20, TCP_OPT_TOA), -1);

  const ack = fromClient(TCP_ACK, { options: TS_OPTIONS });
  const r = feed(e, ack);
  assert.equal(r.out, ack.length + TOA_LENGTH);
  assert.equal(ipTotalLength(r.pkt, 0), ack.length + TOA_LENGTH);
  assert.equal(ipSrc(r.pkt, 0), LOCAL);
  assert.equal(ipDst(r.pkt, 0), REAL1);
  assert.equal(tcpDataOffset(r.pkt, 20), 20 + TS_OPTIONS.length + TOA_LENGTH);
  assert.deepEqual(
    [...r.pkt.subarray(40, 48)],
    [254, 8, CLIENT_PORT >> 8, CLIENT_PORT & 0xff, 172, 10, 0, 100],
  );
  assert.equal(get16(r.pkt, 42), CLIENT_PORT);
  assert.equal(get32(r.pkt, 44), CLIENT);
  // The options the client sent follow it unchanged.
  assert.deepEqual([...r.pkt.subarray(48, 48 + TS_OPTIONS.length)], TS_OPTIONS);
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 1);
  assert.equal(count(e, EngineCounter.TOA_SKIPPED), 0);
});

Deno.test("TOA: the payload is intact after the shift and both checksums verify", () => {
  const e = toaEngine();
  handshake(e);
  for (const n of [0, 1, 2, 517, 1440]) {
    const data = pattern(n);
    const r = feed(e, fromClient(TCP_ACK | TCP_PSH, { options: TS_OPTIONS, payload: data }));
    assert.equal(r.out, 20 + 20 + TS_OPTIONS.length + n + TOA_LENGTH, `payload ${n}`);
    assert.deepEqual(payloadOf(r.pkt), data, `payload ${n}`);
    assert.equal(tcpFindOption(r.pkt, 20, TCP_OPT_TOA), 40);
  }
  // Without options of its own the segment's TCP header becomes 28 bytes.
  const bare = feed(e, fromClient(TCP_ACK | TCP_PSH, { payload: "GET / HTTP/1.0\r\n\r\n" }));
  assert.equal(tcpDataOffset(bare.pkt, 20), 28);
  assert.equal(new TextDecoder().decode(payloadOf(bare.pkt)), "GET / HTTP/1.0\r\n\r\n");
});

Deno.test("TOA: on the segments before the real answers (DPVS's rule), then never again", () => {
  const e = toaEngine();
  const { lport } = handshake(e);
  const carries = (pkt: Uint8Array) => tcpFindOption(pkt, 20, TCP_OPT_TOA) >= 0;
  // The handshake's ACK, and the request sent right behind it: either may create the socket.
  assert.ok(carries(feed(e, fromClient(TCP_ACK, { options: TS_OPTIONS })).pkt));
  assert.ok(carries(feed(e, fromClient(TCP_ACK | TCP_PSH, { payload: "GET /" })).pkt));
  // The real's first segment other than a SYN-ACK proves its socket exists: the window closes.
  const answer = segment(REAL1, REAL_PORT, LOCAL, lport, TCP_ACK | TCP_PSH, {
    seq: 5001,
    ack: 1006,
    payload: "HTTP/1.0 200 OK\r\n",
  });
  const back = feed(e, answer);
  assert.equal(back.out, answer.length);
  assert.equal(tcpFindOption(back.pkt, 20, TCP_OPT_TOA), -1);
  for (const flags of [TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_FIN]) {
    const later = fromClient(flags, { seq: 1006, ack: 5018, payload: "more" });
    const r = feed(e, later);
    assert.equal(r.out, later.length);
    assert.ok(!carries(r.pkt));
  }
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 2);
});

Deno.test("TOA: a server-speaks-first connection carries it exactly once, on the ACK", () => {
  const e = toaEngine();
  const { lport } = handshake(e);
  feed(e, fromClient(TCP_ACK, { options: TS_OPTIONS }));
  // A greeting (as MySQL's) closes the window before the client sends any data.
  feed(e, segment(REAL1, REAL_PORT, LOCAL, lport, TCP_ACK | TCP_PSH, { seq: 5001, payload: "hi" }));
  const data = fromClient(TCP_ACK | TCP_PSH, { ack: 5003, payload: "login" });
  assert.equal(feed(e, data).out, data.length);
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 1);
});

Deno.test("TOA: never on a SYN, a RST, or before the SYN-ACK", () => {
  const e = toaEngine();
  const syn = feed(e, segment(CLIENT, CLIENT_PORT, VIP, 80, TCP_SYN, { options: SYN_OPTIONS }));
  // An ACK ahead of the SYN-ACK (a stray or a guess) finds no window open.
  const early = fromClient(TCP_ACK);
  assert.equal(feed(e, early).out, early.length);
  const lport = tcpSrcPort(syn.pkt, 20);
  feed(e, segment(REAL1, REAL_PORT, LOCAL, lport, TCP_SYN | TCP_ACK, { seq: 5000, ack: 1001 }));
  const rst = fromClient(TCP_RST | TCP_ACK);
  assert.equal(feed(e, rst).out, rst.length);
  const synAgain = segment(CLIENT, CLIENT_PORT, VIP, 80, TCP_SYN, { options: SYN_OPTIONS });
  assert.equal(feed(e, synAgain).out, synAgain.length);
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 0);
});

Deno.test("TOA: the SYN-ACK's MSS reaches the client 8 bytes lower, checksum fixed", () => {
  const e = toaEngine();
  const { synAck } = handshake(e);
  assert.equal(ipDst(synAck.pkt, 0), CLIENT);
  assert.equal(tcpMss(synAck.pkt, 20), 1460 - TOA_LENGTH);
  assert.equal(synAck.out, synAck.pkt.length);
  // The other options are as the real sent them.
  assert.deepEqual([...synAck.pkt.subarray(44, 60)], SYN_OPTIONS.slice(4));

  // After one NOP the MSS value straddles two checksum words.
  const odd = [TCP_OPT_NOP, 2, 4, 0x23, 0x28, TCP_OPT_NOP, TCP_OPT_NOP, TCP_OPT_NOP];
  const e2 = toaEngine();
  const { synAck: oddAck } = handshake(e2, odd);
  assert.equal(tcpMss(oddAck.pkt, 20), 9000 - TOA_LENGTH);
});

Deno.test("TOA off: no option, MSS as the real sent it, no counters", () => {
  const e = toaEngine(false);
  const { synAck } = handshake(e);
  assert.equal(tcpMss(synAck.pkt, 20), 1460);
  const ack = fromClient(TCP_ACK | TCP_PSH, { options: TS_OPTIONS, payload: "GET /" });
  const r = feed(e, ack);
  assert.equal(r.out, ack.length);
  assert.equal(tcpFindOption(r.pkt, 20, TCP_OPT_TOA), -1);
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 0);
  assert.equal(count(e, EngineCounter.TOA_SKIPPED), 0);
});

Deno.test("TOA: skipped and counted when the TCP header is full; the next segment gets it", () => {
  const e = toaEngine();
  handshake(e);
  const full = fromClient(TCP_ACK, { options: FULL_OPTIONS });
  assert.equal(tcpDataOffset(full, 20), 60);
  const r = feed(e, full);
  assert.equal(r.out, full.length);
  assert.equal(tcpFindOption(r.pkt, 20, TCP_OPT_TOA), -1);
  assert.deepEqual([...r.pkt.subarray(40, 80)], FULL_OPTIONS);
  assert.equal(count(e, EngineCounter.TOA_SKIPPED), 1);
  // 32 bytes of options leave exactly room for the 8 of TOA.
  const room = fromClient(TCP_ACK, { options: FULL_OPTIONS.slice(0, 32) });
  const fits = feed(e, room);
  assert.equal(fits.out, room.length + TOA_LENGTH);
  assert.equal(tcpDataOffset(fits.pkt, 20), 60);
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 1);
});

Deno.test("TOA: skipped when the packet cannot grow: end of buffer, IPv4 limit, fragment", () => {
  const e = toaEngine();
  handshake(e);
  const ack = fromClient(TCP_ACK, { payload: "x" });
  // No bytes behind the packet in the buffer.
  assert.equal(feed(e, ack, 0).out, ack.length);
  assert.equal(feed(e, ack, TOA_LENGTH - 1).out, ack.length);
  // A packet within 8 bytes of the largest IPv4 packet (and of a batch slot).
  const huge = fromClient(TCP_ACK, { payload: pattern(MAX_PACKET - 40 - 7) });
  assert.equal(feed(e, huge).out, huge.length);
  // A first fragment: its later fragments' offsets would no longer match.
  const first = fromClient(TCP_ACK, { payload: pattern(64), frag: 0x2000 });
  assert.equal(feed(e, first).out, first.length);
  assert.equal(count(e, EngineCounter.TOA_SKIPPED), 4);
  assert.equal(count(e, EngineCounter.TOA_INSERTED), 0);
  // Exactly 8 spare bytes suffice.
  assert.equal(feed(e, ack, TOA_LENGTH).out, ack.length + TOA_LENGTH);
  const largest = fromClient(TCP_ACK, { payload: pattern(MAX_PACKET - 40 - 8) });
  assert.equal(feed(e, largest).out, MAX_PACKET);
});

Deno.test("TOA counts the grown bytes for the real", () => {
  const e = toaEngine();
  handshake(e);
  const ack = fromClient(TCP_ACK);
  feed(e, ack);
  const svc = e.services.services[0];
  // SYN and ACK in; the ACK as it left, with the option.
  const inBytes = svc.counters[2];
  assert.equal(inBytes, 20 + 20 + SYN_OPTIONS.length + ack.length + TOA_LENGTH);
});

const TOA_YAML = (extra: string[]) =>
  [
    "local_addresses: [10.0.3.1]",
    "services:",
    "  - name: web",
    "    vip: 172.10.0.9",
    "    port: 80",
    ...extra.map((l) => `    ${l}`),
    "    reals: [{ address: 10.0.4.2, port: 8080 }]",
  ].join("\n") + "\n";

function configIssues(text: string): string[] {
  try {
    parseConfig(text, "toa.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config: toa: true on a fullnat TCP service reaches the dataplane; default off", () => {
  const on = parseConfig(TOA_YAML(["forward: fullnat", "toa: true"]), "toa.yaml");
  assert.equal(on.services[0].toa, true);
  assert.equal(compileDataplaneSpec(on).services[0].toa, true);
  const off = parseConfig(TOA_YAML(["forward: fullnat"]), "toa.yaml");
  assert.equal(off.services[0].toa, undefined);
  assert.equal(compileDataplaneSpec(off).services[0].toa, undefined);
  const no = parseConfig(TOA_YAML(["forward: fullnat", "toa: false"]), "toa.yaml");
  assert.equal(compileDataplaneSpec(no).services[0].toa, undefined);
});

Deno.test("config: toa only with forward: fullnat and protocol: tcp, and only a boolean", () => {
  assert.deepEqual(configIssues(TOA_YAML(["toa: true"])), [
    "services[0].toa: toa applies to forward: fullnat only",
  ]);
  assert.deepEqual(configIssues(TOA_YAML(["forward: nat", "toa: true"])), [
    "services[0].toa: toa applies to forward: fullnat only",
  ]);
  assert.deepEqual(configIssues(TOA_YAML(["protocol: udp", "forward: fullnat", "toa: true"])), [
    "services[0].toa: toa applies to protocol: tcp only",
  ]);
  const notBool = configIssues(TOA_YAML(["forward: fullnat", "toa: yes please"]));
  assert.equal(notBool.length, 1);
  assert.match(notBool[0], /^services\[0\]\.toa: must be true or false/);
});
