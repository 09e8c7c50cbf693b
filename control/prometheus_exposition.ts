/**
 * Prometheus text exposition format, version 0.0.4: metric families with one `# HELP` and one
 * `# TYPE` line each, followed by their samples. Names and label names are checked against the
 * format's grammar, label values and help texts are escaped, counters must end in `_total`, and a
 * series given twice is refused: a scraper rejects the whole page for any of these, so they are
 * programming errors here rather than something to send.
 */

/** The Content-Type of a page in this format. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The metric types this appliance exposes. */
export type MetricType = "counter" | "gauge";

/** Label names and their values for one sample. */
export type Labels = Readonly<Record<string, string | number>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value with backslash, double quote and line feed escaped, as the format requires. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => c === "\\" ? "\\\\" : c === '"' ? '\\"' : "\\n");
}

/** A help text with backslash and line feed escaped (quotes stay as they are in HELP). */
export function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => c === "\\" ? "\\\\" : "\\n");
}

/** A sample value as the format spells it: Go float syntax, `NaN`, `+Inf`, `-Inf`. */
export function formatSampleValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** One metric family being filled: its samples, keyed by their label set. */
export class MetricFamily {
  readonly #lines = new Map<string, string>();

  /** A family named `name`; use Exposition.family to make one. */
  constructor(readonly name: string, readonly type: MetricType, readonly help: string) {}

  /** Number of samples so far. */
  get size(): number {
    return this.#lines.size;
  }

  /** Adds the sample `value` with `labels`; throws on a bad label name or a repeated series. */
  sample(value: number, labels: Labels = {}): this {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(labels)) {
      if (!LABEL_NAME.test(k) || k.startsWith("__")) {
        throw new RangeError(`${this.name}: bad label name ${JSON.stringify(k)}`);
      }
      parts.push(`${k}="${escapeLabelValue(String(v))}"`);
    }
    const series = parts.length === 0 ? this.name : `${this.name}{${parts.join(",")}}`;
    if (this.#lines.has(series)) throw new RangeError(`duplicate series ${series}`);
    this.#lines.set(series, `${series} ${formatSampleValue(value)}`);
    return this;
  }

  /** The family's lines: HELP, TYPE, then its samples in the order added. */
  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const line of this.#lines.values()) out += `${line}\n`;
    return out;
  }
}

/** A page of metric families, rendered in the order they were first asked for. */
export class Exposition {
  readonly #families = new Map<string, MetricFamily>();

  /**
   * The family `name`, made on first use. Asking again with the same type and help gives the
   * same family; a different type or help, a bad name, or a counter not ending in `_total` throws.
   */
  family(name: string, type: MetricType, help: string): MetricFamily {
    const known = this.#families.get(name);
    if (known !== undefined) {
      if (known.type !== type || known.help !== help) {
        throw new RangeError(`${name} declared twice with different type or help`);
      }
      return known;
    }
    if (!METRIC_NAME.test(name)) throw new RangeError(`bad metric name ${JSON.stringify(name)}`);
    if (type === "counter" && !name.endsWith("_total")) {
      throw new RangeError(`counter ${name} must end in _total`);
    }
    const f = new MetricFamily(name, type, help);
    this.#families.set(name, f);
    return f;
  }

  /** The page; families without samples are left out. */
  render(): string {
    let out = "";
    for (const f of this.#families.values()) if (f.size > 0) out += f.render();
    return out;
  }
}
