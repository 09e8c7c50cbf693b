/**
 * Unit tests of dataplane/wire against packets built by scapy (tests/fixtures/make_fixtures.py).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  adjust16,
  adjust32,
  adjustPartial16,
  adjustPartial32,
  checksum,
  finish,
  fold16,
  ipv4L4ChecksumOk,
  l4Checksum,
  pseudoHeaderSum,
  sum16,
} from "../../dataplane/wire/checksum.ts";
import {
  computeIpHeaderChecksum,
  fillIpHeaderChecksum,
  formatIpv4,
  ipDontFragment,
  ipDst,
  ipFlags,
  ipFragmentOffset,
  ipHeaderChecksum,
  ipHeaderLength,
  ipId,
  ipIsFragment,
  ipMoreFragments,
  ipProtocol,
  ipSrc,
  ipTos,
  ipTotalLength,
  ipTtl,
  IPV4_MIN_HEADER,
  IPV4_PARSE_REASONS,
  Ipv4Parse,
  ipVersion,
  parseIpv4,
  parseIpv4Address,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  setIpDst,
  setIpHeaderChecksum,
  setIpSrc,
  setIpTotalLength,
  setIpTtl,
} from "../../dataplane/wire/ipv4.ts";
import {
  parseTcp,
  setTcpAck,
  setTcpChecksum,
  setTcpDstPort,
  setTcpSeq,
  setTcpSrcPort,
  TCP_ACK,
  TCP_CHECKSUM_OFFSET,
  TCP_PARSE_REASONS,
  TCP_PSH,
  TCP_SYN,
  tcpAck,
  tcpChecksum,
  tcpDataOffset,
  tcpDstPort,
  tcpFindOption,
  tcpFlags,
  tcpMss,
  TcpParse,
  tcpSeq,
  tcpSrcPort,
  tcpWindow,
} from "../../dataplane/wire/tcp.ts";
import {
  adjustUdpChecksum16,
  adjustUdpChecksum32,
  parseUdp,
  setUdpChecksum,
  setUdpDstPort,
  setUdpSrcPort,
  UDP_CHECKSUM_OFFSET,
  UDP_PARSE_REASONS,
  udpChecksum,
  udpDstPort,
  udpLength,
  UdpParse,
  udpSrcPort,
} from "../../dataplane/wire/udp.ts";
import {
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_EMBEDDED_OFFSET,
  ICMP_FRAG_NEEDED,
  ICMP_PARAM_PROBLEM,
  ICMP_PARSE_REASONS,
  ICMP_REDIRECT,
  ICMP_SOURCE_QUENCH,
  ICMP_TIME_EXCEEDED,
  icmpChecksum,
  icmpCode,
  icmpId,
  icmpIsError,
  icmpNextHopMtu,
  IcmpParse,
  icmpSeq,
  icmpType,
  parseIcmp,
  setIcmpChecksum,
  setIcmpType,
} from "../../dataplane/wire/icmp.ts";
import { addr, type Endpoints, type Fixture, fixtures, fromHex } from "../fixtures/packets.ts";
import { prng } from "../fixtures/prng.ts";

/** Offsets at which every fixture is also placed inside a larger buffer full of junk. */
const PLACEMENTS = [0, 13];
const JUNK = 0xee;

/** The packet at `off` inside a buffer with junk before and after it. */
function placed(hex: string, off: number): Uint8Array {
  const pkt = fromHex(hex);
  const buf = new Uint8Array(off + pkt.length + 17).fill(JUNK);
  buf.set(pkt, off);
  return buf;
}

function withFields<K extends keyof Fixture>(
  key: K,
): [string, Fixture & Required<Pick<Fixture, K>>][] {
  return Object.entries(fixtures).filter(([, f]) => f[key] !== undefined) as [
    string,
    Fixture & Required<Pick<Fixture, K>>,
  ][];
}

/** Reference Internet checksum: plain sum of all words, folded at the end. */
function referenceChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) + (i + 1 < b.length ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return 0xffff - sum;
}

Deno.test("fixtures cover every category the tests rely on", () => {
  for (
    const name of [
      "tcp_syn_options",
      "tcp_data_odd",
      "udp_dns",
      "udp_no_checksum",
      "icmp_echo_request",
      "icmp_frag_needed",
      "fragment_first",
      "nat_tcp_dnat_before",
      "nat_udp_dnat_before",
      "nat_tcp_edge_before",
      "nat_udp_edge_before",
      "bad_version",
      "bad_ihl",
      "bad_total_length_long",
      "bad_header_checksum",
      "truncated_header",
    ]
  ) assert.ok(fixtures[name], `missing fixture ${name}`);
  assert.ok(withFields("rewrite").length >= 6);
});

