/**
 * keepalived's quorum with hysteresis, as keepalived 2.x implements it (read in
 * keepalived/check/ipwrapper.c: set_quorum_states, update_quorum_state; keepalived.conf(5)
 * `quorum`, `hysteresis`, `sorry_server`):
 *
 * - the weight of a service is the sum of the weights of its live reals (weigh_live_realservers);
 * - at start a service is up when that sum ≥ quorum + hysteresis (set_quorum_states);
 * - a down service comes up when the sum ≥ quorum + hysteresis;
 * - an up service goes down when the sum is 0 or < quorum − hysteresis;
 * - quorum defaults to 1 and hysteresis to 0, so by default a service is down exactly when no
 *   live real has a positive weight.
 *
 * While a service is down and has a sorry server, keepalived removes its live reals from the
 * pool and adds the sorry server alone (perform_quorum_state): the reals do not serve alongside
 * it. Without a sorry server a down service keeps its live reals; the state is then only
 * reported (keepalived runs quorum_down).
 */

/** keepalived's default quorum. */
export const DEFAULT_QUORUM = 1;
/** keepalived's default hysteresis. */
export const DEFAULT_HYSTERESIS = 0;

/** A service's quorum settings, defaults filled in. */
export interface QuorumSettings {
  quorum: number;
  hysteresis: number;
}

/** The weight a down service needs to come up. */
export function quorumUpThreshold(q: QuorumSettings): number {
  return q.quorum + q.hysteresis;
}

/** The weight below which an up service goes down (a sum of 0 always does). */
export function quorumDownThreshold(q: QuorumSettings): number {
  return q.quorum - q.hysteresis;
}

/** The state a service starts in with `weight` live (set_quorum_states). */
export function initialQuorumUp(weight: number, q: QuorumSettings): boolean {
  return weight >= quorumUpThreshold(q);
}

/** The state after the live weight became `weight`, from state `up` (update_quorum_state). */
export function nextQuorumUp(up: boolean, weight: number, q: QuorumSettings): boolean {
  if (!up) return weight >= quorumUpThreshold(q);
  return !(weight === 0 || weight < quorumDownThreshold(q));
}
