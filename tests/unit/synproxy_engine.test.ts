/**
 * The SYN proxy through Engine.process with synthetic segments: the cookie SYN-ACK, the ACK that
 * opens the connection to the real, the real's SYN-ACK completed with the client's held data,
 * then data both ways with sequence numbers, SACK blocks, timestamps and windows translated, and
 * the ways a proxied handshake fails. Every segment the engine makes is verified with the full
 * checksum functions.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConnState } from "../../dataplane/conn/state.ts";
import { DROP, Engine } from "../../dataplane/engine.ts";
import { type ServiceSpec, ServiceTable } from "../../dataplane/service.ts";
import { HANDSHAKE_TIMEOUT_MS, SYNPROXY_WSCALE } from "../../dataplane/synproxy/synproxy.ts";
import { get16, get32 } from "../../dataplane/wire/bytes.ts";
import { ipDst, ipSrc, ipTotalLength, PROTO_TCP } from "../../dataplane/wire/ipv4.ts";
import {
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  tcpAck,
  tcpDstPort,
  tcpFlags,
  tcpSeq,
  tcpSrcPort,
} from "../../dataplane/wire/tcp.ts";
import { CLIENT, dataplaneSpec, REAL1, REAL2, service, VIP } from "../fixtures/dataplane_specs.ts";
import { assertChecksums, counters } from "../fixtures/engine_harness.ts";
import { addr } from "../fixtures/packets.ts";
import { icmpError } from "../fixtures/packet_builders.ts";
import { prng } from "../fixtures/prng.ts";
import { payloadText, readOptions, segment, type TcpOption } from "../fixtures/tcp_segments.ts";

const CPORT = 40000;
const CLIENT_ISN = 0x11223344;
const REAL_ISN = 0x55667788;
const CLIENT_TS = 1_000_000;
const REAL_TS = 777_777;
/** The wall clock (ms since the epoch) at the engine clock's 0, in these tests. */
const TS_CLOCK_ORIGIN = 1_780_000_000_000;
/** The timestamp of the SYN to the real: the proxy's clock when the connection opens (5 s). */
const SYN_TS = (TS_CLOCK_ORIGIN + 5_000) % 2 ** 32;
const REQUEST = "GET /index.html HTTP/1.1\r\nHost: vip\r\n\r\n";

function web(extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return service("web", PROTO_TCP, 80, 8080, { synproxy: true, ...extra });
}

function engineFor(svc: ServiceSpec = web(), maxConnections = 1024): Engine {
  const e = new Engine(dataplaneSpec([svc], maxConnections));
  e.tsClock.origin = TS_CLOCK_ORIGIN;
  e.now = 5_000;
  e.tick(5_000);
  return e;
}

/** What the engine made of a segment: its verdict and the segment it wrote (checksums checked). */
interface Made {
  out: number;
  pkt: Uint8Array;
}

/** Runs `pkt` at offset 37 of a roomy buffer; a packet written back must check out in full. */
function run(engine: Engine, pkt: Uint8Array): Made {
  const off = 37;
  const buf = new Uint8Array(off + pkt.length + 2048).fill(0xa5);
  buf.set(pkt, off);
  const out = engine.process(buf, off, pkt.length);
  if (out === DROP) return { out, pkt: pkt };
  assert.ok(out > 0, `verdict ${out}`);
  const made = buf.slice(off, off + out);
  assert.equal(ipTotalLength(made, 0), out, "IPv4 total length");
  assertChecksums(made, 0);
  return { out, pkt: made };
}

function flagsOf(p: Uint8Array): number {
  return tcpFlags(p, 20);
}

const SYN_OPTIONS: TcpOption[] = [
  { mss: 1460 },
  { sackOk: true },
  { ts: [CLIENT_TS, 0] },
  { nop: true },
  { wscale: 7 },
];

function clientSyn(options = SYN_OPTIONS, port = CPORT, isn = CLIENT_ISN): Uint8Array {
  return segment(CLIENT, port, VIP, 80, TCP_SYN, { seq: isn, window: 64240, options });
}

/** The handshake up to the SYN to the real: [cookie, cookie timestamp, SYN to the real]. */
function openToReal(engine: Engine, payload = REQUEST): [number, number, Uint8Array] {
  const synAck = run(engine, clientSyn()).pkt;
  const cookie = tcpSeq(synAck, 20);
  const ourTs = readOptions(synAck).ts![0];
  const ack = segment(CLIENT, CPORT, VIP, 80, TCP_ACK | (payload ? TCP_PSH : 0), {
    seq: CLIENT_ISN + 1,
    ack: cookie + 1,
    window: 502,
    options: [{ nop: true }, { nop: true }, { ts: [CLIENT_TS + 10, ourTs] }],
    payload,
  });
  const syn = run(engine, ack);
  assert.ok(syn.out > 0);
  return [cookie, ourTs, syn.pkt];
}

