/**
 * What `/metrics` shows: a plain snapshot of the appliance (services and their reals, connections
 * by state, the dataplane's counters, and optionally health, synproxy and configuration figures)
 * gathered from the running parts, then rendered in Prometheus's text format with `tunvs_` names
 * in base units. Rates are left to PromQL's `rate()`: the page carries the raw counters.
 *
 * When the dataplane does not answer, the page still renders (configuration, health, process) with
 * `tunvs_dataplane_up 0`, so that a stuck worker shows as a value rather than a failed scrape.
 */
import type { Handler } from "hono";
import { CONN_STATE_NAMES } from "../dataplane/conn/state.ts";
import type { RealStats, WorkerStats } from "../dataplane/stats/requests.ts";
import type { MergedStats, WorkerShare } from "./worker_merge.ts";
import { parseIpv4Address } from "../dataplane/wire/ipv4.ts";
import type { DataplaneRequester } from "./admin_source.ts";
import type { ApplianceConfig } from "./config.ts";
import { Exposition, EXPOSITION_CONTENT_TYPE } from "./prometheus_exposition.ts";

/** A real's figures as the dataplane counts them. */
export interface RealLiveMetrics {
  /** The weight the scheduler uses now (health or an operator may have changed it). */
  weight: number;
  activeConns: number;
  inactiveConns: number;
  /** Persistence templates pointing at the real. */
  persistConns: number;
  /** Connections the scheduler sent to the real (its scheduling decisions). */
  connections: number;
  inPackets: number;
  outPackets: number;
  inBytes: number;
  outBytes: number;
}

/** One real of a service. */
export interface RealMetrics {
  address: string;
  port: number;
  /** The weight appliance.yaml gives it. */
  configuredWeight: number;
  /** Absent when the real has no health check. */
  health?: "up" | "down";
  /** Absent when the dataplane did not answer or does not know the real (yet). */
  live?: RealLiveMetrics;
}

/** One virtual service and its reals. */
export interface ServiceMetrics {
  name: string;
  protocol: string;
  vip: string;
  port: number;
  /** The firewall mark of a firewall-mark service (ipvsadm -f); absent for a VIP service. */
  fwmark?: number;
  scheduler: string;
  forward: string;
  reals: RealMetrics[];
}

/** The dataplane's own figures. */
export interface DataplaneMetrics {
  /** Entries in the connection table, templates included. */
  connectionEntries: number;
  /** Entries by IPVS state name; persistence templates count as NONE. */
  connectionsByState: Record<string, number>;
  /** The engine's counters by name; `drop_*` ones are drops by reason. */
  counters: Record<string, number>;
  /** Packets the TUN refused to take back. */
  writeFailures: number;
  /** Each worker's share, with several workers (docs/workers.md). */
  workers?: WorkerShare[];
}

/**
 * Health-check figures, kept by the control plane (HealthSupervisor.counts() has this shape,
 * plus servicesDown). Totals never go back.
 */
export interface HealthMetrics {
  /** State changes of each real so far, by the state it went to. */
  reals: { service: string; address: string; port: number; up: number; down: number }[];
  /** Check rounds run and failed by checker type; attempts count retries too. */
  checks: { type: string; run: number; failed: number; attempts?: number }[];
  /** Quorum changes of each service, by the state it went to. */
  services?: { service: string; up: number; down: number }[];
  /** Names of the services that are down now (quorum lost). */
  servicesDown: string[];
}

/** The running configuration's version and reload history. */
export interface ConfigMetrics {
  version: string | number;
  /** Reloads applied. */
  reloadSuccesses: number;
  /** Reloads refused (bad file, apply failed): nothing changed. */
  reloadFailures: number;
  /** Unix time in seconds of the last successful reload; absent before any. */
  lastReloadSeconds?: number;
}

/** Figures of the tunvs process itself. */
export interface ProcessMetrics {
  residentMemoryBytes: number;
  /** Unix time in seconds the process started. */
  startTimeSeconds: number;
}

