/**
 * What every admin endpoint does with a request: errors that become 4xx answers naming the field,
 * JSON bodies parsed and schema-checked, and the configuration version a change is based on.
 *
 * @module
 */
import type { Context } from "hono";
import type { z } from "zod";

/** An operator's mistake in a request: answered with `status` and the field it concerns. */
export class RequestError extends Error {
  /** Creates the error; `field` is "" when the mistake is not about one field. */
  constructor(
    readonly status: 400 | 404 | 409 | 415 | 422 | 428,
    readonly field: string,
    message: string,
  ) {
    super(field === "" ? message : `${field}: ${message}`);
  }
}

/** Throws a 400 about `field`. */
export function fail(field: string, message: string): never {
  throw new RequestError(400, field, message);
}

/** Throws a 404: no such service, real or endpoint. */
export function notFound(message: string): never {
  throw new RequestError(404, "", message);
}

/** Throws a 409: the thing to create exists already. */
export function conflict(message: string): never {
  throw new RequestError(409, "", message);
}

/** Parses `input` with `schema`, turning its first issue into a 400 naming the field. */
export function parse<T>(schema: z.ZodType<T>, input: unknown): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue.code === "unrecognized_keys") return fail(issue.keys[0], "unknown field");
  return fail(issue.path.join("."), issue.message);
}

/**
 * The request's JSON body; an empty body is `empty` when given, else a 400. Its content type was
 * checked by the guards in front of the app (admin_auth.ts).
 */
export async function readJson(c: Context, shape: string, empty?: unknown): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") {
    if (empty !== undefined) return empty;
    return fail("", `the body must be JSON: ${shape}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    return fail("", `the body must be JSON: ${shape}`);
  }
}

/** The ETag header value for configuration `version`. */
export function etag(version: string): string {
  return `"${version}"`;
}

/**
 * The version a change is based on, from `If-Match`: the ETag of a configuration read earlier,
 * or `*` (null) to change whatever is current. A change without it is refused with 428, so that
 * nobody overwrites a change they have not seen.
 */
export function basedOn(c: Context): string | null {
  const header = c.req.header("if-match");
  if (header === undefined || header.trim() === "") {
    throw new RequestError(
      428,
      "",
      "a change must say which configuration version it is based on: send If-Match with the " +
        'ETag of GET /api/v1/config (or "*" to change whatever is current)',
    );
  }
  const value = header.trim();
  if (value === "*") return null;
  const m = /^(?:W\/)?"([^"]*)"$/.exec(value) ?? /^([0-9a-f]+)$/.exec(value);
  if (m === null) {
    throw new RequestError(400, "If-Match", `must be an ETag such as "0123abcd…" or *`);
  }
  return m[1];
}
