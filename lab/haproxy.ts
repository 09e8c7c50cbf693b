/**
 * HAProxy in TCP mode as a lab peer of the appliance: it listens on the VIP in the director's
 * namespace and proxies each port to one real. Its configuration lives in a lab temp dir.
 */
import { type Lab, OutputCollector, stopProcess } from "./netns.ts";
import { waitForTcp } from "./servers.ts";

/** The haproxy binary Debian installs. */
export const HAPROXY_BIN = "/usr/sbin/haproxy";

/** Options for {@linkcode startHaproxy}. */
export interface HaproxyOptions {
  /** Address it listens on (a local address of the namespace). */
  vip: string;
  /** Where each listened port goes: the real's address, same port. */
  real: string;
  ports: number[];
  /** Threads (`nbthread`); default 2, the machine's cores. */
  threads?: number;
}

/** A running HAProxy. */
export interface HaproxyProcess {
  pid: number;
  /** Stops it and waits for the exit; idempotent. */
  stop(): Promise<void>;
  logs(): string;
}

/** Renders the configuration: TCP mode, one frontend and backend per port, no health checks. */
export function haproxyConfig(opts: HaproxyOptions): string {
  const lines = [
    "global",
    `  nbthread ${opts.threads ?? 2}`,
    // Two descriptors a connection: this fits the 20000-descriptor limit of these machines.
    "  maxconn 8000",
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    "  timeout client 60s",
    "  timeout server 60s",
  ];
  for (const port of opts.ports) {
    lines.push(
      `listen p${port}`,
      `  bind ${opts.vip}:${port}`,
      `  server real ${opts.real}:${port}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** Starts `haproxy -db -f CONFIG` in `role`'s namespace and waits until every port accepts. */
export async function startHaproxy(
  lab: Lab,
  role: string,
  opts: HaproxyOptions,
): Promise<HaproxyProcess> {
  const dir = await lab.makeTempDir(`${role}-haproxy`);
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, haproxyConfig(opts));
  const child = lab.spawn(role, [HAPROXY_BIN, "-db", "-f", `${dir}/haproxy.cfg`], {
    stdout: "piped",
    stderr: "piped",
  });
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  const stdout = new OutputCollector(child.stdout, 64 << 10);
  let stopping: Promise<void> | null = null;
  const handle: HaproxyProcess = {
    pid: child.pid,
    stop: () => {
      stopping ??= stopProcess(child).then(() => Promise.all([stderr.done, stdout.done]))
        .then(() => {});
      return stopping;
    },
    logs: () => `${stderr.text()}${stdout.text()}`,
  };
  try {
    for (const port of opts.ports) await waitForTcp(lab, role, opts.vip, port, 10_000);
  } catch (err) {
    await handle.stop();
    throw new Error(`haproxy did not start: ${(err as Error).message}\n${handle.logs()}`);
  }
  return handle;
}
