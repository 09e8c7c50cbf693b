/**
 * TUN offloads in the engine: packets with a virtio_net_hdr saying NEEDS_CSUM (the L4 checksum
 * field holds the un-inverted pseudo-header sum), DATA_VALID, or GSO. Each rewritten packet is
 * finished here as the kernel would finish it (the sum from csum_start to the end, inverted) and
 * compared with a full recomputation; GSO packets are cut as the kernel's TSO would cut them and
 * every segment checked. Also the offload negotiation's fallbacks, through its seam.
 */
import assert from "node:assert/strict";
import { DROP, Engine, EngineCounter, SENT } from "../../dataplane/engine.ts";
import type { DirectSender } from "../../dataplane/forward/direct.ts";
import {
  segmentCount,
  SPILL_PACKET_BYTES,
  SPILL_SLOTS,
  writeSegment,
} from "../../dataplane/forward/segmentation.ts";
import { Outbox } from "../../dataplane/outbox.ts";
import { TOA_LENGTH } from "../../dataplane/forward/toa.ts";
import { IPIP_HEADER } from "../../dataplane/forward/tunnel.ts";
import type { ServiceSpec } from "../../dataplane/service.ts";
import { negotiateOffloads, offloadNames, TunOffload } from "../../dataplane/tun_offloads.ts";
import { get16, get32, set16 } from "../../dataplane/wire/bytes.ts";
import { checksum, finish, fold16, l4Checksum, sum16 } from "../../dataplane/wire/checksum.ts";
import {
  ipDst,
  ipId,
  ipProtocol,
  ipSrc,
  ipTotalLength,
  PROTO_IPIP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../dataplane/wire/ipv4.ts";
import {
  TCP_ACK,
  TCP_CWR,
  TCP_FIN,
  TCP_PSH,
  TCP_SYN,
  tcpAck,
  tcpDataOffset,
  tcpDstPort,
  tcpFlags,
  tcpSeq,
  tcpSrcPort,
} from "../../dataplane/wire/tcp.ts";
import { udpDstPort, udpSrcPort } from "../../dataplane/wire/udp.ts";
import {
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_HDR_LEN,
  VnetGso,
  VnetHeader,
} from "../../dataplane/wire/virtio_net_hdr.ts";
import { CLIENT, dataplaneSpec, real, REAL1, service, VIP } from "../fixtures/dataplane_specs.ts";
import { assertChecksums, feed } from "../fixtures/engine_harness.ts";
import { addr } from "../fixtures/packets.ts";
import { tcp, udp } from "../fixtures/packet_builders.ts";
import { readOptions, segment, type TcpOption } from "../fixtures/tcp_segments.ts";

const LOCAL = addr("10.0.3.1");
const DIRECTOR = addr("10.0.2.10");
const MSS = 1448;
const DF = 0x4000;

/** Where the L4 checksum field is from the L4 header. */
function fieldOf(proto: number): number {
  return proto === PROTO_TCP ? 16 : 6;
}

/**
 * Turns a packet with a finished checksum into what the kernel hands a TUN with TUN_F_CSUM: the
 * L4 field holding the folded, un-inverted pseudo-header sum; returns its header in `e.vnet`.
 */
function makePartial(e: Engine, pkt: Uint8Array, gsoType = 0, gsoSize = 0): Uint8Array {
  const proto = ipProtocol(pkt, 0);
  const l4len = ipTotalLength(pkt, 0) - 20;
  const pseudo = sum16(pkt, 12, 8, proto + l4len);
  set16(pkt, 20 + fieldOf(proto), fold16(pseudo));
  const v = e.vnet;
  v.clear();
  v.flags = VNET_F_NEEDS_CSUM;
  v.gsoType = gsoType;
  v.gsoSize = gsoSize;
  v.hdrLen = 20 + (proto === PROTO_TCP ? tcpDataOffset(pkt, 20) : 8);
  v.csumStart = 20;
  v.csumOffset = fieldOf(proto);
  return pkt;
}

/** The packet as the kernel sends it: the partial checksum finished over csum_start..end. */
function kernelFinish(pkt: Uint8Array, v: VnetHeader): Uint8Array {
  const out = pkt.slice(0, ipTotalLength(pkt, 0));
  const start = v.csumStart;
  const check = finish(sum16(out, start, out.length - start)) || 0xffff;
  set16(out, start + v.csumOffset, check);
  return out;
}

/** The L4 checksum a full recomputation gives the packet (field zeroed first). */
function recomputed(pkt: Uint8Array): number {
  const copy = pkt.slice(0, ipTotalLength(pkt, 0));
  const proto = ipProtocol(copy, 0);
  set16(copy, 20 + fieldOf(proto), 0);
  const c = l4Checksum(copy, 0, 20, copy.length - 20, proto);
  return proto === PROTO_UDP ? c || 0xffff : c;
}

/** Asserts that the kernel's finish of a partial packet equals a full recomputation. */
function assertFinishes(pkt: Uint8Array, v: VnetHeader, what: string): void {
  assert.ok(v.needsCsum, `${what}: still NEEDS_CSUM`);
  const done = kernelFinish(pkt, v);
  const proto = ipProtocol(done, 0);
  assert.equal(get16(done, 20 + fieldOf(proto)), recomputed(done), `${what}: finished checksum`);
  assertChecksums(done, 0);
}

/** Feeds a partial packet and returns the result's bytes (the harness checks the surroundings). */
function feedPartial(e: Engine, pkt: Uint8Array, gsoType = 0, gsoSize = 0) {
  return feed(e, makePartial(e, pkt, gsoType, gsoSize));
}

/** Runs a packet (its header in `e.vnet`) in a roomy buffer, for verdicts that grow it. */
function run(e: Engine, pkt: Uint8Array): { out: number; made: Uint8Array } {
  const buf = new Uint8Array(pkt.length + 2048);
  buf.set(pkt);
  const out = e.process(buf, 0, pkt.length);
  return { out, made: out > 0 ? buf.slice(0, out) : buf.subarray(0, 0) };
}

function natEngine(extra: Partial<ServiceSpec> = {}, protocol = PROTO_TCP): Engine {
  const port = protocol === PROTO_TCP ? 80 : 53;
  return new Engine(dataplaneSpec([
    service("svc", protocol, port, 8080, { reals: [real(REAL1, 8080)], ...extra }),
  ]));
}

Deno.test("NAT on NEEDS_CSUM TCP: requests and replies finish to a full recomputation", () => {
  const e = natEngine();
  const syn = feedPartial(e, tcp(CLIENT, 40000, VIP, 80, TCP_SYN));
  assert.equal(ipDst(syn.pkt, 0), REAL1);
  assert.equal(tcpDstPort(syn.pkt, 20), 8080);
  assertFinishes(syn.pkt, e.vnet, "SYN");
  // The field is the new pseudo-header's sum, nothing of the ports in it.
  const pseudo = fold16(sum16(syn.pkt, 12, 8, PROTO_TCP + syn.pkt.length - 20));
  assert.equal(get16(syn.pkt, 36), pseudo);

  const synAck = feedPartial(e, tcp(REAL1, 8080, CLIENT, 40000, TCP_SYN | TCP_ACK));
  assert.equal(ipSrc(synAck.pkt, 0), VIP);
  assert.equal(tcpSrcPort(synAck.pkt, 20), 80);
  assertFinishes(synAck.pkt, e.vnet, "SYN-ACK");

  const data = feedPartial(e, tcp(CLIENT, 40000, VIP, 80, TCP_ACK | TCP_PSH, 1001));
  assertFinishes(data.pkt, e.vnet, "request data");
  const reply = feedPartial(e, tcp(REAL1, 8080, CLIENT, 40000, TCP_ACK, 777));
  assertFinishes(reply.pkt, e.vnet, "reply data");
});

Deno.test("NAT on NEEDS_CSUM UDP: partial sums are never 0-special, both ways", () => {
  const e = natEngine({}, PROTO_UDP);
  const q = feedPartial(e, udp(CLIENT, 5353, VIP, 53, 40));
  assert.equal(ipDst(q.pkt, 0), REAL1);
  assert.equal(udpDstPort(q.pkt, 20), 8080);
  assertFinishes(q.pkt, e.vnet, "query");
  const a = feedPartial(e, udp(REAL1, 8080, CLIENT, 5353, 61));
  assert.equal(ipSrc(a.pkt, 0), VIP);
  assert.equal(udpSrcPort(a.pkt, 20), 53);
  assertFinishes(a.pkt, e.vnet, "answer");
});

Deno.test("FULLNAT on NEEDS_CSUM TCP and UDP: both addresses both ways", () => {
  for (const proto of [PROTO_TCP, PROTO_UDP]) {
    const e = natEngine({ forward: "fullnat", localAddresses: [LOCAL] }, proto);
    const vport = proto === PROTO_TCP ? 80 : 53;
    const make = (src: number, sport: number, dst: number, dport: number, n: number) =>
      proto === PROTO_TCP
        ? tcp(src, sport, dst, dport, n === 0 ? TCP_SYN : TCP_ACK, n)
        : udp(src, sport, dst, dport, n);
    const req = feedPartial(e, make(CLIENT, 40001, VIP, vport, 0));
    assert.equal(ipSrc(req.pkt, 0), LOCAL);
    assert.equal(ipDst(req.pkt, 0), REAL1);
    assertFinishes(req.pkt, e.vnet, `request ${proto}`);
    const lport = get16(req.pkt, 20);
    const rep = feedPartial(e, make(REAL1, 8080, LOCAL, lport, 333));
    assert.equal(ipSrc(rep.pkt, 0), VIP);
    assert.equal(ipDst(rep.pkt, 0), CLIENT);
    assert.equal(get16(rep.pkt, 22), 40001);
    assertFinishes(rep.pkt, e.vnet, `reply ${proto}`);
  }
});

Deno.test("FULLNAT timestamps on NEEDS_CSUM and GSO: translated once, the partial sum left alone", () => {
  const e = natEngine({ forward: "fullnat", localAddresses: [LOCAL] });
  e.tsClock.origin = 1_780_000_000_000;
  e.now = 5_000;
  const synTs = e.tsClock.at(e.now);
  const clientTs = 123_456;
  const delta = (synTs - clientTs) >>> 0;
  const isn = 0x11223344;
  const realIsn = 0x55667788;
  const syn = feedPartial(
    e,
    segment(CLIENT, 40020, VIP, 80, TCP_SYN, {
      seq: isn,
      options: [{ mss: 1460 }, { sackOk: true }, { ts: [clientTs, 0] }, { nop: true }, {
        wscale: 7,
      }],
    }),
  );
  assert.deepEqual(readOptions(syn.pkt).ts, [synTs, 0]);
  // The field is the new pseudo-header's sum: nothing of the TCP header, timestamps included.
  assert.equal(get16(syn.pkt, 36), fold16(sum16(syn.pkt, 12, 8, PROTO_TCP + syn.pkt.length - 20)));
  assertFinishes(syn.pkt, e.vnet, "SYN");
  const lport = tcpSrcPort(syn.pkt, 20);

  // The real's answers, one with the option at an odd offset: TSecr back on the client's clock.
  const synAck = feedPartial(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
      seq: realIsn,
      ack: isn + 1,
      options: [{ mss: 1460 }, { nop: true }, { ts: [777, synTs] }, { nop: true }],
    }),
  );
  assert.deepEqual(readOptions(synAck.pkt).ts, [777, clientTs]);
  assertFinishes(synAck.pkt, e.vnet, "SYN-ACK");

  // The client's super-packet: its one header rewritten, which the kernel copies to each segment.
  const request = feed(
    e,
    makePartial(
      e,
      segment(CLIENT, 40020, VIP, 80, TCP_ACK | TCP_PSH, {
        seq: isn + 1,
        ack: realIsn + 1,
        options: [{ nop: true }, { nop: true }, { ts: [clientTs + 20, 777] }],
        payload: "y".repeat(5000),
      }),
      VnetGso.TCPV4,
      MSS,
    ),
  );
  assert.deepEqual(readOptions(request.pkt).ts, [(clientTs + 20 + delta) >>> 0, 777]);
  assertFinishes(request.pkt, e.vnet, "client's super-packet");
  assert.equal(e.vnet.gsoType, VnetGso.TCPV4);
  const reply = feedPartial(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK | TCP_PSH, {
      seq: realIsn + 1,
      ack: isn + 5001,
      options: [{ nop: true }, { nop: true }, { ts: [780, (synTs + 20) >>> 0] }],
      payload: "x".repeat(300),
    }),
  );
  assert.deepEqual(readOptions(reply.pkt).ts, [780, clientTs + 20]);
  assertFinishes(reply.pkt, e.vnet, "real's data");
});

