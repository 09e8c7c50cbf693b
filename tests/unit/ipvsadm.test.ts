/**
 * ipvsadm's command line: the option rules of upstream ipvsadm 1.31 (valid and
 * refused combinations, with its messages and exit statuses), the listings laid
 * out by its printf formats (golden strings written out by hand from those
 * formats, and lines of seed 000's sample output where it is exact), and the
 * runner against a fake admin endpoint.
 */
import assert from "node:assert/strict";
import {
  type AdminClient,
  type AdminResponse,
  AdminUnreachable,
  chooseAdmin,
  type IpvsadmContext,
  runIpvsadm,
} from "../../control/ipvsadm.ts";
import {
  formatConnections,
  formatListing,
  formatLocalAddresses,
  formatSave,
  formatService,
  glibcSort,
  largeNumber,
  type ListedReal,
  type ListedService,
  type Traffic,
} from "../../control/ipvsadm_format.ts";
import {
  type Invocation,
  IpvsadmExit,
  type ListFormat,
  parseIpvsadm,
  restoreLineArgs,
} from "../../control/ipvsadm_options.ts";
import { inetAton, nameDbFrom, NO_NAMES } from "../../control/netdb.ts";

// ---------------------------------------------------------------------------------------------
// Builders.

const ZERO: Traffic = {
  conns: 0,
  inPkts: 0,
  outPkts: 0,
  inBytes: 0,
  outBytes: 0,
  cps: 0,
  inPps: 0,
  outPps: 0,
  inBps: 0,
  outBps: 0,
};

function real(address: string, port: number, more: Partial<ListedReal> = {}): ListedReal {
  return {
    address,
    port,
    forward: "Masq",
    weight: 1,
    activeConns: 0,
    inactiveConns: 0,
    persistConns: 0,
    upperThreshold: 0,
    lowerThreshold: 0,
    traffic: ZERO,
    ...more,
  };
}

function service(vip: string, port: number, more: Partial<ListedService> = {}): ListedService {
  return {
    protocol: "tcp",
    vip,
    port,
    scheduler: "rr",
    schedulerFlags: [],
    persistence: null,
    onePacket: false,
    synproxy: false,
    localAddresses: [],
    reals: [],
    traffic: ZERO,
    ...more,
  };
}

function fmt(more: Partial<ListFormat> = {}): ListFormat {
  return {
    numeric: true,
    stats: false,
    rate: false,
    thresholds: false,
    persistentConn: false,
    tunInfo: false,
    nosort: false,
    exact: false,
    ...more,
  };
}

/** Parses or returns the refusal as [status, message]. */
function parse(line: string): Invocation | [number, string] {
  try {
    const p = parseIpvsadm(line.split(" ").filter((w) => w !== ""), "ipvsadm", NO_NAMES);
    if (p.kind !== "run") throw new Error(`not a command: ${p.kind}`);
    return p.invocation;
  } catch (err) {
    if (err instanceof IpvsadmExit) return [err.code, err.message];
    throw err;
  }
}

