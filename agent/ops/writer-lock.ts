// WriterLock owns "one writer per group and replica" (DESIGN.md): on each replica a named lock
// (`GET_LOCK`, released by the server when the holder's session ends, kill -9 included) plus a lease row in
// `_datasync.writer` renewed every 2 s on the replica's clock. The lease names the holder (standbys report
// it), bounds how long a holder that cannot reach the replica keeps writing (it fences itself before its
// lease expires), and lets a successor end the connections of a holder whose lease expired while the server
// still keeps its session (a silently dropped connection keeps its lock until TCP gives up). No SUPER: a
// user may end its own threads. The group's locks are taken in name order, all or none (GroupWriter).
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Config } from "../config.js";
import { connect, describeConnError, type Conn } from "../db.js";
import { SCHEMA, WRITER_DDL } from "../bookkeeping.js";
import type { Logger } from "../log.js";
import type { Metrics } from "./metrics.js";
import { WriterLost } from "../errors.js";

export { WriterLost };

/** A check run on each new lock connection before its first write (server identity, preflight.ts); throws to refuse. */
export type ServerCheck = (c: Conn, index: number) => Promise<void>;

export interface WriterTiming {
  /** a lease not renewed for this long (server clock) is expired: a successor may end its connections */
  ttlMs: number;
  /** how often the holder renews */
  renewMs: number;
  /** how often a standby (or the writer, for replicas it does not hold) tries the locks */
  pollMs: number;
}

// A holder fences itself 1.5 s before its lease can expire (6.5 s without a renewal): three renewals may fail
// or be late (a loaded machine stalls an event loop for seconds) before it gives up a healthy lock.
export const DEFAULT_TIMING: WriterTiming = { ttlMs: 8000, renewMs: 2000, pollMs: 500 };

/** Who holds a replica's writer lock, as a standby sees it (from the lease row). */
export interface HolderView {
  id: string;
  host: string;
  pid: number;
  /** the holder's lock connection on the replica */
  lockConnection: number;
  since: string | null;
  renewedAgoSeconds: number | null;
  self: boolean;
}

export type LockView =
  | { role: "starting" }
  | { role: "writer"; holder: HolderView }
  | { role: "standby"; holder: HolderView | null; detail: string }
  | { role: "down"; detail: string };

/** The lock name: one per group on a replica server (the checkpoint row it protects is keyed by group alone). */
export function lockName(group: string): string {
  return `datasync.${group}`;
}

/**
 * Closes a connection at once and fails its pending queries. mysql2's destroy() only half-closes the socket
 * and leaves a query in flight waiting for an answer that a dropped flow never brings (until its timeout).
 */
export function sever(c: Conn | null | undefined, why = "the writer lock was lost"): void {
  if (!c) return;
  const core = (c as any).connection ?? c;
  const err: any = new Error(`connection closed by this agent: ${why}`);
  err.code = "PROTOCOL_CONNECTION_LOST";
  try {
    core.on?.("error", () => undefined);
    core.stream?.destroy?.();
    core._handleFatalError?.(err);
  } catch {
    /* already closed */
  }
}

const ER_UNKNOWN_THREAD = 1094;
const ER_NOT_OWNER = 1095;

/** One replica's writer lock: its own connection to the replica, the GET_LOCK session, the lease row. */
export class ReplicaLock {
  readonly name: string;
  readonly index: number;
  #cfg: Config;
  #log: Logger;
  #t: WriterTiming;
  #self: HolderView;
  #conn: Conn | null = null;
  #held = false;
  /** the coordinator opened the gate: the replica's pipeline may write */
  open = false;
  view: LockView = { role: "starting" };
  /** connections that write to the replica (recorded in the lease for a successor to end) */
  #conns: number[] = [];
  #lockConn = 0;
  #watchdog: NodeJS.Timeout | null = null;
  lastRenewAt = 0;
  #renewing = false;
  /** attempts that could not reach the replica (datasync_errors_total{kind="connection"}) */
  failures = 0;
  /** a lock holder without a matching lease: since when (local clock), by connection id */
  #unleased = new Map<number, number>();
  #onLost: ((reason: string) => void) | null = null;
  #warned = new Set<string>();

  /** proves the server behind a new connection is this replica (not the source, not another replica) before any write */
  #verify: ServerCheck | null;