Deno.test("FULLNAT sequence numbers on NEEDS_CSUM and GSO: translated once, the partial sum left alone", () => {
  const e = natEngine({ forward: "fullnat", localAddresses: [LOCAL] });
  e.tsClock.origin = 1_780_000_000_000;
  e.now = 5_000;
  const isn = 0x11223344;
  const newIsn = e.tsClock.isnAt(e.now);
  const realIsn = 0x55667788;
  const syn = feedPartial(
    e,
    segment(CLIENT, 40021, VIP, 80, TCP_SYN, {
      seq: isn,
      options: [{ mss: 1460 }, { sackOk: true }],
    }),
  );
  assert.equal(tcpSeq(syn.pkt, 20), newIsn);
  // The field is the new pseudo-header's sum: nothing of the TCP header, seq included.
  assert.equal(get16(syn.pkt, 36), fold16(sum16(syn.pkt, 12, 8, PROTO_TCP + syn.pkt.length - 20)));
  assertFinishes(syn.pkt, e.vnet, "SYN");
  const lport = tcpSrcPort(syn.pkt, 20);

  // The client's super-packet: its one header rewritten, which the kernel copies to each segment.
  const request = feed(
    e,
    makePartial(
      e,
      segment(CLIENT, 40021, VIP, 80, TCP_ACK | TCP_PSH, {
        seq: isn + 1,
        ack: realIsn + 1,
        payload: "y".repeat(5000),
      }),
      VnetGso.TCPV4,
      MSS,
    ),
  );
  assert.equal(tcpSeq(request.pkt, 20), (newIsn + 1) >>> 0);
  assertFinishes(request.pkt, e.vnet, "client's super-packet");
  assert.equal(e.vnet.gsoType, VnetGso.TCPV4);
  const reply = feedPartial(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK | TCP_PSH, {
      seq: realIsn + 1,
      ack: (newIsn + 5001) >>> 0,
      options: [{ nop: true }, { nop: true }, {
        sack: [[(newIsn + 2001) >>> 0, (newIsn + 3001) >>> 0]],
      }],
      payload: "x".repeat(300),
    }),
  );
  assert.equal(tcpAck(reply.pkt, 20), isn + 5001);
  assert.deepEqual(readOptions(reply.pkt).sack, [[isn + 2001, isn + 3001]]);
  assertFinishes(reply.pkt, e.vnet, "real's data");
});

