/**
 * ipvsadm's rule changes: the model over appliance.yaml's raw services (what IPVS does with each
 * command, with ipvsadm's messages and statuses), and the runner writing them through the admin
 * API's configuration endpoints (versioned, retried on 409, refused as a whole when invalid) —
 * seeds 000, 002 and 003 replayed command by command, with the listings they lead to.
 */
import assert from "node:assert/strict";
import { stringify as stringifyYaml } from "yaml";
import { parseConfig } from "../../control/config.ts";
import { type IpvsadmContext, runIpvsadm } from "../../control/ipvsadm.ts";
import { type Invocation, IpvsadmExit, parseIpvsadm } from "../../control/ipvsadm_options.ts";
import {
  applyInvocation,
  type RawMap,
  RULE_COMMANDS,
  serviceName,
} from "../../control/ipvsadm_rules.ts";
import { NO_NAMES } from "../../control/netdb.ts";
import { adminFixture } from "../fixtures/admin_harness.ts";
import { FakeConfigAdmin } from "../fixtures/config_admin.ts";

function inv(line: string): Invocation {
  const p = parseIpvsadm(line.split(" ").filter((w) => w !== ""), "ipvsadm", NO_NAMES);
  if (p.kind !== "run") throw new Error(`not a command: ${line}`);
  return p.invocation;
}

/** Applies lines in order to `services`. */
function apply(services: RawMap[], ...lines: string[]): RawMap[] {
  return lines.reduce((s, line) => applyInvocation(s, inv(line)), services);
}

/** The refusal of the last line after the others, as [status, message]. */
function refusal(services: RawMap[], ...lines: string[]): [number, string] {
  const before = apply(services, ...lines.slice(0, -1));
  try {
    applyInvocation(before, inv(lines[lines.length - 1]));
  } catch (err) {
    if (err instanceof IpvsadmExit) return [err.code, err.message];
    throw err;
  }
  throw new Error(`accepted: ${lines[lines.length - 1]}`);
}

/** The services as config.ts reads them (the raw list must be valid). */
function validated(services: RawMap[]) {
  return parseConfig(stringifyYaml({ services }), "rules.yaml").services;
}

const HEADER = "IP Virtual Server version 1.2.1 (size=4096)\n" +
  "Prot LocalAddress:Port Scheduler Flags\n" +
  "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/** A real's line of -Ln with no connections. */
function realLine(endpoint: string, forward: string, weight: number): string {
  return `  -> ${endpoint.padEnd(28)} ${forward.padEnd(7)} ${String(weight).padEnd(6)} ` +
    `${"0".padEnd(10)} ${"0".padEnd(10)}\n`;
}

function context(admin: FakeConfigAdmin, stdin = ""): IpvsadmContext {
  return { program: "ipvsadm", admin, names: NO_NAMES, readStdin: () => Promise.resolve(stdin) };
}

/** Runs `ipvsadm LINE` against `admin`: [status, stdout + stderr]. */
async function run(admin: FakeConfigAdmin, line: string, stdin = ""): Promise<[number, string]> {
  const r = await runIpvsadm(
    line.split(" ").filter((w) => w !== ""),
    context(admin, stdin),
    "0.0.0",
  );
  return [r.code, r.stdout + r.stderr];
}

// ---------------------------------------------------------------------------------------------
// The model.