function parsed(line: string): Invocation {
  const r = parse(line);
  if (Array.isArray(r)) throw new Error(`${line}: refused: ${r[1]}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The grammar.

Deno.test("ipvsadm grammar: the commands and options operators type, as upstream reads them", () => {
  const ln = parsed("-Ln");
  assert.equal(ln.command, "list");
  assert.deepEqual([...ln.options], ["numeric"]);
  assert.equal(ln.format.numeric, true);

  const lnc = parsed("-lnc");
  assert.deepEqual([...lnc.options].sort(), ["connection", "numeric"]);

  const stats = parsed("-L -n --stats --exact --nosort --sort");
  assert.deepEqual(
    [stats.format.stats, stats.format.exact, stats.format.nosort, stats.format.rate],
    [true, true, true, false],
  );

  const one = parsed("-L -t 192.168.1.31:80 --rate");
  assert.deepEqual(one.service, {
    kind: "addr",
    protocol: "tcp",
    af: 4,
    addr: "192.168.1.31",
    port: 80,
  });
  assert.equal(one.format.rate, true);

  // Seed 000's rules: -s, -p with and without a value, -m and -w.
  const add = parsed("-A -t 192.168.1.31:80 -s rr -p 10 -M 255.255.255.0");
  assert.deepEqual(
    [add.command, add.scheduler, add.persistent, add.netmask],
    ["add-service", "rr", 10, "255.255.255.0"],
  );
  assert.equal(parsed("-A -t 192.168.1.31:80 -p -M 255.255.0.0").persistent, 300);
  assert.equal(parsed("-A -t 192.168.1.31:80 -p").persistent, 300);
  assert.equal(parsed("-A -u 10.0.0.1:53 -o").onePacket, true);
  assert.equal(parsed("-A -t 192.168.1.31:80").scheduler, "wlc");
  const dest = parsed("-a -t 192.168.1.31:80 -r 10.10.10.11:8080 -m -w 2 -x 100 -y 50");
  assert.deepEqual(dest.real, { af: 4, addr: "10.10.10.11", port: 8080 });
  assert.deepEqual(
    [dest.forward, dest.weight, dest.upperThreshold, dest.lowerThreshold],
    ["masq", 2, 100, 50],
  );
  // A real without a port takes the service's; direct routing always does.
  assert.equal(parsed("-a -t 192.168.1.31:80 -r 10.10.10.11 -m").real!.port, 80);
  assert.equal(parsed("-a -t 192.168.1.31:80 -r 10.10.10.11:8080 -g").real!.port, 80);
  assert.equal(parsed("-a -t 192.168.1.31:80 -r 10.10.10.11:8080").forward, "route");

  // Seed 002's firewall-mark service, and upstream's -b with its scheduler.
  const fw = parsed("-E -f 6666 -s rr -p 3000");
  assert.deepEqual(fw.service, { kind: "fwmark", fwmark: 6666, af: 4 });
  assert.deepEqual(parsed("-A -t 1.2.3.4:80 -b sh-port,sh-fallback -s sh").schedFlags, [
    "sh-port",
    "sh-fallback",
  ]);
  assert.deepEqual(parsed("-A -t 1.2.3.4:80 -s mh -b mh-port").schedFlags, ["mh-port"]);

  // DPVS's additions.
  assert.equal(parsed("-a -t 1.2.3.4:80 -r 10.0.0.1:8080 --fullnat").forward, "fullnat");
  assert.deepEqual(parsed("-P -t 1.2.3.4:80 -z 10.0.3.1").localAddress, {
    af: 4,
    addr: "10.0.3.1",
    port: 0,
  });
  assert.equal(parsed("-A -t 1.2.3.4:80 --synproxy enable").synproxy, true);
  assert.equal(parsed("-G").command, "get-laddr");

  const set = parsed("--set 900 120 300");
  assert.deepEqual(set.timeouts, { tcp: 900, tcpfin: 120, udp: 300 });
  assert.deepEqual(parsed("--set 0 0 30").timeouts, { tcp: 0, tcpfin: 0, udp: 30 });
  assert.equal(parsed("-Z").service, undefined);
  assert.equal(parsed("-Z -u 10.0.0.1:53").service?.kind, "addr");
  assert.equal(parsed("-S -n").format.numeric, true);

  // Long options with "=", bundled short options with their argument attached, IPv6 and
  // inet_aton's short forms.
  assert.equal(parsed("--list --tcp-service=10.1:80").service!.kind, "addr");
  assert.equal(
    (parsed("--list --tcp-service=10.1:80").service as { addr: string }).addr,
    "10.0.0.1",
  );
  assert.equal((parsed("-Lt10.0.0.9:443").service as { port: number }).port, 443);
  assert.equal((parsed("-L -t [2001:db8::1]:80").service as { af: number }).af, 6);
  assert.equal(parseIpvsadm(["-h"], "ipvsadm", NO_NAMES).kind, "help");
  assert.equal(parseIpvsadm(["--version"], "ipvsadm", NO_NAMES).kind, "version");
});

Deno.test("ipvsadm grammar: refusals carry upstream's message and exit status", () => {
  const cases: [string, number, string][] = [
    // The command must come first; popt errors after it exit 255.
    ["-n -L", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."],
    ["", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."],
    ["--bogus", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."],
    ["-L --bogus", 255, "--bogus: unknown option"],
    ["-Lq", 255, "-Lq: unknown option"],
    ["-L -t", 255, "-t: missing argument"],
    ["-L --stats=yes", 255, "--stats=yes: option does not take an argument"],
    // A second command is an invalid option there.
    ["-L -Z", 2, "invalid option `-Z'"],
    ["-L -n -n", 2, "multiple 'numeric' options specified"],
    ["-A -t 1.2.3.4:80 -u 1.2.3.4:53", 2, "multiple 'service-address' options specified"],
    ["-a -t 1.2.3.4:80 -r 10.0.0.1 -m -g", 2, "multiple 'forwarding-method' options specified"],
    // The command/option table.
    [
      "-A -s rr",
      2,
      "You need to supply the 'service-address' option for the 'add-service' command",
    ],
    [
      "-a -t 1.2.3.4:80",
      2,
      "You need to supply the 'real-server' option for the 'add-server' command",
    ],
    ["-A -t 1.2.3.4:80 -w 3", 2, "Illegal 'weight' option with the 'add-service' command"],
    [
      "-E -t 1.2.3.4:80 -r 10.0.0.1",
      2,
      "Illegal 'real-server' option with the 'edit-service' command",
    ],
    ["-D -t 1.2.3.4:80 -s rr", 2, "Illegal 'scheduler' option with the 'delete-service' command"],
    ["-C -n", 2, "Illegal 'numeric' option with the 'flush' command"],
    ["-S -c", 2, "Illegal 'connection' option with the 'save' command"],
    ["-Z -n", 2, "Illegal 'numeric' option with the 'zero' command"],
    ["--set 1 2 3 -n", 2, "Illegal 'numeric' option with the 'set' command"],
    [
      "-d -t 1.2.3.4:80 -r 10.0.0.1 -w 1",
      2,
      "Illegal 'weight' option with the 'delete-server' command",
    ],
    ["-L -s rr", 2, "Illegal 'scheduler' option with the 'list' command"],
    ["-L -o", 2, "Illegal 'ops' option with the 'list' command"],
    [
      "-Lnc -t 1.2.3.4:80",
      2,
      "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
    ],
    [
      "-L --timeout --daemon",
      2,
      "The option 'daemon' conflicts with the 'timeout' option in the 'list' command",
    ],
    ["-Ln --stats --timeout", 2, "options conflicts in the list command"],
    ["-Lnc --rate", 2, "options conflicts in the list command"],
    ["-L --timeout --persistent-conn", 2, "options conflicts in the list command"],
    // Arguments.
    ["-A -t 1.2.3.4 -s rr", 2, "Zero port specified for non-persistent service"],
    ["-A -t 1.2.3.4:80 -o", 2, "One-Packet Scheduling is only for UDP virtual services"],
    ["-A -t 80 -s rr", 2, "illegal virtual server address[:port] specified"],
    ["-A -t 1.2.3.4:http -s rr", 2, "illegal virtual server address[:port] specified"],
    ["-E -t 192.168.1.31:80 -r ~ -p 10", 2, "illegal real server address[:port] specified"],
    ["-A -t 1.2.3.4:80 -p 0", 2, "invalid timeout value `0' specified"],
    ["-A -t 1.2.3.4:80 -p 2678401", 2, "invalid timeout value `2678401' specified"],
    [
      "-A -t 1.2.3.4:80 -p 10 -M 255.255.255.256",
      2,
      "illegal virtual server persistent mask specified",
    ],
    ["-a -t 1.2.3.4:80 -r 10.0.0.1 -w 65536", 2, "illegal weight specified"],
    ["-a -t 1.2.3.4:80 -r 10.0.0.1 -x -1", 2, "illegal u_threshold specified"],
    ["-a -t 1.2.3.4:80 -r 10.0.0.1 -y 2147483648", 2, "illegal l_threshold specified"],
    ["-A -f 0", 2, "invalid fwmark value `0' specified"],
    ["-A -t 1.2.3.4:80 -6", 2, "-6 used before -f\n"],
    ["-A -t 1.2.3.4:80 -b sh-port", 2, "incompatible scheduler flag `sh-port'"],
    ["-A -t 1.2.3.4:80 -s sh -b mh-port", 2, "incompatible scheduler flag `mh-port'"],
    ["-A -t 1.2.3.4:80 -s sh -b sticky", 2, "invalid scheduler flag `sticky'"],
    ["--set 900 120", 2, "--set option requires 3 timeout values"],
    ["--set 900 120 300 60", 2, "unexpected argument 60"],
    ["--set 900 x 300", 2, "invalid timeout value `x' specified"],
    ["-L extra", 2, "unexpected argument extra"],
    ["--start-daemon primary", 2, "illegal start-daemon parameter specified"],
    ["--start-daemon master --mcast-group 10.0.0.1", 2, "invalid IPv4 mcast-group `10.0.0.1'"],
    [
      "--stop-daemon master --mcast-interface eth0",
      2,
      "Illegal 'mcast-interface' option with the 'stop-daemon' command",
    ],
    // Tunnels (1.31).
    [
      "-a -t 1.2.3.4:80 -r 10.0.0.1 -m --tun-type gue",
      2,
      "Tunnel options conflict with forward method",
    ],
    [
      "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue",
      2,
      "You need to supply the 'tun-port' option for the 'gue' tunnel type",
    ],
    [
      "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-port 6080",
      2,
      "Illegal 'tun-port' option with the 'ipip' tunnel type",
    ],
    [
      "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue --tun-port 6080 --tun-csum --tun-remcsum",
      2,
      "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type",
    ],
    ["-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type vxlan", 2, "illegal tunnel type specified"],
    [
      "-a -t 1.2.3.4:80 -r [2001:db8::1]:80 -m",
      2,
      "Different address family is allowed only for tunneling servers",
    ],
    ["-L --tun-info --tun-type ipip", 2, "Illegal 'tun-type' option with the 'list' command"],
    // DPVS's.
    [
      "-P -t 1.2.3.4:80",
      2,
      "You need to supply the 'local-address' option for the 'add-laddr' command",
    ],
    [
      "-A -t 1.2.3.4:80 -z 10.0.3.1",
      2,
      "Illegal 'local-address' option with the 'add-service' command",
    ],
    [
      "-A -t 1.2.3.4:80 --fullnat",
      2,
      "Illegal 'forwarding-method' option with the 'add-service' command",
    ],
    [
      "-a -t 1.2.3.4:80 -r 10.0.0.1 --synproxy enable",
      2,
      "Illegal 'synproxy' option with the 'add-server' command",
    ],
    ["-A -t 1.2.3.4:80 --synproxy on", 2, "synproxy switch must be enable or disable"],
    ["-P -t 1.2.3.4:80 -z nowhere", 2, "illegal local address"],
  ];
  for (const [line, code, message] of cases) {
    assert.deepEqual(parse(line), [code, message], line);
  }
});