Deno.test("DATA_VALID packets keep a finished checksum, updated as before, and the flag", () => {
  const e = natEngine();
  e.vnet.clear();
  e.vnet.flags = VNET_F_DATA_VALID;
  const syn = feed(e, tcp(CLIENT, 40002, VIP, 80, TCP_SYN));
  assert.notEqual(syn.out, DROP);
  assertChecksums(syn.pkt, 0);
  assert.equal(e.vnet.flags, VNET_F_DATA_VALID);
});

/** A TCP super-packet of `payload` bytes as TSO hands it over: partial checksum, gso_size MSS. */
function superPacket(
  e: Engine,
  src: number,
  sport: number,
  dst: number,
  dport: number,
  payload: number,
  flags = TCP_ACK | TCP_PSH,
  gsoSize = MSS,
): Uint8Array {
  return makePartial(
    e,
    tcp(src, sport, dst, dport, flags, payload, { frag: DF, id: 0x1234 }),
    VnetGso.TCPV4,
    gsoSize,
  );
}

/** Cuts a GSO packet as the kernel would and checks each segment and the whole payload. */
function assertSegmentsValid(pkt: Uint8Array, proto: number, gsoSize: number, what: string) {
  const total = ipTotalLength(pkt, 0);
  const headers = proto === PROTO_TCP ? 20 + tcpDataOffset(pkt, 20) : 28;
  const n = segmentCount(pkt, 0, total, proto, gsoSize);
  assert.equal(n, Math.ceil((total - headers) / gsoSize), what);
  const out = new Uint8Array(gsoSize + 200);
  const payload: number[] = [];
  for (let k = 0; k < n; k++) {
    const len = writeSegment(pkt, 0, total, proto, gsoSize, k, out, 0);
    const seg = out.slice(0, len);
    assertChecksums(seg, 0);
    assert.equal(ipId(seg, 0), (ipId(pkt, 0) + k) & 0xffff, `${what}: IP ID of ${k}`);
    if (proto === PROTO_TCP) {
      assert.equal(tcpSeq(seg, 20), (tcpSeq(pkt, 20) + k * gsoSize) >>> 0, `${what}: seq ${k}`);
      const f = tcpFlags(seg, 20);
      const last = k === n - 1;
      assert.equal((f & (TCP_FIN | TCP_PSH)) !== 0, last && (tcpFlags(pkt, 20) & 9) !== 0);
      assert.equal((f & TCP_CWR) !== 0, k === 0 && (tcpFlags(pkt, 20) & TCP_CWR) !== 0);
    } else {
      assert.equal(get16(seg, 24), len - 20, `${what}: UDP length of ${k}`);
    }
    payload.push(...seg.subarray(headers));
  }
  assert.deepEqual(Uint8Array.from(payload), pkt.slice(headers, total), `${what}: payload`);
}

