/**
 * SYN cookies on their own: SipHash-2-4 against its published vectors, cookies made and checked
 * for their tuple only, the key rotation's acceptance window, the MSS table and the options that
 * ride in the cookie timestamp.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkedPeriod,
  COOKIE_INVALID,
  COOKIE_MSS_TABLE,
  cookieMssIndex,
  cookieTimestamp,
  type KeySource,
  SynCookies,
  timestampEcn,
  timestampSack,
  timestampWscale,
  TS_NO_WSCALE,
} from "../../dataplane/synproxy/cookie.ts";
import { sipHash24 } from "../../dataplane/synproxy/siphash.ts";
import { prng } from "../fixtures/prng.ts";

/** Deterministic keys, so that a failure reproduces. */
function seededKeys(seed: number): KeySource {
  const next = prng(seed);
  return (key) => {
    for (let i = 0; i < key.length; i++) key[i] = next();
  };
}

const CLIENT = 0xc0a80123;
const VIP = 0xc0a8011f;
const PERIOD_MS = 60_000;

Deno.test("SipHash-2-4 gives the reference outputs for key 00..0f over 00..(n-1)", () => {
  const key = new Uint32Array(Uint8Array.from({ length: 16 }, (_, i) => i).buffer);
  // vectors_sip64 of the reference implementation (0, 8, 16) and OpenSSL's SIPHASH (24, 28).
  const expected: Record<number, bigint> = {
    0: 0x726fdb47dd0e0e31n,
    8: 0x93f5f5799a932462n,
    16: 0x3f2acc7f57c29bdbn,
    24: 0xb8ad50c6f649af94n,
    28: 0xde4daaaca71dc9a5n,
  };
  const out = new Uint32Array(2);
  for (const [n, want] of Object.entries(expected)) {
    const bytes = Uint8Array.from({ length: 32 }, (_, i) => i < Number(n) ? i : 0);
    const low = sipHash24(key, new Uint32Array(bytes.buffer), Number(n) / 4, out);
    const got = (BigInt(out[1]) << 32n) | BigInt(out[0]);
    assert.equal(got.toString(16), want.toString(16), `${n} bytes`);
    assert.equal(low, out[0]);
  }
});

Deno.test("a cookie checks for its own tuple and ISN only, and carries its MSS index", () => {
  const c = new SynCookies(60, 0, seededKeys(7));
  const isn = 0x12345678;
  for (let mssIndex = 0; mssIndex < COOKIE_MSS_TABLE.length; mssIndex++) {
    const cookie = c.make(CLIENT, VIP, 40000, 80, isn, mssIndex);
    assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, cookie), mssIndex);
    // Any other field, or another cookie, fails.
    assert.equal(c.check(CLIENT + 1, VIP, 40000, 80, isn, cookie), COOKIE_INVALID);
    assert.equal(c.check(CLIENT, VIP + 1, 40000, 80, isn, cookie), COOKIE_INVALID);
    assert.equal(c.check(CLIENT, VIP, 40001, 80, isn, cookie), COOKIE_INVALID);
    assert.equal(c.check(CLIENT, VIP, 40000, 81, isn, cookie), COOKIE_INVALID);
    assert.equal(c.check(CLIENT, VIP, 40000, 80, isn + 1, cookie), COOKIE_INVALID);
    // A client cannot pick another MSS by changing the low bits.
    const other = (cookie & ~7) | ((mssIndex + 1) & 7);
    assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, other >>> 0), COOKIE_INVALID);
  }
  // The same SYN (a retransmission) gets the same cookie; another ISN another one.
  assert.equal(c.make(CLIENT, VIP, 40000, 80, isn, 7), c.make(CLIENT, VIP, 40000, 80, isn, 7));
  assert.notEqual(
    c.make(CLIENT, VIP, 40000, 80, isn, 7),
    c.make(CLIENT, VIP, 40000, 80, isn + 1, 7),
  );
});

Deno.test("random cookies are rejected (about 2^-28 each)", () => {
  const c = new SynCookies(60, 0, seededKeys(11));
  const next = prng(99);
  let accepted = 0;
  for (let i = 0; i < 200_000; i++) {
    if (c.check(next(), VIP, next() & 0xffff, 80, next(), next()) !== COOKIE_INVALID) accepted++;
  }
  assert.equal(accepted, 0);
});

