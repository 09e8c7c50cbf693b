/**
 * FULLNAT's sequence translation through Engine.process, for clients without timestamps: the
 * SYN's ISN moved onto the director's ISN clock, seq shifted on the client's segments and ack and
 * SACK edges shifted back on the real's, checksums verified by full recomputation, ICMP quotes
 * given back their own numbers, a SYN with timestamps left its ISN, and a reused tuple a new
 * shift.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DROP, type Engine } from "../../dataplane/engine.ts";
import { get16, set16 } from "../../dataplane/wire/bytes.ts";
import { l4Checksum } from "../../dataplane/wire/checksum.ts";
import { ipDst, PROTO_TCP } from "../../dataplane/wire/ipv4.ts";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_SYN,
  tcpAck,
  tcpSeq,
  tcpSrcPort,
} from "../../dataplane/wire/tcp.ts";
import { CLIENT, REAL1, VIP } from "../fixtures/dataplane_specs.ts";
import { assertChecksums, feed } from "../fixtures/engine_harness.ts";
import { icmpError } from "../fixtures/packet_builders.ts";
import { addr } from "../fixtures/packets.ts";
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
/** Near the top of the 32-bit space, so that the client's numbers wrap within the test. */
const CLIENT_ISN = 0xffff_ff00;
const REAL_ISN = 0x55667788;

/** The ISN clock at engine time `now`: 64 ns ticks of the wall clock, modulo 2^32. */
function isnAt(now: number): number {
  const ns = BigInt(CLOCK_ORIGIN) * 1_000_000n + BigInt(Math.round(now * 1_000_000));
  return Number((ns / 64n) % 2n ** 32n);
}

const PLAIN_SYN: TcpOption[] = [{ mss: 1460 }, { nop: true }, { wscale: 7 }, { sackOk: true }];

/** Asserts the TCP checksum of a whole quoted segment (IPv4 header of 20 bytes) fits its bytes. */
function assertQuoteChecksum(quoted: Uint8Array): void {
  const copy = quoted.slice();
  set16(copy, 36, 0);
  assert.equal(get16(quoted, 36), l4Checksum(copy, 0, 20, copy.length - 20, PROTO_TCP));
}

/** Feeds the ICMP error `pkt` and returns what was written back, its checksums checked. */
function icmpThrough(e: Engine, pkt: Uint8Array): Uint8Array {
  const r = feed(e, pkt);
  assert.notEqual(r.out, DROP);
  assertChecksums(r.pkt.subarray(0, r.out), 0);
  return r.pkt.slice(0, r.out);
}

function clientSyn(options = PLAIN_SYN, isn = CLIENT_ISN): Uint8Array {
  return segment(CLIENT, CPORT, VIP, 80, TCP_SYN, { seq: isn, options });
}