Deno.test("ipvsadm rules: -A, -a, -e, -d, -D, -C build appliance.yaml's raw services", () => {
  const services = apply(
    [],
    "-A -t 192.168.1.31:80 -s rr",
    "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m",
    "-a -t 192.168.1.31:80 -r 10.10.10.12:8080 -m -w 2 -x 100 -y 50",
    "-A -u 192.168.1.31:53 -o -s sh -b flag-2",
    "-a -u 192.168.1.31:53 -r 10.10.10.11 -g",
    "-A -t 192.168.1.31:0 -p -M 255.255.255.0",
    "-a -t 192.168.1.31:0 -r 10.10.10.11 -i",
  );
  assert.deepEqual(services, [
    {
      name: "tcp-192.168.1.31-80",
      protocol: "tcp",
      vip: "192.168.1.31",
      port: 80,
      scheduler: "rr",
      forward: "nat",
      reals: [
        { address: "10.10.10.11", port: 80, weight: 1 },
        {
          address: "10.10.10.12",
          port: 8080,
          weight: 2,
          upper_threshold: 100,
          lower_threshold: 50,
        },
      ],
    },
    {
      name: "udp-192.168.1.31-53",
      protocol: "udp",
      vip: "192.168.1.31",
      port: 53,
      // -b's numbered flag 2 is sh's sh-port.
      scheduler: "sh",
      scheduler_flags: ["sh-port"],
      one_packet: true,
      forward: "dr",
      reals: [{ address: "10.10.10.11", port: 53, weight: 1 }],
    },
    {
      name: "tcp-192.168.1.31-0",
      protocol: "tcp",
      vip: "192.168.1.31",
      port: 0,
      scheduler: "wlc",
      persistence: { timeout: 300, netmask: "255.255.255.0" },
      forward: "tunnel",
      // A port-0 service's tunnelled real takes the client's port: no port of its own.
      reals: [{ address: "10.10.10.11", weight: 1 }],
    },
  ]);
  // config.ts reads it as ipvsadm would list it.
  const [web, dns, any] = validated(services);
  assert.deepEqual(web.reals.map((r) => [r.port, r.weight, r.upperThreshold]), [
    [80, 1, 0],
    [8080, 2, 100],
  ]);
  assert.deepEqual([dns.onePacket, dns.schedulerFlags, dns.forward], [true, ["sh-port"], "dr"]);
  assert.deepEqual([any.port, any.persistence, any.reals[0].port], [
    0,
    { timeout: 300, netmask: "255.255.255.0" },
    0,
  ]);

  // -e replaces every setting (weight 1, no thresholds when not given); -d, -D, -C remove.
  const edited = apply(services, "-e -t 192.168.1.31:80 -r 10.10.10.12:8080 -m");
  assert.deepEqual((edited[0].reals as RawMap[])[1], {
    address: "10.10.10.12",
    port: 8080,
    weight: 1,
  });
  const deleted = apply(services, "-d -t 192.168.1.31:80 -r 10.10.10.11", "-D -u 192.168.1.31:53");
  assert.deepEqual(deleted.map((s) => s.name), ["tcp-192.168.1.31-80", "tcp-192.168.1.31-0"]);
  assert.deepEqual((deleted[0].reals as RawMap[]).map((r) => r.port), [8080]);
  assert.deepEqual(apply(services, "-C"), []);
  // The input is not changed: the model works on a copy.
  assert.equal((services[0].reals as RawMap[]).length, 2);
});

Deno.test("ipvsadm rules: -E replaces the scheduler, persistence, flags and -o with what it is given", () => {
  const base = apply([], "-A -u 10.0.0.1:53 -s sh -b sh-port -p 60 -M 255.255.0.0 -o");
  const [svc] = apply(base, "-E -u 10.0.0.1:53 -s rr");
  // As IPVS: flags, persistence and one-packet scheduling are cleared when not given again.
  assert.deepEqual(svc, {
    name: "udp-10.0.0.1-53",
    protocol: "udp",
    vip: "10.0.0.1",
    port: 53,
    scheduler: "rr",
    reals: [],
  });
  const [wlc] = apply(base, "-E -u 10.0.0.1:53 -p");
  assert.equal(wlc.scheduler, "wlc", "-E without -s is ipvsadm's default scheduler");
  // The netmask key stays when the file had one, even at its default.
  assert.deepEqual(wlc.persistence, { timeout: 300, netmask: "255.255.255.255" });
  assert.deepEqual(apply([], "-A -t 10.0.0.1:80 -p 10")[0].persistence, { timeout: 10 });
});

Deno.test("ipvsadm rules: an operator's service keeps its name, other keys and their order", () => {
  const operator: RawMap[] = [{
    name: "web",
    vip: "192.168.1.31",
    port: 80,
    health_check: { type: "tcp", interval: 6 },
    reals: [
      { address: "10.10.10.11", port: 80, health_check: { port: 8080 } },
      { address: "10.10.10.12" },
    ],
    quorum: 1,
  }];
  const [web] = apply(
    operator,
    "-E -t 192.168.1.31:80 -s rr",
    "-e -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 3",
    "-a -t 192.168.1.31:80 -r 10.10.10.13:80 -m",
  );
  // The service had no protocol (tcp) and no forward (nat): found, and left as written.
  assert.deepEqual(Object.keys(web), [
    "name",
    "vip",
    "port",
    "health_check",
    "scheduler",
    "reals",
    "quorum",
  ]);
  assert.deepEqual(web.reals, [
    { address: "10.10.10.11", port: 80, health_check: { port: 8080 } },
    { address: "10.10.10.12", weight: 3 },
    { address: "10.10.10.13", port: 80, weight: 1 },
  ]);
  assert.deepEqual(web.health_check, { type: "tcp", interval: 6 });
  // -e with the default weight on a real without one leaves it without one.
  const [again] = apply(operator, "-e -t 192.168.1.31:80 -r 10.10.10.12 -m");
  assert.deepEqual((again.reals as RawMap[])[1], { address: "10.10.10.12" });
  // A new service does not take a name an operator gave another one.
  assert.equal(
    serviceName({ protocol: "tcp", vip: "10.0.0.1", port: 80 }, new Set()),
    "tcp-10.0.0.1-80",
  );
  assert.equal(
    serviceName({ protocol: "tcp", vip: "10.0.0.1", port: 80 }, new Set(["tcp-10.0.0.1-80"])),
    "tcp-10.0.0.1-80-2",
  );
  assert.equal(serviceName({ fwmark: 6666 }, new Set()), "fwmark-6666");
});

