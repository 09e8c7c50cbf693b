/**
 * Serves the admin app where `admin.listen` says — TCP HOST:PORT or a Unix socket — behind the
 * guards of admin_auth.ts, with the token read from `admin.token_file` at start.
 *
 * A TCP endpoint on anything but loopback refuses to start without a token. A Unix socket is
 * created with mode 0600: the process umask is set to 0177 around the bind (the mode a socket is
 * born with), not chmod afterwards, because the kernel checks a socket's permissions at
 * connect() only: a client that connected in a window between bind and chmod would keep its
 * connection. The umask is process-wide, but JS runs on one thread and the bind is synchronous,
 * so nothing else of ours creates files in between (another thread could only get a stricter
 * mode). The socket is then chmod 0600 anyway and checked, and removed on shutdown.
 *
 * @module
 */
import {
  type AdminGuardOptions,
  type FetchApp,
  guardAdminApp,
  readAdminToken,
} from "./admin_auth.ts";
import { type AdminConfig, isLoopbackHost } from "./config.ts";

/** The admin endpoint cannot be served as configured; the message says why and what to do. */
export class AdminServeError extends Error {
  /** `message` names the setting involved. */
  constructor(message: string) {
    super(message);
    this.name = "AdminServeError";
  }
}

/** The admin endpoint being served. */
export interface AdminServer {
  /** Where it listens: Deno's address of the listener (TCP with the port bound, or Unix). */
  readonly address: Deno.NetAddr | Deno.UnixAddr;
  /** How clients reach it: `http://HOST:PORT`, or `unix:/PATH`. */
  readonly url: string;
  /** Whether requests need the bearer token. */
  readonly tokenRequired: boolean;
  /** Stops accepting, finishes requests under way, and removes the socket file. */
  shutdown(): Promise<void>;
}

/** Limits and body types of the guards (the token comes from the configuration). */
export type AdminServeOptions = Omit<AdminGuardOptions, "token" | "loopbackHostOnly">;

/** Makes way for the socket: removes a stale one; refuses a live socket or any other file. */
async function clearSocketPath(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw new AdminServeError(`admin.listen unix:${path}: ${(err as Error).message}`);
  }
  if (!info.isSocket) {
    throw new AdminServeError(
      `admin.listen unix:${path}: a file that is not a socket is in the way; refusing to ` +
        `remove it (remove it yourself, or choose another path)`,
    );
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (err) {
    if (err instanceof Deno.errors.ConnectionRefused) {
      // Nothing listens: the socket of a process that ended without removing it.
      try {
        await Deno.remove(path);
        return;
      } catch (removeErr) {
        throw new AdminServeError(
          `admin.listen unix:${path}: cannot remove the stale socket: ` +
            (removeErr as Error).message,
        );
      }
    }
    throw new AdminServeError(`admin.listen unix:${path}: ${(err as Error).message}`);
  }
  throw new AdminServeError(
    `admin.listen unix:${path}: another process is listening on this socket ` +
      `(is tunvs already running?)`,
  );
}

/** The directory part of an absolute path. */
function directoryOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** The device and inode of a file: which socket a path names. */
type FileIdentity = { dev: number; ino: number | null };

/**
 * Binds the Unix socket with mode 0600 from its creation (see the module comment); returns the
 * server and which file its socket is.
 */
async function serveUnix(
  path: string,
  handler: Deno.ServeHandler<Deno.UnixAddr>,
): Promise<{ server: Deno.HttpServer<Deno.UnixAddr>; identity: FileIdentity }> {
  const dir = directoryOf(path);
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new AdminServeError(
      `admin.listen unix:${path}: cannot create ${dir}: ${(err as Error).message}`,
    );
  }
  await clearSocketPath(path);
  const previous = Deno.umask(0o177);
  let server: Deno.HttpServer<Deno.UnixAddr>;
  try {
    server = Deno.serve({ transport: "unix", path, onListen: () => {} }, handler);
  } catch (err) {
    throw new AdminServeError(`admin.listen unix:${path}: ${(err as Error).message}`);
  } finally {
    Deno.umask(previous);
  }
  try {
    await Deno.chmod(path, 0o600);
    const info = await Deno.lstat(path);
    const mode = (info.mode ?? 0) & 0o777;
    if (mode !== 0o600) throw new Error(`its mode is 0${mode.toString(8)}`);
    return { server, identity: { dev: info.dev, ino: info.ino } };
  } catch (err) {
    await server.shutdown();
    throw new AdminServeError(
      `admin.listen unix:${path}: cannot make the socket 0600: ${(err as Error).message}`,
    );
  }
}

/** Removes the socket at `path` if it is still the one `identity` describes. */
async function removeSocket(path: string, identity: FileIdentity) {
  try {
    const now = await Deno.lstat(path);
    // Another process may have taken the path over since; its socket is not ours to remove.
    if (now.isSocket && now.dev === identity.dev && now.ino === identity.ino) {
      await Deno.remove(path);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/**
 * Serves `app` on `admin.listen` behind the admin guards; resolves once it listens. Rejects with
 * AdminServeError when the token file is unusable (see readAdminToken), when a TCP endpoint off
 * loopback has no token file, or when it cannot listen.
 */
export async function serveAdmin(
  app: FetchApp,
  admin: AdminConfig,
  options: AdminServeOptions = {},
): Promise<AdminServer> {
  let token: string | null = null;
  if (admin.tokenFile !== undefined) {
    try {
      token = await readAdminToken(admin.tokenFile);
    } catch (err) {
      throw new AdminServeError(`admin.token_file: ${(err as Error).message}`);
    }
  }
  const tcpOnLoopback = admin.transport === "tcp" && isLoopbackHost(admin.host);
  if (admin.transport === "tcp" && !tcpOnLoopback && token === null) {
    throw new AdminServeError(
      `admin.listen ${admin.listen} is not a loopback address: refusing to serve the admin ` +
        `endpoint there without admin.token_file`,
    );
  }
  const handler = guardAdminApp(app, { ...options, token, loopbackHostOnly: tcpOnLoopback }).fetch;

  if (admin.transport === "unix") {
    const { server, identity } = await serveUnix(admin.path, handler);
    return {
      address: { transport: "unix", path: admin.path },
      url: `unix:${admin.path}`,
      tokenRequired: token !== null,
      async shutdown() {
        await server.shutdown();
        await removeSocket(admin.path, identity);
      },
    };
  }

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname: admin.host, port: admin.port, onListen: () => {} }, handler);
  } catch (err) {
    const hint = err instanceof Deno.errors.AddrInUse ? " (is tunvs already running?)" : "";
    throw new AdminServeError(`admin.listen ${admin.listen}: ${(err as Error).message}${hint}`);
  }
  return {
    address: server.addr,
    url: `http://${server.addr.hostname}:${server.addr.port}`,
    tokenRequired: token !== null,
    shutdown: () => server.shutdown(),
  };
}
