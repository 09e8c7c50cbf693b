/**
 * FULLNAT's timestamp translation through Engine.process: the SYN's TSval moved onto the
 * director's clock, the same shift applied to every later client TSval and undone on every real
 * TSecr, checksums verified by full recomputation (options at even and odd offsets, with TOA),
 * a SYN without timestamps left its options (its sequence numbers: fullnat_sequence.test.ts),
 * and SYNs on the clock however the clients' run.
 *
 * @module
 */

import assert from "node:assert/strict";
import { get32 } from "../../dataplane/wire/bytes.ts";
import { ipDst, ipSrc } from "../../dataplane/wire/ipv4.ts";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_SYN,
  tcpDstPort,
  tcpSrcPort,
} from "../../dataplane/wire/tcp.ts";
import { CLIENT, REAL1, VIP } from "../fixtures/dataplane_specs.ts";
import { readOptions, segment, type TcpOption } from "../fixtures/tcp_segments.ts";
import {
  assertRecomputed,
  CLOCK_ORIGIN,
  fullnatAtClock,
  LOCAL,
  SYN_AT,
  through,
} from "../fixtures/fullnat_clock.ts";

const CPORT = 40000;
const CLIENT_ISN = 0x11223344;
const REAL_ISN = 0x55667788;
/** Near the top of the 32-bit space, so that the client's clock wraps within the test. */
const CLIENT_TS = 0xffff_fff0;
const REAL_TS = 777_777;
/** The director's clock then: the TSval the real sees in the SYN. */
const SYN_TS = (CLOCK_ORIGIN + SYN_AT) % 2 ** 32;

const SYN_OPTIONS: TcpOption[] = [
  { mss: 1460 },
  { sackOk: true },
  { ts: [CLIENT_TS, 0] },
  { nop: true },
  { wscale: 7 },
];

function clientSyn(options = SYN_OPTIONS, port = CPORT): Uint8Array {
  return segment(CLIENT, port, VIP, 80, TCP_SYN, { seq: CLIENT_ISN, options });
}

/** The real's SYN-ACK to local port `lport`, echoing the SYN's TSval as the director sent it. */
function realSynAck(lport: number): Uint8Array {
  return segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
    seq: REAL_ISN,
    ack: CLIENT_ISN + 1,
    options: [{ mss: 1460 }, { sackOk: true }, { ts: [REAL_TS, SYN_TS] }, { nop: true }, {
      wscale: 9,
    }],
  });
}

Deno.test("FULLNAT: the SYN's TSval is the director's clock, and the connection keeps the shift both ways", () => {
  const e = fullnatAtClock();
  const delta = (SYN_TS - CLIENT_TS) >>> 0;
  const syn = through(e, clientSyn());
  assert.equal(ipSrc(syn, 0), LOCAL);
  assert.equal(ipDst(syn, 0), REAL1);
  const lport = tcpSrcPort(syn, 20);
  const so = readOptions(syn);
  assert.deepEqual(so.ts, [SYN_TS, 0]);
  // Nothing else of the SYN changes.
  assert.equal(so.mss, 1460);
  assert.equal(so.wscale, 7);
  assert.deepEqual(so.kinds, [2, 4, 8, 1, 3]);
  assert.equal(get32(syn, 24), CLIENT_ISN);

  // The real echoes the SYN's TSval: the client gets its own back.
  const synAck = through(
    e,
    realSynAck(lport),
  );
  assert.equal(ipSrc(synAck, 0), VIP);
  assert.equal(ipDst(synAck, 0), CLIENT);
  assert.deepEqual(readOptions(synAck).ts, [REAL_TS, CLIENT_TS]);

  // The client's clock wraps past 2^32; its TSvals keep their distance from the SYN's.
  const request = through(
    e,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK | TCP_PSH, {
      seq: CLIENT_ISN + 1,
      ack: REAL_ISN + 1,
      options: [{ nop: true }, { nop: true }, { ts: [(CLIENT_TS + 40) >>> 0, REAL_TS] }],
      payload: "GET / HTTP/1.1\r\nHost: vip\r\n\r\n",
    }),
  );
  assert.deepEqual(readOptions(request).ts, [(SYN_TS + 40) >>> 0, REAL_TS]);
  assert.equal(readOptions(request).ts![0], (CLIENT_TS + 40 + delta) >>> 0);

  const reply = through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK | TCP_PSH, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 3, (SYN_TS + 40) >>> 0] }],
      payload: "HTTP/1.1 200 OK\r\n\r\n",
    }),
  );
  assert.deepEqual(readOptions(reply).ts, [REAL_TS + 3, (CLIENT_TS + 40) >>> 0]);

  // A FIN, and a later segment whose option stands at an odd offset (behind one NOP).
  const fin = through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_FIN | TCP_ACK, {
      seq: REAL_ISN + 20,
      ack: CLIENT_ISN + 30,
      options: [{ nop: true }, { ts: [REAL_TS + 9, (SYN_TS + 41) >>> 0] }, { nop: true }],
    }),
  );
  assert.deepEqual(readOptions(fin).ts, [REAL_TS + 9, (CLIENT_TS + 41) >>> 0]);
  const last = through(
    e,
    segment(CLIENT, CPORT, VIP, 80, TCP_FIN | TCP_ACK, {
      seq: CLIENT_ISN + 30,
      ack: REAL_ISN + 21,
      options: [{ nop: true }, { ts: [(CLIENT_TS + 50) >>> 0, REAL_TS + 9] }, { nop: true }],
    }),
  );
  assert.deepEqual(readOptions(last).ts, [(SYN_TS + 50) >>> 0, REAL_TS + 9]);
});