/** Everything `/metrics` shows, as plain data. */
export interface MetricsSnapshot {
  services: ServiceMetrics[];
  /** Null when the dataplane did not answer. */
  dataplane: DataplaneMetrics | null;
  /** Why the dataplane did not answer (not rendered; for the log). */
  dataplaneError?: string;
  health?: HealthMetrics;
  config?: ConfigMetrics;
  process: ProcessMetrics;
}

/** What collectMetricsSnapshot takes from outside the dataplane and the configuration. */
export interface MetricsExtras {
  /** A checked real's state, undefined for a real without health check. */
  realHealth?(service: string, address: string, port: number): "up" | "down" | undefined;
  health?: HealthMetrics;
  config?: ConfigMetrics;
  /** Defaults to the time origin of this process. */
  startTimeSeconds?: number;
  /** Defaults to Deno.memoryUsage().rss. */
  residentMemoryBytes?(): number;
}

/** Gathers the snapshot: the running configuration joined with the dataplane's "stats". */
export async function collectMetricsSnapshot(
  request: DataplaneRequester,
  config: ApplianceConfig,
  extras: MetricsExtras = {},
): Promise<MetricsSnapshot> {
  let stats: WorkerStats | null = null;
  let dataplaneError: string | undefined;
  try {
    stats = await request("stats", {});
  } catch (err) {
    dataplaneError = err instanceof Error ? err.message : String(err);
  }
  const services = config.services.map((svc): ServiceMetrics => {
    // Reals are matched by address and port, not position: a reload may have reordered them.
    const live = new Map<string, RealStats>();
    for (const r of stats?.services.find((s) => s.name === svc.name)?.reals ?? []) {
      live.set(`${r.address}:${r.port}`, r);
    }
    return {
      name: svc.name,
      protocol: svc.protocol,
      vip: svc.vip,
      port: svc.port,
      ...(svc.fwmark === undefined ? {} : { fwmark: svc.fwmark }),
      scheduler: svc.scheduler,
      forward: svc.forward,
      reals: svc.reals.map((r): RealMetrics => {
        const s = live.get(`${parseIpv4Address(r.address)}:${r.port}`);
        const health = extras.realHealth?.(svc.name, r.address, r.port);
        return {
          address: r.address,
          port: r.port,
          configuredWeight: r.weight,
          ...(health === undefined ? {} : { health }),
          ...(s === undefined ? {} : {
            live: {
              weight: s.weight,
              activeConns: s.activeConns,
              inactiveConns: s.inactiveConns,
              persistConns: s.persistConns,
              connections: s.connections,
              inPackets: s.inPackets,
              outPackets: s.outPackets,
              inBytes: s.inBytes,
              outBytes: s.outBytes,
            },
          }),
        };
      }),
    };
  });
  return {
    services,
    dataplane: stats === null ? null : {
      connectionEntries: stats.connections,
      connectionsByState: stats.connectionsByState,
      counters: stats.counters,
      writeFailures: stats.writeFailures,
      ...((stats as MergedStats).workers === undefined
        ? {}
        : { workers: (stats as MergedStats).workers }),
    },
    ...(dataplaneError === undefined ? {} : { dataplaneError }),
    ...(extras.health === undefined ? {} : { health: extras.health }),
    ...(extras.config === undefined ? {} : { config: extras.config }),
    process: {
      residentMemoryBytes: extras.residentMemoryBytes?.() ?? Deno.memoryUsage().rss,
      startTimeSeconds: extras.startTimeSeconds ?? performance.timeOrigin / 1000,
    },
  };
}