function realSynAck(options: TcpOption[], isn = REAL_ISN, from = REAL1): Uint8Array {
  return segment(from, 8080, CLIENT, CPORT, TCP_SYN | TCP_ACK, {
    seq: isn,
    ack: CLIENT_ISN + 1,
    window: 65160,
    options,
  });
}

const REAL_OPTIONS: TcpOption[] = [
  { mss: 1460 },
  { sackOk: true },
  { ts: [REAL_TS, SYN_TS] },
  { nop: true },
  { wscale: 9 },
];

Deno.test("a SYN is answered with a cookie SYN-ACK and leaves no state; its retransmission gets the same cookie", () => {
  const engine = engineFor();
  const r = run(engine, clientSyn());
  const p = r.pkt;
  assert.equal(r.out, 60);
  assert.equal(ipSrc(p, 0), VIP);
  assert.equal(ipDst(p, 0), CLIENT);
  assert.equal(tcpSrcPort(p, 20), 80);
  assert.equal(tcpDstPort(p, 20), CPORT);
  assert.equal(flagsOf(p), TCP_SYN | TCP_ACK);
  assert.equal(tcpAck(p, 20), CLIENT_ISN + 1);
  const o = readOptions(p);
  assert.equal(o.mss, 1460);
  assert.equal(o.wscale, SYNPROXY_WSCALE);
  assert.equal(o.sackOk, true);
  assert.equal(o.ts![1], CLIENT_TS, "echoes the client's timestamp");
  // The cookie timestamp's low 6 bits: window scale 7, SACK (bit 4), no ECN.
  assert.equal(o.ts![0] & 0x3f, 7 | 0x10);
  assert.deepEqual(o.kinds, [2, 4, 8, 1, 3], "Linux's layout: MSS, SACKOK+TS, NOP+WS");
  assert.equal(engine.conns.size, 0);

  const again = run(engine, clientSyn()).pkt;
  assert.equal(tcpSeq(again, 20), tcpSeq(p, 20), "same cookie for the same SYN");
  const other = run(engine, clientSyn(SYN_OPTIONS, CPORT, CLIENT_ISN + 1000)).pkt;
  assert.notEqual(tcpSeq(other, 20), tcpSeq(p, 20));
  assert.equal(engine.conns.size, 0);
  assert.deepEqual(counters(engine), { rx_packets: 3, synproxy_syns_answered: 3 });
});

Deno.test("an ECN SYN gets ECE back; a SYN without timestamps keeps only its MSS", () => {
  const engine = engineFor();
  const ecn = segment(CLIENT, CPORT, VIP, 80, TCP_SYN | TCP_ECE | TCP_CWR, {
    seq: CLIENT_ISN,
    options: SYN_OPTIONS,
  });
  const synAck = run(engine, ecn).pkt;
  assert.equal(flagsOf(synAck), TCP_SYN | TCP_ACK | TCP_ECE);
  assert.equal(readOptions(synAck).ts![0] & 0x20, 0x20, "ECN remembered in the timestamp");

  // No timestamps: window scaling and SACK cannot be recalled from the ACK, so none is offered.
  const plain = clientSyn([{ mss: 1410 }, { nop: true }, { wscale: 7 }, { sackOk: true }], 40001);
  const bare = run(engine, plain).pkt;
  assert.equal(bare.length, 44);
  // The SYN-ACK announces the proxy's MSS; the client's rides in the cookie.
  assert.deepEqual(readOptions(bare), { mss: 1460, kinds: [2] });
  const cookie = tcpSeq(bare, 20);
  const ack = segment(CLIENT, 40001, VIP, 80, TCP_ACK, { seq: CLIENT_ISN + 1, ack: cookie + 1 });
  const syn = run(engine, ack).pkt;
  assert.equal(flagsOf(syn), TCP_SYN);
  assert.equal(tcpSeq(syn, 20), CLIENT_ISN);
  // 1410 is rounded down to the cookie's table: 1400.
  assert.deepEqual(readOptions(syn), { mss: 1400, kinds: [2] });
});

