/**
 * Seed 004 with TOA: the FULLNAT service adds the client's address and port as TCP option 254 to
 * the client's first segments. A real server on 8080 reads the option from a raw socket (what
 * the `toa` kernel module does inside the kernel) and finds 172.10.0.100 and curl's port in it,
 * while its accept()ed socket still names the local address; the client sees an MSS 8 bytes
 * lower; and bulk transfers both ways arrive intact with the option on.
 */
import assert from "node:assert/strict";
import { Lab, OutputCollector } from "../../lab/netns.ts";
import { type LabServer, serverHandle, waitForTcp, waitReady } from "../../lab/servers.ts";
import { buildSeed004, type Seed004 } from "../../lab/topology.ts";
import {
  downloadDigest,
  e2eOptions,
  randomBytes,
  sha256Hex,
  withAppliance,
  writeConfig,
} from "./harness.ts";

const opts = e2eOptions("seed 004 TOA tests");
const REAL_PORT = 8080;
const DOWNLOAD_SIZE = 32 * 1024 * 1024;
const UPLOAD_SIZE = 16 * 1024 * 1024;

/**
 * An HTTP/1.0 server that also captures the TCP segments coming to its port on a raw socket and
 * decodes TOA options in them. GET /toa and POST (any path) answer with what it captured for the
 * asking connection; other GETs serve files from the root.
 */
const TOA_SERVER_PY = `
import hashlib, json, os, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, ROOT, NAME = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
seen = {}

def toa_of(opts):
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            return None
        if kind == 254 and opts[i + 1] == 8:
            return {"bytes": opts[i:i + 8].hex(), "port": struct.unpack("!H", opts[i + 2:i + 4])[0],
                    "address": socket.inet_ntoa(opts[i + 4:i + 8]), "at": i}
        i += opts[i + 1]
    return None

def capture(raw):
    while True:
        pkt = raw.recv(65535)
        ihl = (pkt[0] & 15) * 4
        tcp = pkt[ihl:]
        sport, dport = struct.unpack("!HH", tcp[:4])
        if dport != PORT:
            continue
        doff = (tcp[12] >> 4) * 4
        toa = toa_of(tcp[20:doff])
        segment = {"flags": tcp[13], "payload": len(tcp) - doff, "toa": toa}
        with lock:
            entry = seen.setdefault("%s:%d" % (socket.inet_ntoa(pkt[12:16]), sport),
                                    {"segments": 0, "withToa": 0, "first": []})
            entry["segments"] += 1
            entry["withToa"] += 1 if toa else 0
            if len(entry["first"]) < 6:
                entry["first"].append(segment)

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def report(self, extra):
        peer = "%s:%d" % self.client_address
        deadline = time.monotonic() + 1.5
        while True:
            with lock:
                entry = json.loads(json.dumps(seen.get(peer)))
            if (entry and entry["withToa"] > 0) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        body = json.dumps(dict(server=NAME, peer=peer, seen=entry, **extra)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/toa":
            return self.report({})
        path = os.path.join(ROOT, os.path.basename(self.path))
        if not os.path.isfile(path):
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                self.wfile.write(chunk)

    def do_POST(self):
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        received = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            received += len(chunk)
            left -= len(chunk)
        self.report({"received": received, "sha256": digest.hexdigest()})

raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
threading.Thread(target=capture, args=(raw,), daemon=True).start()
server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
server.daemon_threads = True
server.serve_forever()
`;

/** Connects to VIP:80 and prints the MSS the client's kernel settled on from the SYN-ACK. */
const CLIENT_MSS_PY = `
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
s.sendall(b"GET /toa HTTP/1.0\\r\\n\\r\\n")
while s.recv(65536):
    pass
`;

/** What the TOA server reports about one connection. */
interface ToaReport {
  server: string;
  peer: string;
  seen: {
    segments: number;
    withToa: number;
    first: {
      flags: number;
      payload: number;
      toa: { bytes: string; port: number; address: string; at: number } | null;
    }[];
  } | null;
  received?: number;
  sha256?: string;
}

let lab: Lab;
let topo: Seed004;
let configOn: string;
let configOff: string;
let bigDigest: string;
let uploadFile: string;
let uploadDigest: string;
let server: LabServer;

async function startToaServer(role: string, root: string): Promise<LabServer> {
  const child = lab.spawn(role, ["python3", "-c", TOA_SERVER_PY, String(REAL_PORT), root, role], {
    stdout: "null",
    stderr: "piped",
  });
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  await waitReady(
    lab,
    role,
    child,
    stderr,
    "TOA server",
    () => waitForTcp(lab, role, "127.0.0.1", REAL_PORT, 200).then(() => true, () => false),
  );
  return serverHandle(role, REAL_PORT, child, stderr);
}

async function counters(app: { api(path: string): Promise<unknown> }) {
  const list = await app.api("/api/v1/services") as { counters: Record<string, number> };
  return list.counters;
}

/** curl from the client, with its local port: the port TOA must name. */
async function curlWithPort(url: string, extra: string[] = [], timeoutSec = 10) {
  const r = await lab.exec("client", [
    "curl",
    "-sS",
    "--fail",
    "--noproxy",
    "*",
    "-m",
    String(timeoutSec),
    "-w",
    "\n%{local_port}",
    ...extra,
    url,
  ]);
  const at = r.stdout.lastIndexOf("\n");
  return {
    report: JSON.parse(r.stdout.slice(0, at)) as ToaReport,
    port: Number(r.stdout.slice(at + 1)),
  };
}

