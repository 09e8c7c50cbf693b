/**
 * Which offloads a TUN opened with IFF_VNET_HDR asks the kernel for (TUNSETOFFLOAD): with
 * TUN_F_CSUM and TSO the kernel hands the TUN unfinished checksums and 64 KB TCP super-packets
 * instead of MTU-sized segments with finished checksums, so one read and one write move up to
 * 45 segments. Each set is tried in turn; an older kernel refuses the USO bits with EINVAL.
 *
 * @module
 */

/** `TUN_F_*` bits of TUNSETOFFLOAD. */
export const TunOffload = {
  CSUM: 0x01,
  TSO4: 0x02,
  TSO6: 0x04,
  TSO_ECN: 0x08,
  USO4: 0x20,
  USO6: 0x40,
} as const;

const TSO = TunOffload.CSUM | TunOffload.TSO4 | TunOffload.TSO6 | TunOffload.TSO_ECN;

/** The sets tried, best first: everything, then without UDP segmentation, then checksums only. */
export const OFFLOAD_SETS: readonly number[] = [
  TSO | TunOffload.USO4 | TunOffload.USO6,
  TSO,
  TunOffload.CSUM,
];

const EINVAL = 22;

/**
 * Asks for each of OFFLOAD_SETS through `setOffload` (0 on success, else the errno) and returns
 * the first set the kernel takes, or 0 when it takes none. Only EINVAL (bits it does not know)
 * moves on to a smaller set; any other refusal means no offloads at all.
 */
export function negotiateOffloads(setOffload: (flags: number) => number): number {
  for (const flags of OFFLOAD_SETS) {
    const e = setOffload(flags);
    if (e === 0) return flags;
    if (e !== EINVAL) return 0;
  }
  return 0;
}

/** The names of the TUN_F bits in `flags` ("csum tso4 …"), or "none". */
export function offloadNames(flags: number): string {
  const names = Object.entries(TunOffload).filter(([, bit]) => (flags & bit) !== 0)
    .map(([name]) => name.toLowerCase());
  return names.length === 0 ? "none" : names.join(" ");
}