Deno.test("ipvsadm grammar: names from the hosts and services files, numbers as strtol reads them", () => {
  const names = nameDbFrom(
    "127.0.0.1 localhost\n192.168.1.31 director lvs # the VIP\n",
    "http 80/tcp www\nhttp 80/udp\ndomain 53/udp\nmysql 3306/tcp\n",
  );
  const p = parseIpvsadm(["-L", "-t", "lvs:www"], "ipvsadm", names);
  assert.equal(p.kind, "run");
  if (p.kind === "run") {
    assert.deepEqual(p.invocation.service, {
      kind: "addr",
      protocol: "tcp",
      af: 4,
      addr: "192.168.1.31",
      port: 80,
    });
  }
  // Service names are per protocol: mysql is tcp only.
  assert.throws(
    () => parseIpvsadm(["-L", "-u", "director:mysql"], "ipvsadm", names),
    /illegal virtual server/,
  );
  assert.equal(names.hostName(inetAton("192.168.1.31")!), "director");
  assert.equal(names.serviceName(53, "udp"), "domain");
  assert.equal(inetAton("10.1"), 0x0a000001);
  assert.equal(inetAton("0x7f.1"), 0x7f000001);
  assert.equal(inetAton("1.2.3.256"), null);
  assert.equal(inetAton("1.2.3.4.5"), null);
  assert.deepEqual(restoreLineArgs("ipvsadm -A -t 1.2.3.4:80  -s rr # web\r"), [
    "-A",
    "-t",
    "1.2.3.4:80",
    "-s",
    "rr",
  ]);
});