async function clientMss(): Promise<number> {
  const r = await lab.exec("client", ["python3", "-c", CLIENT_MSS_PY, topo.vip]);
  return Number(r.stdout.trim());
}

Deno.test({ name: "seed 004 TOA: build the routed topology", ...opts }, async () => {
  lab = await Lab.create("toa");
  topo = await buildSeed004(lab);
  const root = await lab.makeTempDir("toa-root");
  const download = randomBytes(DOWNLOAD_SIZE, 0x70a0004);
  bigDigest = await sha256Hex(download);
  await Deno.writeFile(`${root}/big.bin`, download);
  const upload = randomBytes(UPLOAD_SIZE, 0x70a0005);
  uploadDigest = await sha256Hex(upload);
  uploadFile = `${await lab.makeTempDir("toa-upload")}/upload.bin`;
  await Deno.writeFile(uploadFile, upload);
  // One real, so that every connection's TOA is read by the same capture.
  server = await startToaServer("web1", root);
  const dir = await lab.makeTempDir("configs");
  const web1 = topo.reals.find((r) => r.name === "web1")!;
  const svc = (name: string, toa: boolean) => ({
    name,
    vip: topo.vip,
    scheduler: "rr",
    settings: [
      "port: 80",
      "forward: fullnat",
      `local_addresses: [${topo.localAddress}]`,
      ...(toa ? ["toa: true"] : []),
    ],
    reals: [{ address: web1.addr, port: REAL_PORT }],
  });
  configOn = await writeConfig(dir, "toa-on", [svc("web-toa", true)]);
  configOff = await writeConfig(dir, "toa-off", [svc("web-plain", false)]);
});

Deno.test({
  name: "seed 004 TOA: the real reads the client's address and port from option 254",
  ...opts,
}, async () => {
  await withAppliance(lab, configOn, async (app) => {
    for (let i = 0; i < 3; i++) {
      const { report, port } = await curlWithPort(`http://${topo.vip}/toa`);
      assert.equal(report.server, "web1");
      // Without a toa module the application's socket names the local address...
      assert.match(report.peer, new RegExp(`^${topo.localAddress.replaceAll(".", "\\.")}:\\d+$`));
      // ...and the option names the client: kind 254, length 8, port, address.
      const seen = report.seen!;
      assert.ok(seen.withToa >= 1, JSON.stringify(seen));
      const first = seen.first.find((s) => s.toa !== null)!;
      const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");
      assert.equal(first.toa!.bytes, `fe08${hex(port, 4)}ac0a0064`);
      assert.equal(first.toa!.address, topo.clientAddr);
      assert.equal(first.toa!.port, port);
      assert.equal(first.toa!.at, 0);
      // The segment completing the handshake carries it (that is where the module looks), the
      // SYN does not.
      assert.equal(seen.first[0].flags & 0x02, 0x02);
      assert.equal(seen.first[0].toa, null);
      assert.equal(seen.first[1].flags, 0x10, JSON.stringify(seen.first));
      assert.equal(seen.first[1].payload, 0);
      assert.notEqual(seen.first[1].toa, null);
    }
    const c = await counters(app);
    assert.ok(c.toa_inserted >= 3, JSON.stringify(c));
    assert.equal(c.toa_skipped, 0);
  });
});

Deno.test({
  name: "seed 004 TOA: the client's MSS is 8 bytes lower with TOA, and no option without it",
  ...opts,
}, async () => {
  let withToa = 0;
  await withAppliance(lab, configOn, async () => {
    withToa = await clientMss();
  });
  await withAppliance(lab, configOff, async (app) => {
    const plain = await clientMss();
    assert.equal(withToa, plain - 8, `MSS with TOA ${withToa}, without ${plain}`);
    const { report } = await curlWithPort(`http://${topo.vip}/toa`);
    assert.equal(report.seen!.withToa, 0);
    assert.ok(report.seen!.segments >= 2);
    assert.equal((await counters(app)).toa_inserted, 0);
  });
});

Deno.test({
  name: "seed 004 TOA: bulk transfers both ways arrive intact with TOA on",
  ...opts,
}, async () => {
  await withAppliance(lab, configOn, async (app) => {
    assert.equal(await downloadDigest(lab, "client", `http://${topo.vip}/big.bin`), bigDigest);

    const before = (await counters(app)).toa_inserted;
    // Without Expect: 100-continue the body follows the headers at once, before any answer.
    const { report, port } = await curlWithPort(
      `http://${topo.vip}/upload`,
      ["-H", "Expect:", "--data-binary", `@${uploadFile}`],
      120,
    );
    assert.equal(report.received, UPLOAD_SIZE);
    assert.equal(report.sha256, uploadDigest);
    assert.equal(report.seen!.first.find((s) => s.toa !== null)!.toa!.port, port);
    // The option stops once the real has a socket (its first ACK), not after the whole upload.
    const carried = (await counters(app)).toa_inserted - before;
    assert.ok(carried >= 1 && carried < 100, `TOA on ${carried} segments of the upload`);
    assert.equal((await counters(app)).toa_skipped, 0);
  });
});

Deno.test({ name: "seed 004 TOA: tear down", ...opts }, async () => {
  await server?.stop();
  await lab?.destroy();
  assert.ok(lab.destroyed);
});