Deno.test("FULLNAT: SYNs carry the director's clock, newer each time, whatever the clients' clocks", () => {
  const e = fullnatAtClock();
  // A client clock far ahead, then one far behind: the real sees the director's clock only.
  const tsvals: number[] = [];
  for (const [i, clientTs] of [3_000_000_000, 10, 2_000_000_000].entries()) {
    e.now = SYN_AT + i;
    const syn = through(
      e,
      clientSyn([{ mss: 1460 }, { nop: true }, { nop: true }, { ts: [clientTs, 0] }], CPORT + i),
    );
    tsvals.push(readOptions(syn).ts![0]);
  }
  assert.deepEqual(tsvals, [SYN_TS, SYN_TS + 1, SYN_TS + 2]);
});

Deno.test("FULLNAT: a SYN without timestamps keeps its options, and its connection any timestamps", () => {
  const e = fullnatAtClock();
  const plain: TcpOption[] = [{ mss: 1460 }, { nop: true }, { wscale: 7 }];
  const sent = clientSyn(plain);
  const syn = through(e, sent);
  // Only addresses and ports moved: the options are the client's bytes.
  assert.deepEqual(syn.subarray(40), sent.subarray(40));
  const lport = tcpSrcPort(syn, 20);
  // A timestamp showing up later (the connection did not agree on them) is not touched.
  const odd = through(
    e,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
      seq: CLIENT_ISN + 1,
      ack: REAL_ISN + 1,
      options: [{ nop: true }, { nop: true }, { ts: [1234, 5678] }],
    }),
  );
  assert.deepEqual(readOptions(odd).ts, [1234, 5678]);
  const back = through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1,
      options: [{ nop: true }, { nop: true }, { ts: [5678, 1234] }],
    }),
  );
  assert.equal(tcpDstPort(back, 20), CPORT);
  assert.deepEqual(readOptions(back).ts, [5678, 1234]);
});

Deno.test("FULLNAT: a new SYN on a finished tuple takes a new shift from the clock", () => {
  const e = fullnatAtClock();
  const first = through(e, clientSyn());
  const lport = tcpSrcPort(first, 20);
  // The connection ends both ways (the real first), as HTTP/1.0 does.
  through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: CLIENT_ISN + 1,
      options: [{ ts: [REAL_TS, SYN_TS] }],
    }),
  );
  through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_FIN | TCP_ACK, {
      seq: REAL_ISN + 1,
      ack: CLIENT_ISN + 1,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 1, SYN_TS] }],
    }),
  );
  through(
    e,
    segment(CLIENT, CPORT, VIP, 80, TCP_FIN | TCP_ACK, {
      seq: CLIENT_ISN + 1,
      ack: REAL_ISN + 2,
      options: [{ nop: true }, { nop: true }, { ts: [CLIENT_TS + 1, REAL_TS + 1] }],
    }),
  );
  through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK, {
      seq: REAL_ISN + 2,
      ack: CLIENT_ISN + 2,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 2, (SYN_TS + 1) >>> 0] }],
    }),
  );
  // The client comes back from the same port with a clock behind the old one (another tuple's,
  // as a client's clocks are): the entry is replaced, and the SYN still goes out on the clock.
  e.now = SYN_AT + 7_000;
  const again = through(
    e,
    clientSyn([{ mss: 1460 }, { nop: true }, { nop: true }, { ts: [5, 0] }]),
  );
  assert.deepEqual(readOptions(again).ts, [(SYN_TS + 7_000) >>> 0, 0]);
  const lport2 = tcpSrcPort(again, 20);
  const synAck = through(
    e,
    segment(REAL1, 8080, LOCAL, lport2, TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: CLIENT_ISN + 1,
      options: [{ nop: true }, { nop: true }, { ts: [REAL_TS + 9, (SYN_TS + 7_000) >>> 0] }],
    }),
  );
  assert.deepEqual(readOptions(synAck).ts, [REAL_TS + 9, 5]);
});

Deno.test("FULLNAT with TOA: the option goes in and the timestamp is translated, checksum whole", () => {
  const e = fullnatAtClock({ toa: true });
  const syn = through(e, clientSyn());
  const lport = tcpSrcPort(syn, 20);
  const synAck = through(
    e,
    realSynAck(lport),
  );
  assert.equal(readOptions(synAck).mss, 1460 - 8);
  assert.deepEqual(readOptions(synAck).ts, [REAL_TS, CLIENT_TS]);
  const ack = segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
    seq: CLIENT_ISN + 1,
    ack: REAL_ISN + 1,
    options: [{ nop: true }, { ts: [(CLIENT_TS + 3) >>> 0, REAL_TS] }, { nop: true }],
  });
  const buf = new Uint8Array(ack.length + 64);
  buf.set(ack);
  const out = e.process(buf, 0, ack.length);
  assert.equal(out, ack.length + 8);
  const made = buf.slice(0, out);
  assertRecomputed(made);
  const o = readOptions(made);
  assert.equal(o.kinds[0], 254, "TOA first");
  assert.deepEqual(o.ts, [(SYN_TS + 3) >>> 0, REAL_TS]);
});