Deno.test("ipv4 accessors match scapy", () => {
  const list = withFields("ip");
  assert.ok(list.length > 20);
  for (const [name, f] of list) {
    for (const off of PLACEMENTS) {
      const b = placed(f.hex, off);
      const ip = f.ip;
      const msg = `${name}@${off}`;
      assert.equal(ipVersion(b, off), ip.version, msg);
      assert.equal(ipHeaderLength(b, off), ip.ihl, msg);
      assert.equal(ipTos(b, off), ip.tos, msg);
      assert.equal(ipTotalLength(b, off), ip.len, msg);
      assert.equal(ipId(b, off), ip.id, msg);
      assert.equal(ipFlags(b, off), ip.flags, msg);
      assert.equal(ipDontFragment(b, off), ip.df, msg);
      assert.equal(ipMoreFragments(b, off), ip.mf, msg);
      assert.equal(ipFragmentOffset(b, off), ip.fragOffset, msg);
      assert.equal(ipIsFragment(b, off), ip.isFragment, msg);
      assert.equal(ipTtl(b, off), ip.ttl, msg);
      assert.equal(ipProtocol(b, off), ip.proto, msg);
      assert.equal(ipHeaderChecksum(b, off), ip.chksum, msg);
      assert.equal(ipSrc(b, off), addr(ip.src), msg);
      assert.equal(ipDst(b, off), addr(ip.dst), msg);
      assert.equal(formatIpv4(ipSrc(b, off)), ip.src, msg);
      assert.equal(checksum(b, off, ip.ihl), 0, `${msg}: header checksum verifies`);
      assert.equal(computeIpHeaderChecksum(b, off), ip.chksum, msg);
      const copy = b.slice();
      setIpHeaderChecksum(copy, off, 0x5a5a);
      fillIpHeaderChecksum(copy, off);
      assert.deepEqual(copy, b, msg);
    }
  }
});

Deno.test("known values: 192.168.1.31 is 0xc0a8011f, fragment offsets in bytes", () => {
  const syn = fromHex(fixtures.tcp_syn_options.hex);
  assert.equal(ipDst(syn, 0), 0xc0a8011f);
  assert.equal(ipProtocol(syn, 0), PROTO_TCP);
  assert.equal(ipDontFragment(syn, 0), true);
  const last = fromHex(fixtures.fragment_last.hex);
  assert.equal(ipFragmentOffset(last, 0), 1480);
  assert.equal(ipIsFragment(last, 0), true);
  assert.equal(ipMoreFragments(last, 0), false);
  const first = fromHex(fixtures.fragment_first.hex);
  assert.equal(ipFragmentOffset(first, 0), 0);
  assert.equal(ipIsFragment(first, 0), true);
  assert.equal(ipIsFragment(syn, 0), false);
  assert.equal(ipHeaderLength(fromHex(fixtures.udp_ip_options.hex), 0), 24);
});

Deno.test("tcp accessors and option walker match scapy", () => {
  const list = withFields("tcp");
  assert.ok(list.length >= 10);
  for (const [name, f] of list) {
    for (const off of PLACEMENTS) {
      const b = placed(f.hex, off);
      const t = f.tcp;
      const l4 = off + ipHeaderLength(b, off);
      const msg = `${name}@${off}`;
      assert.equal(tcpSrcPort(b, l4), t.sport, msg);
      assert.equal(tcpDstPort(b, l4), t.dport, msg);
      assert.equal(tcpSeq(b, l4), t.seq, msg);
      assert.equal(tcpAck(b, l4), t.ack, msg);
      assert.equal(tcpDataOffset(b, l4), t.dataOffset, msg);
      assert.equal(tcpFlags(b, l4), t.flags, msg);
      assert.equal(tcpWindow(b, l4), t.window, msg);
      assert.equal(tcpChecksum(b, l4), t.chksum, msg);
      assert.equal(tcpMss(b, l4), t.mss, msg);
      for (const [kind, rel] of Object.entries(t.options)) {
        assert.equal(
          tcpFindOption(b, l4, Number(kind)),
          rel < 0 ? -1 : l4 + rel,
          `${msg} option ${kind}`,
        );
      }
    }
  }
  const syn = fromHex(fixtures.tcp_syn_options.hex);
  assert.equal(tcpFlags(syn, 20), TCP_SYN);
  assert.equal(tcpMss(syn, 20), 1460);
  assert.equal(tcpFindOption(syn, 20, 3), 20 + 37);
  assert.equal(tcpFindOption(syn, 20, 5), -1);
  assert.equal(tcpFlags(fromHex(fixtures.tcp_data_odd.hex), 20), TCP_PSH | TCP_ACK);
  assert.equal(tcpAck(fromHex(fixtures.tcp_data_odd.hex), 20), 0xffffff00);
});

Deno.test("tcpFindOption terminates and stays inside the header on random junk", () => {
  const rand = prng(0x7cb0);
  const b = new Uint8Array(100);
  for (let iter = 0; iter < 20000; iter++) {
    for (let i = 0; i < b.length; i++) b[i] = rand() & 0xff;
    // Bias towards the interesting small kinds and lengths.
    for (let i = 20; i < 60; i++) if (rand() & 1) b[i] = rand() % 6;
    const off = rand() % 40;
    const doff = tcpDataOffset(b, off);
    const kind = rand() % 9;
    const at = tcpFindOption(b, off, kind);
    if (at !== -1) {
      assert.ok(at >= off + 20 && at < off + doff, `offset ${at} outside header`);
      assert.equal(b[at], kind);
      if (kind > 1) assert.ok(b[at + 1] >= 2 && at + b[at + 1] <= off + doff);
    }
    const mss = tcpMss(b, off);
    assert.ok(mss >= 0 && mss <= 0xffff);
  }
});

