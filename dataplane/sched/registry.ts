import { DestinationHashing } from "./destination_hashing.ts";
import { LeastConnection } from "./least_connection.ts";
import { LocalityBasedLeastConnection } from "./locality_least_connection.ts";
import { MaglevHashing } from "./maglev_hashing.ts";
import { ReplicatedLocalityBasedLeastConnection } from "./replicated_locality_least_connection.ts";
import { RoundRobin } from "./round_robin.ts";
import { NO_FLAGS, type Scheduler, type SchedulerFlags } from "./scheduler.ts";
import { SourceHashing } from "./source_hashing.ts";
import {
  NeverQueue,
  ShortestExpectedDelay,
  WeightedLeastConnection,
} from "./weighted_least_connection.ts";
import { WeightedFailover } from "./weighted_failover.ts";
import { WeightedOverflow } from "./weighted_overflow.ts";
import { WeightedRoundRobin } from "./weighted_round_robin.ts";

/** Scheduler names the dataplane implements, as ipvsadm spells them (its man page's order after nq). */
export const SCHEDULER_NAMES = [
  "rr",
  "wrr",
  "lc",
  "wlc",
  "sed",
  "nq",
  "lblc",
  "lblcr",
  "dh",
  "sh",
  "fo",
  "ovf",
  "mh",
] as const;

/** A scheduler name the dataplane implements. */
export type SchedulerName = typeof SCHEDULER_NAMES[number];

/** Makes a fresh scheduler instance for one service; `flags` matter to sh and mh only. */
export function createScheduler(name: SchedulerName, flags: SchedulerFlags = NO_FLAGS): Scheduler {
  switch (name) {
    case "rr":
      return new RoundRobin();
    case "wrr":
      return new WeightedRoundRobin();
    case "lc":
      return new LeastConnection();
    case "wlc":
      return new WeightedLeastConnection();
    case "sed":
      return new ShortestExpectedDelay();
    case "nq":
      return new NeverQueue();
    case "lblc":
      return new LocalityBasedLeastConnection();
    case "lblcr":
      return new ReplicatedLocalityBasedLeastConnection();
    case "dh":
      return new DestinationHashing();
    case "sh":
      return new SourceHashing(flags);
    case "fo":
      return new WeightedFailover();
    case "ovf":
      return new WeightedOverflow();
    case "mh":
      return new MaglevHashing(flags);
  }
}