// ---------------------------------------------------------------------------------------------
// The layouts.

/** Seed 000's `ipvsadm -ln` lines that survived its page intact (the header and service lines). */
const SEED000_EXACT_LINES = [
  "IP Virtual Server version 1.2.1 (size=4096)",
  "Prot LocalAddress:Port Scheduler Flags",
  "TCP  192.168.1.31:80 rr persistent 10",
  "TCP  192.168.1.31:80 wrr",
  "TCP  192.168.1.31:80 wlc",
];

Deno.test("ipvsadm -Ln: upstream's layout, byte for byte, and seed 000's lines", () => {
  const wrr = service("192.168.1.31", 80, {
    scheduler: "wrr",
    reals: [
      real("10.10.10.12", 80, { weight: 1, activeConns: 3, inactiveConns: 12 }),
      real("10.10.10.11", 80, { weight: 2, activeConns: 1234567890, inactiveConns: 0 }),
    ],
  });
  const out = formatListing([wrr], fmt(), NO_NAMES);
  assert.equal(
    out,
    "IP Virtual Server version 1.2.1 (size=4096)\n" +
      "Prot LocalAddress:Port Scheduler Flags\n" +
      "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
      "TCP  192.168.1.31:80 wrr\n" +
      "  -> 10.10.10.11:80               Masq    2      1234567890 0         \n" +
      "  -> 10.10.10.12:80               Masq    1      3          12        \n",
  );
  const lines = out.split("\n");
  for (const expected of SEED000_EXACT_LINES.slice(0, 2)) assert.ok(lines.includes(expected));
  assert.ok(lines.includes(SEED000_EXACT_LINES[3]));

  // Seed 000's -p 10 and wlc services.
  const persistent = service("192.168.1.31", 80, {
    persistence: { timeout: 10, netmask: "255.255.255.255" },
  });
  assert.equal(formatListing([persistent], fmt(), NO_NAMES).split("\n")[3], SEED000_EXACT_LINES[2]);
  const wlc = service("192.168.1.31", 80, { scheduler: "wlc" });
  assert.equal(formatListing([wlc], fmt(), NO_NAMES).split("\n")[3], SEED000_EXACT_LINES[4]);

  // Every flag of the service line, in upstream's order; DPVS's FullNat and synproxy.
  const all = service("10.0.0.5", 53, {
    protocol: "udp",
    scheduler: "sh",
    schedulerFlags: ["sh-port", "sh-fallback"],
    persistence: { timeout: 360, netmask: "255.255.255.0" },
    onePacket: true,
    synproxy: true,
    reals: [real("10.0.3.7", 5353, { forward: "FullNat", weight: 0 })],
  });
  assert.equal(
    formatService(all, fmt(), NO_NAMES),
    "Prot LocalAddress:Port Scheduler Flags\n" +
      "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
      "UDP  10.0.0.5:53 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0 ops synproxy\n" +
      "  -> 10.0.3.7:5353                FullNat 0      0          0         \n",
  );
  // Other schedulers name the same bits flag-N.
  assert.equal(
    formatService(
      service("1.2.3.4", 80, { scheduler: "rr", schedulerFlags: ["flag-2"] }),
      fmt(),
      NO_NAMES,
    ).split("\n")[2],
    "TCP  1.2.3.4:80 rr (flag-2)",
  );
});

Deno.test("ipvsadm -L: services and reals sort as upstream's comparators under glibc's qsort", () => {
  // 10.x and 192.x are more than 2^31 apart: ipvsadm's int subtraction puts 192.x first.
  const out = formatListing(
    [
      service("10.0.0.5", 80),
      service("192.168.1.31", 80),
      service("10.0.0.5", 22, { protocol: "udp" }),
    ],
    fmt(),
    NO_NAMES,
  );
  assert.deepEqual(out.split("\n").filter((l) => /^(TCP|UDP)/.test(l)), [
    "TCP  192.168.1.31:80 rr",
    "TCP  10.0.0.5:80 rr",
    "UDP  10.0.0.5:22 rr",
  ]);
  // Not transitive, so the algorithm shows: glibc's merge sort turns C,B,A into C,A,B.
  const a = inetAton("10.0.0.1")!, b = inetAton("100.0.0.1")!, c = inetAton("200.0.0.1")!;
  const cmp = (x: number, y: number) => (x - y) | 0;
  assert.deepEqual(glibcSort([c, b, a], cmp), [c, a, b]);
  assert.deepEqual(glibcSort([a, b, c], cmp), [a, b, c]);
  // --nosort keeps the appliance's order.
  const kept = formatListing(
    [service("192.168.1.31", 80), service("10.0.0.5", 80)],
    fmt({ nosort: true }),
    NO_NAMES,
  );
  assert.ok(kept.indexOf("10.0.0.5") > kept.indexOf("192.168.1.31"));
});

