/**
 * Hot reload through seed 000's NAT lab: a long TCP stream keeps every byte across five reloads
 * (POST /api/v1/config/reload and SIGHUP; weights change, the other real goes and comes back),
 * and a weight set to 0 through the API stops new connections to a real while its existing
 * connection goes on.
 */
import assert from "node:assert/strict";
import type { ApplianceProcess } from "../../lab/appliance.ts";
import { Lab, pollUntil } from "../../lab/netns.ts";
import { buildSeed000, type Seed000 } from "../../lab/topology.ts";
import { ANY, e2eOptions, type ServiceDef, withAppliance, writeConfig } from "./harness.ts";
import { defaultWorkers } from "../../control/config.ts";

const opts = e2eOptions("hot reload tests");
const PORT = 9000;

/** Each real says its name, then echoes whatever it gets. */
const ECHO_SERVER = `
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
def serve(c):
    c.sendall((name + "\\n").encode())
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/**
 * Streams pseudo-random bytes for SECONDS while reading the echo back, then prints the real's
 * name, the byte counts and whether the digests agree. "probe" mode only prints the name.
 */
const CLIENT = `
import hashlib, json, random, socket, sys, threading, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.create_connection((host, port), timeout=10)
f = c.makefile("rb")
name = f.readline().decode().strip()
if seconds == 0:
    print(json.dumps({"real": name}))
    sys.exit(0)
print(json.dumps({"real": name}), flush=True)
sent = hashlib.sha256()
count = [0]
def send():
    rng = random.Random(7)
    end = time.time() + seconds
    while time.time() < end:
        chunk = rng.randbytes(8192)
        c.sendall(chunk)
        sent.update(chunk)
        count[0] += len(chunk)
        time.sleep(0.01)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = hashlib.sha256()
received = 0
while True:
    d = f.read1(65536)
    if not d:
        break
    got.update(d)
    received += len(d)
t.join()
print(json.dumps({"real": name, "sent": count[0], "received": received,
                  "ok": got.hexdigest() == sent.hexdigest()}), flush=True)