Deno.test("ipvsadm rules: IPVS's refusals, in ipvsadm's words, exit 255", () => {
  const web = apply(
    [],
    "-A -t 192.168.1.31:80 -s rr",
    "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m",
  );
  const cases: [string[], string][] = [
    [["-A -t 192.168.1.31:80 -s wrr"], "Service already exists"],
    [["-E -t 192.168.1.31:81 -s wrr"], "No such service"],
    [["-D -u 192.168.1.31:80"], "No such service"],
    [["-a -t 192.168.1.31:81 -r 10.10.10.11 -m"], "Service not defined"],
    [["-e -t 192.168.1.31:81 -r 10.10.10.11 -m"], "Service not defined"],
    [["-d -f 7 -r 10.10.10.11"], "Service not defined"],
    [["-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 5"], "Destination already exists"],
    [["-e -t 192.168.1.31:80 -r 10.10.10.11:8080 -m"], "No such destination"],
    [["-d -t 192.168.1.31:80 -r 10.10.10.12"], "No such destination"],
    [["-A -t 192.168.1.31:443 -s twos"], "Scheduler or persistence engine not found"],
    [["-A -u 192.168.1.31:5060 --pe sip"], "Scheduler or persistence engine not found"],
    [["-a -t 192.168.1.31:80 -r 10.10.10.12 -m -x 10 -y 20"], "Numerical result out of range"],
    [["-A -t [2001:db8::1]:80"], "Operation not supported with IPv6"],
    [["-A -f 1 -6"], "Operation not supported with IPv6"],
    [["-A --sctp-service 192.168.1.31:80"], "Protocol not available (tunvs balances tcp and udp)"],
    [["-P -t 192.168.1.31:81 -z 10.0.3.1"], "Service not defined"],
    [["-Q -t 192.168.1.31:80 -z 10.0.3.1"], "No such Local address"],
    [
      ["-a -t 192.168.1.31:80 -r 10.10.10.12:80 -i --tun-type gre"],
      "Tunnel type gre is not supported: tunvs tunnels with ipip only",
    ],
    [
      ["-A -t 192.168.1.31:443 -s rr -b flag-3"],
      "Scheduler flag flag-3 means nothing to the rr scheduler in tunvs",
    ],
  ];
  for (const [lines, message] of cases) {
    assert.deepEqual(refusal(web, ...lines), [255, message], lines.join("; "));
  }
});

Deno.test("ipvsadm rules: one forwarding method per service, set by its first real", () => {
  const web = apply(
    [],
    "-A -t 10.0.0.1:80",
    "-a -t 10.0.0.1:80 -r 10.0.1.1 -m",
    "-a -t 10.0.0.1:80 -r 10.0.1.2 -m",
  );
  assert.deepEqual(refusal(web, "-a -t 10.0.0.1:80 -r 10.0.1.3 -i"), [
    255,
    "Forwarding method -i (ipip) differs from the -m (masquerading) of this service's other " +
    "real servers: tunvs forwards all reals of a service one way",
  ]);
  // -e without a method is ipvsadm's -g: refused here, and the message says why.
  assert.deepEqual(refusal(web, "-e -t 10.0.0.1:80 -r 10.0.1.1 -w 3"), [
    255,
    "Forwarding method -g (gatewaying), ipvsadm's default, differs from the -m (masquerading) " +
    "of this service's other real servers: tunvs forwards all reals of a service one way",
  ]);
  // The only real may change the method (as IPVS does on -e), and emptied services start over.
  const single = apply(web, "-d -t 10.0.0.1:80 -r 10.0.1.2", "-e -t 10.0.0.1:80 -r 10.0.1.1 -g");
  assert.equal(single[0].forward, "dr");
  assert.deepEqual(single[0].reals, [{ address: "10.0.1.1", port: 80, weight: 1 }]);
  const emptied = apply(
    web,
    "-d -t 10.0.0.1:80 -r 10.0.1.1",
    "-d -t 10.0.0.1:80 -r 10.0.1.2",
    "-a -t 10.0.0.1:80 -r 10.0.1.9:8080 --fullnat",
  );
  assert.equal(emptied[0].forward, "fullnat");
  // -g and -i take the service's port whatever the real says, as ipvsadm makes them.
  const dr = apply([], "-A -t 10.0.0.1:443", "-a -t 10.0.0.1:443 -r 10.0.1.1:80 -g");
  assert.deepEqual(dr[0].reals, [{ address: "10.0.1.1", port: 443, weight: 1 }]);
});