Deno.test("a GSO TCP super-packet is rewritten once, its header kept, and cuts into valid segments", () => {
  const e = natEngine();
  feedPartial(e, tcp(CLIENT, 40003, VIP, 80, TCP_SYN));
  const big = feed(e, superPacket(e, CLIENT, 40003, VIP, 80, 30000));
  assert.equal(big.out, big.pkt.length);
  assert.equal(ipDst(big.pkt, 0), REAL1);
  assert.equal(e.vnet.gsoType, VnetGso.TCPV4);
  assert.equal(e.vnet.gsoSize, MSS);
  assert.equal(e.vnet.csumStart, 20);
  assertFinishes(big.pkt, e.vnet, "super-packet");
  // What the kernel's TSO does with it: each segment's checksum adjusted from the partial sum.
  assertSegmentsValid(kernelFinish(big.pkt, e.vnet), PROTO_TCP, MSS, "NATed super-packet");
});

Deno.test("software segmentation: FIN/PSH on the last only, CWR on the first only; UDP too", () => {
  const e = natEngine();
  const pkt = kernelFinish(
    superPacket(e, CLIENT, 1, VIP, 2, 5000, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR),
    e.vnet,
  );
  assertSegmentsValid(pkt, PROTO_TCP, MSS, "TCP");
  assertSegmentsValid(pkt, PROTO_TCP, 1000, "TCP, gso_size dividing the payload");
  const dgram = udp(CLIENT, 1, VIP, 2, 4000, { id: 7 });
  assertSegmentsValid(dgram, PROTO_UDP, 1200, "UDP");
});