`;

interface Setup {
  topo: Seed000;
  dir: string;
  client: string;
}

async function setUp(lab: Lab): Promise<Setup> {
  const topo = await buildSeed000(lab);
  const dir = await lab.makeTempDir("reload");
  await Deno.writeTextFile(`${dir}/echo.py`, ECHO_SERVER);
  await Deno.writeTextFile(`${dir}/client.py`, CLIENT);
  for (const real of topo.reals) {
    lab.spawn(real.name, ["python3", `${dir}/echo.py`, real.name, String(PORT)], {
      stdout: "null",
    });
  }
  for (const real of topo.reals) {
    const up = await pollUntil(async () => {
      const r = await lab.exec(real.name, ["ss", "-ltn", `sport = :${PORT}`], { allowFail: true });
      return r.stdout.includes(`:${PORT}`);
    }, 5000);
    assert.ok(up, `echo server on ${real.name}`);
  }
  return { topo, dir, client: `${dir}/client.py` };
}

function web(topo: Seed000, weights: (number | null)[]): ServiceDef[] {
  return [{
    vip: topo.vip,
    scheduler: "wrr",
    settings: [`port: ${PORT}`],
    reals: topo.reals.flatMap((r, i) =>
      weights[i] === null ? [] : [{ address: r.addr, port: PORT, weight: weights[i]! }]
    ),
  }];
}

/** Starts a long stream from the client; resolves with its final JSON line. */
function stream(lab: Lab, s: Setup, seconds: number) {
  const child = lab.spawn(
    "client",
    ["python3", s.client, s.topo.vip, String(PORT), String(seconds)],
    { stdout: "piped", stderr: "piped" },
  );
  const output = child.output().then((o) => {
    const lines = new TextDecoder().decode(o.stdout).trim().split("\n");
    return {
      code: o.code,
      stderr: new TextDecoder().decode(o.stderr),
      first: JSON.parse(lines[0] ?? "null") as { real: string } | null,
      last: JSON.parse(lines.at(-1) ?? "null") as
        | { real: string; sent: number; received: number; ok: boolean }
        | null,
    };
  });
  return output;
}

/** Which real a new connection reaches. */
async function probe(lab: Lab, s: Setup): Promise<string> {
  const r = await lab.exec("client", ["python3", s.client, s.topo.vip, String(PORT), "0"]);
  return (JSON.parse(r.stdout) as { real: string }).real;
}

/** The real address the client's single live connection to the service is on. */
async function liveReal(app: ApplianceProcess): Promise<string> {
  const page = await app.api("/api/v1/connections?service=web&state=ESTABLISHED") as {
    connections: { real: string }[];
  };
  assert.equal(page.connections.length, 1, JSON.stringify(page));
  return page.connections[0].real;
}

async function reloadByApi(app: ApplianceProcess): Promise<void> {
  const res = await app.request("POST", "/api/v1/config/reload", {});
  assert.equal(res.status, 200, res.body);
}

async function reloadBySignal(app: ApplianceProcess, applied: number): Promise<void> {
  Deno.kill(app.pid, "SIGHUP");
  const done = await pollUntil(
    () => Promise.resolve(app.logs().split("configuration applied").length - 1 > applied),
    5000,
  );
  assert.ok(done, "SIGHUP reload applied");
}

Deno.test(
  { name: "reload: a long TCP stream keeps every byte across five reloads", ...opts },
  async () => {
    const lab = await Lab.create("reload");
    try {
      const s = await setUp(lab);
      const { topo } = s;
      const config = await writeConfig(s.dir, "appliance", web(topo, [1, 1]));
      await withAppliance(lab, config, async (app) => {
        const result = stream(lab, s, 6);
        let on = "";
        assert.ok(
          await pollUntil(async () => {
            const page = await app.api("/api/v1/connections?service=web&state=ESTABLISHED") as {
              connections: unknown[];
            };
            return page.connections.length === 1;
          }, 5000),
        );
        on = await liveReal(app);
        const mine = topo.reals.findIndex((r) => on === `${r.addr}:${PORT}`);
        assert.ok(mine >= 0, on);
        const other = 1 - mine;
        const keep = (w: number, o: number | null): (number | null)[] =>
          mine === 0 ? [w, o] : [o, w];
        const steps: (number | null)[][] = [
          keep(3, 1), // weights change
          keep(3, null), // the other real goes
          keep(1, 2), // and comes back
          keep(5, 5),
          keep(2, null), // and goes again
        ];
        let applied = 0;
        for (const [i, weights] of steps.entries()) {
          await writeConfig(s.dir, "appliance", web(topo, weights));
          if (i % 2 === 0) await reloadByApi(app);
          else await reloadBySignal(app, applied);
          applied++;
          await new Promise((r) => setTimeout(r, 600));
        }
        const out = await result;
        assert.equal(out.code, 0, out.stderr);
        assert.ok(out.last !== null && out.last.ok, JSON.stringify(out.last));
        assert.equal(out.last.received, out.last.sent);
        assert.ok(out.last.sent > 1_000_000, `streamed ${out.last.sent} bytes`);
        assert.equal(out.last.real, topo.reals[mine].name);
        // After the last reload only the stream's real takes new connections.
        for (let i = 0; i < 3; i++) assert.equal(await probe(lab, s), topo.reals[mine].name);
        assert.notEqual(mine, other);
      });
    } finally {
      await lab.destroy();
    }
  },
);

Deno.test({
  name: "reload: weight 0 via the API stops new connections, not existing ones",
  ...opts,
}, async () => {
  const lab = await Lab.create("weight");
  try {
    const s = await setUp(lab);
    const { topo } = s;
    const config = await writeConfig(s.dir, "appliance", web(topo, [1, 1]));
    await withAppliance(lab, config, async (app) => {
      const result = stream(lab, s, 4);
      assert.ok(
        await pollUntil(async () => {
          const page = await app.api("/api/v1/connections?service=web&state=ESTABLISHED") as {
            connections: unknown[];
          };
          return page.connections.length === 1;
        }, 5000),
      );
      const on = await liveReal(app);
      const mine = topo.reals.findIndex((r) => on === `${r.addr}:${PORT}`);
      assert.ok(mine >= 0, on);
      const real = topo.reals[mine];

      const bad = await app.request(
        "PUT",
        `/api/v1/services/web/reals/${real.addr}/${PORT}/weight`,
        { weight: 70000 },
        ANY,
      );
      assert.equal(bad.status, 400, bad.body);
      const missing = await app.request(
        "PUT",
        `/api/v1/services/web/reals/10.9.9.9/${PORT}/weight`,
        { weight: 0 },
        ANY,
      );
      assert.equal(missing.status, 404, missing.body);

      const res = await app.request(
        "PUT",
        `/api/v1/services/web/reals/${real.addr}/${PORT}/weight`,
        { weight: 0 },
        ANY,
      );
      assert.equal(res.status, 200, res.body);
      assert.equal((JSON.parse(res.body) as { written: boolean }).written, true);
      assert.match(await Deno.readTextFile(config), new RegExp(`${real.addr}.*weight: 0`));
      for (let i = 0; i < 4; i++) assert.equal(await probe(lab, s), topo.reals[1 - mine].name);
      const out = await result;
      assert.equal(out.code, 0, out.stderr);
      assert.ok(out.last !== null && out.last.ok, JSON.stringify(out.last));
      assert.equal(out.last.real, real.name);
    });
  } finally {
    await lab.destroy();
  }
});

Deno.test({
  name: "reload: dataplane.offloads and .workers cannot change under a running TUN (422, restart)",
  ...opts,
}, async () => {
  const lab = await Lab.create("offloads");
  try {
    const s = await setUp(lab);
    const config = await writeConfig(s.dir, "appliance", web(s.topo, [1, 1]));
    await withAppliance(lab, config, async (app) => {
      const text = await Deno.readTextFile(config);
      await Deno.writeTextFile(config, `dataplane:\n  offloads: false\n${text}`);
      const res = await app.request("POST", "/api/v1/config/reload", {});
      assert.equal(res.status, 422, res.body);
      assert.match(res.body, /dataplane\.offloads false differs from the running true/);
      assert.match(res.body, /restart tunvs to change it/);
      // Nor the number of workers (TUN queues): running with the default.
      const running = defaultWorkers();
      const other = running === 1 ? 2 : 1;
      await Deno.writeTextFile(config, `dataplane:\n  workers: ${other}\n${text}`);
      const workers = await app.request("POST", "/api/v1/config/reload", {});
      assert.equal(workers.status, 422, workers.body);
      assert.match(
        workers.body,
        new RegExp(`dataplane\\.workers ${other} differs from the running ${running}`),
      );
      // Still forwarding as before.
      assert.match(await probe(lab, s), /^web0[12]$/);
    });
  } finally {
    await lab.destroy();
  }
});
