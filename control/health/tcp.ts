/** TCP checker (keepalived's TCP_CHECK): healthy when a connection is accepted. */
import { raceAbort } from "./abort.ts";
import { type CheckResult, type CheckTarget, elapsedMs, errorText } from "./types.ts";

/** Connects to the target and closes at once; fails on refusal, error or abort. */
export async function tcpCheck(target: CheckTarget, signal: AbortSignal): Promise<CheckResult> {
  const start = performance.now();
  try {
    const conn = await raceAbort(
      Deno.connect({ hostname: target.address, port: target.port, transport: "tcp" }),
      signal,
      (late) => late.close(),
    );
    conn.close();
    return { ok: true, latencyMs: elapsedMs(start), reason: "connected" };
  } catch (e) {
    return { ok: false, latencyMs: elapsedMs(start), reason: `connect: ${errorText(e)}` };
  }
}