Deno.test("TOA on a GSO partial packet: 8 bytes longer, checksum and hdr_len follow", () => {
  const e = natEngine({ forward: "fullnat", localAddresses: [LOCAL], toa: true });
  const syn = feedPartial(e, tcp(CLIENT, 40004, VIP, 80, TCP_SYN));
  const lport = tcpSrcPort(syn.pkt, 20);
  // The real's SYN-ACK, partial: its MSS lowered by 8, the partial sum left as it is.
  const synAck = feedPartial(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, { seq: 7, options: [{ mss: 1460 }] }),
  );
  assert.equal(readOptions(synAck.pkt).mss, 1460 - TOA_LENGTH);
  assertFinishes(synAck.pkt, e.vnet, "SYN-ACK with the MSS lowered");
  const pkt = superPacket(e, CLIENT, 40004, VIP, 80, 20000);
  const hdrLen = e.vnet.hdrLen;
  const buf = new Uint8Array(pkt.length + 64);
  buf.set(pkt);
  const out = e.process(buf, 0, pkt.length);
  assert.equal(out, pkt.length + TOA_LENGTH);
  assert.equal(e.counters[EngineCounter.TOA_INSERTED], 1);
  const grown = buf.subarray(0, out);
  assert.equal(tcpDataOffset(grown, 20), 28);
  assert.equal(e.vnet.hdrLen, hdrLen + TOA_LENGTH);
  assert.equal(e.vnet.csumStart, 20);
  assert.equal(e.vnet.gsoSize, MSS);
  assertFinishes(grown, e.vnet, "TOA super-packet");
  assertSegmentsValid(kernelFinish(grown, e.vnet), PROTO_TCP, MSS, "TOA super-packet");
});

