/**
 * wrk as the lab's HTTP load generator: the new-connections-per-second test runs it with
 * `Connection: close`, so that every request opens (and the server closes) a TCP connection.
 */
import type { Lab } from "./netns.ts";

/** The wrk binary Debian installs. */
export const WRK_BIN = "/usr/bin/wrk";

/** What a wrk run reported. */
export interface WrkResult {
  requests: number;
  requestsPerSecond: number;
  /** Socket errors (connect, read, write, timeout) and non-2xx/3xx answers, summed. */
  errors: number;
}

/** Options of one wrk run. */
export interface WrkOptions {
  url: string;
  seconds: number;
  /** Connections kept busy at once (`-c`); one thread drives them all. */
  connections: number;
  /** Ask for a new connection per request. */
  close: boolean;
}

/** Runs wrk in `role`'s namespace; throws when it fails or prints no rate. */
export async function runWrk(lab: Lab, role: string, opts: WrkOptions): Promise<WrkResult> {
  if (!(opts.seconds >= 1)) throw new Error(`wrk needs at least 1 second, not ${opts.seconds}`);
  const args = [WRK_BIN, "-t1", `-c${opts.connections}`, `-d${opts.seconds}s`, "--timeout", "2s"];
  if (opts.close) args.push("-H", "Connection: close");
  args.push(opts.url);
  const res = await lab.exec(role, args, { allowFail: true });
  const parsed = parseWrkOutput(res.stdout);
  if (res.code !== 0 || parsed === null) {
    throw new Error(`wrk ${opts.url} (exit ${res.code}): ${res.stdout}${res.stderr}`);
  }
  return parsed;
}

/** Reads wrk's summary; null when it has no "Requests/sec" line. */
export function parseWrkOutput(text: string): WrkResult | null {
  const rate = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const total = /^\s*(\d+) requests in /m.exec(text);
  if (!rate || !total) return null;
  let errors = 0;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (socket) errors += socket.slice(1).reduce((n, s) => n + Number(s), 0);
  const status = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (status) errors += Number(status[1]);
  return { requests: Number(total[1]), requestsPerSecond: Number(rate[1]), errors };
}
