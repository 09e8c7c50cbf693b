/**
 * Every ipvsadm command line of seeds 000, 002 and 003 (and seed 004's FULLNAT commands, with
 * DPVS's --fullnat/-P -z), replayed in the seeds' order against the real admin app in-process
 * (RunningConfig over a temporary appliance.yaml, compile, engine apply): each line's exit status
 * and output, and, where the seed shows ipvsadm's output, the same words on the same lines as the
 * seed (the tutorials' copies lost ipvsadm's column spacing; the exact layout is checked against
 * upstream's printf formats here and in ipvsadm.test.ts).
 *
 * `at` is the seed file and line the command is on. Lines marked `implied` are not in the seed:
 * they are the step the tutorial describes in words (a cleared table between experiments, a
 * deleted rule) without showing the command; upstream would need them too.
 */
import assert from "node:assert/strict";
import { type IpvsadmContext, runIpvsadm } from "../../control/ipvsadm.ts";
import { NO_NAMES } from "../../control/netdb.ts";
import { ipDst } from "../../dataplane/wire/ipv4.ts";
import { TCP_ACK, TCP_FIN, TCP_SYN } from "../../dataplane/wire/tcp.ts";
import type { Engine } from "../../dataplane/engine.ts";
import { adminFixture } from "../fixtures/admin_harness.ts";
import { feed } from "../fixtures/engine_harness.ts";
import { tcp } from "../fixtures/packet_builders.ts";
import { addr } from "../fixtures/packets.ts";

interface Step {
  /** Seed file prefix and line ("000:86"), or "implied: why". */
  at: string;
  /** The arguments after `ipvsadm`, as the seed writes them (shell variables expanded). */
  line: string;
  /** Exit status (0 when not given). */
  code?: number;
  /** Exact stdout + stderr (when given). */
  out?: string;
  /** The seed's own output for this line, compared word by word, line by line. */
  seed?: string[];
  /** Standard input (for -R). "SAVED" stands for the last -S output. */
  stdin?: string;
  /** Traffic through the fixture's engine before the line runs. */
  traffic?: (engine: Engine) => void;
  /** With `seed`: compare the lines in any order, without the expire column (timing). */
  unordered?: boolean;
}

/**
 * Seed 000's two curls from 192.168.1.35 (000:370-376) on the persistent service: each a whole
 * connection, closed by the server first, so the director holds a NONE template and two
 * TIME_WAIT entries; the listing comes 5 s after the first.
 */
function twoCurls(engine: Engine): void {
  const client = addr("192.168.1.35");
  const vip = addr("192.168.1.31");
  for (const [i, port] of [59132, 59134].entries()) {
    engine.now = i * 1000;
    const syn = feed(engine, tcp(client, port, vip, 80, TCP_SYN));
    const real = ipDst(syn.pkt, 0);
    feed(engine, tcp(real, 80, client, port, TCP_SYN | TCP_ACK));
    feed(engine, tcp(client, port, vip, 80, TCP_ACK));
    feed(engine, tcp(real, 80, client, port, TCP_FIN | TCP_ACK));
    feed(engine, tcp(client, port, vip, 80, TCP_FIN | TCP_ACK));
    feed(engine, tcp(real, 80, client, port, TCP_ACK));
  }
  engine.now = 5000;
}

const HEADER = [
  "IP Virtual Server version 1.2.1 (size=4096)",
  "Prot LocalAddress:Port Scheduler Flags",
  "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
];

/** A real's -Ln line with no connections, upstream's `  -> %-28s %-7s %-6d %-10u %-10u`. */
function realLine(endpoint: string, forward: string, weight: number): string {
  return `  -> ${endpoint.padEnd(28)} ${forward.padEnd(7)} ${String(weight).padEnd(6)} ` +
    `${"0".padEnd(10)} ${"0".padEnd(10)}`;
}

function lines(...l: string[]): string {
  return l.map((x) => x + "\n").join("");
}

