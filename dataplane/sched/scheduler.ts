/**
 * What a scheduler sees of a service's real servers, and what it answers.
 */

/** The real servers of one service, as parallel arrays indexed by position. */
export interface RealSet {
  /** Number of reals. */
  readonly count: number;
  /** Current weights; 0 means "no new connections" (drain). */
  readonly weight: Int32Array;
  /** Active (ESTABLISHED) connections per real. */
  readonly active: Int32Array;
  /** Inactive (all other states) connections per real. */
  readonly inactive: Int32Array;
  /** 1 while a real is over its upper connection threshold (IPVS's OVERLOAD flag). */
  readonly overloaded: Uint8Array;
  /** IPv4 address per real, host order: what stateful schedulers follow a real by. */
  readonly addr: Uint32Array;
  /** Port per real. */
  readonly port: Uint16Array;
}

/** Scheduler flags, as ipvsadm's `-b` names them. */
export interface SchedulerFlags {
  /** sh, mh: hash the client's port too. */
  port: boolean;
  /** sh, mh: when the hashed real cannot take the connection, try the next ones. */
  fallback: boolean;
}

/** No flags set. */
export const NO_FLAGS: SchedulerFlags = { port: false, fallback: false };

/** Whether real `i` may take a new connection: weighted and not overloaded. */
export function available(reals: RealSet, i: number): boolean {
  return reals.weight[i] > 0 && reals.overloaded[i] === 0;
}

/** Picks a real for a new connection: its position in the RealSet, or -1 when none may take it. */
export interface Scheduler {
  /** Scheduler name as ipvsadm prints it. */
  readonly name: string;
  /** Picks a real for a new connection from `client`:`clientPort` to `vip`:`vport`. */
  pick(reals: RealSet, client: number, clientPort: number, vip: number, vport: number): number;
  /** Rebuilds position or lookup state after reals or weights changed. */
  reset(reals: RealSet): void;
}
