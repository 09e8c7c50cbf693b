/**
 * The latency probe: an open-loop HTTP client that starts requests at a fixed rate, each on a new
 * TCP connection (`Connection: close`), and reports the time from `connect()` to the end of the
 * answer. Open loop: a slow answer never delays the next request (no coordinated omission), and
 * the time is taken from the moment each request actually started, so the probe's own timer
 * lateness is not charged to the path. A warm-up at the same rate comes first and is not
 * recorded: the probe's first connections pay for its JIT and the path's first ones for ARP and
 * the forwarder's warm-up.
 *
 * Run inside the client's namespace:
 * `deno run -A bench/latency_client.ts HOST PORT RATE SECONDS` → one JSON line on stdout.
 *
 * @module
 */

import type { Lab } from "../lab/netns.ts";

/** What one probe run measured. */
export interface LatencyResult {
  /** Requests per second asked for. */
  rate: number;
  /** Requests started, answered with 200, and failed (error, timeout, other status). */
  started: number;
  completed: number;
  failed: number;
  /** Requests not started because too many were in flight: the path could not keep up. */
  skipped: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Requests in flight beyond which new ones are skipped (bounds the probe's memory and sockets). */
const MAX_IN_FLIGHT = 512;
/** A request not answered in this long counts as failed. */
const REQUEST_TIMEOUT_MS = 2_000;
/** The warm-up: this share of the run, at most this long. */
const WARM_UP_SHARE = 0.25;
const WARM_UP_MAX_S = 0.5;

/** The `q` quantile (0..1) of ascending `sorted` by nearest rank; 0 when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

/** One request on a new connection; resolves with its time in ms, or null when it failed. */
async function request(host: string, port: number, payload: Uint8Array): Promise<number | null> {
  const start = performance.now();
  let conn: Deno.TcpConn | undefined;
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // The deadline covers connect() too: an unanswered SYN would otherwise hang for a minute of
  // retransmissions, past the run's time bound.
  const deadline = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      conn?.close();
      resolve(null);
    }, REQUEST_TIMEOUT_MS);
  });
  const connecting = Deno.connect({ hostname: host, port });
  connecting.then((c) => timedOut && c.close(), () => {});
  try {
    const c = await Promise.race([connecting, deadline]);
    if (c === null) return null;
    conn = c;
    let written = 0;
    while (written < payload.length) written += await conn.write(payload.subarray(written));
    const buf = new Uint8Array(4096);
    let head = "";
    while (true) {
      const n = await Promise.race([conn.read(buf), deadline]);
      if (n === null) break;
      if (head.length < 12) head += new TextDecoder().decode(buf.subarray(0, n));
    }
    return !timedOut && head.startsWith("HTTP/1.1 200") ? performance.now() - start : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    if (!timedOut) {
      try {
        conn?.close();
      } catch {
        // Already closed.
      }
    }
  }
}

/** Runs the probe against `host:port` at `rate` requests a second for `seconds`. */
export async function probeLatency(
  host: string,
  port: number,
  rate: number,
  seconds: number,
): Promise<LatencyResult> {
  const payload = new TextEncoder().encode(
    `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
  );
  const warmUp = Math.round(rate * Math.min(WARM_UP_MAX_S, seconds * WARM_UP_SHARE));
  const total = warmUp + Math.max(1, Math.round(rate * seconds));
  const times: number[] = [];
  const pending = new Set<Promise<void>>();
  let started = 0, failed = 0, skipped = 0;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0.5) await new Promise((r) => setTimeout(r, wait));
    const recorded = i >= warmUp;
    if (pending.size >= MAX_IN_FLIGHT) {
      if (recorded) skipped++;
      continue;
    }
    if (recorded) started++;
    const p: Promise<void> = request(host, port, payload).then((ms) => {
      if (!recorded) {
        // Warm-up: neither counted nor timed.
      } else if (ms === null) failed++;
      else times.push(ms);
      pending.delete(p);
    });
    pending.add(p);
  }
  await Promise.all(pending);
  times.sort((a, b) => a - b);
  return {
    rate,
    started,
    completed: times.length,
    failed,
    skipped,
    p50Ms: quantile(times, 0.5),
    p90Ms: quantile(times, 0.9),
    p99Ms: quantile(times, 0.99),
    maxMs: times.at(-1) ?? 0,
  };
}

/** Runs the probe as its own process in `role`'s namespace; throws when it fails. */
export async function runLatencyClient(
  lab: Lab,
  role: string,
  target: { host: string; port: number; rate: number; seconds: number },
): Promise<LatencyResult> {
  const script = new URL(import.meta.url).pathname;
  const res = await lab.exec(role, [
    Deno.execPath(),
    "run",
    "--allow-net",
    script,
    target.host,
    String(target.port),
    String(target.rate),
    String(target.seconds),
  ], { allowFail: true, env: { NO_COLOR: "1" } });
  const line = res.stdout.trim().split("\n").at(-1) ?? "";
  if (res.code !== 0 || !line.startsWith("{")) {
    throw new Error(`latency client (exit ${res.code}): ${res.stdout}${res.stderr}`);
  }
  return JSON.parse(line) as LatencyResult;
}

if (import.meta.main) {
  const [host, port, rate, seconds] = Deno.args;
  const result = await probeLatency(host, Number(port), Number(rate), Number(seconds));
  console.log(JSON.stringify(result));
}
