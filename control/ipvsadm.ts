/**
 * `tunvs ipvsadm …` (and the same program run under the name `ipvsadm`): the
 * ipvsadm command line over the running appliance's admin API. Listings,
 * counters, connections, timeouts and zeroing read or poke the running
 * appliance; commands that change rules (-A -E -D -C -a -e -d, -R, DPVS's
 * -P/-Q) are applied to the appliance's configured services
 * (control/ipvsadm_rules.ts) and written back as one versioned change.
 */
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { AdminTokenError, readAdminToken } from "./admin_auth.ts";
import { CONFIG_DEFAULTS } from "./config.ts";
import {
  type CommandName,
  type Invocation,
  IpvsadmExit,
  parseIpvsadm,
  PLAIN_FORMAT,
  restoreLineArgs,
  type ServiceArg,
  tryHelp,
} from "./ipvsadm_options.ts";
import {
  formatConnections,
  formatListing,
  formatLocalAddresses,
  formatSave,
  formatService,
  formatTimeouts,
  IPVS_VERSION,
  type ListedConnection,
  type ListedService,
  type Traffic,
} from "./ipvsadm_format.ts";
import { type NameDb, systemNameDb } from "./netdb.ts";
import {
  applyInvocation,
  OPERATION_FAILED,
  type RawMap,
  RULE_COMMANDS,
  type RuleContext,
} from "./ipvsadm_rules.ts";

/** Where the admin endpoint is looked for when nothing names it. */
export const DEFAULT_ADMIN_URL = "http://127.0.0.1:9180";

/** What one ipvsadm run printed, and its exit status. */
export interface IpvsadmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** An HTTP answer from the admin endpoint. */
export interface AdminResponse {
  status: number;
  body: unknown;
}