Deno.test("ipvsadm rules: DPVS's -P/-Q edit a FULLNAT service's local addresses", () => {
  const svc = apply(
    [],
    "-A -t 172.16.0.1:80 -s rr",
    "-P -t 172.16.0.1:80 -z 10.0.3.1",
    "-a -t 172.16.0.1:80 -r 10.0.4.2:8080 --fullnat",
    "-P -t 172.16.0.1:80 -z 10.0.3.2",
  );
  // -P on a service without reals makes it FULLNAT; the reals must then be --fullnat.
  assert.deepEqual(svc[0], {
    name: "tcp-172.16.0.1-80",
    protocol: "tcp",
    vip: "172.16.0.1",
    port: 80,
    scheduler: "rr",
    forward: "fullnat",
    local_addresses: ["10.0.3.1", "10.0.3.2"],
    reals: [{ address: "10.0.4.2", port: 8080, weight: 1 }],
  });
  assert.equal(validated(svc)[0].localAddresses.length, 2);
  assert.deepEqual(refusal(svc, "-P -t 172.16.0.1:80 -z 10.0.3.1"), [
    255,
    "Local address already exists",
  ]);
  assert.deepEqual(apply(svc, "-Q -t 172.16.0.1:80 -z 10.0.3.1")[0].local_addresses, [
    "10.0.3.2",
  ]);
  assert.deepEqual(
    refusal(
      [],
      "-A -t 10.0.0.1:80",
      "-a -t 10.0.0.1:80 -r 10.0.1.1 -m",
      "-P -t 10.0.0.1:80 -z 10.0.3.1",
    ),
    [
      255,
      "Local addresses are for FULLNAT services (--fullnat); this service forwards by -m (masquerading)",
    ],
  );
  assert.deepEqual(
    refusal(
      [],
      "-A -t 10.0.0.1:80",
      "-P -t 10.0.0.1:80 -z 10.0.3.1",
      "-a -t 10.0.0.1:80 -r 10.0.1.1 -m",
    ),
    [
      255,
      "Forwarding method -m (masquerading) conflicts with this service's FULLNAT settings " +
      "(local addresses, toa): use --fullnat, or remove them (-Q) first",
    ],
  );
  // A service using the global pool: -P/-Q start from what -G shows for it.
  const pooled: RawMap[] = [{
    name: "fnat",
    vip: "172.16.0.1",
    port: 80,
    forward: "fullnat",
    reals: [{ address: "10.0.4.2" }],
  }];
  const ctx = { globalLocalAddresses: ["10.0.3.1", "10.0.3.2"] };
  assert.deepEqual(
    applyInvocation(pooled, inv("-Q -t 172.16.0.1:80 -z 10.0.3.1"), ctx)[0].local_addresses,
    ["10.0.3.2"],
  );
  assert.deepEqual(
    applyInvocation(pooled, inv("-P -t 172.16.0.1:80 -z 10.0.3.3"), ctx)[0].local_addresses,
    ["10.0.3.1", "10.0.3.2", "10.0.3.3"],
  );
  // --synproxy is DPVS's service flag: set by -A/-E, cleared by an -E without it.
  const syn = apply([], "-A -t 10.0.0.1:80 --synproxy enable");
  assert.equal(syn[0].synproxy, true);
  assert.equal(apply(syn, "-E -t 10.0.0.1:80 -s wlc")[0].synproxy, undefined);
});

