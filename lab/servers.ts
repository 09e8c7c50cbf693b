/**
 * Real servers and clients for the lab, all run inside a lab namespace: a static HTTP server,
 * a UDP echo server, curl, a one-shot UDP request, ICMP echo and a TCP readiness probe.
 */
import { type Lab, OutputCollector, stopProcess } from "./netns.ts";

/** A server process started in the lab. */
export interface LabServer {
  /** Namespace role it runs in. */
  role: string;
  port: number;
  /** Stops it (SIGTERM, then SIGKILL) and waits for the exit; idempotent. */
  stop(): Promise<void>;
  /** What the server wrote to stderr. */
  logs(): string;
}

/** Options for {@linkcode startHttpServer}. */
export interface HttpServerOptions {
  port: number;
  /** Content of `/index.html`; defaults to "<role> <address>\n" like the seed's nginx pages. */
  body?: string;
  /** More files to serve, by path relative to the document root. */
  files?: Record<string, Uint8Array | string>;
}

// A quiet http.server: per-request logging to stderr would cost more than serving under load.
const HTTP_SERVER_PY = `
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[2])
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), handler)
server.daemon_threads = True
server.serve_forever()
`;

const UDP_ECHO_PY = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
prefix = sys.argv[2].encode()
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(prefix + data, peer)
`;

const UDP_REQUEST_PY = `
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
try:
    data, peer = s.recvfrom(65535)
except socket.timeout:
    sys.exit(3)
print(json.dumps({"from": peer[0], "fromPort": peer[1], "reply": data.decode("utf-8", "replace")}))
`;

const WAIT_TCP_PY = `
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[3])
while True:
    try:
        left = max(0.05, min(1.0, deadline - time.monotonic()))
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=left).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() >= deadline:
            sys.exit(1)
        time.sleep(0.05)
`;

const PING_PY = `
import os, socket, struct, sys, time
def csum(b):
    if len(b) % 2:
        b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
host, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
got = 0
for seq in range(1, count + 1):
    payload = b"tunvs-lab-ping"
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload, (host, 0))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            pkt, peer = s.recvfrom(65535)
        except socket.timeout:
            break
        ihl = (pkt[0] & 15) * 4
        t, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if t == 0 and rid == ident and rseq == seq and peer[0] == host:
            got += 1
            break