Deno.test("full handshake: held data reaches the real, then both ways are translated", () => {
  const engine = engineFor();
  const [cookie, ourTs, syn] = openToReal(engine);
  const delta = (cookie - REAL_ISN) >>> 0;
  const tsDelta = (ourTs - REAL_TS) >>> 0;

  // The client's ACK became the SYN to a real, with the client's ISN and options.
  assert.equal(syn.length, 60);
  assert.equal(ipSrc(syn, 0), CLIENT);
  assert.equal(ipDst(syn, 0), REAL1);
  assert.equal(tcpSrcPort(syn, 20), CPORT);
  assert.equal(tcpDstPort(syn, 20), 8080);
  assert.equal(flagsOf(syn), TCP_SYN);
  assert.equal(tcpSeq(syn, 20), CLIENT_ISN);
  assert.equal(tcpAck(syn, 20), 0);
  // The SYN's unscaled window: the bytes the ACK offered (502 << 7), at most 65535.
  assert.equal(get16(syn, 34), 502 << 7);
  const so = readOptions(syn);
  assert.equal(so.mss, 1460);
  assert.equal(so.wscale, 7);
  assert.equal(so.sackOk, true);
  // Its timestamp is the proxy's clock, not the client's (see "TIME_WAIT" in docs/synproxy.md).
  assert.deepEqual(so.ts, [SYN_TS, 0]);
  assert.equal(engine.conns.size, 1);
  const entry = engine.conns.lookup(PROTO_TCP, CLIENT, CPORT, VIP, 80);
  assert.ok(entry >= 0);
  assert.equal(engine.conns.state[entry >> 1], ConnState.SYN_RECV);
  assert.equal(engine.synproxy.heldSegments.used, 1);

  // The real's SYN-ACK completes its handshake: an ACK carrying the client's request.
  const done = run(engine, realSynAck(REAL_OPTIONS)).pkt;
  assert.equal(ipSrc(done, 0), CLIENT);
  assert.equal(ipDst(done, 0), REAL1);
  assert.equal(tcpDstPort(done, 20), 8080);
  assert.equal(flagsOf(done), TCP_ACK | TCP_PSH);
  assert.equal(tcpSeq(done, 20), CLIENT_ISN + 1);
  assert.equal(tcpAck(done, 20), REAL_ISN + 1);
  assert.deepEqual(readOptions(done).ts, [SYN_TS, REAL_TS]);
  assert.equal(payloadText(done), REQUEST);
  // The client's window field, scaled by the client's shift, which the real learnt from the SYN.
  assert.equal(get16(done, 34), 502);
  assert.equal(engine.conns.state[entry >> 1], ConnState.ESTABLISHED);
  assert.equal(engine.synproxy.heldSegments.used, 0);

  // The real's reply: sequence number and timestamp moved into the client's view, from the VIP,
  // and its window rescaled from the real's shift (9) to the one the client was given (7).
  const body = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  const reply = run(
    engine,
    segment(REAL1, 8080, CLIENT, CPORT, TCP_ACK | TCP_PSH, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1 + REQUEST.length,
      window: 100,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 5, SYN_TS] }],
      payload: body,
    }),
  ).pkt;
  assert.equal(ipSrc(reply, 0), VIP);
  assert.equal(tcpSrcPort(reply, 20), 80);
  assert.equal(ipDst(reply, 0), CLIENT);
  assert.equal(tcpSeq(reply, 20), (REAL_ISN + 1 + delta) >>> 0);
  assert.equal(tcpSeq(reply, 20), (cookie + 1) >>> 0);
  assert.equal(tcpAck(reply, 20), CLIENT_ISN + 1 + REQUEST.length);
  // Its echo of the SYN's timestamp is the client's own again.
  assert.deepEqual(readOptions(reply).ts, [(REAL_TS + 5 + tsDelta) >>> 0, CLIENT_TS + 10]);
  assert.equal(readOptions(reply).ts![0], (ourTs + 5) >>> 0);
  assert.equal(get16(reply, 34), 400);
  assert.equal(payloadText(reply), body);

  // The client's ACK with a SACK block at an odd offset (after one NOP): ack, SACK edges and
  // both timestamps moved into the real's view.
  const sackL = (cookie + 1 + 1000) >>> 0;
  const sackR = (cookie + 1 + 2000) >>> 0;
  const ack = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
      seq: CLIENT_ISN + 1 + REQUEST.length,
      ack: cookie + 1 + body.length,
      window: 501,
      options: [{ nop: true }, { sack: [[sackL, sackR]] }, { nop: true }, {
        ts: [CLIENT_TS + 20, ourTs + 5],
      }],
    }),
  ).pkt;
  assert.equal(ipDst(ack, 0), REAL1);
  assert.equal(tcpSeq(ack, 20), CLIENT_ISN + 1 + REQUEST.length);
  assert.equal(tcpAck(ack, 20), REAL_ISN + 1 + body.length);
  const ao = readOptions(ack);
  assert.deepEqual(ao.sack, [[(sackL - delta) >>> 0, (sackR - delta) >>> 0]]);
  // Its timestamp moves on from the SYN's as the client's does from its first ACK's.
  assert.deepEqual(ao.ts, [SYN_TS + 10, REAL_TS + 5]);
  assert.equal(get16(ack, 34), 501, "the real scales the client's window as the client does");

  // FIN from the client, RST from the real: translated like any segment.
  const fin = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_FIN | TCP_ACK, {
      seq: CLIENT_ISN + 1 + REQUEST.length,
      ack: cookie + 1 + body.length,
    }),
  ).pkt;
  assert.equal(flagsOf(fin), TCP_FIN | TCP_ACK);
  assert.equal(tcpAck(fin, 20), REAL_ISN + 1 + body.length);
  const rst = run(
    engine,
    segment(REAL1, 8080, CLIENT, CPORT, TCP_RST, { seq: REAL_ISN + 1 + body.length }),
  ).pkt;
  assert.equal(flagsOf(rst), TCP_RST);
  assert.equal(tcpSeq(rst, 20), (cookie + 1 + body.length) >>> 0);
  assert.equal(engine.conns.state[entry >> 1], ConnState.CLOSE);

  const c = counters(engine);
  assert.equal(c.synproxy_syns_answered, 1);
  assert.equal(c.synproxy_cookies_validated, 1);
  assert.equal(c.synproxy_handshakes_completed, 1);
  assert.equal(c.synproxy_data_held, 1);
  assert.equal(c.synproxy_data_released, 1);
  assert.equal(c.connections_created, 1);
  const svc = engine.services.services[0];
  assert.equal(svc.inactive[0] + svc.active[0], 1);
});

