/**
 * `tunvs ipvsadm` against a running appliance in seed 000's NAT lab, run inside
 * the director namespace the way an operator types it there: -Ln, -Lnc,
 * -Ln --stats, -L --timeout, --set, -Z and -S -n after real client traffic,
 * a rule added and deleted, and the message when the appliance is gone.
 */
import assert from "node:assert/strict";
import { REPO_ROOT, startAppliance } from "../../lab/appliance.ts";
import { Lab, pollUntil, type RunResult } from "../../lab/netns.ts";
import { curl, startHttpServer } from "../../lab/servers.ts";
import { buildSeed000 } from "../../lab/topology.ts";
import { e2eOptions, writeConfig } from "./harness.ts";

const opts = e2eOptions("ipvsadm tests");

const REQUESTS = 6;

Deno.test(
  { name: "ipvsadm: listings, counters, timeouts and -S against the appliance", ...opts },
  async () => {
    const lab = await Lab.create("ipvsadm");
    try {
      const topo = await buildSeed000(lab);
      const [web01, web02] = topo.reals;
      for (const real of topo.reals) await startHttpServer(lab, real.name, { port: 80 });
      const config = await writeConfig(await lab.makeTempDir("configs"), "ipvsadm", [
        {
          vip: topo.vip,
          scheduler: "rr",
          settings: ["port: 80"],
          reals: [
            { address: web01.addr, port: 80, extra: "upper_threshold: 100" },
            { address: web02.addr, port: 80 },
          ],
        },
        {
          name: "dns",
          protocol: "udp",
          vip: topo.vip,
          scheduler: "wrr",
          settings: ["port: 53", "persistence: { timeout: 360, netmask: 255.255.255.0 }"],
          reals: [{ address: web01.addr, port: 53, weight: 2 }],
        },
      ], ["timeouts: { tcp: 900, tcpfin: 120, udp: 300 }"]);
      const app = await startAppliance(lab, "director", config);
      /** `deno run -A mod.ts ipvsadm ARGS` in the director's namespace. */
      const ipvsadm = (args: string[], env: Record<string, string> = { TUNVS_ADMIN: app.admin }) =>
        lab.exec("director", [
          Deno.execPath(),
          "run",
          "-A",
          `${REPO_ROOT}/mod.ts`,
          "ipvsadm",
          ...args,
        ], {
          allowFail: true,
          cwd: REPO_ROOT,
          env: { NO_COLOR: "1", ...env },
        });
      const ok = (r: RunResult, what: string) => {
        assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
        assert.equal(r.stderr, "", what);
        return r.stdout;
      };
      try {
        for (let i = 0; i < REQUESTS; i++) {
          const r = await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 5 });
          assert.equal(r.code, 200, `request ${i + 1}: ${r.stderr}`);
        }

        // -Lnc: the server closes first, so every connection ends in TIME_WAIT.
        let lnc = "";
        await pollUntil(
          async () => {
            lnc = ok(await ipvsadm(["-Lnc"]), "-Lnc");
            return lnc.split("\n").filter((l) => l.includes(" TIME_WAIT ")).length === REQUESTS;
          },
          5000,
          200,
        );
        const connLines = lnc.trimEnd().split("\n");
        assert.deepEqual(connLines.slice(0, 2), [
          "IPVS connection entries",
          "pro expire state       source             virtual            destination",
        ]);
        assert.equal(connLines.length, 2 + REQUESTS, lnc);
        const client = topo.clientAddr.replaceAll(".", "\\.");
        for (const line of connLines.slice(2)) {
          // %-3s %-6s %-11s %-18s %-18s %s
          assert.match(line, /^TCP (01:5\d|02:00) {2}TIME_WAIT {3}/, line);
          assert.match(line.slice(23, 42), new RegExp(`^${client}:\\d+ *$`), line);
          assert.equal(line.slice(42, 61), `${topo.vip}:80`.padEnd(18) + " ", line);
          assert.ok([`${web01.addr}:80`, `${web02.addr}:80`].includes(line.slice(61)), line);
        }

        // -Ln: upstream's table, each real with its 3 closed connections as InActConn.
        assert.equal(
          ok(await ipvsadm(["-Ln"]), "-Ln"),
          "IP Virtual Server version 1.2.1 (size=4096)\n" +
            "Prot LocalAddress:Port Scheduler Flags\n" +
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
            `TCP  ${topo.vip}:80 rr\n` +
            `  -> ${`${web01.addr}:80`.padEnd(28)} Masq    1      0          3         \n` +
            `  -> ${`${web02.addr}:80`.padEnd(28)} Masq    1      0          3         \n` +
            `UDP  ${topo.vip}:53 wrr persistent 360 mask 255.255.255.0\n` +
            `  -> ${`${web01.addr}:53`.padEnd(28)} Masq    2      0          0         \n`,
        );

        // -Ln --stats: 9-column counters after the 33-column name.
        const stats = ok(await ipvsadm(["-Ln", "--stats"]), "--stats").split("\n");
        assert.equal(
          stats[1],
          "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
        );
        const columns = (line: string) =>
          [0, 1, 2, 3, 4].map((i) => Number(line.slice(33 + 9 * i, 42 + 9 * i)));
        assert.ok(stats[3].startsWith(`TCP  ${topo.vip}:80`.padEnd(33)), stats[3]);
        const [conns, inPkts, outPkts, inBytes, outBytes] = columns(stats[3]);
        assert.equal(conns, REQUESTS);
        assert.ok(inPkts >= REQUESTS * 5 && outPkts >= REQUESTS * 4, stats[3]);
        assert.ok(inBytes > inPkts * 40 && outBytes > outPkts * 40, stats[3]);
        assert.deepEqual(
          [stats[4], stats[5]].map((l) => [l.slice(0, 33), columns(l)[0]]),
          [[`  -> ${web01.addr}:80`.padEnd(33), 3], [`  -> ${web02.addr}:80`.padEnd(33), 3]],
        );

        // One service; and the thresholds column the config set.
        const one = ok(await ipvsadm(["-L", "-n", "-t", `${topo.vip}:80`, "--thresholds"]), "-t");
        assert.equal(
          one.split("\n")[3],
          `  -> ${`${web01.addr}:80`.padEnd(28)} 100        0          0          3         `,
        );

        // Timeouts: shown, set (0 keeps one), shown again, restored.
        assert.equal(
          ok(await ipvsadm(["-L", "--timeout"]), "--timeout"),
          "Timeout (tcp tcpfin udp): 900 120 300\n",
        );
        ok(await ipvsadm(["--set", "60", "0", "20"]), "--set");
        assert.equal(
          ok(await ipvsadm(["-L", "--timeout"]), "--timeout"),
          "Timeout (tcp tcpfin udp): 60 120 20\n",
        );
        ok(await ipvsadm(["--set", "900", "120", "300"]), "--set");
        assert.deepEqual(await app.api("/api/v1/timeouts"), { tcp: 900, tcpfin: 120, udp: 300 });

        // -Z: counters from zero.
        ok(await ipvsadm(["-Z", "-t", `${topo.vip}:80`]), "-Z -t");
        assert.deepEqual(columns(ok(await ipvsadm(["-Ln", "--stats"]), "--stats").split("\n")[3]), [
          0,
          0,
          0,
          0,
          0,
        ]);
        assert.equal(
          (await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 5 })).code,
          200,
        );
        assert.equal(
          columns(ok(await ipvsadm(["-Ln", "--stats"]), "--stats").split("\n")[3])[0],
          1,
        );
        ok(await ipvsadm(["-Z"]), "-Z");
        assert.equal(
          columns(ok(await ipvsadm(["-Ln", "--stats"]), "--stats").split("\n")[3])[0],
          0,
        );

        // -S -n: the rules as ipvsadm-save writes them, with the threshold kept; found through
        // --config this time (admin.listen of the appliance's own file).
        assert.equal(
          ok(await ipvsadm(["-S", "-n", "--config", config], {}), "-S -n"),
          `-A -t ${topo.vip}:80 -s rr\n` +
            `-a -t ${topo.vip}:80 -r ${web01.addr}:80 -m -w 1 -x 100\n` +
            `-a -t ${topo.vip}:80 -r ${web02.addr}:80 -m -w 1\n` +
            `-A -u ${topo.vip}:53 -s wrr -p 360 -M 255.255.255.0\n` +
            `-a -u ${topo.vip}:53 -r ${web01.addr}:53 -m -w 2\n`,
        );

        // A service that is not there; a rule added and deleted again, written back each time.
        const missing = await ipvsadm(["-L", "-n", "-t", `${topo.vip}:443`]);
        assert.deepEqual([missing.code, missing.stderr], [1, "No such service\n"]);
        ok(await ipvsadm(["-A", "-t", `${topo.vip}:443`, "-s", "rr"]), "-A");
        assert.match(ok(await ipvsadm(["-Ln"]), "-Ln"), new RegExp(`TCP  ${topo.vip}:443 rr`));
        assert.match(await Deno.readTextFile(config), /vip: 192\.168\.1\.31\n\s+port: 443/);
        const again = await ipvsadm(["-A", "-t", `${topo.vip}:443`, "-s", "rr"]);
        assert.deepEqual([again.code, again.stderr], [255, "Service already exists\n"]);
        ok(await ipvsadm(["-D", "-t", `${topo.vip}:443`]), "-D");
        const after = ok(await ipvsadm(["-Ln"]), "-Ln");
        assert.ok(!after.includes(":443"), after);
      } catch (err) {
        console.error(`appliance log:\n${app.logs()}`);
        throw err;
      } finally {
        const { code } = await app.stop();
        assert.equal(code, 0, app.logs());
      }

      // With the appliance gone, ipvsadm says so and where it looked.
      const gone = await ipvsadm(["-Ln"]);
      assert.equal(gone.code, 2);
      assert.equal(
        gone.stderr,
        `Can't initialize ipvs: the tunvs admin endpoint ${app.admin} does not answer ` +
          "(connection refused)\n" +
          "Are you sure that the tunvs appliance is running (tunvs run)? That address came from " +
          "TUNVS_ADMIN.\n",
      );
    } finally {
      await lab.destroy();
    }
  },
);