print(got)
`;

let pythonPath: string | null = null;

/** The system Python (a pyenv shim on PATH would add ~80 ms to every probe). */
function python(): string {
  if (pythonPath === null) {
    try {
      Deno.statSync("/usr/bin/python3");
      pythonPath = "/usr/bin/python3";
    } catch {
      pythonPath = "python3";
    }
  }
  return pythonPath;
}

/** First global IPv4 address in `role`'s namespace (for default page bodies). */
async function primaryAddress(lab: Lab, role: string): Promise<string> {
  const res = await lab.exec(role, ["ip", "-4", "-o", "addr", "show", "scope", "global"]);
  const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(res.stdout);
  return m ? m[1] : "";
}

/** Wraps a spawned server process as a LabServer. */
export function serverHandle(
  role: string,
  port: number,
  child: Deno.ChildProcess,
  stderr: OutputCollector,
): LabServer {
  let stopping: Promise<void> | null = null;
  return {
    role,
    port,
    stop: () => {
      stopping ??= stopProcess(child).then(() => stderr.done);
      return stopping;
    },
    logs: () => stderr.text(),
  };
}

/**
 * Spawns `cmd` in `role`'s namespace as a TCP server on `port` and waits until it accepts
 * connections on `address` there (polling every `pollMs`); throws with its stderr if it does not.
 */
export async function startTcpServerProcess(
  lab: Lab,
  role: string,
  cmd: string[],
  port: number,
  what: string,
  pollMs = 200,
  address = "127.0.0.1",
): Promise<LabServer> {
  const child = lab.spawn(role, cmd, { stdout: "null", stderr: "piped" });
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  const server = serverHandle(role, port, child, stderr);
  await waitReady(
    lab,
    role,
    child,
    stderr,
    what,
    () => waitForTcp(lab, role, address, port, pollMs).then(() => true, () => false),
  );
  return server;
}

/**
 * Starts a static HTTP server (Python http.server semantics) on 0.0.0.0:`port` in `role`'s
 * namespace and waits until it accepts connections there. Its document root is a lab temp dir.
 */
export async function startHttpServer(
  lab: Lab,
  role: string,
  opts: HttpServerOptions,
): Promise<LabServer> {
  const dir = await lab.makeTempDir(`${role}-http${opts.port}`);
  const body = opts.body ?? `${role} ${await primaryAddress(lab, role)}\n`;
  await Deno.writeTextFile(`${dir}/index.html`, body);
  for (const [path, content] of Object.entries(opts.files ?? {})) {
    const target = `${dir}/${path.replace(/^\/+/, "")}`;
    if (target.split("/").includes("..")) throw new Error(`file path ${path} leaves the root`);
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(target, content);
    else await Deno.writeFile(target, content);
  }
  const cmd = [python(), "-c", HTTP_SERVER_PY, String(opts.port), dir];
  return await startTcpServerProcess(lab, role, cmd, opts.port, "http server");
}

/** What a health endpoint of {@linkcode startHealthEndpointServer} answers. */
export type HealthEndpointMode =
  /** 200 "ok\n". */
  | "ok"
  /** 500 "fail\n". */
  | "fail"
  /** 200 "changed\n": the status is fine, the body (and its digest) is not. */
  | "changed"
  /** "ok" in even wall-clock seconds, "fail" in odd ones. */
  | "flap";

/** A server whose health endpoints the test switches while it runs. */
export interface HealthEndpointServer extends LabServer {
  /** Directory holding one file per endpoint; pass it again to restart with the same modes. */
  controlDir: string;
  /** Makes `GET /<endpoint>` answer as `mode` from the next request on. */
  setMode(endpoint: string, mode: HealthEndpointMode): Promise<void>;
}

/** Options for {@linkcode startHealthEndpointServer}. */
export interface HealthEndpointOptions {
  port: number;
  /** Answer of `GET /`; defaults to "<role> <address>\n" like startHttpServer's page. */
  body?: string;
  /** Modes of a previous run of this server (its controlDir); a new empty one when absent. */
  controlDir?: string;
}

// Reads the mode file on every request, so a switch needs no signal and survives a restart.
const HEALTH_ENDPOINT_PY = `
import http.server, os, re, sys, time
port, page, control = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
ANSWERS = {"ok": (200, b"ok\\n"), "fail": (500, b"fail\\n"), "changed": (200, b"changed\\n")}
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        name = self.path.strip("/")
        mode = None
        if name == "":
            status, body = 200, page
        else:
            if re.fullmatch(r"[a-z0-9_-]+", name):
                try:
                    with open(os.path.join(control, name)) as f:
                        mode = f.read().strip()
                except OSError:
                    pass
            if mode == "flap":
                mode = "ok" if int(time.time()) % 2 == 0 else "fail"
            status, body = ANSWERS.get(mode, (404, b"no such endpoint\\n"))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