Deno.test("an ICMP error about a translated reply reaches the real with the real's sequence number", () => {
  const engine = engineFor();
  const [cookie] = openToReal(engine, "");
  run(engine, realSynAck(REAL_OPTIONS));
  const reply = run(
    engine,
    segment(REAL1, 8080, CLIENT, CPORT, TCP_ACK, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1,
      payload: "x".repeat(1400),
    }),
  ).pkt;
  assert.equal(tcpSeq(reply, 20), (cookie + 1) >>> 0);
  // A router near the client cannot pass it: fragmentation needed, quoting 28 and 48 bytes.
  for (const quoteLen of [28, 48]) {
    const err = run(engine, icmpError(addr("192.168.1.1"), VIP, 3, 4, reply, quoteLen)).pkt;
    assert.equal(ipDst(err, 0), REAL1);
    const quoted = err.subarray(28);
    assert.equal(ipSrc(quoted, 0), REAL1);
    assert.equal(tcpSrcPort(quoted, 20), 8080);
    assert.equal(tcpSeq(quoted, 20), REAL_ISN + 1, `quote of ${quoteLen}`);
  }
});

Deno.test("a pure first ACK: the real's handshake is completed by a pure ACK", () => {
  const engine = engineFor();
  const [, , syn] = openToReal(engine, "");
  assert.equal(flagsOf(syn), TCP_SYN);
  assert.equal(engine.synproxy.heldSegments.used, 0);
  const done = run(engine, realSynAck(REAL_OPTIONS)).pkt;
  assert.equal(done.length, 52);
  assert.equal(flagsOf(done), TCP_ACK);
  assert.equal(payloadText(done), "");
  // The real repeats its SYN-ACK (the ACK was lost): it is answered again.
  const again = run(engine, realSynAck(REAL_OPTIONS)).pkt;
  // The same segment, but for its IP ID (and so its header checksum).
  assert.deepEqual(again.subarray(12), done.subarray(12));
  assert.notEqual(get16(again, 4), get16(done, 4));
  assert.equal(counters(engine).synproxy_acks_resent, 1);
});

Deno.test("the request right behind a pure ACK is held and goes with the real's ACK", () => {
  const engine = engineFor();
  const [cookie, ourTs] = openToReal(engine, "");
  const request = segment(CLIENT, CPORT, VIP, 80, TCP_ACK | TCP_PSH, {
    seq: CLIENT_ISN + 1,
    ack: cookie + 1,
    window: 502,
    options: [{ nop: true }, { nop: true }, { ts: [CLIENT_TS + 11, ourTs] }],
    payload: REQUEST,
  });
  assert.equal(run(engine, request).out, DROP);
  assert.equal(engine.synproxy.heldSegments.used, 1);
  // A second data segment finds the slot taken: the client will send it again.
  const more = segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
    seq: CLIENT_ISN + 1 + REQUEST.length,
    ack: cookie + 1,
    payload: "more",
  });
  assert.equal(run(engine, more).out, DROP);
  const done = run(engine, realSynAck(REAL_OPTIONS)).pkt;
  assert.equal(flagsOf(done), TCP_ACK | TCP_PSH);
  assert.equal(tcpSeq(done, 20), CLIENT_ISN + 1);
  assert.equal(tcpAck(done, 20), REAL_ISN + 1);
  assert.equal(payloadText(done), REQUEST);
  const c = counters(engine);
  assert.equal(c.synproxy_data_held, 1);
  assert.equal(c.synproxy_data_released, 1);
  assert.equal(c.drop_synproxy_pending, 1);
  assert.equal(engine.synproxy.heldSegments.used, 0);
});

