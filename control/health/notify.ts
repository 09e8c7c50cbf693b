/**
 * keepalived's notify_up / notify_down for real servers: a program run when health checks
 * bring a real up or take it down.
 *
 * The command is run without a shell (a string is split on whitespace; give a list, or
 * `["/bin/sh", "-c", "..."]`, for quoting). As keepalived, no arguments are appended: what
 * changed is passed in the environment, on top of tunvs's own:
 *
 * - TUNVS_SERVICE  the service's name
 * - TUNVS_REAL     the real as ADDRESS:PORT (port 0: it serves the client's port)
 * - TUNVS_STATE    `up` or `down`
 * - TUNVS_REASON   why, as the log says it
 *
 * A command still running at its timeout is killed (SIGKILL). Its stdout is discarded; the
 * start of its stderr is kept for the log.
 */

/** What one notify run came to. */
export interface NotifyOutcome {
  /** Exit code; null when it was killed or did not start. */
  code: number | null;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** Killed because it outlived its timeout. */
  timedOut: boolean;
  /** The start of its stderr (at most NOTIFY_STDERR_BYTES), trimmed. */
  stderr: string;
  /** Why it could not be started, if it could not. */
  error?: string;
  /** Time from start to end. */
  ms: number;
}

/** Runs one notify command; resolves (never rejects) when it has ended. */
export type NotifyRunner = (
  command: string[],
  env: Record<string, string>,
  timeoutMs: number,
) => Promise<NotifyOutcome>;

/** Default time a notify command may run before it is killed. */
export const DEFAULT_NOTIFY_TIMEOUT_MS = 30_000;
/** How much of a notify command's stderr is kept for the log. */
export const NOTIFY_STDERR_BYTES = 2048;
/** How long to wait for stderr to close after the command ended (a child may hold it open). */
const STDERR_GRACE_MS = 200;

/** Whether an outcome is a success: exit 0. */
export function notifySucceeded(o: NotifyOutcome): boolean {
  return o.code === 0;
}

/** Reads up to `limit` bytes of a stream and discards the rest, until it ends or `stop`. */
async function readHead(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  stop: Promise<void>,
): Promise<string> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let kept = 0;
  let stopped = false;
  void stop.then(() => {
    stopped = true;
    reader.cancel().catch(() => {});
  });
  try {
    while (!stopped) {
      const { done, value } = await reader.read();
      if (done) break;
      if (kept < limit) {
        const part = value.subarray(0, limit - kept);
        chunks.push(part);
        kept += part.length;
      }
    }
  } catch {
    // Cancelled, or the pipe broke: keep what was read.
  }
  const all = new Uint8Array(kept);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all).trim();
}

/** The default NotifyRunner: spawns the command with `env` added to tunvs's environment. */
export async function runNotifyCommand(
  command: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<NotifyOutcome> {
  const start = performance.now();
  const ms = () => Math.round((performance.now() - start) * 10) / 10;
  const [program, ...args] = command;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    return { code: null, signal: null, timedOut: false, stderr: "", error, ms: ms() };
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited meanwhile.
    }
  }, timeoutMs);
  let release!: () => void;
  const ended = new Promise<void>((resolve) => release = resolve);
  const stderr = readHead(child.stderr, NOTIFY_STDERR_BYTES, ended);
  const status = await child.status;
  clearTimeout(timer);
  // Stderr normally closes with the process; a background child may keep it open.
  let grace: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([
    stderr.then(() => true),
    new Promise<false>((resolve) => grace = setTimeout(() => resolve(false), STDERR_GRACE_MS)),
  ]);
  clearTimeout(grace);
  if (!closed) release();
  const text = await stderr;
  release();
  return {
    code: status.signal === null ? status.code : null,
    signal: status.signal,
    timedOut,
    stderr: text,
    ms: ms(),
  };
}
