/**
 * `ipvsadm -S` / `ipvsadm-save -n` output (any file of ipvsadm command lines, as `ipvsadm -R`
 * reads them) → appliance.yaml: each line is parsed with ipvsadm's rules and applied with IPVS's
 * semantics (control/ipvsadm_rules.ts) to an empty rule set, so the services are the ones
 * `ipvsadm -R` would build; `--set` carries the timeouts.
 */
import {
  type CommandName,
  IpvsadmExit,
  parseIpvsadm,
  restoreLineArgs,
} from "../ipvsadm_options.ts";
import { applyInvocation, type RawMap, RULE_COMMANDS } from "../ipvsadm_rules.ts";
import type { NameDb } from "../netdb.ts";
import { type ImportResult, keepValidServices, type Skipped } from "./imported_config.ts";

/** A line ipvsadm would refuse, or IPVS would: the run stops there, and nothing is written. */
export class RulesImportError extends Error {
  /** `line` is 1-based; `message` is ipvsadm's. */
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
  }
}

/** Commands with nothing to carry into a configuration, and why. */
const NOT_RULES: Partial<Record<CommandName, Pick<Skipped, "reason" | "kind">>> = {
  "start-daemon": { reason: "tunvs has no connection synchronization daemon", kind: "scope" },
  "stop-daemon": { reason: "tunvs has no connection synchronization daemon", kind: "scope" },
  list: { reason: "lists the table: no rule in it", kind: "ignored" },
  save: { reason: "prints the rules: no rule in it", kind: "ignored" },
  zero: { reason: "zeroes counters: no rule in it", kind: "ignored" },
  "get-laddr": { reason: "lists local addresses: no rule in it", kind: "ignored" },
  restore: { reason: "ipvsadm refuses -R inside -R's input", kind: "ignored" },
};

/**
 * Converts ipvsadm command lines to appliance.yaml data that control/config.ts accepts (what it
 * cannot express is named in `skipped`). Throws RulesImportError at the first line ipvsadm or
 * IPVS would refuse.
 */
export function importIpvsadmRules(text: string, names: NameDb): ImportResult {
  let services: RawMap[] = [];
  const timeouts: RawMap = {};
  const origins = new Map<string, { line: number; label: string }>();
  const skipped: Skipped[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = index + 1;
    const args = restoreLineArgs(raw);
    if (args.length === 0) return;
    const label = args.join(" ");
    try {
      const parsed = parseIpvsadm(args, "ipvsadm", names);
      if (parsed.kind !== "run") {
        skipped.push({
          line,
          keyword: label,
          reason: "prints help or the version",
          kind: "ignored",
        });
        return;
      }
      const inv = parsed.invocation;
      if (RULE_COMMANDS.has(inv.command)) {
        const before = new Set(services.map((s) => s.name));
        services = applyInvocation(services, inv);
        for (const svc of services) {
          if (!before.has(svc.name)) origins.set(String(svc.name), { line, label });
        }
      } else if (inv.command === "set") {
        // As IPVS, a zero leaves that timeout as it is.
        for (const [key, value] of Object.entries(inv.timeouts!)) {
          if (value > 0) timeouts[key] = value;
        }
      } else {
        skipped.push({ line, keyword: label, ...NOT_RULES[inv.command]! });
      }
    } catch (err) {
      if (err instanceof IpvsadmExit) throw new RulesImportError(line, err.message);
      throw err;
    }
  });
  const config: ImportResult["config"] = Object.keys(timeouts).length > 0
    ? { timeouts, services }
    : { services };
  return keepValidServices({
    config,
    origins: services.map((s) => origins.get(String(s.name))!),
    skipped,
  });
}
