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
}

/** Picks a real for a new connection: its position in the RealSet, or -1 when none may take it. */
export interface Scheduler {
  /** Scheduler name as ipvsadm prints it. */
  readonly name: string;
  /** Picks a real for a new connection from `client`:`clientPort`. */
  pick(reals: RealSet, client: number, clientPort: number): number;
  /** Forgets position state after reals or weights changed. */
  reset(reals: RealSet): void;
}