Deno.test("ipvsadm --stats, --rate, --exact: 9-column numbers scaled from 100 million", () => {
  assert.equal(largeNumber(99_999_999, false), " 99999999");
  assert.equal(largeNumber(100_000_000, false), "  100000K");
  assert.equal(largeNumber(999_999_999, false), "  999999K");
  assert.equal(largeNumber(1_000_000_000, false), "    1000M");
  assert.equal(largeNumber(99_999_999_999, false), "   99999M");
  assert.equal(largeNumber(100_000_000_000, false), "     100G");
  assert.equal(largeNumber(123_456_789_012_345, false), "     123T");
  assert.equal(largeNumber(7, true), "        7");
  assert.equal(largeNumber(123456789, true), " 123456789");
  assert.equal(largeNumber(12345678901, true), " 12345678901");

  const t: Traffic = {
    conns: 6,
    inPkts: 36,
    outPkts: 30,
    inBytes: 2184,
    outBytes: 123_456_789,
    cps: 1,
    inPps: 18,
    outPps: 15,
    inBps: 1092,
    outBps: 2_000_000_000,
  };
  const svc = service("192.168.1.31", 80, {
    traffic: t,
    reals: [real("10.10.10.11", 80, { traffic: t })],
  });
  assert.equal(
    formatListing([svc], fmt({ stats: true }), NO_NAMES),
    "IP Virtual Server version 1.2.1 (size=4096)\n" +
      "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
      "  -> RemoteAddress:Port\n" +
      "TCP  192.168.1.31:80                     6       36       30     2184  123456K\n" +
      "  -> 10.10.10.11:80                      6       36       30     2184  123456K\n",
  );
  assert.equal(
    formatService(svc, fmt({ rate: true }), NO_NAMES),
    "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n" +
      "  -> RemoteAddress:Port\n" +
      "TCP  192.168.1.31:80                     1       18       15     1092    2000M\n" +
      "  -> 10.10.10.11:80                      1       18       15     1092    2000M\n",
  );
  assert.equal(
    formatService(svc, fmt({ stats: true, exact: true }), NO_NAMES).split("\n")[2],
    "TCP  192.168.1.31:80                     6       36       30     2184 123456789",
  );
});

Deno.test("ipvsadm --thresholds, --persistent-conn, --tun-info: their columns", () => {
  const svc = service("192.168.1.31", 80, {
    persistence: { timeout: 300, netmask: "255.255.255.255" },
    reals: [
      real("10.10.10.11", 80, {
        upperThreshold: 100,
        lowerThreshold: 75,
        activeConns: 4,
        inactiveConns: 2,
        persistConns: 3,
        weight: 5,
      }),
      real("10.10.10.12", 80, { forward: "Tunnel" }),
    ],
  });
  assert.equal(
    formatService(svc, fmt({ thresholds: true }), NO_NAMES),
    "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n" +
      "  -> RemoteAddress:Port\n" +
      "TCP  192.168.1.31:80 rr persistent 300\n" +
      "  -> 10.10.10.11:80               100        75         4          2         \n" +
      "  -> 10.10.10.12:80               0          0          0          0         \n",
  );
  assert.equal(
    formatService(svc, fmt({ persistentConn: true }), NO_NAMES),
    "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n" +
      "  -> RemoteAddress:Port\n" +
      "TCP  192.168.1.31:80 rr persistent 300\n" +
      "  -> 10.10.10.11:80               5         3           4          2         \n" +
      "  -> 10.10.10.12:80               1         0           0          0         \n",
  );
  assert.equal(
    formatService(svc, fmt({ tunInfo: true }), NO_NAMES),
    "Prot LocalAddress:Port Scheduler Flags\n" +
      "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n" +
      "TCP  192.168.1.31:80 rr persistent 300\n" +
      "  -> 10.10.10.11:80               Masq    n/a           5      4          2         \n" +
      "  -> 10.10.10.12:80               Tunnel  ipip          1      0          0         \n",
  );
});

Deno.test("ipvsadm without -n: names from the databases, cut where upstream cuts them", () => {
  const names = nameDbFrom(
    "192.168.1.31 director\n10.10.10.11 web01.a-rather-long-domain.example\n",
    "http 80/tcp\n",
  );
  const svc = service("192.168.1.31", 80, {
    reals: [real("10.10.10.11", 80), real("10.10.10.12", 8080)],
  });
  assert.equal(
    formatService(svc, fmt({ numeric: false }), names),
    "Prot LocalAddress:Port Scheduler Flags\n" +
      "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
      "TCP  director:http rr\n" +
      // 28 characters of "web01.a-rather-long-domain.example:http".
      "  -> web01.a-rather-long-domain.e Masq    1      0          0         \n" +
      "  -> 10.10.10.12:8080             Masq    1      0          0         \n",
  );
  const long = nameDbFrom("192.168.1.31 a-very-long-virtual-service-name.example\n", "");
  assert.equal(
    formatService(service("192.168.1.31", 80), fmt({ numeric: false }), long).split("\n")[2],
    // The service column stops at 33 characters, then the scheduler follows.
    "TCP  a-very-long-virtual-service- rr",
  );
});

