/**
 * keepalived.conf → appliance.yaml: the syntax, seed 003's configuration (nothing lost but what
 * is keepalived's own business), every virtual_server and real_server keyword the importer
 * carries, keepalived's checker defaults written out, and what it names as left out.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../control/config.ts";
import { renderAppliance, type Skipped } from "../../control/import/imported_config.ts";
import { importKeepalivedConf } from "../../control/import/keepalived.ts";
import {
  KeepalivedSyntaxError,
  parseKeepalivedConf,
} from "../../control/import/keepalived_conf.ts";

const SEED_003 = Deno.readTextFileSync(
  new URL("../fixtures/keepalived_seed003.conf", import.meta.url),
);

/** The skipped entries as "LINE KEYWORD: KIND". */
function report(skipped: readonly Skipped[]): string[] {
  return skipped.map((s) => `${s.line} ${s.keyword}: ${s.kind}`);
}

Deno.test("keepalived syntax: blocks, comments, quotes, a brace on the next line", () => {
  const nodes = parseKeepalivedConf(
    "! comment\nvirtual_server 10.0.0.1 80\n{\n  real_server 10.0.0.2 80 { weight 2 } # x\n" +
      '  MISC { misc_path "/bin/check --a #1 {x}" }\n}\n',
  );
  assert.equal(nodes.length, 1);
  const [vs] = nodes;
  assert.deepEqual([vs.keyword, vs.args, vs.line], ["virtual_server", ["10.0.0.1", "80"], 2]);
  assert.deepEqual(vs.children.map((c) => [c.keyword, c.args, c.line]), [
    ["real_server", ["10.0.0.2", "80"], 4],
    ["MISC", [], 5],
  ]);
  assert.deepEqual(vs.children[0].children.map((c) => [c.keyword, c.args]), [["weight", ["2"]]]);
  assert.deepEqual(vs.children[1].children[0].args, ["/bin/check --a #1 {x}"]);
  assert.throws(
    () => parseKeepalivedConf("a {\n b {\n }\n"),
    /line 1: the block opened here is not closed/,
  );
  assert.throws(
    () => parseKeepalivedConf("x\n}\n"),
    (e) => e instanceof KeepalivedSyntaxError && e.line === 2,
  );
  assert.throws(() => parseKeepalivedConf('misc_path "/bin/x\n'), /quoted string is not closed/);
});