Deno.test("ipvsadm rules: firewall-mark services have a mark instead of an address and port", () => {
  const services = apply(
    [],
    "-A -f 6666 -s rr",
    "-a -f 6666 -r 192.168.0.10 -g",
    "-a -f 6666 -r 192.168.0.20 -g",
    "-E -f 6666 -s rr -p 3000",
  );
  assert.deepEqual(services, [{
    name: "fwmark-6666",
    fwmark: 6666,
    scheduler: "rr",
    persistence: { timeout: 3000 },
    forward: "dr",
    // The reals take the client's port: a firewall mark spans ports.
    reals: [{ address: "192.168.0.10", weight: 1 }, { address: "192.168.0.20", weight: 1 }],
  }]);
  assert.deepEqual(refusal(services, "-A -f 6666"), [255, "Service already exists"]);
  assert.deepEqual(apply(services, "-D -f 6666"), []);
  assert.ok(RULE_COMMANDS.has("add-laddr") && !RULE_COMMANDS.has("list"));
});

// ---------------------------------------------------------------------------------------------
// Through the admin API.

Deno.test("ipvsadm changes: read with the version, written back with If-Match, once", async () => {
  const admin = new FakeConfigAdmin("services: []\n");
  assert.deepEqual(await run(admin, "-A -t 192.168.1.31:80 -s rr"), [0, ""]);
  assert.deepEqual(admin.calls, [
    { method: "GET", path: "/api/v1/config" },
    {
      method: "PUT",
      path: "/api/v1/config/services",
      body: {
        services: [{
          name: "tcp-192.168.1.31-80",
          protocol: "tcp",
          vip: "192.168.1.31",
          port: 80,
          scheduler: "rr",
          reals: [],
        }],
      },
      headers: { "if-match": '"v1"' },
    },
  ]);
  // ipvsadm's own errors come before any write.
  admin.calls.length = 0;
  assert.deepEqual(await run(admin, "-A -t 192.168.1.31:80 -s wrr"), [
    255,
    "Service already exists\n",
  ]);
  assert.deepEqual(admin.calls.map((c) => c.method), ["GET"]);
  // A change that changes nothing writes nothing.
  admin.calls.length = 0;
  assert.deepEqual(await run(admin, "-E -t 192.168.1.31:80 -s rr"), [0, ""]);
  assert.deepEqual(admin.calls.map((c) => c.method), ["GET"]);
});

Deno.test("ipvsadm changes: 409 re-reads and re-applies; the server's refusals change nothing", async () => {
  const admin = new FakeConfigAdmin(
    "services:\n  - { name: web, vip: 192.168.1.31, port: 80, reals: [] }\n",
  );
  // Someone else adds a service between our read and our write, twice.
  let moves = 2;
  admin.beforePut = () => {
    if (moves-- <= 0) return;
    admin.raw.services = [...admin.services, {
      name: `other-${moves}`,
      vip: "192.168.1.32",
      port: 80 + moves,
      reals: [],
    }];
    admin.generation++;
  };
  assert.deepEqual(await run(admin, "-a -t 192.168.1.31:80 -r 10.10.10.11 -m"), [0, ""]);
  assert.deepEqual(admin.calls.map((c) => c.method), ["GET", "PUT", "GET", "PUT", "GET", "PUT"]);
  assert.deepEqual(admin.services.map((s) => s.name), ["web", "other-1", "other-0"]);
  assert.deepEqual(admin.services[0].reals, [{ address: "10.10.10.11", port: 80, weight: 1 }]);

  // A configuration that keeps moving: three retries, then give up with nothing changed.
  admin.beforePut = () => admin.generation++;
  admin.calls.length = 0;
  const [code, text] = await run(admin, "-d -t 192.168.1.31:80 -r 10.10.10.11");
  assert.equal(code, 255);
  assert.match(text, /kept changing under this command \(4 tries\); nothing was changed/);
  assert.equal(admin.calls.filter((c) => c.method === "PUT").length, 4);
  admin.beforePut = null;

  // What the appliance's validation refuses is printed with the service's name; nothing applied.
  const before = structuredClone(admin.raw);
  const [badCode, bad] = await run(admin, "-a -t 192.168.1.31:80 -r 127.0.0.1 -m");
  assert.equal(badCode, 255);
  assert.match(bad, /^services\[0\] \(web\)\.reals\[1\]\.address: must be a unicast IPv4 address/);
  assert.deepEqual(admin.raw, before);
});

