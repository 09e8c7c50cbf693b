/**
 * The operator's configuration while the appliance runs: the appliance.yaml document (comments
 * and formatting kept), the validated model made from it, and its version.
 *
 * Every change — from the API, the ipvsadm command line or a reload — runs through here, one at a
 * time: it is made on a copy of the document, validated exactly as the file is at start, applied
 * to the host and dataplane, and only then written back, atomically. A change that fails at any
 * step leaves the running configuration, the dataplane and the file as they were.
 *
 * The version is a digest of the file's text, so it names the same configuration across
 * restarts and an unchanged file keeps its ETag.
 *
 * @module
 */
import type { Document } from "yaml";
import { type ApplianceConfig, parseConfig, readConfigText } from "./config.ts";
import { writeFileAtomic } from "./atomic_file.ts";
import { mergeIntoDocument, parseConfigDocument } from "./config_document.ts";

/** A change based on a version that is no longer current (HTTP 409). */
export class VersionConflict extends Error {
  /** Creates the error with the version now in force. */
  constructor(readonly current: string, message?: string) {
    super(
      message ??
        `the configuration changed since the version this change is based on; ` +
          `read it again (now version ${current}) and retry`,
    );
  }
}

/** The file on disk was written by someone else since tunvs read it (HTTP 409). */
export class FileChangedOnDisk extends VersionConflict {}

/** Writing the file back failed; the change was rolled back (HTTP 500). */
export class WriteBackFailed extends Error {}

/** Applies a configuration to the host and dataplane; rejects, changing nothing, when it cannot. */
export type ConfigApplier<R> = (next: ApplianceConfig) => Promise<R>;

/** What a committed change produced. */
export interface ChangeOutcome<R> {
  version: string;
  previousVersion: string;
  /** Whether the file was rewritten (false when the change was a no-op). */
  written: boolean;
  applied: R | null;
}

/** sha256 of `text`, the first 16 hex digits: the configuration's version and ETag. */
async function configVersion(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The running configuration; see the module comment. */
export class RunningConfig {
  #doc: Document;
  #text: string;
  #config: ApplianceConfig;
  #version: string;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    text: string,
    config: ApplianceConfig,
    version: string,
  ) {
    this.#text = text;
    this.#doc = parseConfigDocument(text);
    this.#config = config;
    this.#version = version;
  }

  /** Reads and validates `path`; throws ConfigError like loadConfig. */
  static async load(path: string): Promise<RunningConfig> {
    const text = await readConfigText(path);
    return new RunningConfig(path, text, parseConfig(text, path), await configVersion(text));
  }

  /** The validated configuration in force. */
  get config(): ApplianceConfig {
    return this.#config;
  }

  /** The version of the configuration in force. */
  get version(): string {
    return this.#version;
  }

  /** The configuration in force as the operator's YAML. */
  get text(): string {
    return this.#text;
  }

  /** The configuration in force as plain data, in appliance.yaml's shape (snake_case keys). */
  raw(): Record<string, unknown> {
    return (this.#doc.toJS() ?? {}) as Record<string, unknown>;
  }

  /** Runs `work` after every change queued before it; the queue survives a failed change. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work);
    this.#queue = next.catch(() => {});
    return next;
  }

  /**
   * Validates `edit` (a function from the current raw configuration to the next) against
   * `basedOn` (null: unconditional), applies it with `apply`, then writes the file back.
   * Throws VersionConflict, ConfigError (the candidate is invalid), whatever `apply` throws, or
   * WriteBackFailed — in every case the running configuration is unchanged.
   */
  change<R>(
    basedOn: string | null,
    edit: (raw: Record<string, unknown>) => Record<string, unknown>,
    apply: ConfigApplier<R>,
  ): Promise<ChangeOutcome<R>> {
    return this.exclusive(async () => {
      if (basedOn !== null && basedOn !== this.#version) throw new VersionConflict(this.#version);
      const doc = this.#doc.clone();
      mergeIntoDocument(doc, edit(structuredClone(this.raw())));
      const text = doc.toString();
      const previousVersion = this.#version;
      if (text === this.#text) {
        return { version: previousVersion, previousVersion, written: false, applied: null };
      }
      const next = parseConfig(text, this.path);
      const onDisk = await readConfigText(this.path).catch(() => null);
      if (onDisk !== null && onDisk !== this.#text) {
        throw new FileChangedOnDisk(
          this.#version,
          `${this.path} was changed on disk since tunvs read it; reload it first ` +
            "(POST /api/v1/config/reload or SIGHUP) so that nobody's edit is lost",
        );
      }
      const applied = await apply(next);
      try {
        await writeFileAtomic(this.path, text, { replace: true });
      } catch (err) {
        // The file still holds the old configuration: put the dataplane back to match it.
        await apply(this.#config).catch(() => {});
        throw new WriteBackFailed(
          `could not write ${this.path}: ${(err as Error).message}; the change was rolled back`,
        );
      }
      this.#commit(doc, text, next, await configVersion(text));
      return { version: this.#version, previousVersion, written: true, applied };
    });
  }

  /**
   * Re-reads the file and applies it (SIGHUP, POST /config/reload): the file is the operator's
   * and wins. Throws ConfigError or whatever `apply` throws, changing nothing.
   */
  reload<R>(apply: ConfigApplier<R>): Promise<ChangeOutcome<R>> {
    return this.exclusive(async () => {
      const text = await readConfigText(this.path);
      const next = parseConfig(text, this.path);
      const previousVersion = this.#version;
      const applied = await apply(next);
      this.#commit(parseConfigDocument(text), text, next, await configVersion(text));
      return { version: this.#version, previousVersion, written: false, applied };
    });
  }

  #commit(doc: Document, text: string, config: ApplianceConfig, version: string): void {
    this.#doc = doc;
    this.#text = text;
    this.#config = config;
    this.#version = version;
  }
}