/** Engine counters with a name and help of their own; other non-drop counters get a generic one. */
const COUNTER_METRICS: Readonly<Record<string, { name: string; help: string }>> = {
  synproxy_syns_answered: {
    name: "tunvs_synproxy_syns_answered_total",
    help: "SYNs answered with a SYN cookie (no state kept).",
  },
  synproxy_cookies_validated: {
    name: "tunvs_synproxy_cookies_validated_total",
    help: "ACKs whose SYN cookie was valid: a connection to a real was opened.",
  },
  synproxy_cookies_rejected: {
    name: "tunvs_synproxy_cookies_rejected_total",
    help: "ACKs with an invalid or stale SYN cookie, dropped.",
  },
  synproxy_handshakes_completed: {
    name: "tunvs_synproxy_handshakes_completed_total",
    help: "Handshakes with reals completed after a valid cookie.",
  },
  synproxy_handshakes_failed: {
    name: "tunvs_synproxy_handshakes_failed_total",
    help: "Handshakes with reals that failed (RST or no answer); the client got a RST.",
  },
  rx_packets: { name: "tunvs_packets_received_total", help: "Packets read from the TUN." },
  forwarded: {
    name: "tunvs_packets_forwarded_total",
    help: "Packets translated for a connection and sent on.",
  },
  passed_through: {
    name: "tunvs_packets_passed_through_total",
    help: "Packets for no service and no connection, written back unchanged.",
  },
  connections_created: {
    name: "tunvs_connections_created_total",
    help: "Connection entries created.",
  },
  connections_expired: {
    name: "tunvs_connections_expired_total",
    help: "Connection entries that timed out.",
  },
  echo_replies: {
    name: "tunvs_icmp_echo_replies_total",
    help: "ICMP echo requests to a VIP answered.",
  },
  icmp_errors_translated: {
    name: "tunvs_icmp_errors_translated_total",
    help: "ICMP errors quoting a tracked connection, translated like it.",
  },
  fragments_translated: {
    name: "tunvs_fragments_translated_total",
    help: "Later IP fragments translated as their first fragment.",
  },
  frag_needed_sent: {
    name: "tunvs_icmp_frag_needed_sent_total",
    help: "ICMP fragmentation-needed errors sent for packets too big to tunnel.",
  },
  toa_inserted: {
    name: "tunvs_toa_inserted_total",
    help: "FULLNAT packets that got the client's address as a TOA option.",
  },
  toa_skipped: {
    name: "tunvs_toa_skipped_total",
    help: "FULLNAT packets without room for the TOA option.",
  },
  direct_sent: {
    name: "tunvs_direct_packets_sent_total",
    help: "Direct-routing packets sent through the packet socket.",
  },
  mss_clamped: { name: "tunvs_mss_clamped_total", help: "SYNs whose MSS was clamped." },
};

const DROP_PREFIX = "drop_";

/** The Prometheus page for `snapshot`. */
export function renderMetrics(snapshot: MetricsSnapshot): string {
  const page = new Exposition();
  const dp = snapshot.dataplane;
  page.family("tunvs_dataplane_up", "gauge", "1 when the dataplane answered this scrape, else 0.")
    .sample(dp === null ? 0 : 1);

  const info = page.family(
    "tunvs_service_info",
    "gauge",
    "Virtual services: protocol, VIP, port, scheduler and forwarding method; value 1.",
  );
  for (const s of snapshot.services) {
    // A firewall-mark service has no VIP of its own: it is named by its mark (node_exporter's
    // IPVS collector likewise labels `local_mark`), and `vip` stays empty.
    info.sample(1, {
      service: s.name,
      protocol: s.protocol,
      vip: s.fwmark === undefined ? s.vip : "",
      fwmark: s.fwmark === undefined ? "" : String(s.fwmark),
      port: s.port,
      scheduler: s.scheduler,
      forward: s.forward,
    });
  }
  if (snapshot.health !== undefined) {
    const down = new Set(snapshot.health.servicesDown);
    const up = page.family("tunvs_service_up", "gauge", "1 when the service is up, 0 when down.");
    for (const s of snapshot.services) up.sample(down.has(s.name) ? 0 : 1, { service: s.name });
  }
  renderReals(page, snapshot.services);

  if (dp !== null) {
    const byState = page.family(
      "tunvs_connections",
      "gauge",
      "Connection entries by IPVS state; persistence templates count as NONE.",
    );
    const states = [...CONN_STATE_NAMES];
    for (const s of Object.keys(dp.connectionsByState)) if (!states.includes(s)) states.push(s);
    for (const state of states) byState.sample(dp.connectionsByState[state] ?? 0, { state });
    page.family(
      "tunvs_connection_table_entries",
      "gauge",
      "Entries in the connection table, templates included.",
    ).sample(dp.connectionEntries);
    renderCounters(page, dp);
  }
  if (snapshot.health !== undefined) renderHealth(page, snapshot.health);
  if (snapshot.config !== undefined) renderConfig(page, snapshot.config);

  page.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
    .sample(snapshot.process.residentMemoryBytes);
  page.family(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
  ).sample(snapshot.process.startTimeSeconds);
  return page.render();
}

