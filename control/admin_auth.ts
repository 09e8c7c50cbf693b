/**
 * Who may use the admin endpoint, and what it accepts: the bearer token (read from a file, as
 * ssh reads a key: refused when others could read it), and the guards every request passes
 * before it reaches an endpoint — requests from web pages refused, the token checked, bodies
 * JSON and size-limited.
 *
 * The guards answer 4xx with a JSON `{error}`; a refused request never reaches the app.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";

/** The shortest token accepted, in characters after trimming (16 of base64 are 96 bits). */
export const MIN_TOKEN_LENGTH = 16;

/** A token file larger than this is not a token file. */
const MAX_TOKEN_FILE_BYTES = 4096;

/** Request bodies larger than this are refused with 413 unless configured otherwise: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

/** Requests that need no token: liveness, so that supervisors can ask without the secret. */
export const OPEN_ENDPOINTS: readonly string[] = ["/healthz"];

/**
 * Bodies besides JSON accepted at these paths: a configuration to validate may come as the
 * YAML file itself.
 */
export const DEFAULT_OTHER_BODY_TYPES: Readonly<Record<string, readonly string[]>> = {
  "/api/v1/config/validate": ["application/yaml", "application/x-yaml", "text/yaml", "text/plain"],
};

/** A token file that cannot be used: missing, not a regular file, readable by others, too short. */
export class AdminTokenError extends Error {
  /** `path` is the token file, `message` says what is wrong with it and what to do. */
  constructor(readonly path: string, message: string) {
    super(message);
    this.name = "AdminTokenError";
  }
}

/** The permission bits as `ls -l`'s octal, e.g. 0644. */
function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}

/**
 * Reads the admin token from `path`. The file must be a regular file owned by this user or
 * root that neither group nor others can read or write (mode & 077 = 0, as ssh demands of a
 * private key), holding one token of at least MIN_TOKEN_LENGTH visible ASCII characters.
 * Checks and reading use the same open file, so the file cannot be swapped in between.
 */
export async function readAdminToken(path: string): Promise<string> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new AdminTokenError(
        path,
        `admin token file ${path} does not exist; create it with a random token, e.g. ` +
          `(umask 077; head -c 32 /dev/urandom | base64 > ${path})`,
      );
    }
    throw new AdminTokenError(
      path,
      `cannot open admin token file ${path}: ${(err as Error).message}`,
    );
  }
  try {
    const info = await file.stat();
    if (!info.isFile) {
      throw new AdminTokenError(path, `admin token file ${path} is not a regular file`);
    }
    const mode = info.mode ?? 0;
    if ((mode & 0o077) !== 0) {
      throw new AdminTokenError(
        path,
        `admin token file ${path} is accessible by group or others (permissions ` +
          `${octal(mode)} are too open); it must be readable by its owner only: chmod 600 ${path}`,
      );
    }
    const uid = Deno.uid();
    if (info.uid !== null && uid !== null && info.uid !== uid && info.uid !== 0) {
      throw new AdminTokenError(
        path,
        `admin token file ${path} belongs to user ${info.uid}; it must belong to this user ` +
          `(${uid}) or root`,
      );
    }
    if (info.size > MAX_TOKEN_FILE_BYTES) {
      throw new AdminTokenError(
        path,
        `admin token file ${path} has ${info.size} bytes; a token file holds one token ` +
          `(at most ${MAX_TOKEN_FILE_BYTES} bytes)`,
      );
    }
    const bytes = new Uint8Array(MAX_TOKEN_FILE_BYTES + 1);
    let length = 0;
    while (length < bytes.length) {
      const n = await file.read(bytes.subarray(length));
      if (n === null) break;
      length += n;
    }
    const token = new TextDecoder().decode(bytes.subarray(0, length)).trim();
    if (!/^[\x21-\x7e]*$/.test(token)) {
      throw new AdminTokenError(
        path,
        `admin token file ${path} must hold one token of visible ASCII characters, without ` +
          `spaces or line breaks inside (base64 or hex, for instance)`,
      );
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new AdminTokenError(
        path,
        `admin token in ${path} has ${token.length} characters; it needs at least ` +
          `${MIN_TOKEN_LENGTH} (e.g. head -c 32 /dev/urandom | base64)`,
      );
    }
    return token;
  } finally {
    file.close();
  }
}

/** Compares tokens in time independent of where they differ and of their lengths. */
export function tokenMatches(expected: string, given: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(expected), digest(given));
}

/** The realm named in WWW-Authenticate. */
const REALM = 'Bearer realm="tunvs"';

/**
 * Requires `Authorization: Bearer TOKEN` on every request but GET/HEAD of OPEN_ENDPOINTS.
 * Missing and wrong tokens both get 401 (RFC 6750: 403 is for a valid token lacking scope,
 * which tunvs does not have); a wrong one also says `error="invalid_token"`. With `token`
 * null every request passes: only a loopback or Unix-socket endpoint runs without one.
 */
export function requireBearerToken(
  token: string | null,
  open: readonly string[] = OPEN_ENDPOINTS,
): MiddlewareHandler {
  return async (c, next) => {
    if (token === null) return await next();
    if ((c.req.method === "GET" || c.req.method === "HEAD") && open.includes(c.req.path)) {
      return await next();
    }
    const header = c.req.header("authorization");
    if (header === undefined || header.trim() === "") {
      c.header("WWW-Authenticate", REALM);
      return c.json({
        error: "this endpoint needs a bearer token: send Authorization: Bearer TOKEN, with " +
          "the token from the file admin.token_file names",
      }, 401);
    }
    const m = /^Bearer +([^ ]+) *$/i.exec(header);
    if (m === null || !tokenMatches(token, m[1])) {
      c.header("WWW-Authenticate", `${REALM}, error="invalid_token"`);
      return c.json({
        error: m === null
          ? "the Authorization header must be Bearer TOKEN"
          : "the bearer token is not the one in the appliance's admin.token_file",
      }, 401);
    }
    return await next();
  };
}