Deno.test("udp accessors match scapy", () => {
  const list = withFields("udp");
  assert.ok(list.length >= 8);
  for (const [name, f] of list) {
    for (const off of PLACEMENTS) {
      const b = placed(f.hex, off);
      const l4 = off + ipHeaderLength(b, off);
      const msg = `${name}@${off}`;
      assert.equal(udpSrcPort(b, l4), f.udp.sport, msg);
      assert.equal(udpDstPort(b, l4), f.udp.dport, msg);
      assert.equal(udpLength(b, l4), f.udp.len, msg);
      assert.equal(udpChecksum(b, l4), f.udp.chksum, msg);
    }
  }
});

Deno.test("icmp accessors match scapy, including the quoted datagram", () => {
  const list = withFields("icmp");
  assert.equal(list.length, 2);
  for (const [name, f] of list) {
    for (const off of PLACEMENTS) {
      const b = placed(f.hex, off);
      const l4 = off + ipHeaderLength(b, off);
      const l4len = ipTotalLength(b, off) - ipHeaderLength(b, off);
      const c = f.icmp;
      const msg = `${name}@${off}`;
      assert.equal(icmpType(b, l4), c.type, msg);
      assert.equal(icmpCode(b, l4), c.code, msg);
      assert.equal(icmpChecksum(b, l4), c.chksum, msg);
      assert.equal(checksum(b, l4, l4len), 0, msg);
      if (c.id !== null) assert.equal(icmpId(b, l4), c.id, msg);
      if (c.seq !== null) assert.equal(icmpSeq(b, l4), c.seq, msg);
      assert.equal(icmpIsError(icmpType(b, l4)), c.embedded !== undefined, msg);
      if (c.nextHopMtu !== undefined) assert.equal(icmpNextHopMtu(b, l4), c.nextHopMtu, msg);
      if (c.embedded) {
        const inner = l4 + ICMP_EMBEDDED_OFFSET;
        assert.equal(icmpCode(b, l4), ICMP_FRAG_NEEDED);
        assert.equal(icmpType(b, l4), ICMP_DEST_UNREACH);
        assert.equal(ipSrc(b, inner), addr(c.embedded.ip.src), msg);
        assert.equal(ipDst(b, inner), addr(c.embedded.ip.dst), msg);
        assert.equal(ipProtocol(b, inner), c.embedded.ip.proto, msg);
        assert.equal(ipTotalLength(b, inner), c.embedded.ip.len, msg);
        assert.equal(ipHeaderChecksum(b, inner), c.embedded.ip.chksum, msg);
        const innerL4 = inner + ipHeaderLength(b, inner);
        assert.equal(tcpSrcPort(b, innerL4), c.embedded.tcp.sport, msg);
        assert.equal(tcpDstPort(b, innerL4), c.embedded.tcp.dport, msg);
        assert.equal(tcpSeq(b, innerL4), c.embedded.tcp.seq, msg);
      }
    }
  }
});

Deno.test("icmpIsError classifies every listed type", () => {
  for (const t of [ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED]) {
    assert.equal(icmpIsError(t), true, String(t));
  }
  assert.equal(icmpIsError(ICMP_PARAM_PROBLEM), true);
  for (const t of [ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, 13, 14, 255]) {
    assert.equal(icmpIsError(t), false, String(t));
  }
});

Deno.test("l4 checksums verify to 0 and recompute to scapy's value", () => {
  const list = withFields("l4ChecksumOk");
  assert.ok(list.length >= 15);
  let bad = 0;
  for (const [name, f] of list) {
    for (const off of PLACEMENTS) {
      const b = placed(f.hex, off);
      const ihl = ipHeaderLength(b, off);
      const l4 = off + ihl;
      const l4len = ipTotalLength(b, off) - ihl;
      const proto = ipProtocol(b, off);
      const msg = `${name}@${off}`;
      assert.equal(ipv4L4ChecksumOk(b, off, l4, l4len, proto), f.l4ChecksumOk, msg);
      if (!f.l4ChecksumOk) {
        bad++;
        continue;
      }
      const field = proto === PROTO_TCP ? TCP_CHECKSUM_OFFSET : UDP_CHECKSUM_OFFSET;
      const stored = (b[l4 + field] << 8) | b[l4 + field + 1];
      if (stored === 0) continue; // UDP "no checksum"
      assert.equal(l4Checksum(b, off, l4, l4len, proto), 0, msg);
      b[l4 + field] = 0;
      b[l4 + field + 1] = 0;
      const fresh = l4Checksum(b, off, l4, l4len, proto);
      assert.equal(proto === PROTO_UDP ? fresh || 0xffff : fresh, stored, msg);
      // The pseudo header plus sum16 path gives the same answer as l4Checksum.
      const pseudo = pseudoHeaderSum(ipSrc(b, off), ipDst(b, off), proto, l4len);
      assert.equal(checksum(b, l4, l4len, pseudo), fresh, msg);
    }
  }
  assert.ok(bad >= 2 * PLACEMENTS.length);
});

