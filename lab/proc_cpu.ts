/**
 * CPU time of processes from /proc/PID/stat. This kernel accounts CPU time by ticks without
 * IRQ-time accounting, so softirq work (packet forwarding in the kernel) done while a process
 * runs is charged to that process's system time: summing the processes of a path counts the
 * kernel's forwarding work too, except what ksoftirqd does.
 */

/** `getconf CLK_TCK` on Linux: /proc times are in these units. */
export const CLOCK_TICKS_PER_SECOND = 100;

/** The CPU figures of one /proc/PID/stat line. */
export interface ProcStat {
  /** utime + stime of the process (all its threads). */
  cpuSeconds: number;
  /** cutime + cstime: children it has waited for. */
  childrenCpuSeconds: number;
}

/** Parses a /proc/PID/stat line; null when it is not one. */
export function parseProcStat(line: string): ProcStat | null {
  const close = line.lastIndexOf(")");
  if (close < 0) return null;
  // After "pid (comm) " the state is field 3: utime (14) is index 11 of the rest.
  const rest = line.slice(close + 2).split(" ");
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(rest[i]));
  if (![utime, stime, cutime, cstime].every(Number.isFinite)) return null;
  return {
    cpuSeconds: (utime + stime) / CLOCK_TICKS_PER_SECOND,
    childrenCpuSeconds: (cutime + cstime) / CLOCK_TICKS_PER_SECOND,
  };
}

/** CPU seconds `pid` has used so far; 0 when it is gone. */
export function processCpuSeconds(pid: number): number {
  try {
    return parseProcStat(Deno.readTextFileSync(`/proc/${pid}/stat`))?.cpuSeconds ?? 0;
  } catch {
    return 0;
  }
}

/** CPU seconds used so far by each of `pids`. */
export function cpuSnapshot(pids: readonly number[]): Map<number, number> {
  return new Map(pids.map((pid) => [pid, processCpuSeconds(pid)]));
}

/** CPU seconds the processes of `before` used since it was taken (ones that exited count 0). */
export function cpuSince(before: Map<number, number>): number {
  let total = 0;
  for (const [pid, then] of before) {
    const now = processCpuSeconds(pid);
    if (now >= then) total += now - then;
  }
  return total;
}