Deno.test("the real answers RST: the client is reset and no entry is left", () => {
  const engine = engineFor();
  const [cookie] = openToReal(engine);
  const rst = run(
    engine,
    segment(REAL1, 8080, CLIENT, CPORT, TCP_RST | TCP_ACK, { seq: 0, ack: CLIENT_ISN + 1 }),
  ).pkt;
  assert.equal(rst.length, 40);
  assert.equal(ipSrc(rst, 0), VIP);
  assert.equal(tcpSrcPort(rst, 20), 80);
  assert.equal(ipDst(rst, 0), CLIENT);
  assert.equal(tcpDstPort(rst, 20), CPORT);
  assert.equal(flagsOf(rst) & TCP_RST, TCP_RST);
  // Exactly what the client expects next from the server, so it takes the reset.
  assert.equal(tcpSeq(rst, 20), (cookie + 1) >>> 0);
  assert.equal(engine.conns.size, 0);
  assert.equal(engine.synproxy.heldSegments.used, 0);
  const svc = engine.services.services[0];
  assert.deepEqual([svc.active[0], svc.inactive[0]], [0, 0]);
  assert.equal(counters(engine).synproxy_handshakes_failed, 1);
});

/** The packets the engine spilled (made besides the one in the slot), checksums checked; cleared. */
function spilled(engine: Engine): Uint8Array[] {
  const s = engine.spill;
  const out: Uint8Array[] = [];
  for (let i = 0; i < s.count; i++) {
    const p = s.buf.slice(s.offset(i), s.offset(i) + s.lengths[i]);
    assert.equal(ipTotalLength(p, 0), s.lengths[i], "IPv4 total length");
    assertChecksums(p, 0);
    out.push(p);
  }
  s.clear();
  return out;
}

/** The ACK of an earlier connection a real answers a SYN with from its TIME_WAIT. */
const STALE_ACK = 0x0a0b0c0d;

Deno.test("the real answers the SYN with a stale ACK (TIME_WAIT): RST at its ack, the SYN again at once", () => {
  const engine = engineFor();
  const [cookie, ourTs, syn] = openToReal(engine);
  // Linux's TIME_WAIT: seq = the old snd_nxt, ack = the old rcv_nxt, the old timestamps.
  const challenge = segment(REAL1, 8080, CLIENT, CPORT, TCP_ACK, {
    seq: 0x7000_0001,
    ack: STALE_ACK,
    window: 502,
    options: [{ nop: true }, { nop: true }, { ts: [REAL_TS - 500, CLIENT_TS + 5000] }],
  });
  const rst = run(engine, challenge).pkt;
  // What a TCP in SYN-SENT answers an unacceptable ACK with: <SEQ=SEG.ACK><CTL=RST>.
  assert.equal(rst.length, 40);
  assert.equal(ipSrc(rst, 0), CLIENT);
  assert.equal(ipDst(rst, 0), REAL1);
  assert.equal(tcpSrcPort(rst, 20), CPORT);
  assert.equal(tcpDstPort(rst, 20), 8080);
  assert.equal(flagsOf(rst), TCP_RST);
  assert.equal(tcpSeq(rst, 20), STALE_ACK);
  assert.equal(tcpAck(rst, 20), 0);
  // Behind it, without waiting for the client, the same SYN again (but for its IP ID).
  const again = spilled(engine);
  assert.equal(again.length, 1);
  assert.equal(flagsOf(again[0]), TCP_SYN);
  assert.deepEqual(again[0].subarray(12), syn.subarray(12));
  let c = counters(engine);
  assert.equal(c.synproxy_real_stale_acks, 1);
  assert.equal(c.synproxy_syns_resent, 1);
  assert.equal(c.drop_no_connection, undefined);
  assert.equal(c.synproxy_handshakes_failed, undefined);
  assert.equal(engine.conns.size, 1);
  assert.equal(engine.synproxy.heldSegments.used, 1, "the request is still held");

  // The TIME_WAIT is gone: the real's SYN-ACK completes the handshake, the request goes with it.
  const done = run(engine, realSynAck(REAL_OPTIONS)).pkt;
  assert.equal(flagsOf(done), TCP_ACK | TCP_PSH);
  assert.equal(tcpSeq(done, 20), CLIENT_ISN + 1);
  assert.equal(tcpAck(done, 20), REAL_ISN + 1);
  assert.equal(payloadText(done), REQUEST);
  assert.equal(spilled(engine).length, 0);
  const reply = run(
    engine,
    segment(REAL1, 8080, CLIENT, CPORT, TCP_ACK | TCP_PSH, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1 + REQUEST.length,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 5, SYN_TS] }],
      payload: "ok",
    }),
  ).pkt;
  assert.equal(ipSrc(reply, 0), VIP);
  assert.equal(tcpSeq(reply, 20), (cookie + 1) >>> 0);
  assert.deepEqual(readOptions(reply).ts, [(ourTs + 5) >>> 0, CLIENT_TS + 10]);
  // The client's timestamps at an odd offset (behind one NOP) reach the real translated.
  const next = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
      seq: CLIENT_ISN + 1 + REQUEST.length,
      ack: cookie + 3,
      options: [{ nop: true }, { ts: [CLIENT_TS + 30, ourTs + 5] }, { nop: true }],
    }),
  ).pkt;
  const no = readOptions(next);
  assert.deepEqual(no.kinds, [1, 8, 1]);
  assert.deepEqual(no.ts, [SYN_TS + 20, REAL_TS + 5]);
  c = counters(engine);
  assert.equal(c.synproxy_handshakes_completed, 1);
  assert.equal(c.synproxy_data_released, 1);
  assert.equal(c.synproxy_real_stale_acks, 1);
});

