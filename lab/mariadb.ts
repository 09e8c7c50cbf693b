/**
 * A MariaDB server in a lab namespace, as seed 000's MySQL check uses: one
 * database of its own and a user granted only from one client address, so
 * that a login through the VIP proves the client's address was kept (NAT).
 */
import { type Lab, OutputCollector, run } from "./netns.ts";
import { type LabServer, serverHandle, waitReady } from "./servers.ts";

/** Options for {@linkcode startMariaDb}. */
export interface MariaDbOptions {
  /** A database to create, e.g. "mariadb1". */
  database: string;
  user: string;
  password: string;
  /** The only address the user may log in from. */
  clientAddr: string;
  port?: number;
}

/** Whether MariaDB's server binaries are installed. */
export async function mariaDbInstalled(): Promise<boolean> {
  for (const bin of ["/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db", "/usr/bin/mariadb"]) {
    try {
      await Deno.stat(bin);
    } catch {
      return false;
    }
  }
  return true;
}

/** Initialises a data directory, starts mariadbd on 0.0.0.0:`port` in `role`, creates the grants. */
export async function startMariaDb(
  lab: Lab,
  role: string,
  opts: MariaDbOptions,
): Promise<LabServer> {
  const port = opts.port ?? 3306;
  const dir = await lab.makeTempDir(`${role}-mariadb`);
  // A temporary directory of its own: bootstraps sharing /tmp trip over each other's temp tables.
  const tmp = `${dir}/tmp`;
  await Deno.mkdir(tmp);
  await run([
    "mariadb-install-db",
    "--no-defaults",
    `--datadir=${dir}/data`,
    "--user=root",
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    `--tmpdir=${tmp}`,
  ]);
  const socket = `${dir}/mysqld.sock`;
  const child = lab.spawn(role, [
    "mariadbd",
    "--no-defaults",
    `--datadir=${dir}/data`,
    "--user=root",
    `--socket=${socket}`,
    `--port=${port}`,
    "--bind-address=0.0.0.0",
    "--skip-log-bin",
    `--tmpdir=${tmp}`,
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=16M",
    `--pid-file=${dir}/mysqld.pid`,
  ], { stdout: "null", stderr: "piped" });
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  const server = serverHandle(role, port, child, stderr);
  const sql = (statements: string) =>
    lab.exec(role, ["mariadb", "--no-defaults", "-S", socket, "-u", "root", "-e", statements], {
      allowFail: true,
    });
  await waitReady(lab, role, child, stderr, "mariadbd", async () => {
    const r = await sql("select 1");
    if (r.code !== 0) await new Promise((resolve) => setTimeout(resolve, 100));
    return r.code === 0;
  });
  const user = `'${opts.user}'@'${opts.clientAddr}'`;
  const r = await sql(
    `create database ${opts.database}; create user ${user} identified by '${opts.password}'; ` +
      `grant all on *.* to ${user}; flush privileges;`,
  );
  if (r.code !== 0) throw new Error(`mariadb grants in ${role} failed: ${r.stderr}`);
  return server;
}
