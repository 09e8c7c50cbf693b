/**
 * tunvs: a user-space Linux Virtual Server. Command line entry point.
 */
import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { readAdminToken } from "./control/admin_auth.ts";
import { runAppliance } from "./control/appliance.ts";
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from "./control/config.ts";
import { runHealthCli } from "./control/health_cli.ts";
import { chooseAdmin, httpAdminClient, invokedAsIpvsadm, ipvsadmMain } from "./control/ipvsadm.ts";
import { importMain } from "./control/import/import_command.ts";

/** The version this build reports. */
export const VERSION: string = denoJson.version;

const USAGE = `tunvs ${VERSION}: a user-space Linux Virtual Server on a TUN device

usage:
  tunvs run [--config FILE]    run the appliance in the foreground (needs root or CAP_NET_ADMIN)
  tunvs check [FILE]           validate a configuration without touching the host
  tunvs version                print the version
  tunvs health [list|pause|resume|force ...]
                               health checks: state and last result of each real; pause,
                               resume, force up/down/auto (\`tunvs health help\`)
  tunvs ipvsadm ARGS...        ipvsadm's command line against the running appliance
                               (--admin URL, TUNVS_ADMIN or --config FILE say where it
                               listens; \`tunvs ipvsadm -h\` for its options). Run as
                               \`ipvsadm\` (a symlink to dist/tunvs, or scripts/ipvsadm)
                               it is that program.
  tunvs import --keepalived FILE | --ipvsadm FILE|- [--output FILE [--force]]
                               convert keepalived.conf or ipvsadm -S rules to appliance.yaml

FILE defaults to ./${DEFAULT_CONFIG_PATH}.
`;

/** Runs the command line `args`; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "run": {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: "string", short: "c", default: DEFAULT_CONFIG_PATH } },
          strict: true,
          allowPositionals: false,
        });
        return await runAppliance(values.config!);
      }
      case "check": {
        const { positionals } = parseArgs({ args: rest, strict: true, allowPositionals: true });
        if (positionals.length > 1) throw new UsageError("check takes one configuration file");
        const file = positionals[0] ?? DEFAULT_CONFIG_PATH;
        const config = await loadConfig(file);
        // The unit's ExecStartPre: a bad token file is found before the start, not during it.
        if (config.admin.tokenFile !== undefined) await readAdminToken(config.admin.tokenFile);
        const reals = config.services.reduce((n, s) => n + s.reals.length, 0);
        console.log(`${file}: ok (${config.services.length} services, ${reals} reals)`);
        return 0;
      }
      case "import":
        return await importMain(rest);
      case "ipvsadm":
        return await ipvsadmMain(rest, "tunvs ipvsadm", VERSION);
      case "health": {
        const choice = chooseAdmin(rest, (name) => Deno.env.get(name));
        const admin = httpAdminClient(choice.url, choice.source, undefined, choice.tokenFile);
        const result = await runHealthCli(choice.args, admin);
        if (result.stdout !== "") console.log(result.stdout.trimEnd());
        if (result.stderr !== "") console.error(result.stderr.trimEnd());
        return result.code;
      }
      case "version":
      case "--version":
        console.log(`tunvs ${VERSION}`);
        return 0;
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 2;
    }
    if (
      err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`tunvs: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`tunvs: ${(err as Error).message}`);
    return 1;
  }
}

class UsageError extends Error {}

if (import.meta.main) {
  Deno.exit(
    invokedAsIpvsadm() ? await ipvsadmMain(Deno.args, "ipvsadm", VERSION) : await main(Deno.args),
  );
}
