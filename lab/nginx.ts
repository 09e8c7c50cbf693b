/**
 * nginx as a lab real server for load tests: one worker, no access log, a fixed short answer on
 * `/`, its configuration, pid file and temp paths in a lab temp dir (never the host's /etc or
 * /var), run in the foreground so the lab stops it with its namespace.
 */
import type { Lab } from "./netns.ts";
import { type LabServer, startTcpServerProcess } from "./servers.ts";

/** Options for {@linkcode startNginx}. */
export interface NginxOptions {
  /** Port it listens on, on every address (a tunnel's real gets requests for the VIP too). */
  port: number;
  /** Body of every answer on `/`. */
  body?: string;
}

/** The nginx binary Debian installs. */
export const NGINX_BIN = "/usr/sbin/nginx";

/** Renders the configuration: nothing in it touches paths outside `dir`. */
export function nginxConfig(dir: string, opts: NginxOptions): string {
  const body = (opts.body ?? "ok\n").replaceAll("\\", "\\\\").replaceAll('"', '\\"')
    .replaceAll("\n", "\\n");
  return [
    "daemon off;",
    "master_process on;",
    // One worker: the load generators and forwarders share the machine's two cores.
    "worker_processes 1;",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    "events { worker_connections 8192; }",
    "http {",
    "  access_log off;",
    `  client_body_temp_path ${dir}/body;`,
    `  proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fastcgi;`,
    `  uwsgi_temp_path ${dir}/uwsgi;`,
    `  scgi_temp_path ${dir}/scgi;`,
    "  keepalive_requests 1000000;",
    "  server {",
    `    listen ${opts.port} backlog=4096;`,
    `    location / { default_type text/plain; return 200 "${body}"; }`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Starts nginx in `role`'s namespace and waits until it accepts connections. */
export async function startNginx(lab: Lab, role: string, opts: NginxOptions): Promise<LabServer> {
  const dir = await lab.makeTempDir(`${role}-nginx`);
  await Deno.writeTextFile(`${dir}/nginx.conf`, nginxConfig(dir, opts));
  // -e: the compiled-in error log (/var/log/nginx) is opened before the config is read.
  return await startTcpServerProcess(
    lab,
    role,
    [NGINX_BIN, "-p", dir, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`],
    opts.port,
    "nginx",
    300,
  );
}