const VIP0 = "192.168.1.31";
const STEPS: Step[] = [
  // Seed 000: the NAT tutorial.
  { at: "000:86", line: `-A -t ${VIP0}:80 -s rr` },
  { at: "000:87", line: `-a -t ${VIP0}:80 -r 10.10.10.11:80 -m` },
  { at: "000:88", line: `-a -t ${VIP0}:80 -r 10.10.10.12:80 -m` },
  {
    at: "000:90",
    line: "-ln",
    out: lines(
      ...HEADER,
      `TCP  ${VIP0}:80 rr`,
      realLine("10.10.10.11:80", "Masq", 1),
      realLine("10.10.10.12:80", "Masq", 1),
    ),
    seed: [
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port Scheduler Flags",
      "-> RemoteAddress:Port Forward Weight ActiveConn InActConn",
      "TCP 192.168.1.31:80 rr",
      "-> 10.10.10.11:80 Masq 1 0 0",
      "-> 10.10.10.12:80 Masq 1 0 0",
    ],
  },
  { at: "000:183", line: `-A -t ${VIP0}:3306 -s rr` },
  { at: "000:187", line: `-a -t ${VIP0}:3306 -r 10.10.10.11:3306 -m` },
  { at: "000:193", line: `-a -t ${VIP0}:3306 -r 10.10.10.12:3306 -m` },
  // The sh experiment is a new one: its listing shows only the web service.
  { at: "implied: 000:317's listing shows a table holding only its own rules", line: "-C" },
  { at: "000:317", line: `-A -t ${VIP0}:80 -s sh` },
  { at: "000:318", line: `-a -t ${VIP0}:80 -r 10.10.10.12:80 -m` },
  { at: "000:319", line: `-a -t ${VIP0}:80 -r 10.10.10.11:80 -m` },
  {
    at: "000:320",
    line: "-ln",
    out: lines(
      ...HEADER,
      `TCP  ${VIP0}:80 sh`,
      realLine("10.10.10.11:80", "Masq", 1),
      realLine("10.10.10.12:80", "Masq", 1),
    ),
    seed: [
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port Scheduler Flags",
      "-> RemoteAddress:Port Forward Weight ActiveConn InActConn",
      "TCP 192.168.1.31:80 sh",
      "-> 10.10.10.11:80 Masq 1 0 0",
      "-> 10.10.10.12:80 Masq 1 0 0",
    ],
  },
  // `-r ~` (the shell makes it /root) is no real server address: upstream's parser refuses it.
  {
    at: "000:356",
    line: `-E -t ${VIP0}:80 -r ~ -p 10`,
    code: 2,
    out: "illegal real server address[:port] specified\n",
  },
  {
    at: "implied: 000:357's listing shows what 000:356 meant (rr, persistent 10)",
    line: `-E -t ${VIP0}:80 -s rr -p 10`,
  },
  {
    at: "000:357",
    line: "-ln",
    out: lines(
      ...HEADER,
      `TCP  ${VIP0}:80 rr persistent 10`,
      realLine("10.10.10.11:80", "Masq", 1),
      realLine("10.10.10.12:80", "Masq", 1),
    ),
    seed: [
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port Scheduler Flags",
      "-> RemoteAddress:Port Forward Weight ActiveConn InActConn",
      "TCP 192.168.1.31:80 rr persistent 10",
      "-> 10.10.10.11:80 Masq 1 0 0",
      "-> 10.10.10.12:80 Masq 1 0 0",
    ],
  },
  // After the two curls: upstream's `%-3s %-6s %-11s %-18s %-18s %s` lines. The seed's expiry
  // times are its own timing, and IPVS lists in hash order. Its curls reached web01: IPVS keeps a
  // service's reals newest first (list_add_rcu), so rr, restarted by -E, first picks 10.10.10.11
  // (000:319, added last); tunvs's rr starts at the first real in appliance.yaml, 10.10.10.12.
  {
    at: "000:377",
    line: "-lnc",
    traffic: twoCurls,
    out: lines(
      "IPVS connection entries",
      "pro expire state       source             virtual            destination",
      "TCP 01:55  TIME_WAIT   192.168.1.35:59132 192.168.1.31:80    10.10.10.12:80",
      "TCP 00:06  NONE        192.168.1.35:0     192.168.1.31:80    10.10.10.12:80",
      "TCP 01:56  TIME_WAIT   192.168.1.35:59134 192.168.1.31:80    10.10.10.12:80",
    ),
    unordered: true,
    seed: [
      "IPVS connection entries",
      "pro expire state source virtual destination",
      "TCP 00:07 NONE 192.168.1.35:0 192.168.1.31:80 10.10.10.11:80",
      "TCP 01:55 TIME_WAIT 192.168.1.35:59132 192.168.1.31:80 10.10.10.11:80",
      "TCP 01:56 TIME_WAIT 192.168.1.35:59134 192.168.1.31:80 10.10.10.11:80",
    ].map((l) => l.replace("10.10.10.11:80", "10.10.10.12:80")),
  },
  // The tutorial moves on after the entries are gone (as in IPVS, a real added again would
  // otherwise count its old connections: they outlive the service).
  {
    at: "000:402",
    line: `-D -t ${VIP0}:80`,
    traffic: (engine) => {
      engine.tick(200_000);
      engine.now = 200_000;
    },
  },
  { at: "000:403", line: `-A -t ${VIP0}:80 -s wrr` },
  { at: "000:404", line: `-a -t ${VIP0}:80 -r 10.10.10.11:80 -m -w 2` },
  { at: "000:405", line: `-a -t ${VIP0}:80 -r 10.10.10.12:80 -m -w 1` },
  {
    at: "000:406",
    line: "-ln",
    out: lines(
      ...HEADER,
      `TCP  ${VIP0}:80 wrr`,
      realLine("10.10.10.11:80", "Masq", 2),
      realLine("10.10.10.12:80", "Masq", 1),
    ),
    seed: [
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port Scheduler Flags",
      "-> RemoteAddress:Port Forward Weight ActiveConn InActConn",
      "TCP 192.168.1.31:80 wrr",
      "-> 10.10.10.11:80 Masq 2 0 0",
      "-> 10.10.10.12:80 Masq 1 0 0",
    ],
  },
  // "配置方法和上面一样" after "先将上面创建的规则删除": the rule is deleted before each -A.
  {
    at: "000:435 as written, on the wrr rule still there",
    line: `-A -t ${VIP0}:80 -s lc`,
    code: 255,
    out: "Service already exists\n",
  },
  { at: "implied: 000:400 deletes the rule before adding it again", line: `-D -t ${VIP0}:80` },
  { at: "000:435", line: `-A -t ${VIP0}:80 -s lc` },
  { at: "000:436", line: `-a -t ${VIP0}:80 -r 10.10.10.11:80 -m` },
  { at: "000:437", line: `-a -t ${VIP0}:80 -r 10.10.10.12:80 -m` },
  { at: "implied: 000:400 deletes the rule before adding it again", line: `-D -t ${VIP0}:80` },
  { at: "000:447", line: `-A -t ${VIP0}:80 -s wlc` },
  { at: "000:448", line: `-a -t ${VIP0}:80 -r 10.10.10.11:80 -m` },
  { at: "000:449", line: `-a -t ${VIP0}:80 -r 10.10.10.12:80 -m` },
  {
    at: "000:450",
    line: "-ln",
    out: lines(
      ...HEADER,
      `TCP  ${VIP0}:80 wlc`,
      realLine("10.10.10.11:80", "Masq", 1),
      realLine("10.10.10.12:80", "Masq", 1),
    ),
    seed: [
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port Scheduler Flags",
      "-> RemoteAddress:Port Forward Weight ActiveConn InActConn",
      "TCP 192.168.1.31:80 wlc",
      "-> 10.10.10.11:80 Masq 1 0 0",
      "-> 10.10.10.12:80 Masq 1 0 0",
    ],
  },
  // ipvsadm.service: ExecStop saves and clears, ExecStart restores.
  {
    at: "000:508 (ipvsadm-save -n, also 000:497)",
    line: "-S -n",
    out: lines(
      `-A -t ${VIP0}:80 -s wlc`,
      `-a -t ${VIP0}:80 -r 10.10.10.11:80 -m -w 1`,
      `-a -t ${VIP0}:80 -r 10.10.10.12:80 -m -w 1`,
    ),
  },
  { at: "000:498", line: "-C" },
  { at: "000:496 (ipvsadm-restore < /etc/sysconfig/ipvsadm)", line: "-R", stdin: "SAVED" },
  {
    at: "000:450 again, after the restore",
    line: "-ln",
    out: lines(
      ...HEADER,
      `TCP  ${VIP0}:80 wlc`,
      realLine("10.10.10.11:80", "Masq", 1),
      realLine("10.10.10.12:80", "Masq", 1),
    ),
  },

  // Seed 002: the table of commands, in the table's order: -D comes before -a/-e/-d there, so
  // those find no service, as upstream would say.
  { at: "implied: seed 002 starts from an empty table", line: "-C" },
  { at: "002:58", line: "-A -t 192.168.1.100:80 -s rr" },
  { at: "002:59", line: "-E -t 192.168.1.100:80 -s wlc" },
  { at: "002:60", line: "-D -t 192.168.1.100:80" },
  {
    at: "002:61",
    line: "-a -t 192.168.1.100:80 -r 192.168.1.11 -g",
    code: 255,
    out: "Service not defined\n",
  },
  {
    at: "002:62",
    line: "-e -t 192.168.1.100:80 -r 192.168.1.11 -w 5",
    code: 255,
    out: "Service not defined\n",
  },
  {
    at: "002:63",
    line: "-d -t 192.168.1.100:80 -r 192.168.1.11",
    code: 255,
    out: "Service not defined\n",
  },
  // The same rows with the service there.
  { at: "002:58 again", line: "-A -t 192.168.1.100:80 -s rr" },
  { at: "002:61 again", line: "-a -t 192.168.1.100:80 -r 192.168.1.11 -g" },
  { at: "002:62 again", line: "-e -t 192.168.1.100:80 -r 192.168.1.11 -w 5" },
  {
    at: "implied: the watch window of 002:67",
    line: "-Ln",
    out: lines(...HEADER, "TCP  192.168.1.100:80 rr", realLine("192.168.1.11:80", "Route", 5)),
  },
  { at: "002:63 again", line: "-d -t 192.168.1.100:80 -r 192.168.1.11" },
  { at: "002:64", line: "-C" },
  { at: "002:65", line: "-Ln", out: lines(...HEADER) },
  // The table's "-x disables a server (weight 0)" example: -x is the upper threshold and takes a
  // number, so popt refuses the line, as upstream's does.
  {
    at: "002:90 (a table cell)",
    line: "-e -r 192.168.1.11 -x",
    code: 255,
    out: "-x: missing argument\n",
  },
  {
    at: "002:91",
    line: "-L --stats",
    out: lines(
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
      "  -> RemoteAddress:Port",
    ),
  },
  {
    at: "002:146 (watch -n1 ipvsadm -Ln --rate)",
    line: "-Ln --rate",
    out: lines(
      "IP Virtual Server version 1.2.1 (size=4096)",
      "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
      "  -> RemoteAddress:Port",
    ),
  },
  // The DR lab: "先清除之前所有的调度策略" (002:322).
  { at: "implied: 002:322 clears every rule first", line: "-C" },
  { at: "002:324", line: "-A -t 192.168.0.220:80 -s rr" },
  { at: "002:325", line: "-A -t 192.168.0.220:443 -s rr" },
  { at: "002:326", line: "-a -t 192.168.0.220:80 -r 192.168.0.10:80 -g" },
  { at: "002:327", line: "-a -t 192.168.0.220:80 -r 192.168.0.20:80 -g" },
  { at: "002:328", line: "-a -t 192.168.0.220:443 -r 192.168.0.20:80 -g" },
  { at: "002:329", line: "-a -t 192.168.0.220:443 -r 192.168.0.10:80 -g" },
  {
    at: "implied: 002:331 (查看为这样, a listing shown as a picture)",
    line: "-Ln",
    // -g keeps the service's port, as IPVS does.
    out: lines(
      ...HEADER,
      "TCP  192.168.0.220:80 rr",
      realLine("192.168.0.10:80", "Route", 1),
      realLine("192.168.0.20:80", "Route", 1),
      "TCP  192.168.0.220:443 rr",
      realLine("192.168.0.10:443", "Route", 1),
      realLine("192.168.0.20:443", "Route", 1),
    ),
  },
  // 002:337 glues the ipvsadm command to the iptables one.
  { at: "002:337", line: "-A -f 6666 -s rr" },
  { at: "002:338", line: "-a -f 6666 -r 192.168.0.10 -g" },
  { at: "002:339", line: "-a -f 6666 -r 192.168.0.20 -g" },
  { at: "002:343", line: "-E -f 6666 -s rr -p 3000" },
  { at: "002:350", line: "-E -f 6666 -s rr -p 3000" },
  {
    at: "implied: 002:341 (查看一下, a listing shown as a picture)",
    line: "-Ln",
    out: lines(
      ...HEADER,
      "TCP  192.168.0.220:80 rr",
      realLine("192.168.0.10:80", "Route", 1),
      realLine("192.168.0.20:80", "Route", 1),
      "TCP  192.168.0.220:443 rr",
      realLine("192.168.0.10:443", "Route", 1),
      realLine("192.168.0.20:443", "Route", 1),
      "FWM  6666 rr persistent 3000",
      realLine("192.168.0.10:0", "Route", 1),
      realLine("192.168.0.20:0", "Route", 1),
    ),
  },

  // Seed 003: Dserver.sh (ipv=/sbin/ipvsadm, vip=10.0.2.90, rs1=10.0.2.62, rs2=10.0.2.63).
  { at: "003:86", line: "-C" },
  { at: "003:87", line: "-A -t 10.0.2.90:80 -s wrr" },
  { at: "003:88", line: "-a -t 10.0.2.90:80 -r 10.0.2.62:80 -g -w 3" },
  { at: "003:89", line: "-a -t 10.0.2.90:80 -r 10.0.2.63:80 -g -w 1" },
  {
    at: "implied: 003:92 (bash Dserver.sh), listed",
    line: "-Ln",
    out: lines(
      ...HEADER,
      "TCP  10.0.2.90:80 wrr",
      realLine("10.0.2.62:80", "Route", 3),
      realLine("10.0.2.63:80", "Route", 1),
    ),
  },
  // The option table (003:22-55): --set, --timeout, -Z, -S/-R.
  { at: "003:48 (--set tcp tcpfin udp)", line: "--set 900 120 300" },
  {
    at: "003:50 (--timeout)",
    line: "-L --timeout",
    out: "Timeout (tcp tcpfin udp): 900 120 300\n",
  },
  { at: "003:30 (-Z)", line: "-Z" },
  {
    at: "003:28 (-S)",
    line: "-S -n",
    out: lines(
      "-A -t 10.0.2.90:80 -s wrr",
      "-a -t 10.0.2.90:80 -r 10.0.2.62:80 -g -w 3",
      "-a -t 10.0.2.90:80 -r 10.0.2.63:80 -g -w 1",
    ),
  },
  { at: "003:114", line: "-C" },
  { at: "003:27 (-R)", line: "-R", stdin: "SAVED" },
  {
    at: "003:27, listed",
    line: "-Ln",
    out: lines(
      ...HEADER,
      "TCP  10.0.2.90:80 wrr",
      realLine("10.0.2.62:80", "Route", 3),
      realLine("10.0.2.63:80", "Route", 1),
    ),
  },

  // Seed 004 (its commands are a picture; 004:131 describes them): clear, add the service, two
  // reals on 8080 in FULLNAT (Alibaba's -b, DPVS's --fullnat), and last the SNAT address 10.0.3.1
  // (DPVS's -P -z, --laddr).
  { at: "004:131 (清空ipvsadm已有的服务)", line: "-C" },
  { at: "004:131 (-A)", line: "-A -t 172.16.0.1:80 -s rr" },
  { at: "004:131 (-a -b, web1)", line: "-a -t 172.16.0.1:80 -r 10.0.4.2:8080 --fullnat" },
  { at: "004:131 (-a -b, web2)", line: "-a -t 172.16.0.1:80 -r 10.0.5.2:8080 --fullnat" },
  { at: "004:131 (最后一条命令, SNAT 10.0.3.1)", line: "-P -t 172.16.0.1:80 --laddr 10.0.3.1" },
  {
    at: "004:131, listed",
    line: "-Ln",
    out: lines(
      ...HEADER,
      "TCP  172.16.0.1:80 rr",
      realLine("10.0.4.2:8080", "FullNat", 1),
      realLine("10.0.5.2:8080", "FullNat", 1),
    ),
  },
  {
    at: "004:131, saved",
    line: "-S -n",
    out: lines(
      "-A -t 172.16.0.1:80 -s rr",
      "-a -t 172.16.0.1:80 -r 10.0.4.2:8080 --fullnat -w 1",
      "-a -t 172.16.0.1:80 -r 10.0.5.2:8080 --fullnat -w 1",
      "-P -t 172.16.0.1:80 -z 10.0.3.1",
    ),
  },
  { at: "004:131, cleared", line: "-C" },
  { at: "004:131, restored", line: "-R", stdin: "SAVED" },
  {
    at: "004:131, restored and listed",
    line: "-G -t 172.16.0.1:80",
    out: lines(
      "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS     ",
      "172.16.0.1:80        1        ",
      "                              10.0.3.1             -          -         ",
    ),
  },
];

