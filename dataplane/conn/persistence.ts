/**
 * Persistence (ipvsadm -p/-M) as IPVS implements it: a template entry per client network and
 * service records the real chosen for that client, new connections from the network reuse it
 * while it is valid, each connection holds a reference to its template, and a template whose
 * timer fires while it still controls connections is re-armed for 60 s instead of dying.
 *
 * Templates live in the ConnTable (so listings show them, as `ipvsadm -Lnc` shows NONE entries
 * with client port 0) but are never hashed by a packet tuple: `ConnTable.lookup` cannot find
 * one. They are found through `TemplateIndex`, a key space of their own keyed by (service,
 * masked client address).
 *
 * @module
 */
import type { Service } from "../service.ts";
import { ConnState } from "./state.ts";
import { ConnFlag, type ConnTable } from "./table.ts";

/** What a template's timer is re-armed with while it still controls connections (IPVS: 60 s). */
export const TEMPLATE_REARM_MS = 60_000;

/** `Persistence.acquire` result: no room in the table for a new template. */
export const NO_ROOM = -1;
/** `Persistence.acquire` result: the scheduler found no real for a new template. */
export const NO_REAL = -2;

/**
 * Templates by (service, client network). Chains are kept in typed arrays indexed by the
 * template's ConnTable id, stored as id + 1 so that 0 means "none" and nothing needs filling.
 */
export class TemplateIndex {
  readonly #heads: Int32Array;
  readonly #next: Int32Array;
  readonly #mask: number;
  readonly #seed: number;

  /** Room for templates among `capacity` ConnTable entries. */
  constructor(capacity: number, seed = (Math.random() * 0x7fffffff) | 0) {
    let size = 16;
    while (size < capacity / 2) size <<= 1;
    this.#heads = new Int32Array(size);
    this.#next = new Int32Array(capacity);
    this.#mask = size - 1;
    this.#seed = seed;
  }

  /** The indexed template of `service` for client network `net`, or -1. */
  find(t: ConnTable, service: number, net: number): number {
    for (let e = this.#heads[this.#bucket(service, net)]; e !== 0; e = this.#next[e - 1]) {
      const id = e - 1;
      if (t.inSrc[id] === net && t.service[id] === service) return id;
    }
    return -1;
  }

  /** Indexes template `id` under its service and client network (its `inSrc`). */
  insert(t: ConnTable, id: number): void {
    const bucket = this.#bucket(t.service[id], t.inSrc[id]);
    this.#next[id] = this.#heads[bucket];
    this.#heads[bucket] = id + 1;
  }

  /** Removes template `id` from the index; false when it was not indexed. */
  delete(t: ConnTable, id: number): boolean {
    const bucket = this.#bucket(t.service[id], t.inSrc[id]);
    let e = this.#heads[bucket];
    if (e === id + 1) {
      this.#heads[bucket] = this.#next[id];
      this.#next[id] = 0;
      return true;
    }
    while (e !== 0) {
      const next = this.#next[e - 1];
      if (next === id + 1) {
        this.#next[e - 1] = this.#next[id];
        this.#next[id] = 0;
        return true;
      }
      e = next;
    }
    return false;
  }

  #bucket(service: number, net: number): number {
    let h = Math.imul(net ^ this.#seed, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ service, 0x85ebca77);
    h ^= h >>> 13;
    return h & this.#mask;
  }
}

/**
 * The persistence logic of one engine over its ConnTable: choosing a connection's real through
 * its client's template, the control references, and the templates' expiry.
 */
export class Persistence {
  readonly index: TemplateIndex;
  /**
   * IPVS's `expire_quiescent_template` sysctl: when set, a template whose real has weight 0 is
   * no longer valid, so its clients are scheduled anew. Off by default, as in the kernel: a
   * drained real keeps its persistent clients.
   */
  expireQuiescentTemplate = false;

  /** Persistence over the entries of `conns`. */
  constructor(readonly conns: ConnTable) {
    this.index = new TemplateIndex(conns.capacity);
  }