Deno.test("key rotation: a cookie is accepted in its slice and the next, not after", () => {
  const c = new SynCookies(60, 0, seededKeys(3));
  const isn = 0xdeadbeef;
  const cookie = c.make(CLIENT, VIP, 40000, 80, isn, 5);
  c.rotate(PERIOD_MS - 1);
  assert.equal(c.generation, 0);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, cookie), 5, "same slice");
  c.rotate(PERIOD_MS);
  assert.equal(c.generation, 1);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, cookie), 5, "previous slice");
  // A SYN retransmitted in the new slice gets a new cookie, and both are good now.
  const fresh = c.make(CLIENT, VIP, 40000, 80, isn, 5);
  assert.notEqual(fresh, cookie);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, fresh), 5);
  c.rotate(2 * PERIOD_MS);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, cookie), COOKIE_INVALID, "stale");
  assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, fresh), 5);
  c.rotate(3 * PERIOD_MS);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, isn, fresh), COOKIE_INVALID, "stale");
});

Deno.test("key rotation: a jump of several slices replaces both keys", () => {
  const c = new SynCookies(60, 0, seededKeys(5));
  const cookie = c.make(CLIENT, VIP, 40000, 80, 1, 2);
  // Two slices on, the generation parity is the same again but the key is not.
  c.rotate(2 * PERIOD_MS + 5);
  assert.equal(c.generation, 2);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, 1, cookie), COOKIE_INVALID);
  c.rotate(10 * PERIOD_MS);
  const later = c.make(CLIENT, VIP, 40000, 80, 1, 2);
  c.rotate(12 * PERIOD_MS);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, 1, later), COOKIE_INVALID);
  // Time that goes back changes nothing.
  const now = c.make(CLIENT, VIP, 40000, 80, 1, 2);
  c.rotate(PERIOD_MS);
  assert.equal(c.generation, 12);
  assert.equal(c.check(CLIENT, VIP, 40000, 80, 1, now), 2);
});

Deno.test("keys come from the key source, so two proxies' cookies differ", () => {
  const a = new SynCookies(60, 0, seededKeys(1));
  const b = new SynCookies(60, 0, seededKeys(2));
  const cookie = a.make(CLIENT, VIP, 40000, 80, 77, 3);
  assert.equal(b.check(CLIENT, VIP, 40000, 80, 77, cookie), COOKIE_INVALID);
  // The default source is the CSPRNG: two of them disagree too.
  const c = new SynCookies(60, 0);
  const d = new SynCookies(60, 0);
  assert.equal(d.check(CLIENT, VIP, 40000, 80, 77, c.make(CLIENT, VIP, 40000, 80, 77, 3)), -1);
});

Deno.test("a new rotation period invalidates outstanding cookies; bad periods are refused", () => {
  const c = new SynCookies(60, 0, seededKeys(9));
  const cookie = c.make(CLIENT, VIP, 1, 2, 3, 4);
  c.setPeriod(60, 1000);
  assert.equal(c.check(CLIENT, VIP, 1, 2, 3, cookie), 4, "same period: nothing changes");
  c.setPeriod(30, 1000);
  assert.equal(c.periodSeconds, 30);
  assert.equal(c.check(CLIENT, VIP, 1, 2, 3, cookie), COOKIE_INVALID);
  for (const bad of [0, -1, 1.5, 86401, NaN]) {
    assert.throws(() => checkedPeriod(bad), /key rotation must be 1\.\.86400 seconds/);
    assert.throws(() => new SynCookies(bad, 0));
  }
});

Deno.test("MSS index: the largest table value not above the client's MSS", () => {
  assert.deepEqual(COOKIE_MSS_TABLE, [536, 1200, 1300, 1360, 1400, 1440, 1452, 1460]);
  const cases: [number, number][] = [
    [0, 536],
    [535, 536],
    [536, 536],
    [1199, 536],
    [1200, 1200],
    [1399, 1360],
    [1452, 1452],
    [1459, 1452],
    [1460, 1460],
    [8960, 1460],
    [65535, 1460],
  ];
  for (const [mss, kept] of cases) {
    assert.equal(COOKIE_MSS_TABLE[cookieMssIndex(mss)], kept, `${mss}`);
  }
});

Deno.test("cookie timestamps carry window scale, SACK and ECN in their low 6 bits", () => {
  for (const ws of [0, 1, 7, 14, TS_NO_WSCALE]) {
    for (const sack of [false, true]) {
      for (const ecn of [false, true]) {
        for (const now of [0, 63, 64, 1_000_000, 4_000_000_000]) {
          const ts = cookieTimestamp(now, ws, sack, ecn);
          assert.equal(timestampWscale(ts), ws === TS_NO_WSCALE ? -1 : ws);
          assert.equal(timestampSack(ts), sack);
          assert.equal(timestampEcn(ts), ecn);
          // Never ahead of the clock, and at most 63 ms behind it (modulo 2^32).
          const behind = (Math.floor(now) - ts) >>> 0;
          assert.ok(behind < 64, `behind ${behind} at ${now}`);
        }
      }
    }
  }
  // Window scale bits 15 mean none; 15 is no valid shift.
  assert.equal(timestampWscale(0xf), -1);
});
