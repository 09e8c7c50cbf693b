/**
 * The real server's end of an IPIP tunnel, for kernels without the `ipip` module (no `tunl0`):
 * a raw socket for IP protocol 4 receives the encapsulated packets delivered to the real, and
 * the inner packet is written into a TUN device (IFF_TUN | IFF_NO_PI) in the same namespace, so
 * the kernel delivers it to the local server as `tunl0` would. It also reports the MSS option
 * of each SYN it passes on, which is how a test sees what the director clamped.
 */
import { type Lab, OutputCollector, stopProcess } from "./netns.ts";

const DECAP_PY = `
import fcntl, json, os, socket, struct, sys
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
name = sys.argv[1]
tun = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
print(json.dumps({"ready": name}), flush=True)

def syn_mss(p, ihl):
    doff = (p[ihl + 12] >> 4) * 4
    i, end = ihl + 20, min(ihl + doff, len(p))
    while i < end:
        kind = p[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or p[i + 1] < 2:
            break
        if kind == 2 and p[i + 1] == 4 and i + 4 <= end:
            return (p[i + 2] << 8) | p[i + 3]
        i += p[i + 1]
    return 0

while True:
    pkt = raw.recv(65535)
    inner = pkt[(pkt[0] & 15) * 4:]
    if len(inner) < 20 or inner[0] >> 4 != 4:
        continue
    ihl = (inner[0] & 15) * 4
    if inner[9] == 6 and len(inner) >= ihl + 20 and (inner[ihl + 13] & 0x12) == 0x02:
        print(json.dumps({
            "syn": "%s:%d" % (socket.inet_ntoa(inner[12:16]), (inner[ihl] << 8) | inner[ihl + 1]),
            "mss": syn_mss(inner, ihl),
            "outer": socket.inet_ntoa(pkt[12:16]),
        }), flush=True)
    os.write(tun, inner)
`;

/** A SYN the decapsulator passed on. */
export interface DecappedSyn {
  /** The client's address and port, "a.b.c.d:port". */
  syn: string;
  /** Its MSS option (0 when it had none). */
  mss: number;
  /** The outer source: the director's tunnel address. */
  outer: string;
}

/** A running decapsulator. */
export interface IpipDecap {
  role: string;
  /** The TUN device the inner packets enter by. */
  tun: string;
  /** The SYNs passed on so far, oldest first. */
  syns(): DecappedSyn[];
  /** Stops it; the kernel removes its TUN device. */
  stop(): Promise<void>;
  /** What it wrote to stderr. */
  logs(): string;
}

/**
 * Starts the decapsulator in `role`'s namespace on TUN device `tun` (default "ipip0"), brings the
 * device up, and turns reverse-path filtering off for it: the inner packets come from clients
 * the real routes elsewhere, as with `tunl0`.
 */
export async function startIpipDecap(lab: Lab, role: string, tun = "ipip0"): Promise<IpipDecap> {
  const child = lab.spawn(role, ["/usr/bin/python3", "-c", DECAP_PY, tun], {
    stdout: "piped",
    stderr: "piped",
  });
  const stdout = new OutputCollector(child.stdout, 1 << 20);
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 10_000;
  while (!stdout.text().includes('"ready"')) {
    if (exited || Date.now() > deadline) {
      if (!exited) await stopProcess(child, "SIGKILL");
      await stderr.done;
      throw new Error(`ipip decapsulator in ${lab.nsName(role)} did not start:\n${stderr.text()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await lab.ip(role, "link", "set", tun, "up");
  await lab.sysctl(role, `net.ipv4.conf.${tun}.rp_filter`, 0);
  let stopping: Promise<void> | null = null;
  return {
    role,
    tun,
    syns: () =>
      stdout.text().split("\n").filter((l) => l.startsWith('{"syn"')).map((l) =>
        JSON.parse(l) as DecappedSyn
      ),
    stop: () => {
      stopping ??= stopProcess(child).then(() => stderr.done);
      return stopping;
    },
    logs: () => stderr.text(),
  };
}