function realLabels(service: string, r: RealMetrics): Record<string, string> {
  return { service, real: `${r.address}:${r.port}` };
}

function renderReals(page: Exposition, services: ServiceMetrics[]): void {
  const configured = page.family(
    "tunvs_real_configured_weight",
    "gauge",
    "The real's weight in the configuration.",
  );
  const weight = page.family(
    "tunvs_real_weight",
    "gauge",
    "The real's weight the scheduler uses now.",
  );
  const up = page.family(
    "tunvs_real_up",
    "gauge",
    "Health of a checked real: 1 up, 0 down; reals without a check have no series.",
  );
  const active = page.family(
    "tunvs_real_active_connections",
    "gauge",
    "Established connections to the real (ipvsadm ActiveConn).",
  );
  const inactive = page.family(
    "tunvs_real_inactive_connections",
    "gauge",
    "Other connections to the real (ipvsadm InActConn).",
  );
  const persist = page.family(
    "tunvs_real_persistent_connections",
    "gauge",
    "Persistence templates pointing at the real (ipvsadm PersistConn).",
  );
  const scheduled = page.family(
    "tunvs_real_connections_scheduled_total",
    "counter",
    "Connections the scheduler sent to the real.",
  );
  const packets = page.family(
    "tunvs_real_packets_total",
    "counter",
    "Packets of the real's connections; direction in is client to real.",
  );
  const bytes = page.family(
    "tunvs_real_bytes_total",
    "counter",
    "Bytes of the real's connections; direction in is client to real.",
  );
  for (const s of services) {
    for (const r of s.reals) {
      const labels = realLabels(s.name, r);
      configured.sample(r.configuredWeight, labels);
      if (r.health !== undefined) up.sample(r.health === "up" ? 1 : 0, labels);
      const l = r.live;
      if (l === undefined) continue;
      weight.sample(l.weight, labels);
      active.sample(l.activeConns, labels);
      inactive.sample(l.inactiveConns, labels);
      persist.sample(l.persistConns, labels);
      scheduled.sample(l.connections, labels);
      packets.sample(l.inPackets, { ...labels, direction: "in" });
      packets.sample(l.outPackets, { ...labels, direction: "out" });
      bytes.sample(l.inBytes, { ...labels, direction: "in" });
      bytes.sample(l.outBytes, { ...labels, direction: "out" });
    }
  }
}