function tunnelEngine(): Engine {
  return new Engine(dataplaneSpec([
    service("tun", PROTO_TCP, 80, 80, {
      forward: "tunnel",
      reals: [{ ...real(REAL1, 80), tunnelSource: DIRECTOR, mtu: 1500 }],
    }),
  ]));
}

Deno.test("IPIP of a partial-checksum packet: the inner checksum is finished, the header zero", () => {
  const e = tunnelEngine();
  const syn = run(e, makePartial(e, tcp(CLIENT, 40005, VIP, 80, TCP_SYN)));
  assert.equal(ipProtocol(syn.made, 0), PROTO_IPIP);
  assertChecksums(syn.made, IPIP_HEADER);
  const data = makePartial(e, tcp(CLIENT, 40005, VIP, 80, TCP_ACK, 1000));
  const buf = new Uint8Array(data.length + 100);
  buf.set(data);
  const out = e.process(buf, 0, data.length);
  assert.equal(out, data.length + IPIP_HEADER);
  assert.equal(e.vnet.flags, 0);
  assert.equal(checksum(buf, 0, 20), 0, "outer header checksum");
  assertChecksums(buf, IPIP_HEADER);
});

for (const shared of [false, true]) {
  Deno.test(
    `IPIP of a GSO packet: cut in software, each segment encapsulated and valid${
      shared ? " (spill in the packet's own buffer)" : ""
    }`,
    () => {
      const e = tunnelEngine();
      run(e, makePartial(e, tcp(CLIENT, 40006, VIP, 80, TCP_SYN)));
      // The clamped MSS (1500 − 60) or less, as the client's TSO then uses it.
      const gsoSize = 1400;
      const pkt = superPacket(e, CLIENT, 40006, VIP, 80, 10000, TCP_ACK | TCP_PSH, gsoSize);
      const original = kernelFinish(pkt, e.vnet);
      const room = pkt.length + 100;
      const buf = new Uint8Array(
        room + (shared ? Outbox.bytesFor(SPILL_SLOTS, SPILL_PACKET_BYTES) : 0),
      );
      if (shared) e.spillInto(buf, room);
      buf.set(pkt);
      assert.equal(e.process(buf, 0, pkt.length), SENT);
      const s = e.spill;
      assert.equal(s.buf === buf, shared);
      assert.equal(s.count, Math.ceil(10000 / gsoSize));
      assert.equal(e.counters[EngineCounter.GSO_SEGMENTED], 1);
      const payload: number[] = [];
      for (let k = 0; k < s.count; k++) {
        const at = s.offset(k);
        // The zero virtio_net_hdr in front of every spilled packet.
        assert.deepEqual([...s.buf.subarray(at - VNET_HDR_LEN, at)], new Array(10).fill(0));
        const seg = s.buf.slice(at, at + s.lengths[k]);
        assert.equal(ipProtocol(seg, 0), PROTO_IPIP);
        assert.equal(ipDst(seg, 0), REAL1);
        assert.equal(checksum(seg, 0, 20), 0, "outer header checksum");
        assertChecksums(seg, IPIP_HEADER);
        assert.ok(s.lengths[k] <= 1500, "fits the path");
        payload.push(...seg.subarray(IPIP_HEADER + 40));
      }
      assert.deepEqual(Uint8Array.from(payload), original.subarray(40));
      s.clear();
    },
  );
}