Deno.test("parse result codes match each fixture's expectation", () => {
  const list = withFields("parse");
  assert.equal(list.length, Object.keys(fixtures).length);
  for (const [name, f] of list) {
    for (const off of PLACEMENTS) {
      const pkt = fromHex(f.hex);
      const b = placed(f.hex, off);
      const msg = `${name}@${off}`;
      const code = parseIpv4(b, off, pkt.length);
      assert.equal(IPV4_PARSE_REASONS[code], f.parse.ipv4, msg);
      if (code !== Ipv4Parse.OK) continue;
      const ihl = ipHeaderLength(b, off);
      const l4 = off + ihl;
      const l4len = ipTotalLength(b, off) - ihl;
      if (f.parse.tcp) assert.equal(TCP_PARSE_REASONS[parseTcp(b, l4, l4len)], f.parse.tcp, msg);
      if (f.parse.udp) assert.equal(UDP_PARSE_REASONS[parseUdp(b, l4, l4len)], f.parse.udp, msg);
      if (f.parse.icmp) {
        assert.equal(ICMP_PARSE_REASONS[parseIcmp(b, l4, l4len)], f.parse.icmp, msg);
      }
    }
  }
});

Deno.test("parse codes and reason labels line up", () => {
  assert.deepEqual(IPV4_PARSE_REASONS, [
    "ok",
    "too_short",
    "bad_version",
    "bad_ihl",
    "bad_total_length",
    "bad_header_checksum",
  ]);
  assert.equal(IPV4_PARSE_REASONS[Ipv4Parse.BAD_HEADER_CHECKSUM], "bad_header_checksum");
  assert.equal(TCP_PARSE_REASONS[TcpParse.BAD_DATA_OFFSET], "bad_data_offset");
  assert.equal(UDP_PARSE_REASONS[UdpParse.BAD_LENGTH], "bad_length");
  assert.equal(ICMP_PARSE_REASONS[IcmpParse.BAD_CHECKSUM], "bad_checksum");
});

Deno.test("parseIpv4 honours len and never trusts it beyond the buffer", () => {
  const pkt = fromHex(fixtures.tcp_syn_options.hex);
  const big = new Uint8Array(pkt.length + 100);
  big.set(pkt);
  assert.equal(parseIpv4(big, 0, big.length), Ipv4Parse.OK); // trailing padding is fine
  assert.equal(parseIpv4(big, 0, pkt.length), Ipv4Parse.OK);
  assert.equal(parseIpv4(big, 0, pkt.length - 1), Ipv4Parse.BAD_TOTAL_LENGTH);
  assert.equal(parseIpv4(big, 0, 19), Ipv4Parse.TOO_SHORT);
  // A caller claiming more bytes than exist must not make a short buffer look complete.
  const lie = fromHex(fixtures.bad_total_length_long.hex);
  assert.equal(parseIpv4(lie, 0, 1000), Ipv4Parse.BAD_TOTAL_LENGTH);
  assert.equal(parseIpv4(pkt.subarray(0, 30), 0, pkt.length), Ipv4Parse.BAD_TOTAL_LENGTH);
  assert.equal(parseIpv4(pkt.subarray(0, 10), 0, pkt.length), Ipv4Parse.TOO_SHORT);
  // IHL larger than the bytes present.
  const opts = fromHex(fixtures.udp_ip_options.hex);
  assert.equal(parseIpv4(opts, 0, 22), Ipv4Parse.BAD_TOTAL_LENGTH);
  // Any single-bit flip in the header is caught.
  for (let bit = 0; bit < 160; bit++) {
    const copy = pkt.slice();
    copy[bit >> 3] ^= 0x80 >> (bit & 7);
    assert.notEqual(parseIpv4(copy, 0, copy.length), Ipv4Parse.OK, `bit ${bit}`);
  }
});

Deno.test("parseTcp/parseUdp/parseIcmp clamp l4len to the buffer", () => {
  const syn = fromHex(fixtures.tcp_syn_options.hex);
  assert.equal(parseTcp(syn, 20, syn.length - 20), TcpParse.OK);
  assert.equal(parseTcp(syn, 20, 39), TcpParse.BAD_DATA_OFFSET); // options need 40
  assert.equal(parseTcp(syn, 20, 19), TcpParse.TOO_SHORT);
  assert.equal(parseTcp(syn.subarray(0, 50), 20, 40), TcpParse.BAD_DATA_OFFSET);
  const udp = fromHex(fixtures.udp_dns.hex);
  assert.equal(parseUdp(udp, 20, udp.length - 20), UdpParse.OK);
  assert.equal(parseUdp(udp, 20, udp.length - 21), UdpParse.BAD_LENGTH);
  assert.equal(parseUdp(udp.subarray(0, 26), 20, 100), UdpParse.TOO_SHORT);
  const echo = fromHex(fixtures.icmp_echo_request.hex);
  assert.equal(parseIcmp(echo, 20, echo.length - 20), IcmpParse.OK);
  assert.equal(parseIcmp(echo, 20, echo.length - 21), IcmpParse.BAD_CHECKSUM);
  assert.equal(parseIcmp(echo.subarray(0, 27), 20, 100), IcmpParse.TOO_SHORT);
});

