/**
 * The real-server side of the forwarding methods whose replies bypass the director (DR, tunnel):
 * the VIP on `lo` with the ARP settings seed 001 gives its reals, and a UDP echo server that
 * answers from the VIP (a socket bound to 0.0.0.0 would answer from the real's own address,
 * which the client never asked).
 */
import { type Lab, OutputCollector } from "./netns.ts";
import { type LabServer, serverHandle, waitReady } from "./servers.ts";

/**
 * Puts `vip` on `role`'s loopback as seed 001 does (`ifconfig lo:0 VIP netmask 255.255.255.255
 * broadcast VIP`, plus its host route), with arp_ignore=1 and arp_announce=2 on `all` and `lo`:
 * the real accepts packets for the VIP but never answers ARP for it nor announces it.
 */
export async function addVipOnLoopback(lab: Lab, role: string, vip: string): Promise<void> {
  await lab.sysctl(role, "net.ipv4.conf.all.arp_announce", 2);
  await lab.sysctl(role, "net.ipv4.conf.lo.arp_announce", 2);
  await lab.sysctl(role, "net.ipv4.conf.lo.arp_ignore", 1);
  await lab.sysctl(role, "net.ipv4.conf.all.arp_ignore", 1);
  await lab.ip(role, "addr", "add", `${vip}/32`, "broadcast", vip, "dev", "lo", "label", "lo:0");
  await lab.ip(role, "route", "replace", `${vip}/32`, "dev", "lo");
}

const VIP_UDP_ECHO_PY = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
prefix = sys.argv[3].encode()
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(prefix + data, peer)
`;

/** Starts a UDP echo bound to `address`:`port` in `role`, answering with `reply` + the datagram. */
export async function startBoundUdpEcho(
  lab: Lab,
  role: string,
  address: string,
  port: number,
  reply: string,
): Promise<LabServer> {
  const child = lab.spawn(
    role,
    ["/usr/bin/python3", "-c", VIP_UDP_ECHO_PY, address, String(port), reply],
    { stdout: "piped", stderr: "piped" },
  );
  const stderr = new OutputCollector(child.stderr, 64 << 10);
  const stdout = new OutputCollector(child.stdout, 4096);
  const server = serverHandle(role, port, child, stderr);
  await waitReady(lab, role, child, stderr, "bound udp echo", async () => {
    await new Promise((r) => setTimeout(r, 20));
    return stdout.text().includes("ready");
  });
  return server;
}
