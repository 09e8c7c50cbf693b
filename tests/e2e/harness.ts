/**
 * What the end-to-end tests share: their Deno.test options, configuration
 * files for the appliance, and running it around a test body.
 */
import assert from "node:assert/strict";
import type { ConnectionEntry } from "../../dataplane/stats/conn_listing.ts";
import { type ApplianceProcess, REPO_ROOT, startAppliance } from "../../lab/appliance.ts";
import type { Lab, RunResult } from "../../lab/netns.ts";
import { curl } from "../../lab/servers.ts";
import { prng } from "../fixtures/prng.ts";
import { needsRoot } from "./root.ts";

/** Deno.test options for a namespace test: skipped without root; processes outlive steps. */
export function e2eOptions(what: string) {
  return { ignore: needsRoot(what), sanitizeOps: false, sanitizeResources: false };
}

/** Headers of a change made regardless of the configuration's version (`If-Match: *`). */
export const ANY = { "if-match": "*" };

/** A service as the tests write it into appliance.yaml. */
export interface ServiceDef {
  name?: string;
  protocol?: "tcp" | "udp";
  vip: string;
  scheduler: string;
  /** Further YAML lines of the service, e.g. "port: 80" or "persistence: { timeout: 10 }". */
  settings: string[];
  /** `extra`: further flow-map fields of the real, e.g. "upper_threshold: 100". */
  reals: { address: string; port?: number; weight?: number; extra?: string }[];
}

/** Writes `dir`/`name`.yaml with `services` (and any top-level `header` lines); returns its path. */
export async function writeConfig(
  dir: string,
  name: string,
  services: ServiceDef[],
  header: string[] = [],
): Promise<string> {
  const lines = [...header, "services:"];
  for (const s of services) {
    lines.push(
      `  - name: ${s.name ?? "web"}`,
      `    protocol: ${s.protocol ?? "tcp"}`,
      `    vip: ${s.vip}`,
      `    scheduler: ${s.scheduler}`,
      ...s.settings.map((l) => `    ${l}`),
      "    reals:",
      ...s.reals.map((r) => {
        const fields = [`address: ${r.address}`];
        if (r.port !== undefined) fields.push(`port: ${r.port}`);
        if (r.weight !== undefined) fields.push(`weight: ${r.weight}`);
        if (r.extra !== undefined) fields.push(r.extra);
        return `      - { ${fields.join(", ")} }`;
      }),
    );
  }
  const path = `${dir}/${name}.yaml`;
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}

/**
 * Runs `fn` with the appliance up on `config` in the director namespace; always stops it,
 * requires a clean exit, and prints its log when anything fails.
 */
export async function withAppliance(
  lab: Lab,
  config: string,
  fn: (app: ApplianceProcess) => Promise<void>,
): Promise<void> {
  const app = await startAppliance(lab, "director", config);
  try {
    await fn(app);
  } catch (err) {
    console.error(`appliance log:\n${app.logs()}`);
    throw err;
  } finally {
    const { code } = await app.stop();
    assert.equal(code, 0, `appliance exit code\n${app.logs()}`);
  }
}

/** The hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reproducible, incompressible bytes (size a multiple of 4) for transfers that must arrive intact. */
export function randomBytes(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  const next = prng(seed);
  const words = new Uint32Array(bytes.buffer);
  for (let i = 0; i < words.length; i++) words[i] = next();
  return bytes;
}

/** Downloads `url` with curl inside `role` and returns the SHA-256 of what arrived. */
export async function downloadDigest(
  lab: Lab,
  role: string,
  url: string,
  timeoutSec = 120,
): Promise<string> {
  const r = await lab.exec(role, [
    "sh",
    "-c",
    `curl -sS --fail -m ${timeoutSec} ${url} | sha256sum`,
  ]);
  return r.stdout.split(" ")[0];
}

/**
 * Requests `url` `n` times from `role` and returns who answered each: the first word of the
 * body, as the lab's HTTP servers name themselves first. Every request must get a 200.
 */
export async function whoAnswers(
  lab: Lab,
  role: string,
  url: string,
  n: number,
  extraArgs: string[] = [],
): Promise<string[]> {
  const answers: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await curl(lab, role, url, { timeoutSec: 5, extraArgs });
    assert.equal(r.code, 200, `request ${i + 1} to ${url}: ${r.stderr}`);
    answers.push(r.body.trim().split(" ")[0]);
  }
  return answers;
}