/**
 * Refuses requests a web browser makes on a page's behalf: anything with `Origin` or with
 * `Sec-Fetch-Site` other than `none` (a page could otherwise POST to a loopback endpoint that
 * has no token — cross-site request forgery). With `loopbackHostOnly`, also a `Host` that is not
 * a loopback name: a page whose DNS name was re-pointed at 127.0.0.1 (DNS rebinding) still says
 * its own name there.
 */
export function refuseBrowserRequests(loopbackHostOnly: boolean): MiddlewareHandler {
  return async (c, next) => {
    const site = c.req.header("sec-fetch-site");
    if (c.req.header("origin") !== undefined || (site !== undefined && site !== "none")) {
      return c.json({ error: "requests made by web pages are refused by the admin endpoint" }, 403);
    }
    if (loopbackHostOnly) {
      const host = c.req.header("host");
      if (host !== undefined && !isLoopbackHostHeader(host)) {
        return c.json({
          error: `the admin endpoint answers to loopback names only (127.0.0.1, localhost), ` +
            `not ${JSON.stringify(host.slice(0, 100))}`,
        }, 403);
      }
    }
    return await next();
  };
}

/** Whether a Host header names this host by a loopback name or address (any port). */
function isLoopbackHostHeader(host: string): boolean {
  const name = host.trim().toLowerCase().replace(/:[0-9]*$/, "");
  if (name === "localhost" || name === "[::1]") return true;
  const m = /^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$/.exec(name);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

/**
 * Whether the request carries a body. HTTP/1.1 says so with Content-Length or
 * Transfer-Encoding; Deno.serve hands a (empty) body stream even to a bare DELETE, so the
 * stream alone does not tell.
 */
function hasBody(c: Context): boolean {
  if (c.req.raw.body === null) return false;
  const length = c.req.header("content-length");
  if (length !== undefined) return Number(length) !== 0;
  return c.req.header("transfer-encoding") !== undefined;
}

/**
 * Refuses, with 415, a request body that is not JSON (`application/json` or `…+json`), or one
 * without a Content-Type, unless `otherTypes` lists its media type for that exact path. GET and
 * HEAD bodies are ignored by every endpoint and not checked.
 */
export function requireJsonBodies(
  otherTypes: Readonly<Record<string, readonly string[]>> = DEFAULT_OTHER_BODY_TYPES,
): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD" || !hasBody(c)) return await next();
    const type = c.req.header("content-type");
    const media = (type ?? "").split(";")[0].trim().toLowerCase();
    if (/^application\/([a-z0-9.+-]+\+)?json$/.test(media)) return await next();
    const others = Object.hasOwn(otherTypes, c.req.path) ? otherTypes[c.req.path] : [];
    if (media !== "" && others.includes(media)) return await next();
    const accepted = ["application/json", ...others].join(", ");
    return c.json({
      error: `the request body must be sent as ${accepted} ` +
        `(got ${type === undefined ? "no Content-Type" : JSON.stringify(type.slice(0, 100))})`,
    }, 415);
  };
}

/**
 * Refuses, with 413, a request body over `maxBytes`: at once by its Content-Length, and, for a
 * chunked body without one, as soon as more than that arrived (a chunked body within the limit
 * is buffered and handed on).
 */
export function limitBodySize(maxBytes: number = DEFAULT_MAX_BODY_BYTES): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: (c) =>
      c.json({ error: `the request body is larger than the limit of ${maxBytes} bytes` }, 413),
  });
}

/** How the guards in front of the admin app are set up. */
export interface AdminGuardOptions {
  /** The token every request but GET /healthz needs; null: none (loopback or Unix socket). */
  token: string | null;
  /** Largest request body in bytes (default DEFAULT_MAX_BODY_BYTES). */
  maxBodyBytes?: number;
  /** Media types accepted besides JSON, by exact path (default DEFAULT_OTHER_BODY_TYPES). */
  otherBodyTypes?: Readonly<Record<string, readonly string[]>>;
  /** Whether Host must be a loopback name (a TCP endpoint on loopback; see refuseBrowserRequests). */
  loopbackHostOnly?: boolean;
}

/**
 * The guards, in the order they run: browser requests, the token, the body's type (no body is
 * read for a refused request), the body's size.
 */
export function adminGuards(options: AdminGuardOptions): MiddlewareHandler[] {
  return [
    refuseBrowserRequests(options.loopbackHostOnly ?? false),
    requireBearerToken(options.token),
    requireJsonBodies(options.otherBodyTypes),
    limitBodySize(options.maxBodyBytes),
  ];
}

/** Anything that answers a Request, as a Hono app does. */
export interface FetchApp {
  /** Answers one request; `env` is what Deno.serve passes (ServeHandlerInfo). */
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/**
 * `app` behind the admin guards: what the admin endpoint serves. The guards sit outside the app,
 * so every route is covered, whichever order the app registers its routes in.
 */
export function guardAdminApp(app: FetchApp, options: AdminGuardOptions): Hono {
  const guarded = new Hono();
  guarded.use("*", ...adminGuards(options));
  guarded.all("*", (c) => app.fetch(c.req.raw, c.env));
  return guarded;
}