Deno.test("ipvsadm -S -n: upstream's rules, plus the thresholds and local addresses it loses", () => {
  const services = [
    service("192.168.1.31", 80, {
      scheduler: "wrr",
      persistence: { timeout: 10, netmask: "255.255.255.0" },
      reals: [
        real("10.10.10.12", 80, { weight: 1, upperThreshold: 100, lowerThreshold: 50 }),
        real("10.10.10.11", 80, { weight: 2 }),
      ],
    }),
    service("192.168.1.31", 53, {
      protocol: "udp",
      scheduler: "sh",
      schedulerFlags: ["sh-port"],
      onePacket: true,
      reals: [real("10.10.10.11", 53, { forward: "Route" })],
    }),
    service("172.16.0.1", 80, {
      localAddresses: ["10.0.3.1", "10.0.3.2"],
      reals: [
        real("10.0.4.2", 8080, { forward: "FullNat" }),
        real("10.0.4.3", 80, { forward: "Tunnel" }),
      ],
    }),
  ];
  assert.equal(
    formatSave(services, fmt(), NO_NAMES),
    "-A -t 172.16.0.1:80 -s rr\n" +
      "-a -t 172.16.0.1:80 -r 10.0.4.2:8080 --fullnat -w 1\n" +
      "-a -t 172.16.0.1:80 -r 10.0.4.3:80 -i -w 1 --tun-type ipip\n" +
      "-P -t 172.16.0.1:80 -z 10.0.3.1\n" +
      "-P -t 172.16.0.1:80 -z 10.0.3.2\n" +
      "-A -t 192.168.1.31:80 -s wrr -p 10 -M 255.255.255.0\n" +
      "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 2\n" +
      "-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 1 -x 100 -y 50\n" +
      "-A -u 192.168.1.31:53 -s sh -o -b sh-port\n" +
      "-a -u 192.168.1.31:53 -r 10.10.10.11:53 -g -w 1\n",
  );
  // Every line parses back with ipvsadm's own rules.
  for (const line of formatSave(services, fmt(), NO_NAMES).trim().split("\n")) {
    assert.ok(!Array.isArray(parse(line)), line);
  }
});

Deno.test("ipvsadm -Lnc: the connection entries with mm:ss expiry", () => {
  const entries = [
    {
      protocol: "TCP",
      expires: 7,
      state: "NONE",
      client: "192.168.1.35:0",
      virtual: "192.168.1.31:80",
      real: "10.10.10.11:80",
    },
    {
      protocol: "TCP",
      expires: 115,
      state: "TIME_WAIT",
      client: "192.168.1.35:59132",
      virtual: "192.168.1.31:80",
      real: "10.10.10.11:80",
    },
    {
      protocol: "UDP",
      expires: 6000,
      state: "UDP",
      client: "192.168.1.35:40000",
      virtual: "192.168.1.31:53",
      real: "10.10.10.12:53",
    },
  ];
  assert.equal(
    formatConnections(entries, fmt(), NO_NAMES),
    "IPVS connection entries\n" +
      "pro expire state       source             virtual            destination\n" +
      "TCP 00:07  NONE        192.168.1.35:0     192.168.1.31:80    10.10.10.11:80\n" +
      "TCP 01:55  TIME_WAIT   192.168.1.35:59132 192.168.1.31:80    10.10.10.11:80\n" +
      "UDP 100:00 UDP         192.168.1.35:40000 192.168.1.31:53    10.10.10.12:53\n",
  );
  assert.equal(
    formatConnections([], fmt({ persistentConn: true }), NO_NAMES),
    "IPVS connection entries\n" +
      "pro expire state       source             virtual            destination        pe name          pe_data\n",
  );
});

Deno.test("ipvsadm -G: DPVS's local address listing", () => {
  const out = formatLocalAddresses(
    [service("172.16.0.1", 80, { localAddresses: ["10.0.3.1"] }), service("192.168.1.31", 80)],
    NO_NAMES,
  );
  assert.equal(
    out,
    "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     \n" +
      "172.16.0.1:80        1        \n" +
      "                              10.0.3.1             -          -         \n" +
      "192.168.1.31:80      0        \n",
  );
});

// ---------------------------------------------------------------------------------------------
// The runner, against a fake admin endpoint.

interface Call {
  method: string;
  path: string;
  body?: unknown;
}

const API_SERVICES = {
  services: [{
    name: "web",
    protocol: "tcp",
    vip: "192.168.1.31",
    port: 80,
    scheduler: "rr",
    forward: "nat",
    ports: null,
    persistence: null,
    onePacket: false,
    schedulerFlags: [],
    localAddresses: [],
    reals: [
      {
        address: "10.10.10.11",
        port: 80,
        weight: 1,
        forward: "Masq",
        activeConns: 2,
        inactiveConns: 5,
        connections: 7,
        inPackets: 1,
        inBytes: 1,
        outPackets: 1,
        outBytes: 1,
        persistConns: 0,
        upperThreshold: 0,
        lowerThreshold: 0,
      },
    ],
  }],
};

