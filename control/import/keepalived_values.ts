/**
 * keepalived.conf's argument types as its parser reads them — numbers, timers, booleans — for
 * the importer: a value that does not read is reported as not carried over, never guessed.
 */
import type { Skipped } from "./imported_config.ts";
import type { KeepalivedNode } from "./keepalived_conf.ts";

/** Where an importer reports what it leaves out. */
export type SkipSink = (node: KeepalivedNode, reason: string, kind?: Skipped["kind"]) => void;

/** The keyword with its arguments, as written (for reports). */
export function statement(node: KeepalivedNode): string {
  return [node.keyword, ...node.args].join(" ");
}

/**
 * The node's one numeric argument in [min, max] (an integer when `integer`), or undefined with
 * the reason reported.
 */
export function numberArg(
  node: KeepalivedNode,
  skip: SkipSink,
  range: { min: number; max: number; integer?: boolean },
): number | undefined {
  const text = node.args[0];
  const value = text !== undefined && /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : NaN;
  const fits = node.args.length === 1 && value >= range.min && value <= range.max &&
    (!range.integer || Number.isInteger(value));
  if (fits) return value;
  skip(
    node,
    `needs one ${range.integer ? "whole number" : "number"} from ${range.min} to ${range.max}`,
  );
  return undefined;
}

/** keepalived's <BOOL>: nothing (true), on/off, true/false, yes/no; undefined when unreadable. */
export function boolArg(node: KeepalivedNode, skip: SkipSink): boolean | undefined {
  if (node.args.length === 0) return true;
  const word = node.args.length === 1 ? node.args[0].toLowerCase() : "";
  if (["on", "true", "yes"].includes(word)) return true;
  if (["off", "false", "no"].includes(word)) return false;
  skip(node, "needs on or off (true/false, yes/no) or nothing");
  return undefined;
}