Deno.test("a SYN-ACK from the real acknowledging something else is answered alike", () => {
  const engine = engineFor();
  const [, , syn] = openToReal(engine, "");
  const wrong = realSynAck(REAL_OPTIONS, REAL_ISN);
  // It acknowledges 1000 bytes past the SYN: not the proxy's SYN.
  const bad = segment(REAL1, 8080, CLIENT, CPORT, TCP_SYN | TCP_ACK, {
    seq: REAL_ISN,
    ack: CLIENT_ISN + 1001,
    options: REAL_OPTIONS,
  });
  const rst = run(engine, bad).pkt;
  assert.equal(flagsOf(rst), TCP_RST);
  assert.equal(tcpSeq(rst, 20), CLIENT_ISN + 1001);
  const again = spilled(engine);
  assert.equal(again.length, 1);
  assert.deepEqual(again[0].subarray(12), syn.subarray(12));
  assert.equal(counters(engine).synproxy_real_stale_acks, 1);
  // The right SYN-ACK still completes it.
  assert.equal(flagsOf(run(engine, wrong).pkt), TCP_ACK);
  assert.equal(counters(engine).synproxy_handshakes_completed, 1);
});

Deno.test("the real does not answer within the timeout: the client is reset, the entry freed", () => {
  const engine = engineFor();
  const [cookie] = openToReal(engine);
  // The client sends its data again at once: dropped, the first copy is held.
  const again = segment(CLIENT, CPORT, VIP, 80, TCP_ACK | TCP_PSH, {
    seq: CLIENT_ISN + 1,
    ack: cookie + 1,
    payload: REQUEST,
  });
  assert.equal(run(engine, again).out, DROP);
  // A second later the SYN (or the real's answer) looks lost: the SYN to the real goes again.
  engine.now += 1000;
  const resent = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK | TCP_PSH, {
      seq: CLIENT_ISN + 1,
      ack: cookie + 1,
      payload: REQUEST,
    }),
  ).pkt;
  assert.equal(flagsOf(resent), TCP_SYN);
  assert.equal(tcpSeq(resent, 20), CLIENT_ISN);
  assert.equal(ipDst(resent, 0), REAL1);

  engine.tick(5_000 + HANDSHAKE_TIMEOUT_MS - 300);
  assert.equal(engine.conns.size, 1);
  assert.equal(engine.outbox.count, 0);
  engine.tick(5_000 + HANDSHAKE_TIMEOUT_MS + 300);
  assert.equal(engine.conns.size, 0);
  assert.equal(engine.synproxy.heldSegments.used, 0);
  assert.equal(engine.outbox.count, 1);
  const o = engine.outbox;
  const rst = o.buf.slice(o.offset(0), o.offset(0) + o.lengths[0]);
  assertChecksums(rst, 0);
  assert.equal(ipSrc(rst, 0), VIP);
  assert.equal(ipDst(rst, 0), CLIENT);
  assert.equal(flagsOf(rst) & TCP_RST, TCP_RST);
  assert.equal(tcpSeq(rst, 20), (cookie + 1) >>> 0);
  const c = counters(engine);
  assert.equal(c.synproxy_handshakes_failed, 1);
  assert.equal(c.synproxy_syns_resent, 1);
  assert.equal(c.drop_synproxy_pending, 1);
  // A late SYN-ACK finds nothing: it is no VIP's, so it passes unchanged.
  assert.equal(run(engine, realSynAck(REAL_OPTIONS)).out, 40 + 20);
});

