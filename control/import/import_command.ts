/**
 * `tunvs import --keepalived FILE` and `tunvs import --ipvsadm FILE|-`: converts the rules of an
 * LVS setup into appliance.yaml, printed or written atomically with `--output FILE` (an existing
 * file only with `--force`). What could not be carried over is named on stderr and at the top
 * of the file.
 */
import { parseArgs } from "node:util";
import { parseConfig } from "../config.ts";
import { type NameDb, systemNameDb } from "../netdb.ts";
import { FileExistsError, writeFileAtomic } from "../atomic_file.ts";
import { type ImportResult, renderAppliance, SKIP_PREFIX } from "./imported_config.ts";
import { importIpvsadmRules, RulesImportError } from "./ipvsadm_save.ts";
import { importKeepalivedConf } from "./keepalived.ts";
import { KeepalivedSyntaxError } from "./keepalived_conf.ts";

/** The usage text of `tunvs import`. */
export const IMPORT_USAGE = `usage:
  tunvs import --keepalived FILE [--output FILE [--force]]
  tunvs import --ipvsadm FILE|- [--output FILE [--force]]

Converts keepalived.conf's virtual_server blocks, or ipvsadm -S / ipvsadm-save -n output
(- reads standard input), into appliance.yaml. It is printed, or written to --output FILE
atomically; an existing FILE is replaced only with --force. Whatever cannot be carried
over is named on stderr and in a comment at the top.
`;

/** What an import run needs from its surroundings. */
export interface ImportIo {
  readFile(path: string): Promise<string>;
  readStdin(): Promise<string>;
  /** Host and service names for ipvsadm lines saved without -n. */
  names: NameDb;
}

/** What an import run printed, and its exit status. */
export interface ImportRun {
  code: number;
  stdout: string;
  stderr: string;
}

class UsageError extends Error {}

function options(args: readonly string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: {
        keepalived: { type: "string" },
        ipvsadm: { type: "string" },
        output: { type: "string", short: "o" },
        force: { type: "boolean", short: "f", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { keepalived, ipvsadm, output, force } = parsed;
  if ((keepalived === undefined) === (ipvsadm === undefined)) {
    throw new UsageError("give one of --keepalived FILE and --ipvsadm FILE");
  }
  if (force && output === undefined) throw new UsageError("--force goes with --output FILE");
  return keepalived !== undefined
    ? { kind: "keepalived" as const, source: keepalived, output, force: force! }
    : { kind: "ipvsadm" as const, source: ipvsadm!, output, force: force! };
}

/** Runs `tunvs import ARGS…` (without "import"); never throws for the user's mistakes. */
export async function runImport(args: readonly string[], io: ImportIo): Promise<ImportRun> {
  let opts;
  try {
    opts = options(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return { code: 2, stdout: "", stderr: `tunvs import: ${err.message}\n\n${IMPORT_USAGE}` };
  }
  const label = opts.source === "-" ? "stdin" : opts.source;
  const fail = (message: string): ImportRun => ({
    code: 1,
    stdout: "",
    stderr: `tunvs import: ${message}\n`,
  });
  let text: string;
  try {
    text = opts.source === "-" ? await io.readStdin() : await io.readFile(opts.source);
  } catch (err) {
    return fail(`cannot read ${label}: ${(err as Error).message}`);
  }
  let result: ImportResult;
  try {
    result = opts.kind === "keepalived"
      ? importKeepalivedConf(text)
      : importIpvsadmRules(text, io.names);
  } catch (err) {
    if (err instanceof KeepalivedSyntaxError || err instanceof RulesImportError) {
      return fail(`${label}:${err.line}: ${err.message.replace(/^line \d+: /, "")}`);
    }
    throw err;
  }
  const command = `tunvs import --${opts.kind} ${opts.source}`;
  const yaml = renderAppliance(result, command, label);
  // The importers keep only what config.ts accepts; this says so before anything is written.
  const config = parseConfig(yaml, opts.output ?? "import");
  let stderr = result.skipped.map((s) =>
    `tunvs import: ${label}:${s.line}: ${s.keyword}: ${SKIP_PREFIX[s.kind]}: ${s.reason}\n`
  ).join("");
  if (opts.output === undefined) return { code: 0, stdout: yaml, stderr };
  try {
    await writeFileAtomic(opts.output, yaml, { replace: opts.force });
  } catch (err) {
    const why = err instanceof FileExistsError
      ? err.message
      : `cannot write ${opts.output}: ${(err as Error).message}`;
    return { code: 1, stdout: "", stderr: `${stderr}tunvs import: ${why}\n` };
  }
  const reals = config.services.reduce((n, s) => n + s.reals.length, 0);
  stderr +=
    `tunvs import: wrote ${opts.output} (${config.services.length} services, ${reals} reals)\n`;
  return { code: 0, stdout: "", stderr };
}

/** `tunvs import …` as a program: prints, returns the exit status. */
export async function importMain(args: readonly string[]): Promise<number> {
  const run = await runImport(args, {
    readFile: (path) => Deno.readTextFile(path),
    readStdin: () => new Response(Deno.stdin.readable).text(),
    names: systemNameDb(),
  });
  await writeAll(Deno.stdout, run.stdout);
  await writeAll(Deno.stderr, run.stderr);
  return run.code;
}

async function writeAll(stream: { write(p: Uint8Array): Promise<number> }, text: string) {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(await stream.write(bytes));
}