Deno.test("ipvsadm -R: every line applied to the rules first, one write, nothing half-applied", async () => {
  const admin = new FakeConfigAdmin("services: []\n");
  const rules = "# saved by ipvsadm-save -n\n" +
    "-A -t 192.168.1.31:80 -s wrr -p 10 -M 255.255.255.0\n" +
    "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 2\n" +
    "-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 1 -x 100 -y 50\n" +
    "-A -u 192.168.1.31:53 -s sh -o -b sh-port\n" +
    "-a -u 192.168.1.31:53 -r 10.10.10.11:53 -g -w 1\n";
  assert.deepEqual(await run(admin, "-R", rules), [0, ""]);
  assert.deepEqual(admin.calls.map((c) => c.method), ["GET", "PUT"]);
  // -S gives back the same lines (thresholds included), so the two round-trip.
  assert.deepEqual(await run(admin, "-S -n"), [0, rules.split("\n").slice(1).join("\n")]);

  // A bad line: the line is named, and the rules are as they were.
  const before = structuredClone(admin.raw);
  admin.calls.length = 0;
  const [code, text] = await run(
    admin,
    "-R",
    "-C\n-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n",
  );
  assert.deepEqual([code, text], [255, "restore: line 4: Destination already exists\n"]);
  assert.deepEqual(admin.calls.map((c) => c.method), ["GET"]);
  assert.deepEqual(admin.raw, before);
  // Lines that only read or zero run after the change, in order.
  const [, listed] = await run(admin, "-R", "-C\n-A -t 10.0.0.1:80 -s rr\n-L -n\n");
  assert.equal(listed, HEADER + "TCP  10.0.0.1:80 rr\n");
});

// ---------------------------------------------------------------------------------------------
// The seeds, command by command.

Deno.test("seed 000: the NAT tutorial's ipvsadm commands, in order, with its listings", async () => {
  const admin = new FakeConfigAdmin("services: []\n");
  const ok = async (line: string) => assert.deepEqual(await run(admin, line), [0, ""], line);
  await ok("-A -t 192.168.1.31:80 -s rr");
  await ok("-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m");
  await ok("-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m");
  assert.deepEqual(await run(admin, "-ln"), [
    0,
    HEADER + "TCP  192.168.1.31:80 rr\n" + realLine("10.10.10.11:80", "Masq", 1) +
    realLine("10.10.10.12:80", "Masq", 1),
  ]);
  await ok("-A -t 192.168.1.31:3306 -s rr");
  await ok("-a -t 192.168.1.31:3306 -r 10.10.10.11:3306 -m");
  await ok("-a -t 192.168.1.31:3306 -r 10.10.10.12:3306 -m");

  // The sh section adds the web service again: IPVS says it exists; the tutorial had cleared it.
  assert.deepEqual(await run(admin, "-A -t 192.168.1.31:80 -s sh"), [
    255,
    "Service already exists\n",
  ]);
  await ok("-D -t 192.168.1.31:80");
  await ok("-A -t 192.168.1.31:80 -s sh");
  await ok("-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m");
  await ok("-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m");
  const sh = HEADER + "TCP  192.168.1.31:80 sh\n" + realLine("10.10.10.11:80", "Masq", 1) +
    realLine("10.10.10.12:80", "Masq", 1) + "TCP  192.168.1.31:3306 rr\n" +
    realLine("10.10.10.11:3306", "Masq", 1) + realLine("10.10.10.12:3306", "Masq", 1);
  assert.deepEqual(await run(admin, "-ln"), [0, sh]);

  // The tutorial's `-E … -r ~ -p 10` is refused by upstream's parser too; its listing shows
  // what it meant.
  assert.deepEqual(await run(admin, "-E -t 192.168.1.31:80 -r ~ -p 10"), [
    2,
    "illegal real server address[:port] specified\n",
  ]);
  await ok("-E -t 192.168.1.31:80 -s rr -p 10");
  const [, persistent] = await run(admin, "-ln");
  assert.equal(persistent.split("\n")[3], "TCP  192.168.1.31:80 rr persistent 10");

  await ok("-D -t 192.168.1.31:80");
  await ok("-A -t 192.168.1.31:80 -s wrr");
  await ok("-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 2");
  await ok("-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 1");
  const [, wrr] = await run(admin, "-ln");
  assert.equal(
    wrr.split("\n").slice(3, 6).join("\n") + "\n",
    "TCP  192.168.1.31:80 wrr\n" + realLine("10.10.10.11:80", "Masq", 2) +
      realLine("10.10.10.12:80", "Masq", 1),
  );
  for (const sched of ["lc", "wlc"]) {
    await ok("-D -t 192.168.1.31:80");
    await ok(`-A -t 192.168.1.31:80 -s ${sched}`);
    await ok("-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m");
    await ok("-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m");
  }
  const [, wlc] = await run(admin, "-ln");
  assert.equal(wlc.split("\n")[3], "TCP  192.168.1.31:80 wlc");

  // ipvsadm-save -n > /etc/sysconfig/ipvsadm; ipvsadm -C; ipvsadm-restore < /etc/sysconfig/ipvsadm
  const [, saved] = await run(admin, "-S -n");
  const rules = structuredClone(admin.services);
  await ok("-C");
  assert.equal(admin.services.length, 0);
  assert.deepEqual(await run(admin, "-R", saved), [0, ""]);
  // -S lists in upstream's sorted order; -R adds them in that order.
  const byName = (list: RawMap[]) =>
    [...list].sort((a, b) => String(a.name) < String(b.name) ? -1 : 1);
  assert.deepEqual(byName(admin.services), byName(rules));
  assert.deepEqual(await run(admin, "-ln"), [0, wlc]);
});