Deno.test("an ACK flood with made-up cookies costs no state", () => {
  const engine = engineFor(web(), 256);
  const next = prng(0x5eed);
  const flood = 20_000;
  for (let i = 0; i < flood; i++) {
    const src = addr("198.51.100.0") + (next() & 0xff);
    const pkt = segment(src, 1024 + (next() & 0x7fff), VIP, 80, TCP_ACK, {
      seq: next(),
      ack: next(),
      payload: i % 2 === 0 ? "x" : "",
    });
    assert.equal(run(engine, pkt).out, DROP);
  }
  assert.equal(engine.conns.size, 0);
  assert.equal(engine.synproxy.heldSegments.used, 0);
  const c = counters(engine);
  assert.equal(c.synproxy_cookies_rejected, flood);
  assert.equal(c.synproxy_cookies_validated, undefined);
  assert.equal(c.connections_created, undefined);
  // A SYN flood from as many sources keeps no state either.
  for (let i = 0; i < 5000; i++) {
    const src = addr("203.0.113.0") + (next() & 0xff);
    const syn = segment(src, 1024 + (next() & 0x7fff), VIP, 80, TCP_SYN, {
      seq: next(),
      options: SYN_OPTIONS,
    });
    const synAck = run(engine, syn).pkt;
    assert.equal(ipDst(synAck, 0), src);
    assert.equal(flagsOf(synAck), TCP_SYN | TCP_ACK);
  }
  assert.equal(engine.conns.size, 0);
  // A legitimate client still gets through a table far smaller than the flood.
  openToReal(engine);
  assert.equal(engine.conns.size, 1);
});

Deno.test("a stale cookie is rejected; one from the previous key period still opens", () => {
  const engine = engineFor();
  const synAck = run(engine, clientSyn()).pkt;
  const cookie = tcpSeq(synAck, 20);
  const ourTs = readOptions(synAck).ts![0];
  const ack = segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
    seq: CLIENT_ISN + 1,
    ack: cookie + 1,
    options: [{ nop: true }, { nop: true }, { ts: [CLIENT_TS + 10, ourTs] }],
  });
  // Default rotation: 60 s. Two periods on, the key that made the cookie is gone.
  const period = 60_000;
  const start = Math.floor(5_000 / period) * period;
  engine.tick(start + 2 * period + 1);
  assert.equal(run(engine, ack).out, DROP);
  assert.equal(counters(engine).synproxy_cookies_rejected, 1);

  const fresh = engineFor();
  const synAck2 = run(fresh, clientSyn()).pkt;
  const ack2 = segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
    seq: CLIENT_ISN + 1,
    ack: tcpSeq(synAck2, 20) + 1,
  });
  fresh.tick(start + period + 1);
  assert.equal(flagsOf(run(fresh, ack2).pkt), TCP_SYN);
});

Deno.test("a SYN on the tuple of a closed proxied connection starts a new cookie handshake", () => {
  const engine = engineFor();
  const [cookie] = openToReal(engine, "");
  run(engine, realSynAck(REAL_OPTIONS));
  run(engine, segment(REAL1, 8080, CLIENT, CPORT, TCP_RST, { seq: REAL_ISN + 1 }));
  assert.equal(engine.conns.size, 1, "the entry waits in CLOSE");
  const synAck = run(engine, clientSyn(SYN_OPTIONS, CPORT, CLIENT_ISN + 99_999)).pkt;
  assert.equal(flagsOf(synAck), TCP_SYN | TCP_ACK);
  assert.equal(ipSrc(synAck, 0), VIP);
  assert.notEqual(tcpSeq(synAck, 20), cookie);
  assert.equal(engine.conns.size, 0);
});

Deno.test("no real for a valid cookie: the client is reset", () => {
  const engine = engineFor(web({ reals: [] }));
  const synAck = run(engine, clientSyn()).pkt;
  const cookie = tcpSeq(synAck, 20);
  const rst = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK, { seq: CLIENT_ISN + 1, ack: cookie + 1 }),
  ).pkt;
  assert.equal(flagsOf(rst), TCP_RST);
  assert.equal(ipSrc(rst, 0), VIP);
  assert.equal(tcpSeq(rst, 20), (cookie + 1) >>> 0);
  assert.equal(engine.conns.size, 0);
  assert.equal(counters(engine).drop_no_real, 1);
});