/** Words per line, empty lines dropped: the seeds' copies lost ipvsadm's spacing. */
function words(text: string): string[] {
  return text.split("\n").map((l) => l.trim().split(/\s+/).join(" ")).filter((l) => l !== "");
}

/** The seeds: shared/ beside the checkout (as CI lays it), else the workplace's. */
const SEEDS = [new URL("../../../shared/seeds", import.meta.url).pathname, "/work/shared/seeds"]
  .find((dir) => {
    try {
      return Deno.statSync(dir).isDirectory;
    } catch {
      return false;
    }
  }) ?? "/work/shared/seeds";

/** The seed's text for "NNN:LINE", or null when the seeds are not on this machine. */
async function seedLine(at: string): Promise<string | null> {
  const m = /^(\d{3}):(\d+)$/.exec(at);
  if (m === null) return null;
  let files: string[];
  try {
    files = [...Deno.readDirSync(SEEDS)].map((e) => e.name);
  } catch {
    return null;
  }
  const file = files.find((f) => f.startsWith(`${m[1]}_`));
  if (file === undefined) return null;
  return (await Deno.readTextFile(`${SEEDS}/${file}`)).split("\n")[Number(m[2]) - 1] ?? null;
}

Deno.test("every seed ipvsadm line, in order, against the real admin app", async () => {
  const fixture = await adminFixture("# the operator's file\nservices: []\n");
  try {
    let stdin = "";
    let saved = "";
    const ctx: IpvsadmContext = {
      program: "ipvsadm",
      admin: {
        url: "http://127.0.0.1:9180",
        async request(method, path, body, headers) {
          const r = await fixture.call(method, path, body, headers);
          return { status: r.status, body: r.json };
        },
      },
      names: NO_NAMES,
      readStdin: () => Promise.resolve(stdin),
    };
    for (const step of STEPS) {
      const where = `${step.at}: ipvsadm ${step.line}`;
      // A plain "NNN:LINE" is on that seed line as written (Dserver.sh's with $ipv and $vip).
      const text = await seedLine(step.at);
      if (text !== null && !step.at.startsWith("003:8")) {
        assert.ok(text.includes(`ipvsadm ${step.line}`), `${where}: the seed has ${text}`);
      }
      step.traffic?.(fixture.engine);
      stdin = step.stdin === "SAVED" ? saved : step.stdin ?? "";
      const r = await runIpvsadm(step.line.split(" "), ctx, "0.0.0");
      const out = r.stdout + r.stderr;
      assert.equal(r.code, step.code ?? 0, `${where}: ${out}`);
      if (step.out !== undefined) assert.equal(out, step.out, where);
      else if (step.code === undefined) assert.equal(out, "", where);
      if (step.seed !== undefined && step.unordered) {
        const timeless = (l: string[]) =>
          l.map((x) => x.replace(/^(TCP|UDP) \d\d:\d\d /, "$1 ")).sort();
        assert.deepEqual(timeless(words(out)), timeless(step.seed), where);
      } else if (step.seed !== undefined) assert.deepEqual(words(out), step.seed, where);
      if (step.line.startsWith("-S")) saved = r.stdout;
    }
    // Every change went to appliance.yaml, the operator's comment kept, and a restart (a fresh
    // load of the file) lists the same rules.
    const file = await Deno.readTextFile(fixture.path);
    assert.match(file, /^# the operator's file\n/);
    const restarted = await adminFixture(file);
    try {
      assert.deepEqual(restarted.running.config.services, fixture.running.config.services);
    } finally {
      await restarted.cleanup();
    }
  } finally {
    await fixture.cleanup();
  }
});

Deno.test("seed 000's ipvsadm.service: ipvsadm-save -n, ipvsadm -C, ipvsadm-restore (scripts/)", async () => {
  const fixture = await adminFixture(
    "services:\n  - { name: tcp-192.168.1.31-80, vip: 192.168.1.31, port: 80, scheduler: wlc, forward: nat,\n" +
      "      reals: [{ address: 10.10.10.11, port: 80 }, { address: 10.10.10.12, port: 80 }] }\n",
  );
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    fixture.app.fetch,
  );
  const root = new URL("../..", import.meta.url).pathname;
  const run = async (script: string, args: string[], stdin = "") => {
    const child = new Deno.Command(`${root}/scripts/${script}`, {
      args,
      env: {
        NO_COLOR: "1",
        DENO: Deno.execPath(),
        TUNVS_ADMIN: `http://127.0.0.1:${server.addr.port}`,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
    const out = await child.output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return [out.code, text(out.stdout), text(out.stderr)];
  };
  try {
    const rules = "-A -t 192.168.1.31:80 -s wlc\n" +
      "-a -t 192.168.1.31:80 -r 10.10.10.11:80 -m -w 1\n" +
      "-a -t 192.168.1.31:80 -r 10.10.10.12:80 -m -w 1\n";
    // ExecStop: ipvsadm-save -n > /etc/sysconfig/ipvsadm (000:497, 000:508), then ipvsadm -C.
    assert.deepEqual(await run("ipvsadm-save", ["-n"]), [0, rules, ""]);
    const before = structuredClone(fixture.running.config.services);
    assert.deepEqual(await run("ipvsadm", ["-C"]), [0, "", ""]);
    assert.equal(fixture.running.config.services.length, 0);
    // ExecStart: ipvsadm-restore < /etc/sysconfig/ipvsadm (000:496); comment lines are dropped.
    assert.deepEqual(await run("ipvsadm-restore", [], `# saved by ipvsadm-save\n${rules}`), [
      0,
      "",
      "",
    ]);
    assert.deepEqual(fixture.running.config.services, before);
    // Restoring over existing rules replaces them (the script clears first), in one change: a
    // bad line leaves them as they were.
    assert.deepEqual(await run("ipvsadm-restore", [], rules), [0, "", ""]);
    assert.deepEqual(fixture.running.config.services, before);
    const [code, , err] = await run(
      "ipvsadm-restore",
      [],
      "-A -t 10.0.0.1:80\n-a -t 10.0.0.9:80 -r 10.0.1.1\n",
    );
    assert.deepEqual([code, err], [255, "restore: line 3: Service not defined\n"]);
    assert.deepEqual(fixture.running.config.services, before);
    // Upstream's usage for anything but -n.
    assert.deepEqual(await run("ipvsadm-save", ["-x"]), [
      1,
      "",
      "ipvsadm-save: Script to save the IPVS table to stdout.\n" +
      "   With the -n option, prints out the table in numeric format.\n",
    ]);
  } finally {
    await server.shutdown();
    await fixture.cleanup();
  }
});
