/**
 * Seed 000 as its operator types it: the director starts with no rules, and every rule comes
 * from `ipvsadm` lines of the tutorial, run in the director's namespace against the appliance.
 * rr alternates, the listing is upstream's layout, the wrr rules give 2:1; then ipvsadm-save,
 * -C and -R (ipvsadm.service's stop/start) bring the same rules back, and so does a restart of
 * the appliance alone, because every change was written to its appliance.yaml.
 */
import assert from "node:assert/strict";
import { startAppliance } from "../../lab/appliance.ts";
import { Lab } from "../../lab/netns.ts";
import { startHttpServer } from "../../lab/servers.ts";
import { buildSeed000 } from "../../lab/topology.ts";
import { e2eOptions, ipvsadmIn, succeeded as ok, whoAnswers } from "./harness.ts";

Deno.test({
  name: "seed 000: the tutorial's ipvsadm lines build the director; save, clear, restore, restart",
  ...e2eOptions("seed 000 ipvsadm replay"),
}, async () => {
  const lab = await Lab.create("s0ipvs");
  try {
    const topo = await buildSeed000(lab);
    const [web01, web02] = topo.reals;
    for (const real of topo.reals) await startHttpServer(lab, real.name, { port: 80 });
    const dir = await lab.makeTempDir("configs");
    const config = `${dir}/appliance.yaml`;
    await Deno.writeTextFile(
      config,
      "# seed 000's director; its rules come from ipvsadm\nservices: []\n",
    );
    const vip = topo.vip;
    let app = await startAppliance(lab, "director", config);
    let saved = "";
    try {
      const ipvsadm = ipvsadmIn(lab, app.admin);
      // Lines 86-90 of the tutorial.
      ok(await ipvsadm(["-A", "-t", `${vip}:80`, "-s", "rr"]), "-A");
      ok(await ipvsadm(["-a", "-t", `${vip}:80`, "-r", `${web01.addr}:80`, "-m"]), "-a web01");
      ok(await ipvsadm(["-a", "-t", `${vip}:80`, "-r", `${web02.addr}:80`, "-m"]), "-a web02");
      assert.equal(
        ok(await ipvsadm(["-ln"]), "-ln"),
        "IP Virtual Server version 1.2.1 (size=4096)\n" +
          "Prot LocalAddress:Port Scheduler Flags\n" +
          "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
          `TCP  ${vip}:80 rr\n` +
          `  -> ${`${web01.addr}:80`.padEnd(28)} Masq    1      0          0         \n` +
          `  -> ${`${web02.addr}:80`.padEnd(28)} Masq    1      0          0         \n`,
      );
      const rr = await whoAnswers(lab, "client", `http://${vip}/`, 4);
      assert.deepEqual(rr.toSorted(), ["web01", "web01", "web02", "web02"], rr.join());
      assert.notEqual(rr[0], rr[1]);

      // Lines 183-193: the MySQL service next to it.
      ok(await ipvsadm(["-A", "-t", `${vip}:3306`, "-s", "rr"]), "-A 3306");
      ok(await ipvsadm(["-a", "-t", `${vip}:3306`, "-r", `${web01.addr}:3306`, "-m"]), "-a 3306");
      ok(await ipvsadm(["-a", "-t", `${vip}:3306`, "-r", `${web02.addr}:3306`, "-m"]), "-a 3306");

      // Lines 402-406: wrr 2:1 in place of rr.
      ok(await ipvsadm(["-D", "-t", `${vip}:80`]), "-D");
      ok(await ipvsadm(["-A", "-t", `${vip}:80`, "-s", "wrr"]), "-A wrr");
      ok(
        await ipvsadm(["-a", "-t", `${vip}:80`, "-r", `${web01.addr}:80`, "-m", "-w", "2"]),
        "-a w2",
      );
      ok(
        await ipvsadm(["-a", "-t", `${vip}:80`, "-r", `${web02.addr}:80`, "-m", "-w", "1"]),
        "-a w1",
      );
      const wrr = await whoAnswers(lab, "client", `http://${vip}/`, 6);
      assert.equal(wrr.filter((w) => w === "web01").length, 4, wrr.join());

      // Line 356 as typed is not an ipvsadm command line (upstream refuses it too).
      const typo = await ipvsadm(["-E", "-t", `${vip}:80`, "-r", "~", "-p", "10"]);
      assert.equal(typo.code, 2, typo.stderr);

      // Lines 497-508: ipvsadm-save -n, then ipvsadm -C at stop, ipvsadm-restore at start.
      saved = ok(await ipvsadm(["-S", "-n"]), "-S -n");
      assert.equal(
        saved,
        `-A -t ${vip}:80 -s wrr\n` +
          `-a -t ${vip}:80 -r ${web01.addr}:80 -m -w 2\n` +
          `-a -t ${vip}:80 -r ${web02.addr}:80 -m -w 1\n` +
          `-A -t ${vip}:3306 -s rr\n` +
          `-a -t ${vip}:3306 -r ${web01.addr}:3306 -m -w 1\n` +
          `-a -t ${vip}:3306 -r ${web02.addr}:3306 -m -w 1\n`,
      );
      ok(await ipvsadm(["-C"]), "-C");
      assert.doesNotMatch(ok(await ipvsadm(["-Ln"]), "-Ln"), /TCP/);
      assert.match(
        await Deno.readTextFile(config),
        /^# seed 000's director; its rules come from ipvsadm\nservices: \[\]\n$/,
      );
      ok(await ipvsadm(["-R"], saved), "-R");
      assert.equal(ok(await ipvsadm(["-S", "-n"]), "-S -n after -R"), saved);
      const back = await whoAnswers(lab, "client", `http://${vip}/`, 3);
      assert.equal(back.filter((w) => w === "web01").length, 2, back.join());
    } finally {
      const { code } = await app.stop();
      assert.equal(code, 0, app.logs());
    }

    // A restart of the appliance alone serves the same rules: they are in its appliance.yaml.
    app = await startAppliance(lab, "director", config);
    try {
      assert.equal(ok(await ipvsadmIn(lab, app.admin)(["-S", "-n"]), "-S -n after restart"), saved);
      const answers = await whoAnswers(lab, "client", `http://${vip}/`, 3);
      assert.equal(answers.filter((w) => w === "web01").length, 2, answers.join());
    } finally {
      const { code } = await app.stop();
      assert.equal(code, 0, app.logs());
    }
  } finally {
    await lab.destroy();
  }
});