server.daemon_threads = True
server.serve_forever()
`;

/**
 * Starts an HTTP server on 0.0.0.0:`port` in `role`'s namespace that answers `GET /` with its
 * page and `GET /<endpoint>` as the test last set it (404 until set), for health checks that
 * must see a failing status, a changed body or a flapping real.
 */
export async function startHealthEndpointServer(
  lab: Lab,
  role: string,
  opts: HealthEndpointOptions,
): Promise<HealthEndpointServer> {
  const controlDir = opts.controlDir ?? await lab.makeTempDir(`${role}-health${opts.port}`);
  const body = opts.body ?? `${role} ${await primaryAddress(lab, role)}\n`;
  const server = await startTcpServerProcess(
    lab,
    role,
    [python(), "-c", HEALTH_ENDPOINT_PY, String(opts.port), body, controlDir],
    opts.port,
    "health endpoint server",
  );
  const setMode = async (endpoint: string, mode: HealthEndpointMode) => {
    if (!/^[a-z0-9_-]+$/.test(endpoint)) throw new Error(`bad endpoint name ${endpoint}`);
    // Renamed into place so a request never reads a half-written mode.
    const tmp = `${controlDir}/.${endpoint}.tmp`;
    await Deno.writeTextFile(tmp, mode);
    await Deno.rename(tmp, `${controlDir}/${endpoint}`);
  };
  return { ...server, controlDir, setMode };
}

/** Options for {@linkcode startUdpEchoServer}. */
export interface UdpEchoOptions {
  port: number;
  /** Prefix of every answer; the received bytes follow it. */
  reply: string;
}

/** Starts a UDP server on 0.0.0.0:`port` answering each datagram with `reply` + its bytes. */
export async function startUdpEchoServer(
  lab: Lab,
  role: string,
  opts: UdpEchoOptions,
): Promise<LabServer> {
  const child = lab.spawn(role, [python(), "-c", UDP_ECHO_PY, String(opts.port), opts.reply], {
    stdout: "piped",
    stderr: "piped",
  });
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  const stdout = new OutputCollector(child.stdout, 4096);
  const server = serverHandle(role, opts.port, child, stderr);
  await waitReady(lab, role, child, stderr, "udp echo server", async () => {
    await new Promise((r) => setTimeout(r, 20));
    return stdout.text().includes("ready");
  });
  return server;
}

/** Polls `ready` until true; throws with the server's stderr if it exits first or times out. */
export async function waitReady(
  lab: Lab,
  role: string,
  child: Deno.ChildProcess,
  stderr: OutputCollector,
  what: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  let exited: Deno.CommandStatus | null = null;
  child.status.then((s) => exited = s);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited) break;
    if (await ready()) return;
  }
  if (!exited) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited in between.
    }
  }
  const status = await child.status;
  await stderr.done;
  throw new Error(
    `${what} in ${lab.nsName(role)} ${
      exited ? `exited with ${status.code}` : "never got ready"
    }:\n` +
      stderr.text().trim(),
  );
}

/** Result of {@linkcode curl}. */
export interface CurlResult {
  /** HTTP status; 0 when no response arrived. */
  code: number;
  /** Response body (empty when written to `output`). */
  body: string;
  /** curl's own exit code (0 on transfer success; 7 refused, 28 timeout, ...). */
  exitCode: number;
  /** curl's error message, if any. */
  stderr: string;
}

/** Options for {@linkcode curl}. */
export interface CurlOptions {
  /** Whole-transfer limit in seconds (default 5). */
  timeoutSec?: number;
  /** Write the body to this file instead of returning it. */
  output?: string;
  /** More curl arguments, placed before the URL. */
  extraArgs?: string[];
}

const STATUS_MARK = "\n@@tunvs-lab-status@@";

/** Fetches `url` with curl from inside `role`'s namespace; never throws for HTTP or network errors. */
export async function curl(
  lab: Lab,
  role: string,
  url: string,
  opts: CurlOptions = {},
): Promise<CurlResult> {
  const res = await lab.exec(role, [
    "curl",
    "-sS",
    "--noproxy",
    "*",
    "--max-time",
    String(opts.timeoutSec ?? 5),
    "-o",
    opts.output ?? "-",
    "-w",
    `${STATUS_MARK}%{http_code}`,
    ...(opts.extraArgs ?? []),
    url,
  ], { allowFail: true });
  const at = res.stdout.lastIndexOf(STATUS_MARK);
  const body = at >= 0 ? res.stdout.slice(0, at) : res.stdout;
  const code = at >= 0 ? Number(res.stdout.slice(at + STATUS_MARK.length).trim()) || 0 : 0;
  return { code, body, exitCode: res.code, stderr: res.stderr.trim() };
}

/** Answer to {@linkcode udpRequest}. */
export interface UdpReply {
  /** Source address of the reply (for NAT: must be the VIP, not the real server). */
  from: string;
  fromPort: number;
  reply: string;
}

/**
 * Sends one datagram from `role`'s namespace and returns the first answer and where it came
 * from; throws when nothing arrives within `timeoutSec`.
 */
export async function udpRequest(
  lab: Lab,
  role: string,
  host: string,
  port: number,
  payload: string,
  timeoutSec = 2,
): Promise<UdpReply> {
  const res = await lab.exec(
    role,
    [python(), "-c", UDP_REQUEST_PY, host, String(port), payload, String(timeoutSec)],
    { allowFail: true },
  );
  if (res.code === 3) {
    throw new Error(`no UDP reply from ${host}:${port} within ${timeoutSec}s (in ${role})`);
  }
  if (res.code !== 0) {
    throw new Error(`UDP request to ${host}:${port} failed in ${role}: ${res.stderr.trim()}`);
  }
  return JSON.parse(res.stdout) as UdpReply;
}

/** Waits until `host:port` accepts TCP connections from `role`'s namespace; throws on timeout. */
export async function waitForTcp(
  lab: Lab,
  role: string,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<void> {
  const res = await lab.exec(
    role,
    [python(), "-c", WAIT_TCP_PY, host, String(port), String(timeoutMs / 1000)],
    { allowFail: true },
  );
  if (res.code !== 0) {
    throw new Error(
      `${host}:${port} did not accept TCP from ${role} within ${timeoutMs} ms ${res.stderr.trim()}`,
    );
  }
}

/**
 * Sends `count` ICMP echo requests from `role`'s namespace (no ping binary needed) and returns
 * how many were answered by `host` itself, each waited for at most `timeoutSec`.
 */
export async function ping(
  lab: Lab,
  role: string,
  host: string,
  count = 1,
  timeoutSec = 1,
): Promise<number> {
  const res = await lab.exec(role, [
    python(),
    "-c",
    PING_PY,
    host,
    String(count),
    String(timeoutSec),
  ]);
  return Number(res.stdout.trim());
}
