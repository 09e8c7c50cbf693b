import { LeastConnection } from "./least_connection.ts";
import { RoundRobin } from "./round_robin.ts";
import { NO_FLAGS, type Scheduler, type SchedulerFlags } from "./scheduler.ts";
import {
  NeverQueue,
  ShortestExpectedDelay,
  WeightedLeastConnection,
} from "./weighted_least_connection.ts";
import { WeightedRoundRobin } from "./weighted_round_robin.ts";

/** Scheduler names the dataplane implements, as ipvsadm spells them. */
export const SCHEDULER_NAMES = ["rr", "wrr", "lc", "wlc", "sed", "nq"] as const;

/** A scheduler name the dataplane implements. */
export type SchedulerName = typeof SCHEDULER_NAMES[number];

/** Makes a fresh scheduler instance for one service; `flags` matter to sh and mh only. */
export function createScheduler(name: SchedulerName, _flags: SchedulerFlags = NO_FLAGS): Scheduler {
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
  }
}