/** NAT rewrite the way the forwarder does it: incremental IP and L4 checksum updates. */
function rewrite(b: Uint8Array, off: number, from: Endpoints, to: Endpoints): void {
  const l4 = off + ipHeaderLength(b, off);
  const tcp = ipProtocol(b, off) === PROTO_TCP;
  const adj16 = tcp ? adjust16 : adjustUdpChecksum16;
  const adj32 = tcp ? adjust32 : adjustUdpChecksum32;
  let ipCheck = ipHeaderChecksum(b, off);
  let l4Check = tcp ? tcpChecksum(b, l4) : udpChecksum(b, l4);
  assert.equal(ipSrc(b, off), addr(from.src));
  assert.equal(ipDst(b, off), addr(from.dst));
  if (from.src !== to.src) {
    ipCheck = adjust32(ipCheck, addr(from.src), addr(to.src));
    l4Check = adj32(l4Check, addr(from.src), addr(to.src));
    setIpSrc(b, off, addr(to.src));
  }
  if (from.dst !== to.dst) {
    ipCheck = adjust32(ipCheck, addr(from.dst), addr(to.dst));
    l4Check = adj32(l4Check, addr(from.dst), addr(to.dst));
    setIpDst(b, off, addr(to.dst));
  }
  if (from.sport !== to.sport) {
    l4Check = adj16(l4Check, from.sport, to.sport);
    (tcp ? setTcpSrcPort : setUdpSrcPort)(b, l4, to.sport);
  }
  if (from.dport !== to.dport) {
    l4Check = adj16(l4Check, from.dport, to.dport);
    (tcp ? setTcpDstPort : setUdpDstPort)(b, l4, to.dport);
  }
  setIpHeaderChecksum(b, off, ipCheck);
  (tcp ? setTcpChecksum : setUdpChecksum)(b, l4, l4Check);
}

Deno.test("incremental NAT rewrite reproduces scapy's rewritten bytes exactly", () => {
  const pairs = withFields("rewrite");
  assert.ok(pairs.length >= 8);
  for (const [name, f] of pairs) {
    const after = fixtures[f.rewrite.after];
    for (const off of PLACEMENTS) {
      const fwd = placed(f.hex, off);
      rewrite(fwd, off, f.rewrite.from, f.rewrite.to);
      assert.deepEqual(fwd, placed(after.hex, off), `${name}@${off} forward`);
      const back = placed(after.hex, off);
      rewrite(back, off, f.rewrite.to, f.rewrite.from);
      assert.deepEqual(back, placed(f.hex, off), `${name}@${off} reverse`);
    }
  }
});

Deno.test("NAT edge fixtures really hit the ones'-complement zero cases", () => {
  const tcpAfter = fromHex(fixtures.nat_tcp_edge_after.hex);
  assert.equal(ipHeaderChecksum(tcpAfter, 0), 0x0000);
  assert.equal(tcpChecksum(tcpAfter, 20), 0x0000);
  // RFC 1624 eqn. 2 (HC' = HC - ~m - m') gets this one wrong: it yields the other zero, 0xffff.
  const before = fromHex(fixtures.nat_tcp_edge_before.hex);
  const eqn2 = (hc: number, m: number, m2: number) => fold16(hc + (m & 0xffff) + (~m2 & 0xffff));
  const from = addr(fixtures.nat_tcp_edge_before.rewrite!.from.dst);
  const to = addr(fixtures.nat_tcp_edge_before.rewrite!.to.dst);
  const wrongIp = eqn2(
    eqn2(ipHeaderChecksum(before, 0), from >>> 16, to >>> 16),
    from & 0xffff,
    to & 0xffff,
  );
  assert.equal(wrongIp, 0xffff);
  assert.equal(adjust32(ipHeaderChecksum(before, 0), from, to), 0x0000);

  const udpAfter = fromHex(fixtures.nat_udp_edge_after.hex);
  assert.equal(udpChecksum(udpAfter, 20), 0xffff);
  // The plain update yields 0, which in UDP would mean "no checksum"; the UDP variant maps it.
  const udpBefore = fromHex(fixtures.nat_udp_edge_before.hex);
  const r = fixtures.nat_udp_edge_before.rewrite!;
  let plain = adjust32(udpChecksum(udpBefore, 20), addr(r.from.dst), addr(r.to.dst));
  plain = adjust16(plain, r.from.dport, r.to.dport);
  assert.equal(plain, 0);
  let udpc = adjustUdpChecksum32(udpChecksum(udpBefore, 20), addr(r.from.dst), addr(r.to.dst));
  udpc = adjustUdpChecksum16(udpc, r.from.dport, r.to.dport);
  assert.equal(udpc, 0xffff);
  assert.equal(adjustUdpChecksum16(0, 53, 8053), 0);
  assert.equal(adjustUdpChecksum32(0, 1, 2), 0);
});

