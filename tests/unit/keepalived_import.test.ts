import assert from "node:assert/strict";
import { healthCheckFromRealServer, parseKeepalivedConf } from "../../control/import/keepalived.ts";

/** Seed 003's virtual_server, as its author wrote it (comments and the stray line included). */
const SEED_003 = `
virtual_server 10.0.2.99 80 {
    delay_loop 6   # 健康检查时间间隔
    lb_algo wrr    # 负载调度算法
    lb_kind DR     # 负载转发规则
   # persistence_timeout 100   #保持客户端的请求在指定时间内全都发到同一rs上
   适用于长连接的情况
    protocol TCP

    real_server 10.0.2.62 80 {
        weight 1
        TCP_CHECK {
          connect_port 80
          connect_timeout 3  # 超时时间
          nb_get_retry 3   # 失败重试次数
          delay_before_retry 3   # 失败重试间隔时间
        }
    }
    real_server 10.0.2.63 80 {
        weight 1
        TCP_CHECK {
                connect_port 80
                connect_timeout 3
                nb_get_retry 3
                delay_before_retry 3
        }
    }
}
`;

Deno.test("keepalived import: seed 003's TCP_CHECK becomes the equivalent tcp check", () => {
  const [vs] = parseKeepalivedConf(SEED_003);
  assert.equal(vs.keyword, "virtual_server");
  assert.deepEqual(vs.args, ["10.0.2.99", "80"]);
  const reals = vs.children.filter((c) => c.keyword === "real_server");
  assert.deepEqual(reals.map((r) => r.args), [["10.0.2.62", "80"], ["10.0.2.63", "80"]]);
  for (const real of reals) {
    assert.deepEqual(healthCheckFromRealServer(vs, real), {
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
});

Deno.test("keepalived import: defaults, no checker, unsupported checkers, bad values", () => {
  const [vs] = parseKeepalivedConf(`virtual_server 10.0.0.1 80 {
  alpha
  real_server 10.0.0.2 80 {
    TCP_CHECK {
    }
  }
  real_server 10.0.0.3 80 {
    weight 2
  }
  real_server 10.0.0.4 80 {
    HTTP_GET {
      url { path / }
    }
  }
  real_server 10.0.0.5 80 { TCP_CHECK { connect_timeout soon } }
}`);
  const [plain, none, http, bad] = vs.children.filter((c) => c.keyword === "real_server");
  assert.deepEqual(healthCheckFromRealServer(vs, plain), {
    type: "tcp",
    interval: 60,
    timeout: 5,
    retry: 1,
    delayBeforeRetry: 1,
    rise: 1,
    fall: 1,
    alpha: true,
  });
  assert.equal(healthCheckFromRealServer(vs, none), null);
  assert.throws(() => healthCheckFromRealServer(vs, http), /line 11: HTTP_GET is not imported yet/);
  assert.throws(() => healthCheckFromRealServer(vs, bad), /connect_timeout needs one non-negative/);
  assert.throws(() => parseKeepalivedConf("a {\n"), /unclosed block/);
  assert.throws(() => parseKeepalivedConf("}\n"), /line 1/);
});
