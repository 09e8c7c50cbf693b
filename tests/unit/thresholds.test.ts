/**
 * Per-real connection thresholds (ipvsadm -x/-y) as IPVS applies them.
 */
import assert from "node:assert/strict";
import { Service, type ServiceSpec } from "../../dataplane/service.ts";

function service(upper: number, lower: number, scheduler: ServiceSpec["scheduler"] = "rr") {
  const real = (addr: number) => ({
    addr,
    port: 80,
    weight: 1,
    upperThreshold: upper,
    lowerThreshold: lower,
  });
  return new Service({
    name: "web",
    protocol: 6,
    vip: 0xc0a8011f,
    port: 80,
    scheduler,
    schedulerFlags: { port: false, fallback: false },
    forward: "nat",
    reals: [real(0x0a0a0a0b), { ...real(0x0a0a0a0c), upperThreshold: 0, lowerThreshold: 0 }],
  }, 0);
}

/** Schedules a new connection the way the engine does; returns the real or -1. */
function connect(svc: Service): number {
  const r = svc.scheduler.pick(svc, 0x0a000001, 40000, 0xc0a8011f, 80);
  if (r >= 0) svc.bind(r);
  return r;
}

Deno.test("upper threshold: a real at its limit takes no new connections", () => {
  const svc = service(2, 0);
  assert.deepEqual([connect(svc), connect(svc), connect(svc)], [0, 1, 0]);
  assert.equal(svc.overloaded[0], 1);
  // Real 0 holds 2 = upper: everything goes to real 1 now.
  assert.deepEqual([connect(svc), connect(svc)], [1, 1]);
  // Established connections count too.
  svc.inactive[0]--;
  svc.active[0]++;
  assert.equal(svc.overloaded[0], 1);
});

Deno.test("without a lower threshold a real comes back below 3/4 of the upper", () => {
  const svc = service(8, 0, "lc");
  for (let i = 0; i < 8; i++) svc.bind(0);
  assert.equal(svc.overloaded[0], 1);
  svc.unbind(0, false); // 7 of 8: 28 < 24 is false
  svc.unbind(0, false); // 6 of 8: 24 < 24 is false
  assert.equal(svc.overloaded[0], 1);
  svc.weight[1] = 0;
  assert.equal(connect(svc), -1, "the only weighted real is overloaded");
  svc.weight[1] = 1;
  svc.unbind(0, false); // 5 of 8: 20 < 24
  assert.equal(svc.overloaded[0], 0);
});

Deno.test("with a lower threshold a real comes back below it", () => {
  const svc = service(10, 4, "lc");
  for (let i = 0; i < 10; i++) svc.bind(0);
  assert.equal(svc.overloaded[0], 1);
  for (let i = 0; i < 6; i++) svc.unbind(0, false);
  assert.equal(svc.overloaded[0], 1, "4 is not below the lower threshold 4");
  svc.unbind(0, false);
  assert.equal(svc.overloaded[0], 0);
  svc.weight[1] = 0;
  assert.equal(connect(svc), 0, "real 0 takes connections again");
});

Deno.test("no thresholds: never overloaded", () => {
  const svc = service(0, 0);
  for (let i = 0; i < 10_000; i++) svc.bind(0);
  assert.equal(svc.overloaded[0], 0);
});
