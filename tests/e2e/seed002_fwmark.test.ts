/**
 * Seed 002's firewall-mark experiment (section 5, "火墙标记实验"), typed as the seed types it, on
 * seed 001's DR segment: first two rr services, :80 and :443, each scheduling on its own; then
 * `-C`, the seed's iptables MARK line for the VIP's 80 and 443, and `ipvsadm -A -f 6666 -s rr`
 * with two `-g` reals: one scheduler over both ports; then `-E -f 6666 -s rr -p 3000`: one
 * client's :80 and :443 stay on one real, the next client gets the other. The running
 * appliance creates the mark's TUN device and its policy rule when the service is added and
 * removes them when it is deleted.
 */
import assert from "node:assert/strict";
import { startAppliance } from "../../lab/appliance.ts";
import { Lab } from "../../lab/netns.ts";
import { startHttpServer, startUdpEchoServer, udpRequest } from "../../lab/servers.ts";
import { buildSeed000, buildSeed001 } from "../../lab/topology.ts";
import { ANY, e2eOptions, ipvsadmTyped, succeeded as ok, whoAnswers } from "./harness.ts";

const HEADER = "IP Virtual Server version 1.2.1 (size=4096)\n" +
  "Prot LocalAddress:Port Scheduler Flags\n" +
  "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
/** A second client address, for "a different client" under persistence. */
const OTHER_CLIENT = "10.10.0.2";

