/**
 * The admin endpoint's counters, rates, connection listing and timeouts with real clients
 * through seed 000's NAT lab: what `ipvsadm --stats --rate`, `-Lnc`, `--set` and `-Z` show.
 */
import assert from "node:assert/strict";
import { startAppliance } from "../../lab/appliance.ts";
import { Lab, pollUntil } from "../../lab/netns.ts";
import { curl, startHttpServer } from "../../lab/servers.ts";
import { buildSeed000 } from "../../lab/topology.ts";
import type { ConnectionEntry } from "../../dataplane/stats/conn_listing.ts";
import type { ServiceTrafficStats } from "../../dataplane/stats/service_stats.ts";
import { ANY, e2eOptions, writeConfig } from "./harness.ts";

const opts = e2eOptions("admin stats tests");

type Stats = { services: ServiceTrafficStats[] };
type Page = { connections: ConnectionEntry[]; cursor: number | null; total: number };

const REQUESTS = 6;

Deno.test(
  { name: "admin api: stats, rates, connections, timeouts and zeroing", ...opts },
  async () => {
    const lab = await Lab.create("stats");
    try {
      const topo = await buildSeed000(lab);
      for (const real of topo.reals) await startHttpServer(lab, real.name, { port: 80 });
      const config = await writeConfig(await lab.makeTempDir("configs"), "stats", [{
        vip: topo.vip,
        scheduler: "rr",
        settings: ["port: 80"],
        reals: topo.reals.map((r) => ({ address: r.addr, port: 80 })),
      }], ["timeouts: { tcp: 900, tcpfin: 120, udp: 300 }"]);
      const app = await startAppliance(lab, "director", config);
      try {
        for (let i = 0; i < REQUESTS; i++) {
          const r = await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 5 });
          assert.equal(r.code, 200, `request ${i + 1}: ${r.stderr}`);
        }

        // Counters: N connections, split evenly by rr, packets and bytes both ways.
        const stats = await app.api("/api/v1/stats") as Stats;
        const web = stats.services[0];
        assert.equal(web.name, "web");
        assert.equal(web.conns, REQUESTS);
        assert.deepEqual(web.reals.map((r) => [r.address, r.conns]), [
          [topo.reals[0].addr, REQUESTS / 2],
          [topo.reals[1].addr, REQUESTS / 2],
        ]);
        for (const t of [web, ...web.reals]) {
          assert.ok(
            t.inPkts > 0 && t.outPkts > 0 && t.inBytes > 0 && t.outBytes > 0,
            JSON.stringify(t),
          );
        }
        assert.equal(web.inPkts, web.reals[0].inPkts + web.reals[1].inPkts);

        // The listing: each connection closed by the server first, so TIME_WAIT once the last
        // FIN is through, with the client's own address, the VIP and the real.
        let page: Page = { connections: [], cursor: null, total: 0 };
        await pollUntil(
          async () => {
            page = await app.api("/api/v1/connections?service=web") as Page;
            return page.connections.filter((c) => c.state === "TIME_WAIT").length === REQUESTS;
          },
          3000,
          100,
        );
        assert.equal(page.connections.length, REQUESTS, JSON.stringify(page));
        for (const c of page.connections) {
          assert.equal(c.protocol, "TCP");
          assert.equal(c.state, "TIME_WAIT");
          assert.match(c.client, new RegExp(`^${topo.clientAddr.replaceAll(".", "\\.")}:\\d+$`));
          assert.equal(c.virtual, `${topo.vip}:80`);
          assert.ok(topo.reals.some((r) => c.real === `${r.addr}:80`), c.real);
          assert.equal(c.forward, "Masq");
          assert.equal(c.template, false);
          assert.ok(c.expires > 100 && c.expires <= 120, `expires ${c.expires}`);
        }
        const onWeb01 = await app.api(`/api/v1/connections?real=${topo.reals[0].addr}:80`) as Page;
        assert.equal(onWeb01.connections.length, REQUESTS / 2);
        const established = await app.api("/api/v1/connections?state=ESTABLISHED") as Page;
        assert.equal(established.connections.length, 0);

        // Rates: within one 2-second sample the packets show as in/out pps.
        let rates = stats;
        await pollUntil(
          async () => {
            rates = await app.api("/api/v1/stats") as Stats;
            return rates.services[0].inPps > 0;
          },
          3000,
          200,
        );
        const r = rates.services[0];
        assert.ok(r.inPps > 0 && r.outPps > 0 && r.inBps > 0 && r.outBps > 0, JSON.stringify(r));

        // Timeouts at run time; bad bodies are refused naming the field.
        const put = await app.request("PUT", "/api/v1/timeouts", { tcp: 60, udp: 20 }, ANY);
        assert.equal(put.status, 200, put.body);
        assert.deepEqual(JSON.parse(put.body), { tcp: 60, tcpfin: 120, udp: 20 });
        assert.deepEqual(await app.api("/api/v1/timeouts"), { tcp: 60, tcpfin: 120, udp: 20 });
        for (const body of [{ tcp: 0 }, { tcp: "60" }, { tcpfin: 1.5 }]) {
          const bad = await app.request("PUT", "/api/v1/timeouts", body, ANY);
          assert.equal(bad.status, 400, bad.body);
          assert.equal(JSON.parse(bad.body).field, Object.keys(body)[0]);
        }
        assert.equal((await app.request("PUT", "/api/v1/timeouts", "nonsense", ANY)).status, 400);
        assert.deepEqual(await app.api("/api/v1/timeouts"), { tcp: 60, tcpfin: 120, udp: 20 });

        // Zeroing resets counters and rates; traffic afterwards counts from zero.
        const zero = await app.request("POST", "/api/v1/stats/zero");
        assert.equal(zero.status, 200, zero.body);
        const zeroed = (await app.api("/api/v1/stats") as Stats).services[0];
        assert.deepEqual(
          [zeroed.conns, zeroed.inPkts, zeroed.outBytes, zeroed.inPps, zeroed.outBps],
          [0, 0, 0, 0, 0],
        );
        assert.ok(zeroed.reals.every((x) => x.conns === 0 && x.inPkts === 0));
        assert.equal(
          (await curl(lab, "client", `http://${topo.vip}/`, { timeoutSec: 5 })).code,
          200,
        );
        assert.equal((await app.api("/api/v1/stats") as Stats).services[0].conns, 1);
      } catch (err) {
        console.error(`appliance log:\n${app.logs()}`);
        throw err;
      } finally {
        const { code } = await app.stop();
        assert.equal(code, 0, app.logs());
      }
    } finally {
      await lab.destroy();
    }
  },
);