  constructor(cfg: Config, index: number, self: HolderView, log: Logger, timing: WriterTiming, verify: ServerCheck | null = null) {
    this.#verify = verify;
    this.#cfg = cfg;
    this.index = index;
    this.name = cfg.replicas[index].name;
    this.#self = self;
    this.#log = log;
    this.#t = timing;
  }

  get held(): boolean {
    return this.#held;
  }

  onLost(fn: (reason: string) => void): void {
    this.#onLost = fn;
  }

  get #lock(): string {
    return lockName(this.#cfg.group);
  }

  async #connection(): Promise<Conn> {
    if (this.#conn) return this.#conn;
    const r = this.#cfg.replicas[this.index];
    const c = await connect(r, `replicas[${this.index}]`);
    c.on("error", () => undefined);
    try {
      await this.#verify?.(c, this.index);
      await c.query(`CREATE DATABASE IF NOT EXISTS ${SCHEMA}`);
      await c.query(WRITER_DDL);
    } catch (err) {
      c.destroy();
      throw err;
    }
    this.#conn = c;
    return c;
  }

  #drop(): void {
    const c = this.#conn;
    this.#conn = null;
    sever(c);
  }

  /** One attempt to take the lock. "held": another live holder has it (the view names it). */
  async tryAcquire(): Promise<"acquired" | "held" | "down"> {
    if (this.#held) return "acquired";
    let c: Conn;
    try {
      c = await this.#connection();
    } catch (err) {
      const r = this.#cfg.replicas[this.index];
      this.view = { role: "down", detail: describeConnError(err, `replica ${this.name}`, r) };
      this.failures++;
      return "down";
    }
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const [[g]] = await c.query<any[]>({ sql: "SELECT GET_LOCK(?, ?) AS got, CONNECTION_ID() AS me", values: [this.#lock, attempt === 0 ? 0 : 2], timeout: 5000 });
        if (Number(g.got) === 1) {
          await this.#acquired(c, Number(g.me));
          return "acquired";
        }
        const verdict = await this.#inspect(c);
        if (verdict === "held") return "held";
        // "free" (released meanwhile) or "fenced" (we ended an expired holder): try again, waiting a moment
      }
      return "held";
    } catch (err: any) {
      this.#drop();
      this.view = { role: "down", detail: `replica ${this.name}: writer lock: ${err?.message ?? err}` };
      this.failures++;
      return "down";
    }
  }

  /** The lock is held by someone else: a live holder (standby), or one whose lease expired (end its connections). */
  async #inspect(c: Conn): Promise<"held" | "free" | "fenced"> {
    const [[u]] = await c.query<any[]>({ sql: "SELECT IS_USED_LOCK(?) AS owner", values: [this.#lock], timeout: 5000 });
    if (u.owner === null || u.owner === undefined) return "free";
    const owner = Number(u.owner);
    const lease = await this.#readLease(c);
    const now = Date.now();
    if (lease && lease.lockConnection === owner && lease.view.self) {
      // this agent's own earlier session, whose connection it lost (a dropped flow the server still keeps):
      // it has already stopped writing through it, so it ends that session and takes the lock again
      this.#log.info({ replica: this.name, connection: owner }, `ending this agent's own earlier lock session on replica ${this.name} (connection ${owner}) to take the lock again`);
      return (await this.#kill(c, [owner, ...lease.conns], lease.view)) ? "fenced" : "held";
    }
    if (lease && lease.lockConnection === owner && lease.ageMs < lease.ttlMs) {
      this.#unleased.clear();
      this.view = { role: "standby", holder: lease.view, detail: `held by ${describeHolder(lease.view)}` };
      return "held";
    }
    if (lease && lease.lockConnection === owner) {
      // the holder stopped renewing (partitioned, hung) but the server still keeps its session and lock
      this.#log.warn(
        { replica: this.name, holder: lease.view, leaseAgeSeconds: Math.round(lease.ageMs / 100) / 10 },
        `the writer lease of ${describeHolder(lease.view)} on replica ${this.name} expired: ending its connections and taking over`,
      );
      const ok = await this.#kill(c, [owner, ...lease.conns], lease.view);
      if (!ok) return "held";
      return "fenced";
    }
    // a lock holder without its lease: one that is just starting (it writes the lease right after the
    // lock), or a session that holds the lock by other means; ended only after a lease period
    const since = this.#unleased.get(owner) ?? now;
    this.#unleased.set(owner, since);
    const holder: HolderView = { id: `connection ${owner}`, host: "", pid: 0, lockConnection: owner, since: null, renewedAgoSeconds: null, self: false };
    if (now - since < this.#t.ttlMs) {
      this.view = { role: "standby", holder, detail: `held by connection ${owner} (no lease yet)` };
      return "held";
    }
    this.#log.warn({ replica: this.name, connection: owner }, `the writer lock of group ${this.#cfg.group} on replica ${this.name} is held by connection ${owner} without a lease for ${Math.round((now - since) / 1000)} s: ending it`);
    const ok = await this.#kill(c, [owner], holder);
    return ok ? "fenced" : "held";
  }

  /** End connections of a previous holder (same account: no privilege needed). false when the server refused. */
  async #kill(c: Conn, ids: number[], holder: HolderView): Promise<boolean> {
    let ok = true;
    for (const id of new Set(ids)) {
      if (!id || id === this.#lockConn) continue;
      try {
        await c.query({ sql: `KILL CONNECTION ${Number(id)}`, timeout: 5000 });
      } catch (err: any) {
        if (err?.errno === ER_UNKNOWN_THREAD) continue;
        ok = false;
        const key = `kill:${id}`;
        const detail =
          err?.errno === ER_NOT_OWNER
            ? `connection ${id} of ${describeHolder(holder)} belongs to another account, so this agent cannot end it; run every agent of group ${this.#cfg.group} with the same account, or end it as an administrator (KILL ${id})`
            : `cannot end connection ${id} of ${describeHolder(holder)}: ${err?.message ?? err}`;
        if (!this.#warned.has(key)) {
          this.#warned.add(key);
          this.#log.warn({ replica: this.name, connection: id }, detail);
        }
        this.view = { role: "standby", holder, detail };
      }
    }
    return ok;
  }

  async #readLease(c: Conn): Promise<Lease | null> {
    const [rows] = await c.query<any[]>({
      sql: `SELECT holder, host, pid, lock_conn, conns, ttl_ms, started_at, released_at, TIMESTAMPDIFF(MICROSECOND, renewed_at, NOW(6)) AS age_us FROM ${SCHEMA}.writer WHERE group_name = ?`,
      values: [this.#cfg.group],
      timeout: 5000,
    });
    if (!rows.length) return null;
    const r = rows[0];
    const ageMs = Number(r.age_us) / 1000;
    return {
      lockConnection: Number(r.lock_conn),
      conns: String(r.conns || "")
        .split(",")
        .filter(Boolean)
        .map(Number),
      ttlMs: Number(r.ttl_ms),
      ageMs,
      released: r.released_at !== null,
      view: { id: r.holder, host: r.host, pid: Number(r.pid), lockConnection: Number(r.lock_conn), since: r.started_at, renewedAgoSeconds: Math.round(ageMs / 100) / 10, self: r.holder === this.#self.id },
    };
  }

  async #acquired(c: Conn, me: number): Promise<void> {
    this.#lockConn = me;
    this.#unleased.clear();
    const prev = await this.#readLease(c);
    if (prev && prev.view.id !== this.#self.id && !prev.released) {
      // The predecessor's writing connections may outlive its lock (a dropped lock connection, a partition):
      // end them before this agent writes, so none of its transactions can commit later. Connection ids
      // restart with the server: ids from a lease older than the server's uptime name other sessions.
      const [[up]] = await c.query<any[]>({ sql: "SHOW GLOBAL STATUS LIKE 'Uptime'", timeout: 5000 });
      const uptimeMs = Number(up?.Value ?? 0) * 1000;
      if (prev.ageMs + 1000 < uptimeMs && prev.conns.length) await this.#kill(c, prev.conns, prev.view);
    }
    await c.query({
      sql:
        `INSERT INTO ${SCHEMA}.writer (group_name, replica, holder, host, pid, lock_conn, conns, ttl_ms, started_at, renewed_at, released_at) VALUES (?, ?, ?, ?, ?, ?, '', ?, NOW(6), NOW(6), NULL) ` +
        "ON DUPLICATE KEY UPDATE replica = VALUES(replica), holder = VALUES(holder), host = VALUES(host), pid = VALUES(pid), lock_conn = VALUES(lock_conn), conns = '', ttl_ms = VALUES(ttl_ms), started_at = NOW(6), renewed_at = NOW(6), released_at = NULL",
      values: [this.#cfg.group, this.name, this.#self.id, this.#self.host, this.#self.pid, me, this.#t.ttlMs],
      timeout: 5000,
    });
    this.#conns = [];
    this.#held = true;
    this.lastRenewAt = Date.now();
    this.#arm(this.lastRenewAt);
    this.view = { role: "writer", holder: { ...this.#self, lockConnection: me, since: new Date().toISOString(), renewedAgoSeconds: 0 } };
  }

  /** The holder fences itself before its lease can expire on the server: a renewal sent at `sentAt` counts from then. */
  #arm(sentAt: number): void {
    if (this.#watchdog) clearTimeout(this.#watchdog);
    const margin = Math.min(1500, this.#t.ttlMs / 4);
    this.#watchdog = setTimeout(() => this.lose(`the writer lease could not be renewed for ${Math.round((Date.now() - sentAt) / 100) / 10} s`), Math.max(0, sentAt + this.#t.ttlMs - margin - Date.now()));
    this.#watchdog.unref();
  }

  /** Renew the lease (only while the lock is still this session's). Any failure loses the lock. */
  async renew(): Promise<void> {
    if (!this.#held || !this.#conn || this.#renewing) return;
    this.#renewing = true;
    const sentAt = Date.now();
    try {
      const [res] = await this.#conn.query<any>({
        sql: `UPDATE ${SCHEMA}.writer SET renewed_at = NOW(6), conns = ?, ttl_ms = ? WHERE group_name = ? AND holder = ? AND lock_conn = CONNECTION_ID() AND IS_USED_LOCK(?) = CONNECTION_ID()`,
        values: [this.#conns.join(","), this.#t.ttlMs, this.#cfg.group, this.#self.id, this.#lock],
        // a slow renewal (a loaded server) is not a lost lock: only the watchdog decides, at ttl − margin
        timeout: Math.max(500, this.#t.ttlMs - Math.min(1500, this.#t.ttlMs / 4)),
      });
      if (Number(res.affectedRows) !== 1) throw new Error("the lease row names another holder or the lock is not this session's");
      if (!this.#held) return;
      this.lastRenewAt = sentAt;
      this.#arm(sentAt);
      if (this.view.role === "writer") this.view.holder.renewedAgoSeconds = 0;
    } catch (err: any) {
      this.lose(`renewing the writer lease failed: ${err?.message ?? err}`);
    } finally {
      this.#renewing = false;
    }
  }

  /**
   * Records a connection that writes to the replica in the lease before it writes, so a successor can
   * end it. Throws WriterLost when the lock is not held.
   */
  async adopt(c: Conn): Promise<void> {
    if (!this.#held || !this.#conn) throw new WriterLost(`replica ${this.name}: this agent does not hold the writer lock`);
    const [[r]] = await c.query<any[]>("SELECT CONNECTION_ID() AS id");
    this.#conns = [...this.#conns.filter((x) => x !== Number(r.id)).slice(-15), Number(r.id)];
    try {
      const [res] = await this.#conn.query<any>({
        sql: `UPDATE ${SCHEMA}.writer SET conns = ? WHERE group_name = ? AND holder = ? AND lock_conn = CONNECTION_ID()`,
        values: [this.#conns.join(","), this.#cfg.group, this.#self.id],
        timeout: 5000,
      });
      if (Number(res.affectedRows) !== 1) throw new Error("the lease row names another holder");
    } catch (err: any) {
      this.lose(`recording a connection in the writer lease failed: ${err?.message ?? err}`);
      throw new WriterLost(`replica ${this.name}: the writer lock was lost`, err);
    }
  }

  /** The lock is lost (or given up): stop the replica's writes at once, end the lock session. */
  lose(reason: string): void {
    if (!this.#held) return;
    this.#held = false;
    this.open = false;
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = null;
    this.#log.warn({ replica: this.name }, `writer lock lost, this agent stops applying to replica ${this.name}: ${reason}`);
    this.view = { role: "down", detail: `writer lock lost: ${reason}` };
    this.#onLost?.(reason);
    this.#drop();
  }

  /** Clean release: the lease is marked released, the lock freed, the connection ended. */
  async release(): Promise<void> {
    const c = this.#conn;
    const held = this.#held;
    this.#held = false;
    this.open = false;
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = null;
    this.#conn = null;
    if (!c) return;
    try {
      if (held) {
        await c.query({ sql: `UPDATE ${SCHEMA}.writer SET released_at = NOW(6) WHERE group_name = ? AND holder = ?`, values: [this.#cfg.group, this.#self.id], timeout: 2000 });
        await c.query({ sql: "SELECT RELEASE_LOCK(?)", values: [this.#lock], timeout: 2000 });
      }
      await Promise.race([c.end(), new Promise((_, rej) => setTimeout(() => rej(new Error("timeout")), 2000).unref())]);
    } catch {
      c.destroy();
    }
  }
}

interface Lease {
  lockConnection: number;
  conns: number[];
  ttlMs: number;
  ageMs: number;
  released: boolean;
  view: HolderView;
}

export function describeHolder(h: HolderView | null): string {
  if (!h) return "another agent";
  if (!h.host) return h.id;
  return `agent ${h.id} (host ${h.host}, pid ${h.pid})`;
}

/** What a replica's pipeline sees of its writer lock. */
export interface WriterGate {
  /** resolves once this agent may write to the replica; reports standby/down meanwhile */
  wait(stopped: () => boolean, report: (state: "standby" | "down", detail: string) => void): Promise<void>;
  /** record a connection that will write to the replica (before it writes); throws WriterLost when not the writer */
  adopt(c: Conn): Promise<void>;
  /** the pipeline found it is no longer the writer (its checkpoint compare-and-set failed) */
  lost(reason: string): void;
  /** called when the lock is lost: the pipeline must stop writing at once */
  onLost(fn: (reason: string) => void): void;
  view(): LockView;
}

/**
 * The group's writer: takes the locks of all the group's replicas in name order, all or none among the
 * reachable ones, so two agents never split a group; renews them; retries the others.
 */
export class GroupWriter {
  readonly self: HolderView;
  #cfg: Config;
  #log: Logger;
  #m: Metrics | null;
  #t: WriterTiming;
  #locks: ReplicaLock[];
  #order: ReplicaLock[];
  #timer: NodeJS.Timeout | null = null;
  #renewTimer: NodeJS.Timeout | null = null;
  #ticking: Promise<void> | null = null;
  #stopped = false;
  #lastLogged = new Map<string, string>();
  #infoLabels = new Map<string, Record<string, string>>();
  #failuresReported = new Map<string, number>();

  constructor(cfg: Config, log: Logger, metrics: Metrics | null = null, timing: WriterTiming = DEFAULT_TIMING, verify: ServerCheck | null = null) {
    this.#cfg = cfg;
    this.#log = log.child({ component: "writer" });
    this.#m = metrics;
    this.#t = timing;
    const host = hostname();
    this.self = { id: `${host}:${process.pid}:${randomBytes(3).toString("hex")}`, host, pid: process.pid, lockConnection: 0, since: null, renewedAgoSeconds: null, self: true };
    this.#locks = cfg.replicas.map((_, i) => new ReplicaLock(cfg, i, this.self, this.#log, timing, verify));
    this.#order = [...this.#locks].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  start(): void {
    // renewals run on their own timer: a slow acquisition round (a replica that times out) never delays them
    this.#renewTimer = setInterval(() => {
      for (const l of this.#locks) if (l.held) void l.renew();
    }, this.#t.renewMs);
    const loop = () => {
      if (this.#stopped) return;
      this.#ticking = this.#tick().finally(() => {
        this.#ticking = null;
        if (!this.#stopped) this.#timer = setTimeout(loop, this.#t.pollMs);
      });
    };
    loop();
  }

  gate(index: number): WriterGate {
    const l = this.#locks[index];
    return {
      wait: async (stopped, report) => {
        let last = "";
        while (!l.open && !stopped() && !this.#stopped) {
          const v = l.view;
          const key = v.role === "standby" ? `standby:${v.detail}` : v.role === "down" ? `down:${v.detail}` : "";
          if (key && key !== last) {
            last = key;
            if (v.role === "standby" || v.role === "down") report(v.role, v.detail);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      adopt: (c) => l.adopt(c),
      lost: (reason) => l.lose(reason),
      onLost: (fn) => l.onLost(fn),
      view: () => l.view,
    };
  }

  /** Per replica name: the lock's view (for status, /readyz and metrics). */
  views(): Map<string, LockView> {
    return new Map(this.#locks.map((l) => [l.name, l.view]));
  }

  async #tick(): Promise<void> {
    try {
      if (this.#stopped) return;
      const held = this.#order.filter((l) => l.held);
      if (held.length === 0) await this.#acquireAll();
      else await this.#retryOthers(held);
    } catch (err: any) {
      this.#log.warn({ err: err?.message }, "writer lock round failed; retrying");
    } finally {
      this.#report();
    }
  }

  /** Standby: every reachable replica's lock in name order; the first one held by a live agent ends the round. */
  async #acquireAll(): Promise<void> {
    const taken: ReplicaLock[] = [];
    const down = new Set<ReplicaLock>();
    let blocker: ReplicaLock | null = null;
    for (const l of this.#order) {
      if (this.#stopped) break;
      const r = await l.tryAcquire();
      if (r === "acquired") taken.push(l);
      else if (r === "down") down.add(l);
      else if (r === "held") {
        blocker = l;
        break;
      }
    }
    if (blocker || this.#stopped) {
      await Promise.all(taken.map((l) => l.release()));
      if (blocker && blocker.view.role === "standby") {
        const v = blocker.view;
        // the whole group waits on the holder: every replica not found down in this round says so
        for (const l of this.#order) if (l !== blocker && !down.has(l)) l.view = { role: "standby", holder: v.holder, detail: `group ${this.#cfg.group} is written by ${describeHolder(v.holder)} (it holds replica ${blocker.name})` };
      }
      return;
    }
    if (taken.length) {
      for (const l of taken) l.open = true;
      this.#log.info({ holder: this.self.id, replicas: taken.map((l) => l.name), down: this.#order.filter((l) => !l.held).map((l) => l.name) }, `this agent is the writer of group ${this.#cfg.group}`);
    }
  }

  /**
   * Writer: retry the replicas it does not hold (down, or lost). Another live agent holding one of them
   * means the group split (the two agents saw different replicas down when they started): the agent whose
   * first held replica comes later in name order steps down, so exactly one of the two keeps the group.
   */
  async #retryOthers(held: ReplicaLock[]): Promise<void> {
    for (const l of this.#order) {
      if (l.held || this.#stopped) continue;
      const r = await l.tryAcquire();
      if (r === "acquired") {
        l.open = true;
        this.#log.info({ replica: l.name }, `this agent is the writer of replica ${l.name} again`);
      } else if (r === "held" && l.name < held[0].name) {
        this.#log.warn({ replica: l.name, holder: l.view.role === "standby" ? l.view.holder : null }, `group ${this.#cfg.group} is split: replica ${l.name} is written by another agent; this agent steps down to standby`);
        for (const h of held) h.lose(`stepping down: replica ${l.name} of the group is written by another agent`);
        await Promise.all(held.map((h) => h.release()));
        return;
      }
    }
  }

  #report(): void {
    for (const l of this.#locks) {
      const v = l.view;
      const labels = { group: this.#cfg.group, replica: l.name };
      this.#m?.writerStandby.set(labels, v.role === "standby" ? 1 : 0);
      const h = v.role === "writer" || v.role === "standby" ? v.holder : null;
      const info = h ? { ...labels, holder: h.host ? `${h.host}:${h.pid}` : h.id, self: String(h.self) } : null;
      const prev = this.#infoLabels.get(l.name);
      if (prev && (!info || JSON.stringify(prev) !== JSON.stringify(info))) {
        this.#m?.writerHolder.remove(prev);
        this.#infoLabels.delete(l.name);
      }
      if (info) {
        this.#m?.writerHolder.set(info, 1);
        this.#infoLabels.set(l.name, info);
      }
      const fresh = l.failures - (this.#failuresReported.get(l.name) ?? 0);
      if (fresh > 0) {
        this.#failuresReported.set(l.name, l.failures);
        this.#m?.errors.inc({ ...labels, kind: "connection" }, fresh);
      }
      if (v.role === "down") {
        // a replica down at start (or lost) is reported and retried while the others sync
        const msg = `replica unavailable, retrying: ${v.detail}`;
        if (this.#lastLogged.get(l.name) !== msg) {
          this.#lastLogged.set(l.name, msg);
          this.#log.warn({ replica: l.name }, msg);
        }
      } else if (v.role === "standby") {
        const msg = `standby: replica ${l.name} is written by ${describeHolder(v.holder)}; this agent takes over when it ends`;
        if (this.#lastLogged.get(l.name) !== msg) {
          this.#lastLogged.set(l.name, msg);
          this.#log.info({ replica: l.name, holder: v.holder, detail: v.detail }, msg);
        }
      } else this.#lastLogged.delete(l.name);
    }
  }

  /** Stop renewing and release every lock (after the pipelines stopped writing). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    await this.#ticking?.catch(() => undefined);
    await Promise.all(this.#locks.map((l) => l.release()));
  }
}
