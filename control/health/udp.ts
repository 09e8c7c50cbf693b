/**
 * UDP checker: sends the payload; with `expect` set, healthy only when a reply containing it
 * arrives in time. Without `expect` a datagram that could be sent counts as healthy: node:dgram
 * in Deno does not surface ICMP port unreachable, so a closed port is only seen through a
 * missing reply — configure `expect` for a real check.
 */
import dgram from "node:dgram";
import {
  type CheckResult,
  type CheckTarget,
  elapsedMs,
  errorText,
  type UdpCheckSettings,
} from "./types.ts";

/** Sends one datagram to the target and, when a reply is expected, waits for it. */
export function udpCheck(
  target: CheckTarget,
  settings: UdpCheckSettings,
  signal: AbortSignal,
): Promise<CheckResult> {
  const start = performance.now();
  return new Promise<CheckResult>((resolve) => {
    const socket = dgram.createSocket("udp4");
    let done = false;
    const finish = (ok: boolean, reason: string) => {
      if (done) return;
      done = true;
      signal.removeEventListener("abort", onAbort);
      try {
        socket.close();
      } catch {
        // Already closed by an error.
      }
      resolve({ ok, latencyMs: elapsedMs(start), reason });
    };
    const onAbort = () =>
      finish(false, settings.expect === null ? "send timed out" : "no reply (timed out)");
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("error", (e) => finish(false, `udp: ${errorText(e)}`));
    socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      if (rinfo.address !== target.address || rinfo.port !== target.port) return;
      if (settings.expect === null) return;
      const text = new TextDecoder().decode(msg);
      if (text.includes(settings.expect)) finish(true, "expected reply");
      else finish(false, `reply lacks ${JSON.stringify(settings.expect)}`);
    });
    socket.send(new TextEncoder().encode(settings.payload), target.port, target.address, (e) => {
      if (e) finish(false, `send: ${errorText(e)}`);
      else if (settings.expect === null) finish(true, "sent");
    });
  });
}