function fakeAdmin(answers: Record<string, AdminResponse>, calls: Call[]): AdminClient {
  return {
    url: "http://127.0.0.1:9180",
    request(method, path, body) {
      calls.push(body === undefined ? { method, path } : { method, path, body });
      const answer = answers[`${method} ${path.replace(/\?.*/, "")}`];
      return Promise.resolve(
        answer ?? { status: 404, body: { error: `no such endpoint: ${path}` } },
      );
    },
  };
}

function context(admin: AdminClient, stdin = ""): IpvsadmContext {
  return { program: "ipvsadm", admin, names: NO_NAMES, readStdin: () => Promise.resolve(stdin) };
}

Deno.test("ipvsadm runner: listings, zeroing and timeouts through the admin API", async () => {
  const calls: Call[] = [];
  const admin = fakeAdmin({
    "GET /api/v1/services": { status: 200, body: API_SERVICES },
    "POST /api/v1/stats/zero": { status: 200, body: { zeroed: ["web"] } },
    "PUT /api/v1/timeouts": { status: 200, body: { tcp: 900, tcpfin: 120, udp: 30 } },
    "GET /api/v1/timeouts": { status: 200, body: { tcp: 900, tcpfin: 120, udp: 300 } },
  }, calls);
  const ln = await runIpvsadm(["-Ln"], context(admin), "0.0.0");
  assert.deepEqual([ln.code, ln.stderr], [0, ""]);
  assert.equal(
    ln.stdout.split("\n").slice(3).join("\n"),
    "TCP  192.168.1.31:80 rr\n  -> 10.10.10.11:80               Masq    1      2          5         \n",
  );

  const timeout = await runIpvsadm(["-L", "--timeout"], context(admin), "0.0.0");
  assert.equal(timeout.stdout, "Timeout (tcp tcpfin udp): 900 120 300\n");

  calls.length = 0;
  assert.equal((await runIpvsadm(["--set", "0", "0", "30"], context(admin), "0.0.0")).code, 0);
  assert.deepEqual(calls, [{ method: "PUT", path: "/api/v1/timeouts", body: { udp: 30 } }]);
  calls.length = 0;
  assert.equal((await runIpvsadm(["--set", "0", "0", "0"], context(admin), "0.0.0")).code, 0);
  assert.deepEqual(calls, [], "all zeros change nothing, as in IPVS");

  calls.length = 0;
  assert.equal(
    (await runIpvsadm(["-Z", "-t", "192.168.1.31:80"], context(admin), "0.0.0")).code,
    0,
  );
  assert.deepEqual(calls.at(-1), { method: "POST", path: "/api/v1/stats/zero?service=web" });
  assert.equal((await runIpvsadm(["-Z"], context(admin), "0.0.0")).code, 0);
  assert.deepEqual(calls.at(-1), { method: "POST", path: "/api/v1/stats/zero" });

  // Services that do not exist: list_service's status 1, a refused operation's 255.
  const missing = await runIpvsadm(["-L", "-t", "192.168.1.31:443"], context(admin), "0.0.0");
  assert.deepEqual([missing.code, missing.stdout, missing.stderr], [1, "", "No such service\n"]);
  const zeroMissing = await runIpvsadm(["-Z", "-u", "192.168.1.31:80"], context(admin), "0.0.0");
  assert.deepEqual([zeroMissing.code, zeroMissing.stderr], [255, "No such service\n"]);
  const fwmark = await runIpvsadm(["-L", "-f", "6666"], context(admin), "0.0.0");
  assert.deepEqual([fwmark.code, fwmark.stderr], [1, "No such service\n"]);
});

Deno.test("ipvsadm runner: rule changes are checked before any request; daemons are refused", async () => {
  const calls: Call[] = [];
  const admin = fakeAdmin({ "GET /api/v1/services": { status: 200, body: API_SERVICES } }, calls);
  // Option errors end the run as in ipvsadm, before the appliance is asked anything.
  for (
    const [line, message] of [
      [
        "-A -t 192.168.1.31:80 -s rr -w 1",
        "Illegal 'weight' option with the 'add-service' command",
      ],
      [
        "-a -t 192.168.1.31:80 -m",
        "You need to supply the 'real-server' option for the 'add-server' command",
      ],
      ["-E -t 192.168.1.31:80 -r ~ -p 10", "illegal real server address[:port] specified"],
    ]
  ) {
    const r = await runIpvsadm(line.split(" "), context(admin), "0.0.0");
    assert.deepEqual([r.code, r.stderr], [2, `${message}\n`], line);
  }
  const daemon = await runIpvsadm(["--start-daemon", "master"], context(admin), "0.0.0");
  assert.deepEqual([daemon.code, daemon.stderr], [
    2,
    "start-daemon: tunvs has no connection synchronization daemon\n",
  ]);
  assert.deepEqual(calls, []);

  // -R parses every line first: a daemon line or a bad line refuses the whole input.
  const mixed = await runIpvsadm(
    ["-R"],
    context(admin, "-A -t 1.2.3.4:80 -s rr\n\n--stop-daemon backup\n"),
    "0.0.0",
  );
  assert.deepEqual([mixed.code, mixed.stderr], [
    2,
    "restore: line 3: stop-daemon: tunvs has no connection synchronization daemon\n",
  ]);
  assert.deepEqual(calls, []);
  const bad = await runIpvsadm(["-R"], context(admin, "-A -t 1.2.3.4:80\n-L --bogus\n"), "0.0.0");
  assert.deepEqual([bad.code, bad.stderr], [255, "--bogus: unknown option\n"]);
  const nested = await runIpvsadm(["-R"], context(admin, "-A -t 1.2.3.4:80\n-R\n"), "0.0.0");
  assert.equal(nested.code, 255);
  assert.deepEqual(calls, []);
  // Reading lines run in order.
  const reads = await runIpvsadm(["-R"], context(admin, "# counters\nipvsadm -S -n\n"), "0.0.0");
  assert.deepEqual([reads.code, reads.stdout], [
    0,
    "-A -t 192.168.1.31:80 -s rr\n-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 1\n",
  ]);
});