/** Whether the iptables command is here (Debian's is the nf_tables one). */
async function haveIptables(): Promise<boolean> {
  try {
    return (await new Deno.Command("iptables", { args: ["--version"] }).output()).success;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "seed 002: ipvsadm -A -f 6666 with the seed's MARK rule: one scheduler and -p over :80/:443",
  ...e2eOptions("seed 002 firewall-mark replay"),
}, async () => {
  const lab = await Lab.create("fwmark");
  try {
    const topo = await buildSeed001(lab);
    const vip = topo.vip;
    const [r1, r2] = topo.reals;
    for (const real of topo.reals) {
      for (const port of [80, 443]) {
        await startHttpServer(lab, real.name, { port, body: `${real.name} ${port}\n` });
      }
    }
    await lab.addAddress("client", "eth0", `${OTHER_CLIENT}/8`);
    // A firewall-mark service names no VIP for tunvs to answer ARP for: the router routes the
    // VIP to the director, as it would to an LVS director holding it.
    await lab.ip("router", "route", "add", `${vip}/32`, "via", topo.dip);
    const dir = await lab.makeTempDir("configs");
    const config = `${dir}/appliance.yaml`;
    // Direct routing is the seed's method from its DR section on: the appliance starts with it.
    await Deno.writeTextFile(
      config,
      [
        "dataplane: { tun: tunvs0 }",
        `host: { uplink: ${topo.directorIf} }`,
        "services:",
        `  - { name: dr-lab, vip: ${vip}, port: 80, forward: dr, reals: [{ address: ${r1.addr} }] }`,
        "",
      ].join("\n"),
    );
    const app = await startAppliance(lab, "director", config);
    try {
      const run = ipvsadmTyped(lab, app.admin);
      const who = async (port: number, from: string) =>
        (await whoAnswers(lab, "client", `http://${vip}:${port}/`, 1, ["--interface", from]))[0];
      /** One client's requests to :80, :443, :80, :443, in that order. */
      const alternating = async (from = topo.clientAddr) => {
        const answers = [];
        for (const port of [80, 443, 80, 443]) answers.push(`${await who(port, from)}:${port}`);
        return answers;
      };

      // (2) Two services, each with its own rr (lines 322-329).
      await run("-C");
      for (
        const line of [
          `-A -t ${vip}:80 -s rr`,
          `-A -t ${vip}:443 -s rr`,
          `-a -t ${vip}:80 -r ${r1.addr}:80 -g`,
          `-a -t ${vip}:80 -r ${r2.addr}:80 -g`,
          `-a -t ${vip}:443 -r ${r2.addr}:80 -g`,
          `-a -t ${vip}:443 -r ${r1.addr}:80 -g`,
        ]
      ) await run(line);
      // Each port's scheduler moves on by itself: :443's first pick is not :80's next one.
      assert.deepEqual(await alternating(), [
        "real1:80",
        "real2:443",
        "real2:80",
        "real1:443",
      ]);

      // (3) The firewall mark (lines 322-323 again, 337-339).
      await run("-C");
      const mark = `-t mangle -A PREROUTING -d ${vip} -p tcp -m multiport --dports 80,443 ` +
        "-j MARK --set-mark 6666";
      if (await haveIptables()) {
        await lab.exec("director", ["iptables", ...mark.split(" ")]);
      } else {
        // The same rule in nft's words, where iptables is not installed.
        await lab.exec("director", [
          "sh",
          "-c",
          "nft add table ip mangle && nft 'add chain ip mangle PREROUTING " +
          "{ type filter hook prerouting priority mangle; }' && nft add rule ip mangle " +
          `PREROUTING ip daddr ${vip} tcp dport '{ 80, 443 }' meta mark set 6666`,
        ]);
      }
      await run("-A -f 6666 -s rr");
      await run(`-a -f 6666 -r ${r1.addr} -g`);
      await run(`-a -f 6666 -r ${r2.addr} -g`);
      const reals = [r1, r2].map((r) =>
        `  -> ${`${r.addr}:0`.padEnd(28)} Route   1      0          0         \n`
      );
      assert.equal(await run("-Ln"), HEADER + "FWM  6666 rr\n" + reals.join(""));
      // The running appliance made the mark's device and rules without a restart.
      const rules = ok(await lab.exec("director", ["ip", "rule", "show"]), "ip rule");
      assert.match(rules, /^30325:\s+from all fwmark 0x1a0a lookup 30400\s*$/m);
      assert.match(rules, /^30324:\s+from all iif tunvs0m6666 lookup main\s*$/m);
      const table = ok(await lab.exec("director", ["ip", "route", "show", "table", "30400"]), "");
      assert.match(table, /^default dev tunvs0m6666 scope link\s*$/m);
      // One rr over both ports now: the seed's "调度就合理了".
      assert.deepEqual(await alternating(), ["real1:80", "real2:443", "real1:80", "real2:443"]);

      // (4) Persistence (lines 343 and 350): a client's :80 and :443 go to one real.
      await run("-E -f 6666 -s rr -p 3000");
      // The connections made before stay counted (InActConn) on their reals.
      const listed = (await run("-Ln")).split("\n");
      assert.equal(listed.slice(0, 4).join("\n") + "\n", HEADER + "FWM  6666 rr persistent 3000\n");
      assert.deepEqual(
        listed.slice(4, 6).map((l) => l.split(/\s+/).slice(1, 5).join(" ")),
        [r1, r2].map((r) => `-> ${r.addr}:0 Route 1`),
      );
      const first = await alternating();
      const firstReal = first[0].split(":")[0];
      assert.deepEqual(first, [80, 443, 80, 443].map((p) => `${firstReal}:${p}`));
      // A different client is scheduled anew (rr) and sticks to the other real.
      const second = await alternating(OTHER_CLIENT);
      const secondReal = firstReal === "real1" ? "real2" : "real1";
      assert.deepEqual(second, [80, 443, 80, 443].map((p) => `${secondReal}:${p}`));
      // Its templates: one per client, protocol IP, the mark as the virtual address (0.0.26.10).
      const conns = await run("-Lnc");
      const addrOf = (name: string) => topo.reals.find((r) => r.name === name)!.addr;
      for (const [client, real] of [[topo.clientAddr, firstReal], [OTHER_CLIENT, secondReal]]) {
        assert.match(
          conns,
          new RegExp(
            `^IP\\s+\\S+\\s+NONE\\s+${client.replaceAll(".", "\\.")}:0\\s+0\\.0\\.26\\.10:0\\s+` +
              `${addrOf(real).replaceAll(".", "\\.")}:0$`,
            "m",
          ),
          conns,
        );
      }
      assert.equal(
        await run("-S -n"),
        "-A -f 6666 -s rr -p 3000\n" +
          `-a -f 6666 -r ${r1.addr}:0 -g -w 1\n-a -f 6666 -r ${r2.addr}:0 -g -w 1\n`,
      );

      // Deleting the service takes its device and rules away, still without a restart.
      await run("-D -f 6666");
      const after = ok(await lab.exec("director", ["ip", "rule", "show"]), "ip rule");
      assert.doesNotMatch(after, /fwmark|tunvs0m6666/);
      let gone = false;
      for (let i = 0; i < 20 && !gone; i++) {
        gone = (await lab.exec("director", ["ip", "link", "show", "tunvs0m6666"], {
          allowFail: true,
        })).code !== 0;
        if (!gone) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(gone, "the mark's TUN device is gone");
    } catch (err) {
      console.error(`appliance log:\n${app.logs()}`);
      throw err;
    } finally {
      assert.equal((await app.stop()).code, 0, app.logs());
    }
    // Everything the appliance changed is undone.
    const rules = ok(await lab.exec("director", ["ip", "rule", "show"]), "ip rule");
    assert.doesNotMatch(rules, /fwmark|tunvs0/);
  } finally {
    await lab.destroy();
  }
});

Deno.test({
  name: "fwmark over NAT through the API: vips answered, TCP and UDP by one mark, replies steered",
  ...e2eOptions("firewall-mark NAT test"),
}, async () => {
  const lab = await Lab.create("fwmnat");
  try {
    const topo = await buildSeed000(lab);
    const vip = topo.vip;
    for (const real of topo.reals) {
      for (const port of [80, 8080]) {
        await startHttpServer(lab, real.name, { port, body: `${real.name} ${port}\n` });
      }
      await startUdpEchoServer(lab, real.name, { port: 5353, reply: `${real.name}:` });
    }
    // The operator's mark: TCP 80 and 8080 and UDP 5353 to the VIP, in nft's words this time.
    await lab.exec("director", [
      "sh",
      "-c",
      "nft add table ip marks && nft 'add chain ip marks pre " +
      "{ type filter hook prerouting priority mangle; }' && " +
      `nft add rule ip marks pre ip daddr ${vip} tcp dport '{ 80, 8080 }' meta mark set 7 && ` +
      `nft add rule ip marks pre ip daddr ${vip} udp dport 5353 meta mark set 7`,
    ]);
    const dir = await lab.makeTempDir("configs");
    const config = `${dir}/appliance.yaml`;
    await Deno.writeTextFile(config, "dataplane: { tun: tunvs0 }\nservices: []\n");
    const app = await startAppliance(lab, "director", config);
    try {
      // Added to the running appliance, with the VIP for tunvs to route in and answer ARP for.
      const created = await app.request("POST", "/api/v1/services", {
        name: "marked",
        fwmark: 7,
        vips: [vip],
        scheduler: "rr",
        forward: "nat",
        reals: topo.reals.map((r) => ({ address: r.addr })),
      }, ANY);
      assert.equal(created.status, 201, created.body);
      const view = await app.api("/api/v1/services/marked") as Record<string, unknown>;
      assert.deepEqual([view.fwmark, view.vips, view.vip, view.port], [7, [vip], "0.0.0.0", 0]);
      // One rr over both TCP ports, each real on the port asked for; replies from the VIP.
      const answers = [];
      for (const port of [80, 8080, 80, 8080]) {
        answers.push((await whoAnswers(lab, "client", `http://${vip}:${port}/`, 1))[0]);
      }
      assert.deepEqual(answers, ["web01", "web02", "web01", "web02"]);
      // UDP is the same service's: the rr moves on, and the reply comes from the VIP.
      const udp = await udpRequest(lab, "client", vip, 5353, "q");
      assert.deepEqual([udp.from, udp.reply], [vip, "web01:q"]);
      // The NAT reals' replies are steered for TCP and UDP alike.
      const rules = ok(await lab.exec("director", ["ip", "rule", "show"]), "ip rule");
      for (const real of topo.reals) {
        for (const proto of ["tcp", "udp"]) {
          assert.match(
            rules,
            new RegExp(
              `from ${real.addr.replaceAll(".", "\\.")} iif rs0 ipproto ${proto} ` +
                "lookup 30326",
            ),
          );
        }
      }
      // An unmarked port of the VIP is no service's: dropped, not looped.
      const other = await lab.exec("client", [
        "curl",
        "-sS",
        "--max-time",
        "1",
        `http://${vip}:81/`,
      ], { allowFail: true });
      assert.notEqual(other.code, 0);
      const { counters } = await app.api("/api/v1/services") as {
        counters: Record<string, number>;
      };
      assert.ok(counters.drop_no_service >= 1, JSON.stringify(counters));
    } catch (err) {
      console.error(`appliance log:\n${app.logs()}`);
      throw err;
    } finally {
      assert.equal((await app.stop()).code, 0, app.logs());
    }
    // The service was written to appliance.yaml: a restart opens its device from the start.
    assert.match(await Deno.readTextFile(config), /fwmark: 7/);
    const again = await startAppliance(lab, "director", config);
    try {
      assert.match(again.logs(), /tun device created name=tunvs0m7 fwmark=7/);
      const answers = await whoAnswers(lab, "client", `http://${vip}:8080/`, 2);
      assert.deepEqual(answers, ["web01", "web02"]);
      const removed = await again.request("DELETE", "/api/v1/services/marked", undefined, ANY);
      assert.equal(removed.status, 200, removed.body);
      const after = ok(await lab.exec("director", ["ip", "rule", "show"]), "ip rule");
      assert.doesNotMatch(after, /fwmark|lookup 30326/);
    } catch (err) {
      console.error(`appliance log:\n${again.logs()}`);
      throw err;
    } finally {
      assert.equal((await again.stop()).code, 0, again.logs());
    }
    const links = ok(await lab.exec("director", ["ip", "-o", "link", "show"]), "ip link");
    assert.doesNotMatch(links, /tunvs0/);
  } finally {
    await lab.destroy();
  }
});
