/**
 * Exec checker (keepalived's MISC_CHECK): runs a program without a shell; exit 0 is healthy.
 * With `dynamic`, exit 1 is a failure and 2..255 is healthy with weight exit-2, as
 * misc_dynamic does. A program still running at the timeout is killed (SIGKILL, since a
 * hung check may ignore SIGTERM) and the check fails.
 */
import {
  type CheckResult,
  type CheckTarget,
  elapsedMs,
  errorText,
  type ExecCheckSettings,
} from "./types.ts";

/** Runs the command with the target in its environment (TUNVS_REAL_ADDRESS/_PORT). */
export async function execCheck(
  target: CheckTarget,
  settings: ExecCheckSettings,
  signal: AbortSignal,
): Promise<CheckResult> {
  const start = performance.now();
  const [program, ...args] = settings.command;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { TUNVS_REAL_ADDRESS: target.address, TUNVS_REAL_PORT: String(target.port) },
    }).spawn();
  } catch (e) {
    return { ok: false, latencyMs: elapsedMs(start), reason: `exec: ${errorText(e)}` };
  }
  let killed = false;
  const kill = () => {
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited meanwhile.
    }
  };
  if (signal.aborted) kill();
  else signal.addEventListener("abort", kill, { once: true });
  const status = await child.status;
  signal.removeEventListener("abort", kill);
  const latencyMs = elapsedMs(start);
  if (killed) return { ok: false, latencyMs, reason: "timed out; killed" };
  if (status.signal !== null) {
    return { ok: false, latencyMs, reason: `killed by ${status.signal}` };
  }
  const code = status.code;
  if (code === 0) return { ok: true, latencyMs, reason: "exit 0" };
  if (settings.dynamic && code >= 2) {
    return { ok: true, latencyMs, reason: `exit ${code}`, weight: code - 2 };
  }
  return { ok: false, latencyMs, reason: `exit ${code}` };
}
