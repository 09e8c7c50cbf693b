/**
 * HTTP and HTTPS checkers (keepalived's HTTP_GET and SSL_GET): one request, healthy when the
 * status is listed and the body matches the digest and substring when they are set. HTTPS does
 * not verify the certificate, as SSL_GET does not: reals often carry self-signed ones, and the
 * check is about liveness, not identity. node:https is used because Deno's own TLS cannot skip
 * verification for one connection.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import {
  type CheckResult,
  type CheckTarget,
  elapsedMs,
  errorText,
  type HttpCheckSettings,
} from "./types.ts";

/** Largest body read for the digest and substring checks; longer bodies fail the check. */
export const MAX_BODY_BYTES = 1 << 20;

interface Reply {
  status: number;
  body: Uint8Array;
}

function request(
  target: CheckTarget,
  settings: HttpCheckSettings,
  tls: boolean,
  signal: AbortSignal,
  wantBody: boolean,
): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const options = {
      host: target.address,
      port: target.port,
      method: settings.method,
      path: settings.path,
      headers: { Host: settings.host ?? target.address, Connection: "close" },
      signal,
      agent: false as const,
    };
    const onResponse = (res: http.IncomingMessage) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      res.on("data", (chunk: Uint8Array) => {
        if (!wantBody) return;
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
          res.destroy(new Error(`body longer than ${MAX_BODY_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on("error", reject);
      res.on("end", () => {
        const body = new Uint8Array(size);
        let off = 0;
        for (const c of chunks) {
          body.set(c, off);
          off += c.length;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    };
    const req = tls
      ? https.request({ ...options, rejectUnauthorized: false }, onResponse)
      : http.request(options, onResponse);
    req.on("error", (e) => reject(signal.aborted ? new Error("timed out") : e));
    req.end();
  });
}

/** Runs one HTTP (`tls` false) or HTTPS request against the target and judges the reply. */
export async function httpCheck(
  target: CheckTarget,
  settings: HttpCheckSettings,
  tls: boolean,
  signal: AbortSignal,
): Promise<CheckResult> {
  const start = performance.now();
  const wantBody = settings.digest !== null || settings.substring !== null;
  let reply: Reply;
  try {
    reply = await request(target, settings, tls, signal, wantBody);
  } catch (e) {
    return { ok: false, latencyMs: elapsedMs(start), reason: `request: ${errorText(e)}` };
  }
  const latencyMs = elapsedMs(start);
  if (!settings.status.includes(reply.status)) {
    return { ok: false, latencyMs, reason: `status ${reply.status} not in ${settings.status}` };
  }
  if (settings.digest !== null) {
    const digest = createHash("md5").update(reply.body).digest("hex");
    if (digest !== settings.digest.toLowerCase()) {
      return { ok: false, latencyMs, reason: `body digest ${digest} != ${settings.digest}` };
    }
  }
  if (settings.substring !== null) {
    const text = new TextDecoder().decode(reply.body);
    if (!text.includes(settings.substring)) {
      return {
        ok: false,
        latencyMs,
        reason: `body lacks ${JSON.stringify(settings.substring)}`,
      };
    }
  }
  return { ok: true, latencyMs, reason: `status ${reply.status}` };
}