function renderCounters(page: Exposition, dp: DataplaneMetrics): void {
  const dropped = page.family(
    "tunvs_packets_dropped_total",
    "counter",
    "Packets the dataplane dropped, by reason.",
  );
  for (const [name, value] of Object.entries(dp.counters)) {
    if (name.startsWith(DROP_PREFIX)) {
      dropped.sample(value, { reason: name.slice(DROP_PREFIX.length) });
      continue;
    }
    const known = COUNTER_METRICS[name];
    if (known !== undefined) {
      page.family(known.name, "counter", known.help).sample(value);
      continue;
    }
    // A counter added to the engine later still shows, under a name derived from its own.
    const base = name.replace(/[^a-zA-Z0-9_]/g, "_").replace(/_total$/, "");
    page.family(`tunvs_dataplane_${base}_total`, "counter", `Dataplane counter ${name}.`)
      .sample(value);
  }
  page.family(
    "tunvs_tun_write_failures_total",
    "counter",
    "Packets the TUN device refused to take back.",
  ).sample(dp.writeFailures);
  if (dp.workers === undefined) return;
  const packets = page.family(
    "tunvs_worker_packets_total",
    "counter",
    "Packets each dataplane worker's engine took: those it owns from its queue, and those handed to it.",
  );
  const handoffs = page.family(
    "tunvs_worker_handoffs_total",
    "counter",
    "Packets a worker handed to the owner of their connection (out) or took from another (in).",
  );
  const entries = page.family(
    "tunvs_worker_connection_entries",
    "gauge",
    "Entries in each worker's connection table, templates included.",
  );
  for (const w of dp.workers) {
    const worker = String(w.worker);
    packets.sample(w.rxPackets, { worker });
    handoffs.sample(w.handoffsOut, { worker, direction: "out" });
    handoffs.sample(w.handoffsIn, { worker, direction: "in" });
    entries.sample(w.connections, { worker });
  }
}

function renderHealth(page: Exposition, h: HealthMetrics): void {
  const transitions = page.family(
    "tunvs_health_transitions_total",
    "counter",
    "Health state changes of a real, by the state it went to.",
  );
  for (const r of h.reals) {
    const labels = { service: r.service, real: `${r.address}:${r.port}` };
    transitions.sample(r.up, { ...labels, to: "up" }).sample(r.down, { ...labels, to: "down" });
  }
  const run = page.family(
    "tunvs_health_checks_total",
    "counter",
    "Health check rounds run, by checker type.",
  );
  const failed = page.family(
    "tunvs_health_check_failures_total",
    "counter",
    "Health check rounds that failed (every attempt failed), by checker type.",
  );
  const attempts = page.family(
    "tunvs_health_check_attempts_total",
    "counter",
    "Health check attempts, retries included, by checker type.",
  );
  for (const c of h.checks) {
    run.sample(c.run, { type: c.type });
    failed.sample(c.failed, { type: c.type });
    if (c.attempts !== undefined) attempts.sample(c.attempts, { type: c.type });
  }
  const quorum = page.family(
    "tunvs_service_transitions_total",
    "counter",
    "Quorum changes of a service, by the state it went to.",
  );
  for (const s of h.services ?? []) {
    quorum.sample(s.up, { service: s.service, to: "up" })
      .sample(s.down, { service: s.service, to: "down" });
  }
}

function renderConfig(page: Exposition, c: ConfigMetrics): void {
  page.family(
    "tunvs_config_info",
    "gauge",
    "The running configuration's version; value 1.",
  ).sample(1, { version: String(c.version) });
  page.family(
    "tunvs_config_reloads_total",
    "counter",
    "Configuration reloads, by result.",
  )
    .sample(c.reloadSuccesses, { result: "success" })
    .sample(c.reloadFailures, { result: "failure" });
  if (c.lastReloadSeconds !== undefined) {
    page.family(
      "tunvs_config_last_reload_timestamp_seconds",
      "gauge",
      "Unix time of the last successful configuration reload.",
    ).sample(c.lastReloadSeconds);
  }
}

/** A Hono handler answering GET /metrics with the page for the snapshot `collect` gathers. */
export function metricsHandler(collect: () => Promise<MetricsSnapshot>): Handler {
  return async (c) => {
    const page = renderMetrics(await collect());
    return c.body(page, 200, { "Content-Type": EXPOSITION_CONTENT_TYPE });
  };
}