Deno.test("DR: a GSO packet goes out as finished segments, a partial one finished", () => {
  const sent: Uint8Array[] = [];
  const sender: DirectSender = {
    send: (_s, _r, b, off, len) => {
      sent.push(b.slice(off, off + len));
      return true;
    },
  };
  const e = new Engine(
    dataplaneSpec([service("dr", PROTO_TCP, 80, 80, {
      forward: "dr",
      reals: [{ ...real(REAL1, 80), ifindex: 7, mac: "02:00:00:00:00:01", mtu: 1500 }],
    })]),
    sender,
  );
  assert.equal(run(e, makePartial(e, tcp(CLIENT, 40007, VIP, 80, TCP_SYN))).out, SENT);
  assertChecksums(sent[0], 0);
  const pkt = superPacket(e, CLIENT, 40007, VIP, 80, 20000);
  const original = kernelFinish(pkt, e.vnet);
  assert.equal(run(e, pkt).out, SENT);
  const segments = sent.slice(1);
  assert.equal(segments.length, Math.ceil(20000 / MSS));
  const payload: number[] = [];
  for (const seg of segments) {
    assertChecksums(seg, 0);
    assert.equal(ipDst(seg, 0), VIP, "DR: addressed to the VIP, unchanged");
    payload.push(...seg.subarray(40));
  }
  assert.deepEqual(Uint8Array.from(payload), original.subarray(40));
  assert.equal(e.counters[EngineCounter.DIRECT_SENT], 1 + segments.length);
});

Deno.test("DR through a sender that takes offloads: the GSO packet whole, with its header", () => {
  const sent: { len: number; gso: number; flags: number; gsoSize: number }[] = [];
  const sender: DirectSender = {
    takesOffloads: true,
    send: (_s, _r, _b, _off, len, vnet) => {
      sent.push({ len, gso: vnet!.gsoType, flags: vnet!.flags, gsoSize: vnet!.gsoSize });
      return true;
    },
  };
  const e = new Engine(
    dataplaneSpec([service("dr", PROTO_TCP, 80, 80, {
      forward: "dr",
      reals: [{ ...real(REAL1, 80), ifindex: 7, mac: "02:00:00:00:00:01", mtu: 1500 }],
    })]),
    sender,
  );
  run(e, makePartial(e, tcp(CLIENT, 40011, VIP, 80, TCP_SYN)));
  const pkt = superPacket(e, CLIENT, 40011, VIP, 80, 20000);
  assert.equal(run(e, pkt).out, SENT);
  assert.deepEqual(sent, [
    { len: 40, gso: 0, flags: VNET_F_NEEDS_CSUM, gsoSize: 0 },
    { len: pkt.length, gso: VnetGso.TCPV4, flags: VNET_F_NEEDS_CSUM, gsoSize: MSS },
  ]);
  assert.equal(e.counters[EngineCounter.GSO_SEGMENTED], 0);
});

Deno.test("GSO of a kind the engine cannot take is dropped and counted", () => {
  const e = natEngine();
  const p = makePartial(e, tcp(CLIENT, 40008, VIP, 80, TCP_SYN));
  e.vnet.gsoType = VnetGso.TCPV6;
  e.vnet.gsoSize = MSS;
  assert.equal(feed(e, p).out, DROP);
  assert.equal(e.counters[EngineCounter.DROP_OFFLOAD], 1);
});

Deno.test("virtio_net_hdr reads and writes little-endian fields", () => {
  const b = Uint8Array.from([1, 0x81, 0x36, 0, 0xa8, 5, 20, 0, 16, 0]);
  const v = new VnetHeader();
  v.read(b, 0);
  assert.deepEqual(
    [v.flags, v.gsoType, v.hdrLen, v.gsoSize, v.csumStart, v.csumOffset, v.gso],
    [1, 0x81, 54, 1448, 20, 16, VnetGso.TCPV4],
  );
  const c = new Uint8Array(10);
  v.write(c, 0);
  assert.deepEqual(c, b);
});

