/**
 * The benchmark's in-kernel IPIP decapsulator (lab/ipip_decap_bpf.ts): with it on web01, HTTP and
 * a 64 MB download through tunvs' tunnel path reach the VIP on web01's `lo` and come back, and
 * traffic that is not IPIP passes it untouched.
 */
import assert from "node:assert/strict";
import { PATHS } from "../../bench/forwarding_paths.ts";
import { BENCH_PORTS, buildBenchTopology } from "../../lab/bench_topology.ts";
import { Lab } from "../../lab/netns.ts";
import { curl } from "../../lab/servers.ts";
import { runIperf3 } from "../../lab/iperf3.ts";
import { e2eOptions } from "./harness.ts";

Deno.test({
  name: "bpf ipip decapsulator: the tunnel path reaches the VIP on the real through it",
  ...e2eOptions("the bpf decapsulator test"),
}, async () => {
  const lab = await Lab.create("decap");
  try {
    const topo = await buildBenchTopology(lab);
    assert.equal(topo.decapsulator, "bpf", "this kernel takes the tcx classifier");
    // Not IPIP: the real's own address answers as before (the director a plain router).
    const direct = await PATHS.direct.start(lab, topo);
    try {
      const plain = await curl(lab, "client", `http://${direct.host}:${BENCH_PORTS.http}/`);
      assert.equal(plain.code, 200, plain.stderr);
    } finally {
      await direct.stop();
    }
    const path = await PATHS.tunnel.start(lab, topo);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await curl(lab, "client", `http://${topo.vip}:${BENCH_PORTS.http}/`);
        assert.equal(r.code, 200, r.stderr);
      }
      const bulk = await runIperf3(lab, "client", {
        host: topo.vip,
        port: BENCH_PORTS.iperfVip,
        seconds: 1,
      });
      assert.ok(bulk.bytes > 1e6, `iperf3 through the tunnel: ${bulk.bytes} bytes`);
      const counters = await path.counters!();
      assert.ok((counters.forwarded ?? 0) > 0, JSON.stringify(counters));
    } finally {
      await path.stop();
    }
  } finally {
    await lab.destroy();
  }
});