Deno.test("FULLNAT without timestamps: the SYN's ISN is the director's clock, and the connection keeps the shift both ways", () => {
  const e = fullnatAtClock();
  const isn = isnAt(SYN_AT);
  const delta = (isn - CLIENT_ISN) >>> 0;
  const syn = through(e, clientSyn());
  assert.equal(tcpSeq(syn, 20), isn);
  // Nothing else of the SYN changes.
  assert.deepEqual(readOptions(syn).kinds, [2, 1, 3, 4]);
  const lport = tcpSrcPort(syn, 20);

  const synAck = through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: (isn + 1) >>> 0,
      options: [{ mss: 1460 }, { nop: true }, { nop: true }, { sackOk: true }],
    }),
  );
  assert.equal(tcpSeq(synAck, 20), REAL_ISN);
  assert.equal(tcpAck(synAck, 20), (CLIENT_ISN + 1) >>> 0);

  // The client's numbers wrap past 2^32; the real's keep their distance from the SYN's.
  const request = through(
    e,
    segment(CLIENT, CPORT, VIP, 80, TCP_ACK | TCP_PSH, {
      seq: (CLIENT_ISN + 1) >>> 0,
      ack: REAL_ISN + 1,
      // The client's SACK blocks are of the real's bytes: untouched.
      options: [{ nop: true }, { nop: true }, { sack: [[REAL_ISN + 100, REAL_ISN + 200]] }],
      payload: "x".repeat(300),
    }),
  );
  assert.equal(tcpSeq(request, 20), (isn + 1) >>> 0);
  assert.equal(tcpAck(request, 20), REAL_ISN + 1);
  assert.deepEqual(readOptions(request).sack, [[REAL_ISN + 100, REAL_ISN + 200]]);

  // The real acknowledges and SACKs the client's bytes in its numbers: back to the client's,
  // two blocks, one SACK option at an odd offset.
  const reply = through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK, {
      seq: REAL_ISN + 1,
      ack: (isn + 1) >>> 0,
      options: [
        { nop: true },
        {
          sack: [[(isn + 101) >>> 0, (isn + 201) >>> 0], [(isn + 251) >>> 0, (isn + 301) >>> 0]],
        },
        { nop: true },
        { nop: true },
        { nop: true },
      ],
    }),
  );
  assert.equal(tcpSeq(reply, 20), REAL_ISN + 1);
  assert.equal(tcpAck(reply, 20), (CLIENT_ISN + 1) >>> 0);
  assert.deepEqual(readOptions(reply).sack, [
    [(CLIENT_ISN + 101) >>> 0, (CLIENT_ISN + 201) >>> 0],
    [(CLIENT_ISN + 251) >>> 0, (CLIENT_ISN + 301) >>> 0],
  ]);

  const fin = through(
    e,
    segment(CLIENT, CPORT, VIP, 80, TCP_FIN | TCP_ACK, {
      seq: (CLIENT_ISN + 301) >>> 0,
      ack: REAL_ISN + 1,
    }),
  );
  assert.equal(tcpSeq(fin, 20), (CLIENT_ISN + 301 + delta) >>> 0);
});

Deno.test("FULLNAT with timestamps: the client's ISN goes to the real as it came", () => {
  const e = fullnatAtClock();
  const syn = through(
    e,
    clientSyn([{ mss: 1460 }, { sackOk: true }, { ts: [12345, 0] }, { nop: true }, {
      wscale: 7,
    }]),
  );
  assert.equal(tcpSeq(syn, 20), CLIENT_ISN);
  const lport = tcpSrcPort(syn, 20);
  const reply = through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_ACK, {
      seq: REAL_ISN + 1,
      ack: (CLIENT_ISN + 1) >>> 0,
      options: [{ nop: true }, { nop: true }, { sack: [[CLIENT_ISN + 10, CLIENT_ISN + 20]] }],
    }),
  );
  assert.equal(tcpAck(reply, 20), (CLIENT_ISN + 1) >>> 0);
  assert.deepEqual(readOptions(reply).sack, [[CLIENT_ISN + 10, CLIENT_ISN + 20]]);
});

Deno.test("FULLNAT without timestamps: ISNs follow the clock, past the 2^53 of a double's integers", () => {
  const e = fullnatAtClock();
  const isns: number[] = [];
  // Half a millisecond apart: the clock ticks within a millisecond too.
  for (const [i, now] of [SYN_AT, SYN_AT + 0.5, SYN_AT + 1].entries()) {
    e.now = now;
    const syn = through(
      e,
      segment(CLIENT, CPORT + i, VIP, 80, TCP_SYN, { seq: 3_000_000_000 - i * 1e9 }),
    );
    isns.push(tcpSeq(syn, 20));
  }
  assert.deepEqual(isns, [isnAt(SYN_AT), isnAt(SYN_AT + 0.5), isnAt(SYN_AT + 1)]);
  assert.equal((isns[1] - isns[0]) >>> 0, 7812);
  assert.equal((isns[2] - isns[0]) >>> 0, 15_625);
});

