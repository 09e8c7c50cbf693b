/**
 * End-to-end tests build network namespaces and TUN devices: they need root.
 */

/** Whether tests needing root must be skipped; says why once when they are. */
export function needsRoot(what: string): boolean {
  if (Deno.uid() === 0) return false;
  console.warn(`skipping ${what}: they build network namespaces and need root`);
  return true;
}