  /**
   * The template a new connection from `client` to `svc` is controlled by: the client
   * network's template if it is valid, else a new one for a real the scheduler picks (as
   * ip_vs_sched_persist). The template's timer is not touched here; `control` refreshes it.
   * Returns the template's id, NO_ROOM or NO_REAL.
   */
  acquire(
    svc: Service,
    client: number,
    clientPort: number,
    vip: number,
    vport: number,
    now: number,
  ): number {
    const t = this.conns;
    const net = (client & svc.persistNetmask) >>> 0;
    const found = this.index.find(t, svc.index, net);
    if (found >= 0) {
      if (this.#valid(svc, found)) return found;
      // As ip_vs_check_template: the invalid template is no longer found, but lives on until
      // its timer fires with no connection left under it.
      this.index.delete(t, found);
    }
    const id = t.allocate();
    if (id < 0) return NO_ROOM;
    const real = svc.scheduler.pick(svc, client, clientPort, vip, vport);
    if (real < 0) {
      t.release(id);
      return NO_REAL;
    }
    t.protocol[id] = svc.spec.protocol;
    t.service[id] = svc.index;
    t.real[id] = real;
    t.state[id] = ConnState.NONE;
    t.flags[id] = ConnFlag.TEMPLATE | ConnFlag.NO_ORIGINAL | ConnFlag.NO_REPLY;
    t.control[id] = 0;
    t.controlled[id] = 0;
    // The listing shows <client net>:0 -> VIP:vport -> real:rport; a service of many ports
    // names none, as IPVS's firewall-mark and port-zero templates.
    t.inSrc[id] = net;
    t.inSrcPort[id] = 0;
    // A firewall-mark template's virtual address is the mark, as IPVS lists it (0.0.26.10).
    t.inDst[id] = svc.fwmark !== 0 ? svc.fwmark : vip;
    t.inDstPort[id] = svc.anyPort ? 0 : vport;
    t.outSrc[id] = net;
    t.outSrcPort[id] = 0;
    t.outDst[id] = svc.addr[real];
    t.outDstPort[id] = svc.anyPort ? 0 : svc.port[real];
    svc.persistent[real]++;
    t.link(id, now + svc.persistTimeoutMs, now);
    this.index.insert(t, id);
    return id;
  }

  /**
   * Puts connection `id` under template `tpl` and restarts the template's timer with its
   * timeout, as ip_vs_control_add and the ip_vs_conn_put that follows it in ip_vs_sched_persist.
   */
  control(id: number, tpl: number, svc: Service, now: number): void {
    const t = this.conns;
    t.control[id] = tpl + 1;
    t.controlled[tpl]++;
    const timeout = (t.flags[tpl] & ConnFlag.TEMPLATE_REARMED) !== 0
      ? TEMPLATE_REARM_MS
      : svc.persistTimeoutMs;
    const expires = now + timeout;
    const earlier = expires < t.expires[tpl];
    t.expires[tpl] = expires;
    if (earlier) t.reschedule(tpl, now);
  }

  /**
   * Drops connection `id`'s reference to its template, if it has one (ip_vs_control_del). The
   * template itself waits for its own timer, as in IPVS.
   */
  release(id: number): void {
    const t = this.conns;
    const ctl = t.control[id];
    if (ctl === 0) return;
    t.controlled[ctl - 1]--;
    t.control[id] = 0;
  }

  /**
   * Template `tpl`'s timer fired at `now`. While it controls connections it is re-armed for
   * 60 s and its timeout stays 60 s from then on (ip_vs_conn_expire's expire_later); returns
   * false then. Otherwise it is unindexed and uncounted, and true says "remove it".
   */
  expire(tpl: number, svc: Service | undefined, now: number): boolean {
    const t = this.conns;
    if (t.controlled[tpl] > 0) {
      t.flags[tpl] |= ConnFlag.TEMPLATE_REARMED;
      t.expires[tpl] = now + TEMPLATE_REARM_MS;
      return false;
    }
    this.index.delete(t, tpl);
    if (svc !== undefined) svc.persistent[t.real[tpl]]--;
    return true;
  }

  /**
   * ip_vs_check_template: the template's real must still be the service's real (not removed
   * or replaced). Weight 0 does not invalidate it unless `expireQuiescentTemplate` is set, and
   * neither does an upper threshold: IPVS checks neither.
   */
  #valid(svc: Service, tpl: number): boolean {
    const real = this.conns.real[tpl];
    if (real >= svc.count || svc.addr[real] !== this.conns.outDst[tpl]) return false;
    return !(this.expireQuiescentTemplate && svc.weight[real] === 0);
  }
}