Deno.test("FULLNAT without timestamps: a new SYN on a finished tuple takes a new shift", () => {
  const e = fullnatAtClock();
  const first = through(e, clientSyn());
  const lport = tcpSrcPort(first, 20);
  const isn = isnAt(SYN_AT);
  // The connection ends both ways (the real first), as HTTP/1.0 does.
  for (
    const [fromReal, flags, seq, ack] of [
      [true, TCP_SYN | TCP_ACK, REAL_ISN, isn + 1],
      [true, TCP_FIN | TCP_ACK, REAL_ISN + 1, isn + 1],
      [false, TCP_FIN | TCP_ACK, CLIENT_ISN + 1, REAL_ISN + 2],
      [true, TCP_ACK, REAL_ISN + 2, isn + 2],
    ] as const
  ) {
    through(
      e,
      fromReal
        ? segment(REAL1, 8080, LOCAL, lport, flags, { seq: seq >>> 0, ack: ack >>> 0 })
        : segment(CLIENT, CPORT, VIP, 80, flags, { seq: seq >>> 0, ack: ack >>> 0 }),
    );
  }
  // The client comes back from the same port with an ISN behind the old one (another tuple's, as
  // a client's ISNs are): the entry is replaced, and the SYN goes out on the clock.
  const later = SYN_AT + 7_000;
  e.now = later;
  const clientIsn = 1_000;
  const again = through(e, clientSyn(PLAIN_SYN, clientIsn));
  assert.equal(tcpSeq(again, 20), isnAt(later));
  const synAck = through(
    e,
    segment(REAL1, 8080, LOCAL, tcpSrcPort(again, 20), TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: (isnAt(later) + 1) >>> 0,
    }),
  );
  assert.equal(tcpAck(synAck, 20), clientIsn + 1);
});

Deno.test("FULLNAT without timestamps and with TOA: the option goes in, seq shifted, checksum whole", () => {
  const e = fullnatAtClock({ toa: true });
  const syn = through(e, clientSyn());
  const isn = isnAt(SYN_AT);
  const lport = tcpSrcPort(syn, 20);
  through(
    e,
    segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
      seq: REAL_ISN,
      ack: (isn + 1) >>> 0,
      options: [{ mss: 1460 }],
    }),
  );
  const ack = segment(CLIENT, CPORT, VIP, 80, TCP_ACK, {
    seq: (CLIENT_ISN + 1) >>> 0,
    ack: REAL_ISN + 1,
    options: [{ nop: true }, { nop: true }, { sack: [[REAL_ISN + 5, REAL_ISN + 9]] }],
  });
  const buf = new Uint8Array(ack.length + 64);
  buf.set(ack);
  const out = e.process(buf, 0, ack.length);
  assert.equal(out, ack.length + 8);
  const made = buf.slice(0, out);
  assertRecomputed(made);
  assert.equal(readOptions(made).kinds[0], 254, "TOA first");
  assert.equal(tcpSeq(made, 20), (isn + 1) >>> 0);
  assert.deepEqual(readOptions(made).sack, [[REAL_ISN + 5, REAL_ISN + 9]]);
});

Deno.test("FULLNAT without timestamps: ICMP errors quote each end's own numbers", () => {
  const e = fullnatAtClock();
  const sent = clientSyn();
  const syn = through(e, sent);
  const isn = isnAt(SYN_AT);
  const lport = tcpSrcPort(syn, 20);
  const realSynAck = segment(REAL1, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, {
    seq: REAL_ISN,
    ack: (isn + 1) >>> 0,
  });
  const synAck = through(e, realSynAck);

  // A router near the client cannot pass the real's segment: the real gets the error quoting
  // its ack in its own numbers, and where the quote reaches the checksum, one that still fits.
  for (const quoteLen of [28, 40]) {
    const err = icmpThrough(e, icmpError(addr("192.168.1.1"), VIP, 3, 4, synAck, quoteLen));
    assert.equal(ipDst(err, 0), REAL1);
    const quoted = err.subarray(28);
    assert.equal(tcpSeq(quoted, 20), REAL_ISN);
    if (quoteLen === 40) {
      assert.equal(tcpAck(quoted, 20), (isn + 1) >>> 0);
      assertQuoteChecksum(quoted);
    }
  }
  // A router near the real cannot pass the client's: the client gets the error quoting its ISN.
  for (const quoteLen of [28, syn.length]) {
    const err = icmpThrough(e, icmpError(addr("10.0.4.1"), LOCAL, 3, 4, syn, quoteLen));
    const quoted = err.subarray(28);
    assert.equal(tcpSeq(quoted, 20), CLIENT_ISN, `quote of ${quoteLen}`);
    if (quoteLen === syn.length) assertQuoteChecksum(quoted);
  }
});
