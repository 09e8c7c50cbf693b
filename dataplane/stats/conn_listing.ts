/**
 * The connection listing (`ipvsadm -Lnc`), one page at a time. A page scans
 * the table's entries in id order from a cursor and stops after `limit`
 * matches or `LIST_SCAN_SLOTS` entries, whichever comes first, so a request
 * costs the same with a million connections as with ten. The cursor is an
 * entry id: a listing taken while traffic runs sees each connection that lives
 * throughout at most once, and may miss or show ones opened or closed meanwhile.
 */
import { CONN_STATE_NAMES, ConnState } from "../conn/state.ts";
import { ConnFlag, type ConnTable } from "../conn/table.ts";
import { FORWARD_METHODS, type ServiceTable } from "../service.ts";
import { formatIpv4 } from "../wire/ipv4.ts";
import { protocolName } from "./service_stats.ts";

/** Entries returned by a page when the request names no limit. */
export const LIST_DEFAULT_LIMIT = 100;
/** The largest `limit` a page accepts. */
export const LIST_MAX_LIMIT = 10000;
/** Table entries one page looks at, at most, matching or not. */
export const LIST_SCAN_SLOTS = 65536;

/** Which connections to list, and from where. Filters left out match everything. */
export interface ConnectionQuery {
  /** Name of the service the connections belong to. */
  service?: string;
  /** The real's address (host order). */
  realAddr?: number;
  /** The real's port; only with `realAddr`. */
  realPort?: number;
  /** State name as listed (`ESTABLISHED`, `TIME_WAIT`, `UDP`, …). */
  state?: string;
  /** IP protocol number. */
  protocol?: number;
  /** Entry id to start from: 0, or a previous page's `cursor`. */
  cursor?: number;
  /** Matches to return at most (1..LIST_MAX_LIMIT; default LIST_DEFAULT_LIMIT). */
  limit?: number;
}

/** One connection as `ipvsadm -Lnc` shows it, plus its service. */
export interface ConnectionEntry {
  /** "TCP" or "UDP". */
  protocol: string;
  /** Seconds until it expires, rounded down. */
  expires: number;
  state: string;
  /** Client address:port. */
  client: string;
  /** Virtual address:port. */
  virtual: string;
  /** Real address:port. */
  real: string;
  /** Forwarding method, as ipvsadm names it ("Masq"). */
  forward: string;
  service: string;
  /** A persistence template: listed as IPVS lists them, NONE with the client's port 0. */
  template: boolean;
}

/** One page of the listing. */
export interface ConnectionPage {
  connections: ConnectionEntry[];
  /** Where the next page starts; null when the table has been walked to its end. */
  cursor: number | null;
  /** Table entries this page looked at. */
  scanned: number;
  /** Live connections in the whole table. */
  total: number;
}

/**
 * Lists the connections of `t` matching `q` from `q.cursor` on, with expiries
 * relative to the clock value `now` (ms). Throws RangeError on a bad cursor or limit.
 */
export function listConnections(
  t: ConnTable,
  services: ServiceTable,
  now: number,
  q: ConnectionQuery,
): ConnectionPage {
  const cursor = q.cursor ?? 0;
  const limit = q.limit ?? LIST_DEFAULT_LIMIT;
  if (!Number.isInteger(cursor) || cursor < 0) {
    throw new RangeError(`cursor must be a non-negative integer, got ${cursor}`);
  }
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX_LIMIT) {
    throw new RangeError(`limit must be an integer 1..${LIST_MAX_LIMIT}, got ${limit}`);
  }
  const page: ConnectionPage = { connections: [], cursor: null, scanned: 0, total: t.size };
  // -1 means "any"; a filter naming nothing that exists matches no entry at all.
  let service = -1;
  if (q.service !== undefined) {
    service = services.services.findIndex((s) => s.spec.name === q.service);
    if (service < 0) return page;
  }
  let state = -1;
  if (q.state !== undefined) {
    state = CONN_STATE_NAMES.indexOf(q.state);
    if (state < 0) return page;
  }
  const protocol = q.protocol ?? -1;
  const realAddr = q.realAddr ?? -1;
  const realPort = q.realAddr !== undefined && q.realPort !== undefined ? q.realPort : -1;

  const { live } = t;
  // No live entry lies past the high-water mark: a listing ends there, not at the capacity.
  const end = Math.min(t.highWater, cursor + LIST_SCAN_SLOTS);
  let id = cursor;
  for (; id < end && page.connections.length < limit; id++) {
    if (live[id] === 0) continue;
    if (service >= 0 && t.service[id] !== service) continue;
    if (state >= 0 && stateOf(t, id) !== state) continue;
    if (protocol >= 0 && t.protocol[id] !== protocol) continue;
    if (realAddr >= 0 && t.outDst[id] !== realAddr) continue;
    if (realPort >= 0 && t.outDstPort[id] !== realPort) continue;
    page.connections.push(entry(t, services, now, id));
  }
  page.scanned = Math.max(0, id - cursor);
  page.cursor = id < t.highWater ? id : null;
  return page;
}

/** The state IPVS lists for entry `id`: templates are always NONE, whatever they hold. */
function stateOf(t: ConnTable, id: number): number {
  return (t.flags[id] & ConnFlag.TEMPLATE) !== 0 ? ConnState.NONE : t.state[id];
}

function entry(t: ConnTable, services: ServiceTable, now: number, id: number): ConnectionEntry {
  const svc = services.services[t.service[id]];
  return {
    protocol: protocolName(t.protocol[id]),
    expires: Math.max(0, Math.floor((t.expires[id] - now) / 1000)),
    state: CONN_STATE_NAMES[stateOf(t, id)] ?? "UNKNOWN",
    client: `${formatIpv4(t.inSrc[id])}:${t.inSrcPort[id]}`,
    virtual: `${formatIpv4(t.inDst[id])}:${t.inDstPort[id]}`,
    real: `${formatIpv4(t.outDst[id])}:${t.outDstPort[id]}`,
    forward: svc === undefined ? "" : FORWARD_METHODS[svc.spec.forward],
    service: svc?.spec.name ?? "",
    template: (t.flags[id] & ConnFlag.TEMPLATE) !== 0,
  };
}

/** Counts the live connections of `t` by state name, in one pass over the typed arrays. */
export function countByState(t: ConnTable): Record<string, number> {
  const counts = new Float64Array(CONN_STATE_NAMES.length + 1);
  const { live, state, flags } = t;
  const unknown = CONN_STATE_NAMES.length;
  for (let id = 0; id < t.capacity; id++) {
    if (live[id] === 0) continue;
    if ((flags[id] & ConnFlag.TEMPLATE) !== 0) counts[ConnState.NONE]++;
    else counts[Math.min(state[id], unknown)]++;
  }
  const byState: Record<string, number> = {};
  counts.forEach((n, s) => {
    if (n > 0) byState[CONN_STATE_NAMES[s] ?? "UNKNOWN"] = n;
  });
  return byState;
}
