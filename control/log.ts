/**
 * One line per significant event on stderr: time, what happened, and the
 * facts as key=value pairs that grep and log shippers can read.
 */

/** A value that can be logged as key=value. */
export type LogValue = string | number | boolean | undefined;

/** Writes `message` with `fields` as one line on stderr. */
export function log(message: string, fields: Record<string, LogValue> = {}): void {
  let line = `${new Date().toISOString()} tunvs: ${message}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    line += ` ${k}=${/[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s}`;
  }
  console.error(line);
}