Deno.test("FULLNAT with TOA: the SYN-ACK leaves room for TOA, the completing ACK carries it", () => {
  const LOCAL = addr("10.0.3.1");
  const engine = engineFor(
    web({
      forward: "fullnat",
      localAddresses: [LOCAL],
      toa: true,
      reals: [{ ...realSpec(REAL2) }],
    }),
  );
  const synAck = run(engine, clientSyn()).pkt;
  assert.equal(readOptions(synAck).mss, 1460 - 8);
  const cookie = tcpSeq(synAck, 20);
  const ourTs = readOptions(synAck).ts![0];
  const syn = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
      seq: CLIENT_ISN + 1,
      ack: cookie + 1,
      options: [{ nop: true }, { nop: true }, { ts: [CLIENT_TS + 10, ourTs] }],
    }),
  ).pkt;
  assert.equal(ipSrc(syn, 0), LOCAL);
  assert.equal(ipDst(syn, 0), REAL2);
  const lport = tcpSrcPort(syn, 20);
  const done = run(
    engine,
    segment(REAL2, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: CLIENT_ISN + 1,
      options: REAL_OPTIONS,
    }),
  ).pkt;
  assert.equal(ipSrc(done, 0), LOCAL);
  assert.equal(tcpAck(done, 20), REAL_ISN + 1);
  // TOA (kind 254) first, with the client's port and address.
  assert.equal(done[40], 254);
  assert.equal(get16(done, 42), CPORT);
  assert.equal(get32(done, 44), CLIENT);
  // The real's reply reaches the client from the VIP, translated.
  const reply = run(
    engine,
    segment(REAL2, 8080, LOCAL, lport, TCP_ACK, { seq: REAL_ISN + 1, ack: CLIENT_ISN + 1 }),
  ).pkt;
  assert.equal(ipSrc(reply, 0), VIP);
  assert.equal(ipDst(reply, 0), CLIENT);
  assert.equal(tcpDstPort(reply, 20), CPORT);
  assert.equal(tcpSeq(reply, 20), (cookie + 1) >>> 0);
});

Deno.test("FULLNAT through the proxy: timestamps are the proxy's to translate, once", () => {
  const LOCAL = addr("10.0.3.1");
  const engine = engineFor(
    web({ forward: "fullnat", localAddresses: [LOCAL], reals: [{ ...realSpec(REAL1) }] }),
  );
  const [cookie, ourTs, syn] = openToReal(engine);
  // The SYN's TSval is the clock FULLNAT's own SYNs take theirs from: one clock per tuple.
  assert.deepEqual(readOptions(syn).ts, [SYN_TS, 0]);
  assert.equal(SYN_TS, engine.tsClock.at(engine.now));
  const lport = tcpSrcPort(syn, 20);
  const done = run(
    engine,
    segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: CLIENT_ISN + 1,
      options: REAL_OPTIONS,
    }),
  ).pkt;
  assert.deepEqual(readOptions(done).ts, [SYN_TS, REAL_TS]);
  const ack = run(
    engine,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
      seq: CLIENT_ISN + 1 + REQUEST.length,
      ack: cookie + 1,
      options: [{ nop: true }, { nop: true }, { ts: [CLIENT_TS + 20, ourTs] }],
    }),
  ).pkt;
  assert.equal(ipSrc(ack, 0), LOCAL);
  assert.deepEqual(readOptions(ack).ts, [SYN_TS + 10, REAL_TS]);
  const reply = run(
    engine,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1 + REQUEST.length,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 5, SYN_TS + 10] }],
    }),
  ).pkt;
  assert.equal(ipDst(reply, 0), CLIENT);
  assert.deepEqual(readOptions(reply).ts, [(ourTs + 5) >>> 0, CLIENT_TS + 20]);
});

function realSpec(a: number) {
  return { addr: a, port: 8080, weight: 1, upperThreshold: 0, lowerThreshold: 0 };
}

Deno.test("synproxy is refused for tunnel, DR and UDP services", () => {
  for (const forward of ["tunnel", "dr"] as const) {
    const svc = service("t", PROTO_TCP, 80, 80, {
      forward,
      synproxy: true,
      reals: [{ ...realSpec(REAL1), port: 80, tunnelSource: addr("10.0.0.1") }],
    });
    assert.throws(
      () => new ServiceTable([svc]),
      /synproxy needs forward nat or fullnat; with .* bypass the director/,
    );
  }
  assert.throws(
    () => new ServiceTable([service("u", 17, 53, 53, { synproxy: true })]),
    /synproxy applies to TCP only/,
  );
});