Deno.test("NEEDS_CSUM: adjustPartial32 keeps the un-inverted pseudo sum right for scapy pairs", () => {
  let checked = 0;
  for (const [name, f] of withFields("rewrite")) {
    const after = fromHex(fixtures[f.rewrite.after].hex);
    const b = fromHex(f.hex);
    const l4 = ipHeaderLength(b, 0);
    const l4len = ipTotalLength(b, 0) - l4;
    const proto = ipProtocol(b, 0);
    const field = l4 + (proto === PROTO_TCP ? TCP_CHECKSUM_OFFSET : UDP_CHECKSUM_OFFSET);
    const expected = (after[field] << 8) | after[field + 1];
    if (expected === 0) continue; // UDP without checksum has no partial form
    // The kernel's partial form: folded pseudo-header sum, not inverted, in the checksum field.
    let partial = fold16(pseudoHeaderSum(ipSrc(b, 0), ipDst(b, 0), proto, l4len));
    const { from, to } = f.rewrite;
    partial = adjustPartial32(partial, addr(from.src), addr(to.src));
    partial = adjustPartial32(partial, addr(from.dst), addr(to.dst));
    assert.equal(
      partial,
      fold16(pseudoHeaderSum(addr(to.src), addr(to.dst), proto, l4len)),
      `${name}: partial`,
    );
    // Ports are not in the pseudo header; completing the checksum as a device would must give
    // scapy's full checksum of the rewritten packet.
    b[field] = partial >>> 8;
    b[field + 1] = partial & 0xff;
    (proto === PROTO_TCP ? setTcpSrcPort : setUdpSrcPort)(b, l4, to.sport);
    (proto === PROTO_TCP ? setTcpDstPort : setUdpDstPort)(b, l4, to.dport);
    const completed = checksum(b, l4, l4len);
    assert.equal(proto === PROTO_UDP ? completed || 0xffff : completed, expected, name);
    checked++;
  }
  assert.ok(checked >= 6);
});

Deno.test("adjust16/adjust32 equal full recomputation on random data, zero edges included", () => {
  const rand = prng(0x1624);
  const b = new Uint8Array(64);
  let zeroResults = 0;
  let fromZero = 0;
  for (let iter = 0; iter < 50000; iter++) {
    // Even length; word 0 holds the checksum and word 1 a fixed non-zero value, as the version
    // byte of an IPv4 header or the protocol in a pseudo header guarantee in real packets (only
    // all-zero data has a checksum, 0xffff, that the incremental form writes as 0x0000).
    const n = 8 + (rand() % 28) * 2;
    b[2] = 0x45;
    b[3] = 0x00;
    for (let i = 4; i < n; i++) b[i] = rand() & 0xff;
    b[0] = 0;
    b[1] = 0;
    const check = checksum(b, 0, n);
    assert.equal(check, referenceChecksum(b.subarray(0, n)));
    b[0] = check >>> 8;
    b[1] = check & 0xff;

    const k = 4 + 2 * (rand() % ((n - 4) / 2));
    const oldWord = (b[k] << 8) | b[k + 1];
    let newWord: number;
    const mode = iter % 4;
    if (mode === 0) {
      // Choose m' so the full checksum becomes 0x0000 (sum of the rest folds to 0xffff).
      b[0] = 0;
      b[1] = 0;
      b[k] = 0;
      b[k + 1] = 0;
      const rest = fold16(sum16(b, 0, n));
      newWord = rest === 0xffff ? 0 : 0xffff - rest;
      b[0] = check >>> 8;
      b[1] = check & 0xff;
    } else if (mode === 1) newWord = rand() & 1 ? 0xffff : 0;
    else newWord = rand() & 0xffff;
    const adjusted = adjust16(check, oldWord, newWord);
    b[k] = newWord >>> 8;
    b[k + 1] = newWord & 0xff;
    b[0] = 0;
    b[1] = 0;
    const full = checksum(b, 0, n);
    assert.equal(adjusted, full, `iter ${iter}: word ${k} ${oldWord}->${newWord}`);
    if (full === 0) zeroResults++;

    // 32-bit change on an aligned pair of words, as for an address; starting from the 0x0000
    // checksums produced above covers ~HC = 0xffff.
    if (full === 0) fromZero++;
    b[0] = full >>> 8;
    b[1] = full & 0xff;
    const j = 4 + 2 * (rand() % ((n - 6) / 2));
    const oldValue = ((b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3]) >>> 0;
    const newValue = rand();
    const adjusted32 = adjust32(full, oldValue, newValue);
    b[j] = newValue >>> 24;
    b[j + 1] = newValue >>> 16;
    b[j + 2] = newValue >>> 8;
    b[j + 3] = newValue;
    b[0] = 0;
    b[1] = 0;
    assert.equal(adjusted32, checksum(b, 0, n), `iter ${iter}: 32-bit at ${j}`);
  }
  assert.ok(zeroResults > 1000, `only ${zeroResults} zero results`);
  assert.ok(fromZero > 100, `only ${fromZero} zero starting checksums`);
});

