/** Racing an operation against an AbortSignal, for APIs that take none. */

/**
 * Resolves with `op` or rejects with "timed out" when `signal` aborts first; a result that
 * arrives after the abort is handed to `late` so its resources (a socket) can be released.
 */
export function raceAbort<T>(
  op: Promise<T>,
  signal: AbortSignal,
  late: (value: T) => void = () => {},
): Promise<T> {
  if (signal.aborted) {
    op.then(late, () => {});
    return Promise.reject(new Error("timed out"));
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      reject(new Error("timed out"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    op.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        if (settled) late(v);
        else {
          settled = true;
          resolve(v);
        }
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        if (!settled) {
          settled = true;
          reject(e);
        }
      },
    );
  });
}