Deno.test("ipvsadm runner: an appliance that does not answer, and an API that refuses", async () => {
  const down: AdminClient = {
    url: "http://127.0.0.1:9180",
    request: () =>
      Promise.reject(
        new AdminUnreachable("http://127.0.0.1:9180", "connection refused", "TUNVS_ADMIN"),
      ),
  };
  const r = await runIpvsadm(["-Ln"], context(down), "0.0.0");
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "Can't initialize ipvs: the tunvs admin endpoint http://127.0.0.1:9180 does not answer " +
      "(connection refused)\n" +
      "Are you sure that the tunvs appliance is running (tunvs run)? That address came from TUNVS_ADMIN.\n",
  );
  // Parsing needs no appliance.
  assert.equal((await runIpvsadm(["-h"], context(down), "0.0.0")).code, 0);
  assert.equal((await runIpvsadm(["-L", "-Z"], context(down), "0.0.0")).code, 2);

  const calls: Call[] = [];
  const refusing = fakeAdmin({
    "PUT /api/v1/timeouts": { status: 400, body: { error: "tcp: must be an integer 1..2147483" } },
  }, calls);
  const set = await runIpvsadm(["--set", "2678400", "0", "0"], context(refusing), "0.0.0");
  assert.deepEqual([set.code, set.stderr], [255, "tcp: must be an integer 1..2147483\n"]);
});

Deno.test("ipvsadm admin endpoint: --admin, --config, TUNVS_ADMIN, TUNVS_CONFIG, the default", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const files: Record<string, string> = {
    "/etc/tunvs.yaml": "0.0.0.0:9300",
    "appliance.yaml": "127.0.0.1:9181",
  };
  const listenIn = (path: string) => files[path] ?? null;
  const admin = chooseAdmin(
    ["--admin", "10.0.0.1:9180", "-Ln"],
    env({ TUNVS_ADMIN: "x:1" }),
    listenIn,
  );
  assert.deepEqual(admin, { url: "http://10.0.0.1:9180", source: "--admin", args: ["-Ln"] });
  assert.deepEqual(chooseAdmin(["-Ln", "--config=/etc/tunvs.yaml"], env({}), listenIn), {
    url: "http://127.0.0.1:9300",
    source: "admin.listen in /etc/tunvs.yaml",
    args: ["-Ln"],
  });
  assert.equal(
    chooseAdmin(["-Ln"], env({ TUNVS_ADMIN: "http://h:1/" }), listenIn).url,
    "http://h:1",
  );
  assert.equal(
    chooseAdmin(["-Ln"], env({ TUNVS_CONFIG: "/etc/tunvs.yaml" }), listenIn).url,
    "http://127.0.0.1:9300",
  );
  assert.equal(chooseAdmin(["-Ln"], env({}), listenIn).url, "http://127.0.0.1:9181");
  assert.deepEqual(chooseAdmin(["-Ln"], env({}), () => null).source, "the default");
  assert.throws(() => chooseAdmin(["-Ln", "--admin"], env({}), listenIn), /--admin needs a value/);
  assert.throws(
    () => chooseAdmin(["-Ln", "--config", "/missing.yaml"], env({}), listenIn),
    /cannot read admin.listen/,
  );
});

Deno.test("ipvsadm alias: tunvs ipvsadm, the program run under the name ipvsadm, scripts/ipvsadm", async () => {
  const root = new URL("../..", import.meta.url).pathname;
  const dir = await Deno.makeTempDir();
  try {
    // A deno reached through a symlink named ipvsadm keeps that name in argv[0], as the compiled
    // tunvs linked to /usr/local/sbin/ipvsadm does.
    await Deno.symlink(Deno.execPath(), `${dir}/ipvsadm`);
    const runs: [string, string[], Record<string, string>][] = [
      [Deno.execPath(), ["run", "-A", `${root}/mod.ts`, "ipvsadm", "-L", "-Z"], {}],
      [`${dir}/ipvsadm`, ["run", "-A", `${root}/mod.ts`, "-L", "-Z"], {}],
      [`${root}/scripts/ipvsadm`, ["-L", "-Z"], { DENO: Deno.execPath() }],
    ];
    for (const [cmd, args, env] of runs) {
      const out = await new Deno.Command(cmd, {
        args,
        cwd: dir,
        env: { NO_COLOR: "1", ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.deepEqual([out.code, stderr], [2, "invalid option `-Z'\n"], cmd);
    }
    // Without the name, it is tunvs.
    const plain = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${root}/mod.ts`, "-L"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(plain.code, 2);
    assert.match(new TextDecoder().decode(plain.stderr), /unknown command "-L"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