Deno.test("adjustPartial16/32 equal recomputing the un-inverted pseudo sum", () => {
  const rand = prng(0xbeef);
  for (let iter = 0; iter < 20000; iter++) {
    const src = rand();
    const dst = rand();
    const proto = iter & 1 ? PROTO_TCP : PROTO_UDP;
    const len = rand() & 0xffff;
    const partial = fold16(pseudoHeaderSum(src, dst, proto, len));
    assert.ok(partial >= 0 && partial <= 0xffff);
    const newDst = iter % 5 === 0 ? dst : rand();
    assert.equal(
      adjustPartial32(partial, dst, newDst),
      fold16(pseudoHeaderSum(src, newDst, proto, len)),
      `iter ${iter}`,
    );
    const newSrc = rand();
    assert.equal(
      adjustPartial32(partial, src, newSrc),
      fold16(pseudoHeaderSum(newSrc, dst, proto, len)),
      `iter ${iter}`,
    );
    const newLen = rand() & 0xffff;
    assert.equal(
      adjustPartial16(partial, len, newLen),
      fold16(pseudoHeaderSum(src, dst, proto, newLen)),
      `iter ${iter}`,
    );
  }
});

Deno.test("sum16 on 64 KiB stays exact, chains through initial, pads odd bytes", () => {
  const rand = prng(42);
  const big = new Uint8Array(65535).fill(0xff);
  const s = sum16(big, 0, big.length);
  assert.ok(s < 2 ** 31);
  assert.equal(finish(s), referenceChecksum(big));
  for (let i = 0; i < big.length; i++) big[i] = rand() & 0xff;
  assert.equal(checksum(big, 0, big.length), referenceChecksum(big));
  assert.equal(checksum(big, 0, 65534), referenceChecksum(big.subarray(0, 65534)));
  // Split at an even boundary and chain the first half in as `initial`.
  const first = sum16(big, 0, 30000);
  assert.equal(checksum(big, 30000, 35535, first), referenceChecksum(big));
  // Huge initial values from pseudo headers are accepted.
  assert.equal(
    finish(sum16(big, 0, 4, pseudoHeaderSum(0xffffffff, 0xffffffff, 255, 0xffff))),
    finish(pseudoHeaderSum(0xffffffff, 0xffffffff, 255, 0xffff) + sum16(big, 0, 4)),
  );
  assert.equal(checksum(Uint8Array.of(0x01), 0, 1), 0xfeff);
  assert.equal(checksum(Uint8Array.of(0x12, 0x34, 0x56), 0, 3), ~(0x1234 + 0x5600) & 0xffff);
  assert.equal(checksum(Uint8Array.of(9, 9, 0x12, 0x34), 2, 2), ~0x1234 & 0xffff);
  assert.equal(fold16(0x1fffe), 0xffff);
  assert.equal(fold16(0x1ffff), 1);
  assert.equal(fold16(0xffffffff), 0xffff);
  assert.equal(fold16(0), 0);
  assert.equal(finish(0x1fffe), 0);
});

Deno.test("accessors, setters and parsers do not throw on short or empty buffers", () => {
  const buffers = [new Uint8Array(0), new Uint8Array(3).fill(0x45), new Uint8Array(19).fill(0xff)];
  const numeric: ((b: Uint8Array, off: number) => number)[] = [
    ipVersion,
    ipHeaderLength,
    ipTos,
    ipTotalLength,
    ipId,
    ipFlags,
    ipFragmentOffset,
    ipTtl,
    ipProtocol,
    ipHeaderChecksum,
    ipSrc,
    ipDst,
    computeIpHeaderChecksum,
    tcpSrcPort,
    tcpDstPort,
    tcpSeq,
    tcpAck,
    tcpDataOffset,
    tcpFlags,
    tcpWindow,
    tcpChecksum,
    tcpMss,
    udpSrcPort,
    udpDstPort,
    udpLength,
    udpChecksum,
    icmpType,
    icmpCode,
    icmpChecksum,
    icmpId,
    icmpSeq,
    icmpNextHopMtu,
  ];
  const boolean = [ipDontFragment, ipMoreFragments, ipIsFragment];
  for (const b of buffers) {
    for (const off of [0, 1, 2, 50]) {
      for (const fn of numeric) {
        const v = fn(b, off);
        assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff, `${fn.name} -> ${v}`);
      }
      for (const fn of boolean) assert.equal(typeof fn(b, off), "boolean", fn.name);
      assert.equal(tcpFindOption(b, off, 2), -1);
      const room = b.length - off;
      assert.equal(parseIpv4(b, off, 20), Ipv4Parse.TOO_SHORT);
      assert.equal(parseTcp(b, off, 20), TcpParse.TOO_SHORT);
      assert.equal(parseUdp(b, off, 8) === UdpParse.TOO_SHORT, room < 8, `udp ${room}`);
      assert.equal(parseIcmp(b, off, 8) === IcmpParse.TOO_SHORT, room < 8, `icmp ${room}`);
      const copy = b.slice();
      setIpSrc(copy, off, 0x01020304);
      setIpDst(copy, off, 0x01020304);
      setIpTtl(copy, off, 1);
      setIpTotalLength(copy, off, 100);
      fillIpHeaderChecksum(copy, off);
      setTcpSeq(copy, off, 1);
      setTcpAck(copy, off, 1);
      setTcpChecksum(copy, off, 1);
      setUdpChecksum(copy, off, 1);
      setIcmpType(copy, off, 1);
      setIcmpChecksum(copy, off, 1);
      assert.equal(copy.length, b.length);
      const l4 = l4Checksum(b, off, off + 20, 20, PROTO_TCP);
      assert.ok(l4 >= 0 && l4 <= 0xffff);
      assert.equal(typeof ipv4L4ChecksumOk(b, off, off + 20, 20, PROTO_UDP), "boolean");
    }
  }
  const empty = new Uint8Array(0);
  assert.equal(ipSrc(empty, 0), 0);
  assert.equal(tcpSeq(empty, 0), 0);
  assert.equal(parseIpv4(empty, 0, 0), Ipv4Parse.TOO_SHORT);
  assert.equal(checksum(empty, 0, 10), 0xffff);
  assert.equal(sum16(empty, 0, -3, 7), 7);
});