Deno.test("seed 002: the command table, the DR lab and the firewall mark", async () => {
  const admin = new FakeConfigAdmin("services: []\n");
  const ok = async (line: string) => assert.deepEqual(await run(admin, line), [0, ""], line);
  // The table of commands, one after the other.
  await ok("-A -t 192.168.1.100:80 -s rr");
  await ok("-E -t 192.168.1.100:80 -s wlc");
  await ok("-a -t 192.168.1.100:80 -r 192.168.1.11 -g");
  await ok("-e -t 192.168.1.100:80 -r 192.168.1.11 -w 5");
  assert.deepEqual(admin.services[0].reals, [{ address: "192.168.1.11", port: 80, weight: 5 }]);
  await ok("-d -t 192.168.1.100:80 -r 192.168.1.11");
  await ok("-D -t 192.168.1.100:80");
  await ok("-C");

  // The DR lab: the 443 service's reals answer on 443, whatever -r says (-g).
  await ok("-A -t 192.168.0.220:80 -s rr");
  await ok("-A -t 192.168.0.220:443 -s rr");
  await ok("-a -t 192.168.0.220:80 -r 192.168.0.10:80 -g");
  await ok("-a -t 192.168.0.220:80 -r 192.168.0.20:80 -g");
  await ok("-a -t 192.168.0.220:443 -r 192.168.0.20:80 -g");
  await ok("-a -t 192.168.0.220:443 -r 192.168.0.10:80 -g");
  assert.deepEqual(await run(admin, "-Ln"), [
    0,
    HEADER + "TCP  192.168.0.220:80 rr\n" + realLine("192.168.0.10:80", "Route", 1) +
    realLine("192.168.0.20:80", "Route", 1) + "TCP  192.168.0.220:443 rr\n" +
    realLine("192.168.0.10:443", "Route", 1) + realLine("192.168.0.20:443", "Route", 1),
  ]);

  // The firewall-mark section starts from cleared rules.
  await ok("-C");
  const fwmark = [
    "-A -f 6666 -s rr",
    "-a -f 6666 -r 192.168.0.10 -g",
    "-a -f 6666 -r 192.168.0.20 -g",
    "-E -f 6666 -s rr -p 3000",
  ];
  for (const line of fwmark) await ok(line);
  // As upstream 1.31 lists and saves a firewall-mark service (print_service_entry, -S).
  assert.deepEqual(await run(admin, "-Ln"), [
    0,
    HEADER + "FWM  6666 rr persistent 3000\n" + realLine("192.168.0.10:0", "Route", 1) +
    realLine("192.168.0.20:0", "Route", 1),
  ]);
  const [, saved] = await run(admin, "-S -n");
  assert.equal(
    saved,
    "-A -f 6666 -s rr -p 3000\n" +
      "-a -f 6666 -r 192.168.0.10:0 -g -w 1\n" +
      "-a -f 6666 -r 192.168.0.20:0 -g -w 1\n",
  );
  // The rules are what appliance.yaml now holds, and what ipvsadm -R sends back.
  const expected = [{
    name: "fwmark-6666",
    fwmark: 6666,
    scheduler: "rr",
    persistence: { timeout: 3000 },
    forward: "dr",
    reals: [{ address: "192.168.0.10", weight: 1 }, { address: "192.168.0.20", weight: 1 }],
  }];
  assert.deepEqual(admin.services, expected);
  assert.deepEqual(fwmark.reduce((s, l) => applyInvocation(s, inv(l)), [] as RawMap[]), expected);
  await ok("-C");
  assert.deepEqual(await run(admin, "-R", saved), [0, ""]);
  assert.deepEqual(await run(admin, "-Ln"), [
    0,
    HEADER + "FWM  6666 rr persistent 3000\n" + realLine("192.168.0.10:0", "Route", 1) +
    realLine("192.168.0.20:0", "Route", 1),
  ]);
  // -d/-D by mark.
  await ok("-d -f 6666 -r 192.168.0.20");
  await ok("-D -f 6666");
  assert.deepEqual(admin.services, []);
  // A mark used twice is refused as upstream refuses it.
  await ok("-A -f 6666 -s rr");
  assert.deepEqual(await run(admin, "-A -f 6666 -s rr"), [255, "Service already exists\n"]);
});

