/**
 * What an importer produces — raw appliance.yaml data, where each service came from, and what
 * it could not carry over — and the last steps every import shares: keeping only what
 * control/config.ts accepts (naming what had to go), and printing it as appliance.yaml with the
 * report at the top.
 */
import { Document, isCollection, isMap, isSeq, stringify as stringifyYaml, visit } from "yaml";
import { ConfigError, type ConfigIssue, parseConfig } from "../config.ts";
import type { RawMap } from "../ipvsadm_rules.ts";

/** Why something of the source is not in the generated configuration. */
export type SkipKind =
  /** Not a load balancer's business (VRRP, global settings): keepalived or the host keep it. */
  | "scope"
  /** A setting tunvs has no equivalent for, or one that could not be converted. */
  | "lost"
  /** Something the source program ignores as well (an unknown keyword). */
  | "ignored";

/** One thing of the source left out, and why. */
export interface Skipped {
  /** 1-based line of the source. */
  line: number;
  /** The keyword or command as written. */
  keyword: string;
  reason: string;
  kind: SkipKind;
}

/** An imported configuration. */
export interface ImportResult {
  /** Raw appliance.yaml data: `services`, and `timeouts` or `local_addresses` when found. */
  config: RawMap & { services: RawMap[] };
  /** For each of `config.services`: the source line and words it came from. */
  origins: { line: number; label: string }[];
  /** What was left out, in source order. */
  skipped: Skipped[];
}

/** `services[3].reals[0]` → 3; null for issues outside the services. */
function serviceIndex(issue: ConfigIssue): number | null {
  const m = /^services\[(\d+)\]/.exec(issue.path);
  return m === null ? null : Number(m[1]);
}

/** `services[3].synproxy` with an unknown-key message → "synproxy"; null for other issues. */
function unknownServiceKey(issue: ConfigIssue): string | null {
  const m = /^services\[\d+\]\.([A-Za-z_]+)$/.exec(issue.path);
  return m !== null && issue.message.startsWith("unknown key") ? m[1] : null;
}

/**
 * Makes `result` valid for control/config.ts: a key this appliance's configuration does not
 * know is taken off its service, and a service it still refuses is left out; each is named in
 * `skipped`. Throws ConfigError for problems outside the services (an importer's bug).
 */
export function keepValidServices(result: ImportResult): ImportResult {
  const config = structuredClone(result.config);
  let origins = [...result.origins];
  const skipped = [...result.skipped];
  // Each round takes a key off or a service out, so this ends.
  for (;;) {
    let issues: ConfigIssue[];
    try {
      parseConfig(stringifyYaml(config), "import");
      break;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    if (issues.some((i) => serviceIndex(i) === null)) throw new ConfigError(issues);
    const byService = Map.groupBy(issues, (i) => serviceIndex(i)!);
    const dropped = new Set<number>();
    for (const [index, found] of byService) {
      const origin = origins[index] ?? { line: 0, label: `services[${index}]` };
      const keys = found.map(unknownServiceKey);
      if (keys.every((k) => k !== null)) {
        for (const key of keys) {
          delete config.services[index][key!];
          skipped.push({
            line: origin.line,
            keyword: `${origin.label}: ${key}`,
            reason: "this appliance's configuration has no such setting yet",
            kind: "lost",
          });
        }
      } else {
        dropped.add(index);
        const reasons = found.map((i) => {
          const key = unknownServiceKey(i);
          if (key !== null) return `${key}: no such setting`;
          return `${i.path.replace(/^services\[\d+\]\.?/, "") || "service"}: ${i.message}`;
        });
        skipped.push({
          line: origin.line,
          keyword: origin.label,
          reason: `appliance.yaml cannot express it (${reasons.join("; ")})`,
          kind: "lost",
        });
      }
    }
    config.services = config.services.filter((_, i) => !dropped.has(i));
    origins = origins.filter((_, i) => !dropped.has(i));
  }
  skipped.sort((a, b) => a.line - b.line);
  return { config, origins, skipped };
}

const SECTION_TITLES: Record<SkipKind, string> = {
  lost: "Not carried over:",
  scope: "Outside tunvs's scope (left to keepalived or the host):",
  ignored: "Ignored (the source program ignores them too):",
};

/** How a report line says each kind. */
export const SKIP_PREFIX: Record<SkipKind, string> = {
  lost: "not carried over",
  scope: "outside tunvs's scope",
  ignored: "ignored",
};

/** The report lines for `skipped`, grouped by kind, each as `FILE:LINE: KEYWORD: REASON`. */
export function skippedReport(skipped: readonly Skipped[], file: string): string[] {
  const lines: string[] = [];
  for (const kind of ["lost", "scope", "ignored"] as SkipKind[]) {
    const items = skipped.filter((s) => s.kind === kind);
    if (items.length === 0) continue;
    lines.push(SECTION_TITLES[kind]);
    for (const s of items) lines.push(`  ${file}:${s.line}: ${s.keyword}: ${s.reason}`);
  }
  return lines;
}

/** Prints an import as appliance.yaml: a header naming its source and what was left out. */
export function renderAppliance(result: ImportResult, command: string, file: string): string {
  const doc = new Document(result.config);
  const report = skippedReport(result.skipped, file);
  doc.commentBefore = [
    ` appliance.yaml written by \`${command}\` from ${file}.`,
    " Check it with `tunvs check FILE` before running it.",
    ...(report.length === 0 ? [] : [" ", ...report.map((l) => ` ${l}`)]),
  ].join("\n");
  // Reals one per line and short lists inline, as appliance.yaml is written by hand.
  visit(doc, {
    Seq(_, seq) {
      if (seq.items.length > 0 && seq.items.every((item) => !isCollection(item))) seq.flow = true;
    },
    Pair(_, pair) {
      if (!isSeq(pair.value) || String((pair.key as { value?: unknown })?.value) !== "reals") {
        return;
      }
      for (const real of pair.value.items) {
        if (isMap(real) && real.items.every((p) => !isCollection(p.value))) real.flow = true;
      }
    },
  });
  return doc.toString({ lineWidth: 100 });
}