/** The admin endpoint, as ipvsadm uses it. */
export interface AdminClient {
  /** Base URL, for messages. */
  readonly url: string;
  /**
   * Sends a request with extra `headers` (If-Match on changes); throws AdminUnreachable when
   * nothing answers.
   */
  request(
    method: "GET" | "POST" | "PUT",
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<AdminResponse>;
}

/** Nothing answered at the admin endpoint: the appliance is not running there. */
export class AdminUnreachable extends Error {
  /** `url` is where it looked, `reason` what went wrong, `source` how the URL was chosen. */
  constructor(readonly url: string, readonly reason: string, readonly source = "") {
    super(`the tunvs admin endpoint ${url} does not answer (${reason})`);
  }
}

/** What a run needs from its surroundings. */
export interface IpvsadmContext {
  /** The name usage and help messages give the program (argv[0]). */
  program: string;
  admin: AdminClient;
  names: NameDb;
  /** Reads all of standard input (for -R). */
  readStdin(): Promise<string>;
}

/**
 * An admin client at `url`: `http://HOST:PORT` or `unix:/PATH` (the appliance's Unix socket), no
 * trailing slash. With `tokenFile` (its path, and where that came from, for messages) every
 * request carries the bearer token read from it on first use; a 401 ends the run with a message
 * saying where the token comes from.
 */
export function httpAdminClient(
  url: string,
  source = "",
  timeoutMs = 10_000,
  tokenFile?: { path: string; source: string },
): AdminClient {
  const socket = url.startsWith("unix:") ? url.slice("unix:".length) : null;
  let token: Promise<string> | null = null;
  const authorization = async (): Promise<Record<string, string>> => {
    if (tokenFile === undefined) return {};
    token ??= readAdminToken(tokenFile.path);
    try {
      return { authorization: `Bearer ${await token}` };
    } catch (err) {
      if (!(err instanceof AdminTokenError)) throw err;
      throw new IpvsadmExit(2, `${err.message} (that file came from ${tokenFile.source})`);
    }
  };
  const refused = (): IpvsadmExit =>
    new IpvsadmExit(
      2,
      tokenFile === undefined
        ? `Can't initialize ipvs: the tunvs admin endpoint ${url} needs a bearer token ` +
          `(HTTP 401).\nName the file holding it in admin.token_file of the configuration ` +
          `(--config FILE, TUNVS_CONFIG or ./appliance.yaml) or in TUNVS_ADMIN_TOKEN_FILE.`
        : `Can't initialize ipvs: the tunvs admin endpoint ${url} refused the token from ` +
          `${tokenFile.path} (HTTP 401); that file came from ${tokenFile.source}.\nIt must hold ` +
          `the token of the file the appliance's admin.token_file names.`,
    );
  return {
    url,
    async request(method, path, body, headers = {}) {
      const auth = await authorization();
      const client = socket === null
        ? undefined
        : Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
      try {
        let res: Response;
        try {
          // Over a Unix socket the host part only fills the Host header.
          res = await fetch(`${socket === null ? url : "http://localhost"}${path}`, {
            method,
            headers: {
              ...(body === undefined ? {} : { "content-type": "application/json" }),
              ...headers,
              ...auth,
            },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(timeoutMs),
            client,
          });
        } catch (err) {
          const e = err as Error & { cause?: { message?: string } };
          const text = e.cause?.message ?? e.message ?? String(err);
          const reason = /refused/i.test(text)
            ? "connection refused"
            : e.name === "TimeoutError"
            ? `no answer within ${timeoutMs / 1000} s`
            : socket !== null && /No such file/i.test(text)
            ? "no socket there"
            : socket !== null && /Permission denied/i.test(text)
            ? "permission denied: the socket is its owner's only (mode 0600)"
            : text;
          throw new AdminUnreachable(url, reason, source);
        }
        const text = await res.text();
        if (res.status === 401) throw refused();
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // Not JSON: keep the text for the error message.
        }
        return { status: res.status, body: parsed };
      } finally {
        client?.close();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The admin API's answers, validated before they are printed.

const trafficShape = {
  conns: z.number(),
  inPkts: z.number(),
  outPkts: z.number(),
  inBytes: z.number(),
  outBytes: z.number(),
  cps: z.number(),
  inPps: z.number(),
  outPps: z.number(),
  inBps: z.number(),
  outBps: z.number(),
};

const ServicesAnswer = z.object({
  services: z.array(z.object({
    name: z.string(),
    protocol: z.enum(["tcp", "udp"]),
    vip: z.string(),
    port: z.number(),
    fwmark: z.number().optional(),
    scheduler: z.string(),
    schedulerFlags: z.array(z.string()).default([]),
    persistence: z.object({ timeout: z.number(), netmask: z.string() }).nullable().default(null),
    onePacket: z.boolean().default(false),
    synproxy: z.boolean().default(false),
    localAddresses: z.array(z.string()).default([]),
    reals: z.array(z.object({
      address: z.string(),
      port: z.number(),
      weight: z.number(),
      forward: z.string(),
      activeConns: z.number(),
      inactiveConns: z.number(),
      persistConns: z.number().default(0),
      upperThreshold: z.number().default(0),
      lowerThreshold: z.number().default(0),
    })),
  })),
});

const StatsAnswer = z.object({
  services: z.array(z.object({
    name: z.string(),
    ...trafficShape,
    reals: z.array(z.object({ address: z.string(), port: z.number(), ...trafficShape })),
  })),
});

const ConnectionsAnswer = z.object({
  connections: z.array(z.object({
    protocol: z.string(),
    expires: z.number(),
    state: z.string(),
    client: z.string(),
    virtual: z.string(),
    real: z.string(),
  })),
  cursor: z.number().nullable(),
});

const TimeoutsAnswer = z.object({ tcp: z.number(), tcpfin: z.number(), udp: z.number() });

/** `GET /api/v1/config`: the configuration as the operator wrote it, and its version. */
const ConfigAnswer = z.object({
  version: z.string(),
  config: z.object({
    services: z.array(z.record(z.string(), z.unknown())).nullish(),
    local_addresses: z.array(z.string()).nullish(),
  }).nullable(),
});

/** Connection entries asked for per page: the API's largest page. */
const CONNECTIONS_PAGE = 10000;

/** The admin API answered, but not with success: its message, and ipvsadm's status for it. */
class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function call<T>(
  admin: AdminClient,
  schema: z.ZodType<T>,
  method: "GET" | "POST" | "PUT",
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
): Promise<T> {
  const res = await admin.request(method, path, body, headers);
  if (res.status < 200 || res.status > 299) {
    const error = (res.body as { error?: unknown } | null)?.error;
    throw new ApiError(
      res.status,
      typeof error === "string" ? error : `${method} ${path}: HTTP ${res.status}`,
    );
  }
  const parsed = schema.safeParse(res.body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ApiError(
      res.status,
      `unexpected answer from ${admin.url}${path}: ${issue.path.join(".")}: ${issue.message}`,
    );
  }
  return parsed.data;
}

const NO_TRAFFIC: Traffic = {
  conns: 0,
  inPkts: 0,
  outPkts: 0,
  inBytes: 0,
  outBytes: 0,
  cps: 0,
  inPps: 0,
  outPps: 0,
  inBps: 0,
  outBps: 0,
};

function traffic(t: Traffic | undefined): Traffic {
  if (t === undefined) return NO_TRAFFIC;
  return {
    conns: t.conns,
    inPkts: t.inPkts,
    outPkts: t.outPkts,
    inBytes: t.inBytes,
    outBytes: t.outBytes,
    cps: t.cps,
    inPps: t.inPps,
    outPps: t.outPps,
    inBps: t.inBps,
    outBps: t.outBps,
  };
}

/** A service of the table with the name the admin API knows it by. */
type NamedService = ListedService & { name: string };

/** The virtual service table; with counters and rates too when `withTraffic`. */
async function fetchServices(admin: AdminClient, withTraffic: boolean): Promise<NamedService[]> {
  const [table, stats] = await Promise.all([
    call(admin, ServicesAnswer, "GET", "/api/v1/services"),
    withTraffic ? call(admin, StatsAnswer, "GET", "/api/v1/stats") : null,
  ]);
  return table.services.map((svc) => {
    const live = stats?.services.find((s) => s.name === svc.name);
    return {
      name: svc.name,
      protocol: svc.protocol,
      vip: svc.vip,
      port: svc.port,
      ...(svc.fwmark === undefined ? {} : { fwmark: svc.fwmark }),
      scheduler: svc.scheduler,
      schedulerFlags: svc.schedulerFlags,
      persistence: svc.persistence,
      onePacket: svc.onePacket,
      synproxy: svc.synproxy,
      localAddresses: svc.localAddresses,
      traffic: traffic(live),
      reals: svc.reals.map((r, i) => {
        const sameReal = (x: { address: string; port: number }) =>
          x.address === r.address && x.port === r.port;
        const t = live?.reals[i] !== undefined && sameReal(live.reals[i])
          ? live.reals[i]
          : live?.reals.find(sameReal);
        return {
          address: r.address,
          port: r.port,
          forward: r.forward,
          weight: r.weight,
          activeConns: r.activeConns,
          inactiveConns: r.inactiveConns,
          persistConns: r.persistConns,
          upperThreshold: r.upperThreshold,
          lowerThreshold: r.lowerThreshold,
          traffic: traffic(t),
        };
      }),
    };
  });
}

/** The service the command line names, or null. */
function findService(services: NamedService[], arg: ServiceArg): NamedService | null {
  if (arg.kind === "fwmark") {
    return services.find((s) => s.fwmark === arg.fwmark && arg.af === 4) ?? null;
  }
  return services.find((s) =>
    arg.af === 4 && s.fwmark === undefined && s.protocol === arg.protocol && s.vip === arg.addr &&
    s.port === arg.port
  ) ?? null;
}

// ---------------------------------------------------------------------------------------------

/** The version line (`-v`): the grammar is 1.31's; the program is tunvs's. */
export function versionText(tunvsVersion: string): string {
  return `ipvsadm v1.31 2019/12/24 (compiled with tunvs ${tunvsVersion} and IPVS v${IPVS_VERSION})\n`;
}

/** The help text (`-h`). */
export function usageText(program: string, tunvsVersion: string): string {
  const p = program;
  return versionText(tunvsVersion) + `Usage:
  ${p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  ${p} -D virtual-service
  ${p} -C
  ${p} -R
  ${p} -S [-n]
  ${p} -a|e virtual-service -r server-address [options]
  ${p} -d virtual-service -r server-address
  ${p} -L|l [virtual-service] [options]
  ${p} -Z [virtual-service]
  ${p} --set tcp tcpfin udp
  ${p} --start-daemon {master|backup} [daemon-options]
  ${p} --stop-daemon {master|backup}
  ${p} -P|Q virtual-service --laddr address
  ${p} -G [virtual-service]
  ${p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --add-laddr       -P        add a FULLNAT local address (DPVS)
  --del-laddr       -Q        delete a FULLNAT local address (DPVS)
  --get-laddr       -G        list the FULLNAT local addresses (DPVS)
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat                           full NAT (DPVS)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z address           FULLNAT local address (DPVS)
  --synproxy      enable|disable      SYN proxy (DPVS)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)

Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)

tunvs: this ipvsadm talks to the running appliance's admin API (--admin URL,
TUNVS_ADMIN, or admin.listen of --config FILE / TUNVS_CONFIG / ./appliance.yaml).
Rule changes (-A -E -D -C -a -e -d -P -Q, and -R as one change) are written to the
appliance's configuration file; the daemon commands are refused.
`;
}

/** The commands tunvs has nothing to run for. */
const DAEMON_COMMANDS: ReadonlySet<CommandName> = new Set(["start-daemon", "stop-daemon"]);

/** Why a daemon command is refused. */
function refusal(command: CommandName): string {
  return `${command}: tunvs has no connection synchronization daemon`;
}

/** Times a change is retried when the configuration moved on under it (409). */
const CHANGE_RETRIES = 3;

/** `"v"` for If-Match, unless the version is a quoted or weak entity tag already. */
function entityTag(version: string): string {
  return /^(W\/)?"/.test(version) ? version : `"${version}"`;
}

/** A refusal of the admin API as one line: its field (with the service's name) and its error. */
function changeRefusal(body: unknown, status: number, services: readonly RawMap[]): string {
  const b = (body ?? {}) as { error?: unknown; field?: unknown };
  const error = typeof b.error === "string" ? b.error : `HTTP ${status}`;
  const message = typeof b.field !== "string" || b.field === "" || error.includes(b.field)
    ? error
    : `${b.field}: ${error}`;
  // services[2].reals[0].port → services[2] (tcp-10.0.0.1-80).reals[0].port
  return message.replace(/\bservices\[(\d+)\]/, (whole, i) => {
    const name = services[Number(i)]?.name;
    return typeof name === "string" ? `${whole} (${name})` : whole;
  });
}

/**
 * Changes the appliance's services: reads the configuration and its version, applies `change`
 * (whose ipvsadm errors end the run before any request), and writes the whole list back if it
 * differs, on condition that nothing changed meanwhile; re-reads and re-applies when it did.
 */
async function changeServices(
  admin: AdminClient,
  change: (services: readonly RawMap[], ctx: RuleContext) => RawMap[],
): Promise<void> {
  for (let attempt = 0;; attempt++) {
    const current = await call(admin, ConfigAnswer, "GET", "/api/v1/config");
    const before = (current.config?.services ?? []) as RawMap[];
    const after = change(before, {
      globalLocalAddresses: current.config?.local_addresses ?? [],
    });
    if (JSON.stringify(after) === JSON.stringify(before)) return;
    const res = await admin.request("PUT", "/api/v1/config/services", { services: after }, {
      "if-match": entityTag(current.version),
    });
    if (res.status >= 200 && res.status <= 299) return;
    if (res.status === 409) {
      if (attempt < CHANGE_RETRIES) continue;
      throw new ApiError(
        409,
        `the appliance's configuration kept changing under this command ` +
          `(${attempt + 1} tries); nothing was changed, try again`,
      );
    }
    throw new ApiError(res.status, changeRefusal(res.body, res.status, after));
  }
}

/** Output being gathered for one run. */
interface Output {
  stdout: string;
  stderr: string;
}

async function listConnections(admin: AdminClient): Promise<ListedConnection[]> {
  const entries: ListedConnection[] = [];
  let cursor: number | null = 0;
  while (cursor !== null) {
    const page: z.infer<typeof ConnectionsAnswer> = await call(
      admin,
      ConnectionsAnswer,
      "GET",
      `/api/v1/connections?cursor=${cursor}&limit=${CONNECTIONS_PAGE}`,
    );
    entries.push(...page.connections);
    cursor = page.cursor;
  }
  return entries;
}

/** Runs one parsed invocation; returns its exit status (IpvsadmExit ends the whole run). */
async function execute(
  inv: Invocation,
  ctx: IpvsadmContext,
  out: Output,
  readingStdin: boolean,
): Promise<number> {
  const { admin, names } = ctx;
  const opts = inv.options;
  if (DAEMON_COMMANDS.has(inv.command)) throw new IpvsadmExit(2, refusal(inv.command));
  if (RULE_COMMANDS.has(inv.command)) {
    await changeServices(admin, (services, rules) => applyInvocation(services, inv, rules));
    return 0;
  }
  switch (inv.command) {
    case "list": {
      if (opts.has("connection")) {
        out.stdout += formatConnections(await listConnections(admin), inv.format, names);
      } else if (opts.has("service-address")) {
        const services = await fetchServices(admin, inv.format.stats || inv.format.rate);
        const svc = findService(services, inv.service!);
        // As ipvsadm's list_service, a missing service ends the run with status 1.
        if (svc === null) throw new IpvsadmExit(1, "No such service");
        out.stdout += formatService(svc, inv.format, names);
      } else if (opts.has("timeout")) {
        out.stdout += formatTimeouts(await call(admin, TimeoutsAnswer, "GET", "/api/v1/timeouts"));
      } else if (opts.has("daemon")) {
        // ipvsadm prints a line per running sync daemon; tunvs runs none.
      } else {
        const services = await fetchServices(admin, inv.format.stats || inv.format.rate);
        out.stdout += formatListing(services, inv.format, names);
      }
      return 0;
    }
    case "save":
      out.stdout += formatSave(await fetchServices(admin, false), inv.format, names);
      return 0;
    case "zero": {
      let query = "";
      if (inv.service !== undefined) {
        const svc = findService(await fetchServices(admin, false), inv.service);
        if (svc === null) {
          out.stderr += "No such service\n";
          return OPERATION_FAILED;
        }
        query = `?service=${encodeURIComponent(svc.name)}`;
      }
      await call(admin, z.unknown(), "POST", `/api/v1/stats/zero${query}`);
      return 0;
    }
    case "set": {
      // As IPVS, a zero leaves that timeout as it is.
      const t = inv.timeouts!;
      const body = Object.fromEntries(Object.entries(t).filter(([, v]) => v > 0));
      if (Object.keys(body).length === 0) return 0;
      // As the kernel's --set: the values given win, whatever else changed meanwhile.
      await call(admin, TimeoutsAnswer, "PUT", "/api/v1/timeouts", body, { "if-match": "*" });
      return 0;
    }
    case "get-laddr": {
      const services = await fetchServices(admin, false);
      if (inv.service === undefined) {
        out.stdout += formatLocalAddresses(services, names);
        return 0;
      }
      const svc = findService(services, inv.service);
      if (svc === null) {
        out.stderr += "No such service\n";
        return OPERATION_FAILED;
      }
      out.stdout += formatLocalAddresses([svc], names);
      return 0;
    }
    case "restore":
      return await restore(ctx, out, readingStdin);
    default:
      throw new Error(`unreachable: ${inv.command}`);
  }
}

/**
 * `-R`: every line of standard input is an ipvsadm command line. All lines are
 * parsed first (a bad one ends the run as in ipvsadm, before anything is done);
 * the rule changes are then applied in order to the configured services and
 * written back as one change, so an error on any line changes nothing. The
 * other lines (-Z, --set, listings) run after it, in order.
 */
async function restore(ctx: IpvsadmContext, out: Output, readingStdin: boolean): Promise<number> {
  if (readingStdin) throw tryHelp(ctx.program);
  const lines = (await ctx.readStdin()).split("\n");
  const rules: { line: number; invocation: Invocation }[] = [];
  const runs: Invocation[] = [];
  let lineNo = 0;
  for (const line of lines) {
    lineNo++;
    const args = restoreLineArgs(line);
    if (args.length === 0) continue;
    const parsed = parseIpvsadm(args, ctx.program, ctx.names);
    if (parsed.kind !== "run") continue;
    const inv = parsed.invocation;
    if (DAEMON_COMMANDS.has(inv.command)) {
      throw new IpvsadmExit(2, `restore: line ${lineNo}: ${refusal(inv.command)}`);
    }
    // ipvsadm refuses a -R read from -R's own input.
    if (inv.command === "restore") throw tryHelp(ctx.program);
    if (RULE_COMMANDS.has(inv.command)) rules.push({ line: lineNo, invocation: inv });
    else runs.push(inv);
  }
  if (rules.length > 0) {
    await changeServices(ctx.admin, (services, context) => {
      let next = [...services];
      for (const { line, invocation } of rules) {
        try {
          next = applyInvocation(next, invocation, context);
        } catch (err) {
          if (!(err instanceof IpvsadmExit)) throw err;
          throw new IpvsadmExit(err.code, `restore: line ${line}: ${err.message}`);
        }
      }
      return next;
    });
  }
  let code = 0;
  for (const inv of runs) code = await execute(inv, ctx, out, true);
  return code;
}

/** Runs ipvsadm with `args` (no program name) against `ctx`; never throws for ipvsadm errors. */
export async function runIpvsadm(
  args: readonly string[],
  ctx: IpvsadmContext,
  tunvsVersion: string,
): Promise<IpvsadmResult> {
  const out: Output = { stdout: "", stderr: "" };
  let code: number;
  try {
    if (args.length === 0) {
      out.stdout += formatListing(await fetchServices(ctx.admin, false), PLAIN_FORMAT, ctx.names);
      code = 0;
    } else {
      const parsed = parseIpvsadm(args, ctx.program, ctx.names);
      if (parsed.kind === "help") {
        out.stdout += usageText(ctx.program, tunvsVersion);
        code = 0;
      } else if (parsed.kind === "version") {
        out.stdout += versionText(tunvsVersion);
        code = 0;
      } else {
        code = await execute(parsed.invocation, ctx, out, false);
      }
    }
  } catch (err) {
    if (err instanceof IpvsadmExit) {
      out.stderr += `${err.message}\n`;
      code = err.code;
    } else if (err instanceof AdminUnreachable) {
      // As ipvsadm without the ip_vs module: the same opening, then where it looked.
      out.stderr += `Can't initialize ipvs: ${err.message}\n` +
        "Are you sure that the tunvs appliance is running (tunvs run)?" +
        (err.source === "" ? "\n" : ` That address came from ${err.source}.\n`);
      code = 2;
    } else if (err instanceof ApiError) {
      out.stderr += `${err.message}\n`;
      code = OPERATION_FAILED;
    } else {
      throw err;
    }
  }
  return { code, stdout: out.stdout, stderr: out.stderr };
}

// ---------------------------------------------------------------------------------------------
// The command line around it: where the admin endpoint is, and the program's name.

/** The admin endpoint's base URL from a `listen` value ("HOST:PORT", "unix:/PATH" or a URL). */
export function adminUrlFrom(listen: string): string {
  const trimmed = listen.trim().replace(/\/+$/, "");
  if (/^https?:\/\//.test(trimmed) || trimmed.startsWith("unix:")) return trimmed;
  // A wildcard listener is reached on loopback.
  return `http://${trimmed.replace(/^0\.0\.0\.0:/, "127.0.0.1:")}`;
}

/**
 * Reads `admin.listen` (the appliance's default when the file has none) and `admin.token_file`
 * from a configuration file; null when the file cannot be read or parsed.
 */
export function adminListenIn(configPath: string): { listen: string; tokenFile?: string } | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(configPath);
  } catch {
    return null;
  }
  try {
    const doc = parseYaml(text) as { admin?: { listen?: unknown; token_file?: unknown } } | null;
    const listen = doc?.admin?.listen;
    const tokenFile = doc?.admin?.token_file;
    return {
      listen: typeof listen === "string" ? listen : CONFIG_DEFAULTS.adminListen,
      ...(typeof tokenFile === "string" ? { tokenFile } : {}),
    };
  } catch {
    return null;
  }
}

/** Options of tunvs's own that may come with the ipvsadm arguments, taken out of them. */
export interface AdminChoice {
  url: string;
  /** How it was chosen, for the "not running" message. */
  source: string;
  /** The ipvsadm arguments left. */
  args: string[];
  /** The file holding the admin token and where that path came from; absent: none sent. */
  tokenFile?: { path: string; source: string };
}

/**
 * Takes `--admin URL` and `--config FILE` (ipvsadm has neither) out of `args`
 * and decides the admin URL: --admin, then --config's admin.listen, then
 * TUNVS_ADMIN, then TUNVS_CONFIG's or ./appliance.yaml's admin.listen, then the default.
 * The token file: TUNVS_ADMIN_TOKEN_FILE, else admin.token_file of the configuration file
 * the URL came from.
 */
export function chooseAdmin(
  args: readonly string[],
  env: (name: string) => string | undefined,
  listenIn: (path: string) => string | { listen: string; tokenFile?: string } | null =
    adminListenIn,
): AdminChoice {
  const rest: string[] = [];
  let admin: string | undefined;
  let config: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const m = /^--(admin|config)(?:=(.*))?$/.exec(a);
    if (m === null) {
      rest.push(a);
      continue;
    }
    const value = m[2] ?? args[++i];
    if (value === undefined) throw new IpvsadmExit(2, `--${m[1]} needs a value`);
    if (m[1] === "admin") admin = value;
    else config = value;
  }
  const envTokenFile = env("TUNVS_ADMIN_TOKEN_FILE");
  const choice = (url: string, source: string, tokenFile?: AdminChoice["tokenFile"]) => {
    const token = envTokenFile
      ? { path: envTokenFile, source: "TUNVS_ADMIN_TOKEN_FILE" }
      : tokenFile;
    return { url, source, args: rest, ...(token === undefined ? {} : { tokenFile: token }) };
  };
  /** The URL and token file a configuration file names. */
  const fromFile = (path: string, found: string | { listen: string; tokenFile?: string }) => {
    const { listen, tokenFile } = typeof found === "string" ? { listen: found } : found;
    const token = tokenFile === undefined
      ? undefined
      : { path: tokenFile, source: `admin.token_file in ${path}` };
    return choice(adminUrlFrom(listen), `admin.listen in ${path}`, token);
  };
  if (admin !== undefined) return choice(adminUrlFrom(admin), "--admin");
  if (config !== undefined) {
    const found = listenIn(config);
    if (found === null) {
      throw new IpvsadmExit(2, `${config}: cannot read admin.listen from it`);
    }
    return fromFile(config, found);
  }
  const fromEnv = env("TUNVS_ADMIN");
  if (fromEnv) return choice(adminUrlFrom(fromEnv), "TUNVS_ADMIN");
  const configPath = env("TUNVS_CONFIG") || "appliance.yaml";
  const found = listenIn(configPath);
  if (found !== null) return fromFile(configPath, found);
  return choice(DEFAULT_ADMIN_URL, "the default");
}

/**
 * Whether this process was started under the name `ipvsadm` (a symlink to, or
 * a copy of, the compiled tunvs): argv[0] from /proc/self/cmdline, which keeps
 * a symlink's name, else the executable's own name.
 */
export function invokedAsIpvsadm(): boolean {
  const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);
  try {
    const argv0 = Deno.readTextFileSync("/proc/self/cmdline").split("\0")[0];
    if (base(argv0) === "ipvsadm") return true;
  } catch {
    // No /proc or no read permission: the executable's name still tells.
  }
  try {
    return base(Deno.execPath()) === "ipvsadm";
  } catch {
    return false;
  }
}

async function writeAll(stream: { write(p: Uint8Array): Promise<number> }, text: string) {
  let bytes = new TextEncoder().encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(await stream.write(bytes));
  } catch (err) {
    // A reader that went away (ipvsadm -Lnc | head) is not an error of ours.
    if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
  }
}

/** The `ipvsadm` program: runs `args` against the appliance, prints, returns the exit status. */
export async function ipvsadmMain(
  args: readonly string[],
  program: string,
  tunvsVersion: string,
): Promise<number> {
  let result: IpvsadmResult;
  try {
    const choice = chooseAdmin(args, (name) => Deno.env.get(name));
    result = await runIpvsadm(choice.args, {
      program,
      admin: httpAdminClient(choice.url, choice.source, undefined, choice.tokenFile),
      names: systemNameDb(),
      readStdin: () => new Response(Deno.stdin.readable).text(),
    }, tunvsVersion);
  } catch (err) {
    if (!(err instanceof IpvsadmExit)) throw err;
    result = { code: err.code, stdout: "", stderr: `${err.message}\n` };
  }
  await writeAll(Deno.stdout, result.stdout);
  await writeAll(Deno.stderr, result.stderr);
  return result.code;
}