Deno.test("keepalived import: seed 003 converts with nothing lost but VRRP and global_defs", () => {
  const result = importKeepalivedConf(SEED_003);
  assert.deepEqual(result.config, {
    services: [{
      name: "tcp-10.0.2.99-80",
      protocol: "tcp",
      vip: "10.0.2.99",
      port: 80,
      scheduler: "wrr",
      forward: "dr",
      // The same TCP_CHECK on both reals: the service's check.
      health_check: {
        type: "tcp",
        interval: 6,
        timeout: 3,
        retry: 3,
        delay_before_retry: 3,
        port: 80,
      },
      reals: [
        { address: "10.0.2.62", port: 80, weight: 1 },
        { address: "10.0.2.63", port: 80, weight: 1 },
      ],
    }],
  });
  // The author's comment spilled onto a line of its own: keepalived ignores it, and so do we.
  assert.deepEqual(report(result.skipped), [
    "3 global_defs: scope",
    "19 vrrp_instance VI_1: scope",
    "40 适用于长连接的情况: ignored",
  ]);
  assert.equal(result.skipped.filter((s) => s.kind === "lost").length, 0);

  const yaml = renderAppliance(
    result,
    "tunvs import --keepalived keepalived.conf",
    "keepalived.conf",
  );
  const config = parseConfig(yaml, "seed003.yaml");
  const [svc] = config.services;
  assert.deepEqual([svc.vip, svc.port, svc.scheduler, svc.forward], ["10.0.2.99", 80, "wrr", "dr"]);
  for (const real of svc.reals) {
    assert.deepEqual(real.healthCheck, {
      type: "tcp",
      interval: 6,
      timeout: 3,
      retry: 3,
      delayBeforeRetry: 3,
      rise: 1,
      fall: 1,
      alpha: false,
      port: 80,
    });
  }
  assert.match(yaml, /^# appliance\.yaml written by `tunvs import --keepalived keepalived\.conf`/);
  assert.match(
    yaml,
    /\n# Outside tunvs's scope \(left to keepalived or the host\):\n# {3}keepalived\.conf:3: global_defs: /,
  );
  assert.match(yaml, /\n# {3}keepalived\.conf:40: 适用于长连接的情况: not a keepalived keyword/);
  assert.match(yaml, /\n {6}- \{ address: 10\.0\.2\.62, port: 80, weight: 1 \}\n/);
});

const FULL = `global_defs {
   router_id LVS_A
}
local_address_group laddr_g1 {
    10.0.3.1
    10.0.3.2
}
virtual_server 192.168.1.31 80 {
    delay_loop 10
    lb_algo sh
    sh-port
    lb_kind NAT
    persistence_timeout
    persistence_granularity 24
    protocol TCP
    quorum 2
    hysteresis 1
    inhibit_on_failure
    sorry_server 10.10.10.99 8080
    virtualhost www.example.com
    ha_suspend
    real_server 10.10.10.11 8080 {
        weight 3
        uthreshold 100
        lthreshold 50
        notify_up "/usr/local/bin/up.sh 10.10.10.11"
        HTTP_GET {
            url {
                path /health
                status_code 200 301-302
            }
            url {
                path /other
            }
            connect_port 8081
            nb_get_retry 2
        }
        TCP_CHECK {
        }
    }
    real_server 10.10.10.12 8080 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check.sh 10.10.10.12"
            misc_dynamic
            user nobody
        }
    }
}
virtual_server 172.16.0.1 80 {
    lb_kind FNAT
    laddr_group_name laddr_g1
    real_server 10.0.4.2 8080 {
        weight 1
        SSL_GET {
            url {
                path /
                digest 9B3A0C85A887A256D6939DA88AABD8CD
            }
            connect_timeout 2
            alpha on
        }
    }
}
virtual_server 10.0.0.5 5060 {
    protocol SCTP
}
virtual_server 10.0.0.6 53 {
    protocol UDP
    lvs_sched twos
    ops
    real_server 10.0.1.1 53 {
        UDP_CHECK {
            payload 0102
        }
    }
}
`;

Deno.test("keepalived import: services, reals and every checker tunvs has", () => {
  const result = importKeepalivedConf(FULL);
  const [web, fnat, dns] = result.config.services;
  assert.deepEqual(web, {
    name: "tcp-192.168.1.31-80",
    protocol: "tcp",
    vip: "192.168.1.31",
    port: 80,
    // persistence_timeout without a value is keepalived's 6 minutes; granularity 24 a netmask.
    persistence: { timeout: 360, netmask: "255.255.255.0" },
    scheduler: "sh",
    scheduler_flags: ["sh-port"],
    forward: "nat",
    inhibit_on_failure: true,
    sorry_server: { address: "10.10.10.99", port: 8080 },
    quorum: 2,
    hysteresis: 1,
    reals: [
      {
        address: "10.10.10.11",
        port: 8080,
        weight: 3,
        upper_threshold: 100,
        lower_threshold: 50,
        notify_up: "/usr/local/bin/up.sh 10.10.10.11",
        health_check: {
          type: "http",
          interval: 10,
          // connect_timeout's default; HTTP_GET's delay_before_retry default is 3 s.
          timeout: 5,
          retry: 2,
          delay_before_retry: 3,
          port: 8081,
          http: { path: "/health", status: [200, 301, 302], host: "www.example.com" },
        },
      },
      {
        address: "10.10.10.12",
        port: 8080,
        weight: 1,
        health_check: {
          type: "exec",
          interval: 10,
          // misc_timeout defaults to the virtual_server's delay_loop; MISC_CHECK retries 0 times.
          timeout: 10,
          retry: 0,
          delay_before_retry: 1,
          exec: { command: "/usr/local/bin/check.sh 10.10.10.12", dynamic: true },
        },
      },
    ],
  });
  assert.deepEqual(fnat, {
    name: "tcp-172.16.0.1-80",
    protocol: "tcp",
    vip: "172.16.0.1",
    port: 80,
    scheduler: "wlc",
    forward: "fullnat",
    local_addresses: ["10.0.3.1", "10.0.3.2"],
    health_check: {
      type: "https",
      interval: 60,
      timeout: 2,
      retry: 1,
      delay_before_retry: 3,
      alpha: true,
      // No status_code: keepalived's 200-299, which is tunvs's default too.
      http: {
        path: "/",
        digest: "9b3a0c85a887a256d6939da88aabd8cd",
      },
    },
    reals: [{ address: "10.0.4.2", port: 8080, weight: 1 }],
  });
  assert.deepEqual(dns, {
    name: "udp-10.0.0.6-53",
    protocol: "udp",
    vip: "10.0.0.6",
    port: 53,
    one_packet: true,
    scheduler: "wlc",
    forward: "nat",
    health_check: { type: "udp", interval: 60, timeout: 5, retry: 1, delay_before_retry: 1 },
    reals: [{ address: "10.0.1.1", port: 53, weight: 1 }],
  });
  assert.deepEqual(report(result.skipped), [
    "1 global_defs: scope",
    "21 ha_suspend: lost",
    "32 url: lost",
    "38 TCP_CHECK: lost",
    "45 user nobody: lost",
    "64 virtual_server 10.0.0.5 5060: lost",
    "69 lvs_sched twos: lost",
    "73 payload 0102: lost",
  ]);
  // Every reason says why.
  const byLine = new Map(result.skipped.map((s) => [s.line, s.reason]));
  assert.match(byLine.get(38)!, /one check per real/);
  assert.match(byLine.get(64)!, /not SCTP/);
  assert.match(byLine.get(69)!, /no such scheduler; wlc/);
  // And config.ts takes all of it.
  const config = parseConfig(renderAppliance(result, "tunvs import", "k.conf"), "k.yaml");
  assert.equal(config.services.length, 3);
  assert.deepEqual(config.services[0].reals[0].healthCheck?.http?.status, [200, 301, 302]);
});

Deno.test("keepalived import: per-real checks, methods and inhibit; fwmark services", () => {
  const result = importKeepalivedConf(`virtual_server 10.0.0.1 80 {
  lb_kind DR
  real_server 10.0.1.1 80 {
    inhibit_on_failure
    TCP_CHECK {
      connect_timeout 3
    }
  }
  real_server 10.0.1.2 8080 {
    lb_kind NAT
    TCP_CHECK {
    }
  }
  real_server 10.0.1.3 80 {
    PING_CHECK {
    }
  }
}
virtual_server fwmark 6666 {
  lb_kind DR
  persistence_timeout 3000
  real_server 192.168.0.10 {
    weight 2
  }
}
`);
  const [svc] = result.config.services;
  // Different checks stay on their reals; a DR real's other port is not its own.
  assert.deepEqual(svc.reals, [
    {
      address: "10.0.1.1",
      port: 80,
      weight: 1,
      // The service's reals disagree: this one keeps its own.
      inhibit_on_failure: true,
      health_check: { type: "tcp", interval: 60, timeout: 3, retry: 1, delay_before_retry: 1 },
    },
    {
      address: "10.0.1.2",
      weight: 1,
      health_check: { type: "tcp", interval: 60, timeout: 5, retry: 1, delay_before_retry: 1 },
    },
    { address: "10.0.1.3", port: 80, weight: 1 },
  ]);
  assert.equal(svc.inhibit_on_failure, undefined);
  const lost = result.skipped.filter((s) => s.kind === "lost").map((s) => [s.line, s.reason]);
  assert.deepEqual(lost.slice(0, 3), [
    [9, "port 8080: a dr real serves the port the client asked for"],
    [10, "tunvs forwards all reals of a service one way; this one uses dr"],
    [15, "tunvs has no such checker"],
  ]);
  // The firewall-mark service converts as it is: a mark, reals that take the client's port.
  assert.equal(lost.length, 3);
  assert.deepEqual(result.config.services[1], {
    name: "fwmark-6666",
    fwmark: 6666,
    scheduler: "wlc",
    forward: "dr",
    persistence: { timeout: 3000 },
    reals: [{ address: "192.168.0.10", weight: 2 }],
  });
});
