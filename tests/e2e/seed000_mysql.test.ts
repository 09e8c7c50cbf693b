/**
 * Seed 000's MySQL check: MariaDB on both real servers, each granting only the
 * client's own address; `mysql -h VIP` from the client must log in and
 * alternate between them — which proves NAT keeps the client's address.
 */
import assert from "node:assert/strict";
import { startAppliance } from "../../lab/appliance.ts";
import { mariaDbInstalled, startMariaDb } from "../../lab/mariadb.ts";
import { Lab } from "../../lab/netns.ts";
import { buildSeed000 } from "../../lab/topology.ts";
import { e2eOptions, writeConfig } from "./harness.ts";

Deno.test({
  name: "seed 000: mysql through the VIP logs in with the client's own address, rr alternates",
  ...e2eOptions("the MariaDB test"),
}, async () => {
  assert.ok(await mariaDbInstalled(), "MariaDB is not installed (./dev test installs it)");
  const lab = await Lab.create("mysql");
  try {
    const topo = await buildSeed000(lab);
    for (const [i, real] of topo.reals.entries()) {
      await startMariaDb(lab, real.name, {
        database: `mariadb${i + 1}`,
        user: "abc",
        password: "123",
        clientAddr: topo.clientAddr,
      });
    }
    const config = await writeConfig(await lab.makeTempDir("config"), "mysql", [{
      name: "mysql",
      vip: topo.vip,
      scheduler: "rr",
      settings: ["port: 3306"],
      reals: topo.reals.map((r) => ({ address: r.addr })),
    }]);
    const app = await startAppliance(lab, "director", config);
    try {
      const seen: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await lab.exec("client", [
          "mariadb",
          "--no-defaults",
          "-h",
          topo.vip,
          "-u",
          "abc",
          "-p123",
          "--connect-timeout=5",
          "-N",
          "-e",
          "show databases like 'mariadb%'",
        ], { allowFail: true });
        assert.equal(r.code, 0, `login ${i + 1}: ${r.stderr}`);
        seen.push(r.stdout.trim());
      }
      for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1], `${seen}`);
      assert.deepEqual([...new Set(seen)].sort(), ["mariadb1", "mariadb2"]);
      // The same user from the director's own address is refused: the grant is the client's alone.
      const direct = await lab.exec("director", [
        "mariadb",
        "--no-defaults",
        "-h",
        topo.reals[0].addr,
        "-u",
        "abc",
        "-p123",
        "--connect-timeout=5",
        "-e",
        "select 1",
      ], { allowFail: true });
      assert.notEqual(direct.code, 0);
      assert.match(direct.stderr, /Access denied|is not allowed to connect/);
    } catch (err) {
      console.error(app.logs());
      throw err;
    } finally {
      await app.stop();
    }
  } finally {
    await lab.destroy();
  }
});