Deno.test("seed 003: Dserver.sh's rules", async () => {
  const admin = new FakeConfigAdmin(
    "services:\n  - { name: old, vip: 10.0.2.90, port: 8080, reals: [{ address: 10.0.2.62 }] }\n",
  );
  for (
    const line of [
      "-C",
      "-A -t 10.0.2.90:80 -s wrr",
      "-a -t 10.0.2.90:80 -r 10.0.2.62:80 -g -w 3",
      "-a -t 10.0.2.90:80 -r 10.0.2.63:80 -g -w 1",
    ]
  ) {
    assert.deepEqual(await run(admin, line), [0, ""], line);
  }
  assert.deepEqual(await run(admin, "-Ln"), [
    0,
    HEADER + "TCP  10.0.2.90:80 wrr\n" + realLine("10.0.2.62:80", "Route", 3) +
    realLine("10.0.2.63:80", "Route", 1),
  ]);
  assert.deepEqual(admin.services, [{
    name: "tcp-10.0.2.90-80",
    protocol: "tcp",
    vip: "10.0.2.90",
    port: 80,
    scheduler: "wrr",
    forward: "dr",
    reals: [
      { address: "10.0.2.62", port: 80, weight: 3 },
      { address: "10.0.2.63", port: 80, weight: 1 },
    ],
  }]);
});

// ---------------------------------------------------------------------------------------------
// Against the real admin app (the appliance's wiring without the worker or the host).

Deno.test("ipvsadm changes through the admin app: applied, listed, written back with comments", async () => {
  const fixture = await adminFixture(
    "# the operator's file\nservices:\n" +
      "  - name: web # keep me\n    vip: 192.168.1.31\n    port: 80\n    scheduler: rr\n" +
      "    reals:\n      - { address: 10.10.10.11, port: 80 }\n",
  );
  try {
    const admin = {
      url: "http://127.0.0.1:9180",
      async request(
        method: "GET" | "POST" | "PUT",
        path: string,
        body?: unknown,
        headers?: Record<string, string>,
      ) {
        const r = await fixture.call(method, path, body, headers);
        return { status: r.status, body: r.json };
      },
    };
    const ctx: IpvsadmContext = {
      program: "ipvsadm",
      admin,
      names: NO_NAMES,
      readStdin: () =>
        Promise.resolve(
          "-A -t 192.168.1.31:3306 -s rr\n" +
            "-a -t 192.168.1.31:3306 -r 10.10.10.11:3306 -m\n",
        ),
    };
    const ipvsadm = async (line: string) => {
      const r = await runIpvsadm(line.split(" "), ctx, "0.0.0");
      return [r.code, r.stdout + r.stderr];
    };
    assert.deepEqual(await ipvsadm("-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 2"), [0, ""]);
    assert.deepEqual(await ipvsadm("-R"), [0, ""]);
    assert.deepEqual(await ipvsadm("-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m"), [
      255,
      "Destination already exists\n",
    ]);
    const [code, listing] = await ipvsadm("-Ln");
    assert.equal(code, 0);
    assert.equal(
      String(listing).split("\n").slice(3).join("\n"),
      "TCP  192.168.1.31:80 rr\n" + realLine("10.10.10.11:80", "Masq", 1) +
        realLine("10.10.10.12:80", "Masq", 2) + "TCP  192.168.1.31:3306 rr\n" +
        realLine("10.10.10.11:3306", "Masq", 1),
    );
    const file = await Deno.readTextFile(fixture.path);
    assert.match(file, /^# the operator's file\n/);
    assert.match(file, /name: web # keep me\n/);
    assert.equal(fixture.running.config.services.length, 2);
    // What the appliance refuses comes back as ipvsadm's one line, nothing changed.
    const [badCode, bad] = await ipvsadm("-a -t 192.168.1.31:80 -r 127.0.0.1 -m");
    assert.equal(badCode, 255);
    assert.match(String(bad), /^services\[0\] \(web\)\.reals\[2\]\.address: /);
    assert.equal(await Deno.readTextFile(fixture.path), file);
  } finally {
    await fixture.cleanup();
  }
});