Deno.test("setters round-trip through the accessors", () => {
  const rand = prng(7);
  const b = new Uint8Array(60);
  for (let i = 0; i < 1000; i++) {
    const a = rand();
    const w = rand() & 0xffff;
    setIpSrc(b, 3, a);
    assert.equal(ipSrc(b, 3), a);
    setIpDst(b, 3, a ^ 0x80000001);
    assert.equal(ipDst(b, 3), (a ^ 0x80000001) >>> 0);
    setIpTtl(b, 3, w & 0xff);
    assert.equal(ipTtl(b, 3), w & 0xff);
    setIpTotalLength(b, 3, w);
    assert.equal(ipTotalLength(b, 3), w);
    setTcpSeq(b, 5, a);
    assert.equal(tcpSeq(b, 5), a);
    setTcpAck(b, 5, ~a >>> 0);
    assert.equal(tcpAck(b, 5), ~a >>> 0);
    setTcpSrcPort(b, 5, w);
    assert.equal(tcpSrcPort(b, 5), w);
    setTcpDstPort(b, 5, w ^ 0xffff);
    assert.equal(tcpDstPort(b, 5), w ^ 0xffff);
    setUdpSrcPort(b, 1, w);
    assert.equal(udpSrcPort(b, 1), w);
    setUdpDstPort(b, 1, w ^ 1);
    assert.equal(udpDstPort(b, 1), w ^ 1);
    setUdpChecksum(b, 1, w);
    assert.equal(udpChecksum(b, 1), w);
    setIcmpType(b, 2, w & 0xff);
    assert.equal(icmpType(b, 2), w & 0xff);
    setIcmpChecksum(b, 2, w);
    assert.equal(icmpChecksum(b, 2), w);
  }
  // A TTL decrement updated incrementally matches a recomputed header checksum.
  const pkt = fromHex(fixtures.udp_dns.hex);
  const oldWord = (ipTtl(pkt, 0) << 8) | ipProtocol(pkt, 0);
  setIpTtl(pkt, 0, ipTtl(pkt, 0) - 1);
  const newWord = (ipTtl(pkt, 0) << 8) | ipProtocol(pkt, 0);
  setIpHeaderChecksum(pkt, 0, adjust16(ipHeaderChecksum(pkt, 0), oldWord, newWord));
  assert.equal(ipHeaderChecksum(pkt, 0), computeIpHeaderChecksum(pkt, 0));
  assert.equal(parseIpv4(pkt, 0, pkt.length), Ipv4Parse.OK);
});

Deno.test("parseIpv4Address and formatIpv4", () => {
  assert.equal(parseIpv4Address("192.168.1.31"), 0xc0a8011f);
  assert.equal(parseIpv4Address("0.0.0.0"), 0);
  assert.equal(parseIpv4Address("255.255.255.255"), 0xffffffff);
  assert.equal(parseIpv4Address("10.0.100.1"), 0x0a006401);
  assert.equal(formatIpv4(0xc0a8011f), "192.168.1.31");
  assert.equal(formatIpv4(0xffffffff), "255.255.255.255");
  assert.equal(formatIpv4(0), "0.0.0.0");
  const rand = prng(99);
  for (let i = 0; i < 5000; i++) {
    const a = rand();
    const s = formatIpv4(a);
    assert.equal(parseIpv4Address(s), a, s);
    assert.equal(s, [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join("."));
  }
  for (
    const bad of [
      "1.2.3",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.4 ",
      "",
      " 1.2.3.4",
      "1.2.3.4.5",
      "1.2.3.256",
      "1.2.3.04",
      "1.2.3.00",
      "-1.2.3.4",
      "+1.2.3.4",
      "1..2.3",
      "a.b.c.d",
      "0x1.2.3.4",
      "1.2.3.4\n",
      "1e2.1.1.1",
      "1000.1.1.1",
      "1.2.3.4/32",
    ]
  ) assert.equal(parseIpv4Address(bad), null, JSON.stringify(bad));
});

Deno.test("protocol constants", () => {
  assert.equal(IPV4_MIN_HEADER, 20);
  assert.deepEqual([PROTO_ICMP, PROTO_TCP, PROTO_UDP], [1, 6, 17]);
  assert.equal(ipProtocol(fromHex(fixtures.icmp_echo_request.hex), 0), PROTO_ICMP);
  assert.equal(ipProtocol(fromHex(fixtures.udp_dns.hex), 0), PROTO_UDP);
});