/** The appliance's connection listing (`ipvsadm -Lnc`), one page of up to `limit`. */
export async function listConnections(
  app: ApplianceProcess,
  query = "",
  limit = 1000,
): Promise<ConnectionEntry[]> {
  const page = await app.api(`/api/v1/connections?limit=${limit}${query ? `&${query}` : ""}`);
  return (page as { connections: ConnectionEntry[] }).connections;
}

/** What the tests read of `GET /api/v1/services`. */
export interface ServicesView {
  services: {
    name: string;
    reals: {
      address: string;
      forward: string;
      connections: number;
      activeConns: number;
      inactiveConns: number;
      inPackets: number;
      outPackets: number;
      outBytes: number;
    }[];
  }[];
  connectionsByState: Record<string, number>;
  counters: Record<string, number>;
}

/** Runs `tunvs ipvsadm ARGS` in the director's namespace against `admin`; `stdin` feeds -R. */
export function ipvsadmIn(lab: Lab, admin: string) {
  return (args: string[], stdin?: string): Promise<RunResult> =>
    lab.exec(
      "director",
      [Deno.execPath(), "run", "-A", `${REPO_ROOT}/mod.ts`, "ipvsadm", ...args],
      { allowFail: true, cwd: REPO_ROOT, env: { NO_COLOR: "1", TUNVS_ADMIN: admin }, stdin },
    );
}

/** Asserts that `r` exited 0 with nothing on stderr; returns its stdout. */
export function succeeded(r: RunResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.equal(r.stderr, "", what);
  return r.stdout;
}

/** An ipvsadm that takes a command line as typed and asserts it succeeded; returns stdout. */
export function ipvsadmTyped(lab: Lab, admin: string): (line: string) => Promise<string> {
  const ipvsadm = ipvsadmIn(lab, admin);
  return async (line) => succeeded(await ipvsadm(line.split(" ")), `ipvsadm ${line}`);
}

/**
 * Runs `fn` with an appliance started on no services, as an operator who builds the rules with
 * ipvsadm starts it, an ipvsadm that takes command lines as typed, and the configuration file
 * the rules are written to (to restart on); returns that file.
 */
export async function withEmptyAppliance(
  lab: Lab,
  fn: (ipvsadm: (line: string) => Promise<string>) => Promise<void>,
): Promise<string> {
  const config = `${await lab.makeTempDir("configs")}/empty.yaml`;
  await Deno.writeTextFile(config, "services: []\n");
  await withAppliance(lab, config, (app) => fn(ipvsadmTyped(lab, app.admin)));
  return config;
}

/**
 * HTTP/1.0 GETs of `path` from the client's address bound to each of the given ports in turn, one
 * connection per port: the server closes first, so that it is the one left in TIME_WAIT. Prints a
 * JSON list: per port the seconds from connect() to the end of the answer, the status line, and
 * the body's length and SHA-256, or the error. The client closes passively: a port is free for
 * the next connection at once.
 */
const FIXED_PORT_CLIENT_PY = `
import hashlib, json, socket, sys, time
src, dst, path, dport = sys.argv[1], sys.argv[2], sys.argv[4], int(sys.argv[5])
out = []
for port in [int(p) for p in sys.argv[3].split(",")]:
    r = {"port": port}
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(5)
    started = time.monotonic()
    try:
        s.bind((src, port))
        s.connect((dst, dport))
        s.sendall(("GET %s HTTP/1.0\\r\\n\\r\\n" % path).encode())
        chunks = []
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            chunks.append(d)
        head, _, body = b"".join(chunks).partition(b"\\r\\n\\r\\n")
        r["status"] = head.split(b"\\r\\n")[0].decode()
        r["length"] = len(body)
        r["sha256"] = hashlib.sha256(body).hexdigest()
    except Exception as e:
        r["error"] = repr(e)
    r["seconds"] = time.monotonic() - started
    s.close()
    out.append(r)
print(json.dumps(out))
`;

/** What one connection of `requestsFromPorts` found. */
export interface FixedPortResult {
  port: number;
  seconds: number;
  status?: string;
  length?: number;
  sha256?: string;
  error?: string;
}

/**
 * One HTTP/1.0 GET of `path` from each of `ports` in turn (address `src` in `role`) to
 * `dst`:`dport`, the server closing first (see FIXED_PORT_CLIENT_PY).
 */
export async function requestsFromPorts(
  lab: Lab,
  role: string,
  src: string,
  ports: number[],
  dst: string,
  path: string,
  dport = 80,
): Promise<FixedPortResult[]> {
  const r = await lab.exec(role, [
    "python3",
    "-c",
    FIXED_PORT_CLIENT_PY,
    src,
    dst,
    ports.join(","),
    path,
    String(dport),
  ]);
  return JSON.parse(r.stdout) as FixedPortResult[];
}