Deno.test("offload negotiation: all, then without USO, then checksums only, else none", () => {
  const EINVAL = 22;
  const EPERM = 1;
  const tried: number[] = [];
  const all = negotiateOffloads((f) => (tried.push(f), 0));
  assert.equal(all & (TunOffload.USO4 | TunOffload.TSO4 | TunOffload.CSUM), 0x23);
  assert.equal(offloadNames(all), "csum tso4 tso6 tso_ecn uso4 uso6");
  // An older kernel: EINVAL for the USO bits.
  const noUso = negotiateOffloads((f) => (f & TunOffload.USO4) !== 0 ? EINVAL : 0);
  assert.equal(offloadNames(noUso), "csum tso4 tso6 tso_ecn");
  const csum = negotiateOffloads((f) => f === TunOffload.CSUM ? 0 : EINVAL);
  assert.equal(offloadNames(csum), "csum");
  assert.equal(negotiateOffloads(() => EINVAL), 0);
  // Refused outright: no offloads, and no further attempts.
  tried.length = 0;
  assert.equal(negotiateOffloads((f) => (tried.push(f), EPERM)), 0);
  assert.equal(tried.length, 1);
  assert.equal(offloadNames(0), "none");
});

Deno.test("synproxy: made segments get a zero header; translated partial ones finish right", () => {
  const e = natEngine({ synproxy: true });
  e.now = 5_000;
  e.tick(5_000);
  const isn = 0x11223344;
  const realIsn = 0x55667788;
  const ts: TcpOption[] = [{ mss: 1460 }, { sackOk: true }, { ts: [1000, 0] }, { nop: true }, {
    wscale: 7,
  }];
  // The client's SYN, partial: answered with a made SYN-ACK, finished, header zero.
  const answer = feedPartial(
    e,
    segment(CLIENT, 40010, VIP, 80, TCP_SYN, { seq: isn, options: ts }),
  );
  assert.ok(answer.out > 0);
  assert.equal(e.vnet.flags, 0);
  const synAck = answer.buf.slice(answer.off, answer.off + answer.out);
  assertChecksums(synAck, 0);
  const cookie = tcpSeq(synAck, 20);
  const ourTs = readOptions(synAck).ts![0];
  const ack = segment(CLIENT, 40010, VIP, 80, TCP_ACK, {
    seq: isn + 1,
    ack: cookie + 1,
    options: [{ nop: true }, { nop: true }, { ts: [1010, ourTs] }],
  });
  const toReal = run(e, makePartial(e, ack));
  assert.ok(toReal.out > 0);
  assert.equal(e.vnet.flags, 0);
  const real = run(
    e,
    makePartial(
      e,
      segment(REAL1, 8080, CLIENT, 40010, TCP_SYN | TCP_ACK, {
        seq: realIsn,
        ack: isn + 1,
        options: [{ mss: 1460 }, { sackOk: true }, { ts: [777, 1010] }, { nop: true }, {
          wscale: 9,
        }],
      }),
    ),
  );
  assert.ok(real.out > 0);
  assert.equal(e.vnet.flags, 0, "the ACK to the real is made here");
  // Data both ways, partial (and the client's as a GSO super-packet): sequence numbers translated.
  const reply = feedPartial(
    e,
    segment(REAL1, 8080, CLIENT, 40010, TCP_ACK | TCP_PSH, {
      seq: realIsn + 1,
      ack: isn + 1,
      options: [{ nop: true }, { nop: true }, { ts: [780, 1010] }],
      payload: "x".repeat(300),
    }),
  );
  assert.equal(tcpSeq(reply.pkt, 20), (cookie + 1) >>> 0);
  assertFinishes(reply.pkt, e.vnet, "real's data");
  const request = feed(
    e,
    makePartial(
      e,
      segment(CLIENT, 40010, VIP, 80, TCP_ACK | TCP_PSH, {
        seq: isn + 1,
        ack: cookie + 301,
        options: [{ nop: true }, { nop: true }, { ts: [1020, ourTs] }],
        payload: "y".repeat(5000),
      }),
      VnetGso.TCPV4,
      MSS,
    ),
  );
  assert.equal(get32(request.pkt, 28), (realIsn + 301) >>> 0);
  assertFinishes(request.pkt, e.vnet, "client's super-packet");
  assert.equal(e.vnet.gsoType, VnetGso.TCPV4);
});
