// Replica owns one replica's pipeline: its own binlog reader from its own checkpoint, a bounded queue,
// and the applier that groups source transactions into target transactions with the checkpoint in the
// same commit. A slow, failing or dead replica only ever affects itself.
import type { Config } from "./config.js";
import { connect, describeConnError, isTransient, quoteId, type Conn } from "./db.js";
import { connectionOptions } from "./db.js";
import { planDdl, fingerprint, type DdlPlan } from "./ddl.js";
import {
  checkpointSql,
  ensureBookkeeping,
  heldDdlSql,
  loadQuarantine,
  quarantineSql,
  readCheckpoint,
  unquarantineSql,
  SCHEMA,
  type DdlPending,
} from "./checkpoint.js";
import type { Logger } from "./log.js";
import { scrub } from "./log.js";
import type { Metrics } from "./metrics.js";
import { preflightReplica, type SourceFacts } from "./preflight.js";
import { BinlogReader, comparePos, PurgedPositionError, type Position, type Txn } from "./reader.js";
import { SchemaCache } from "./schema.js";
import { ApplyError, StatementBuilder, type Statement } from "./sqlgen.js";

export type ReplicaState = "starting" | "connecting" | "streaming" | "down" | "failed" | "needs-snapshot" | "stopped";

export interface ReplicaStatus {
  name: string;
  state: ReplicaState;
  connected: boolean;
  lagSeconds: number | null;
  position: Position | null;
  appliedTransactions: number;
  appliedRows: number;
  queueBytes: number;
  snapshot: { done: boolean; rows: number } | null;
  lastError: string | null;
  quarantined: string[];
}

export interface SourceContext {
  facts: SourceFacts;
  sourceId: string;
  serverIdBase: number;
  /** current end of the source binlog (polled), null before the first poll */
  end: () => { pos: Position; at: number } | null;
  /** the source's current position for a replica that has no checkpoint */
  currentPosition: () => Promise<Position>;
  inScope: (db: string, table: string) => boolean;
}

export interface Backoff {
  sleep: (ms: number) => Promise<void>;
  base: number;
  cap: number;
}

const defaultBackoff: Backoff = { sleep: (ms) => new Promise((r) => setTimeout(r, ms)), base: 500, cap: 30_000 };

const MULTI_QUERY_BYTES = 4 << 20;

export class ReplicaSync {
  readonly name: string;
  readonly #cfg: Config;
  readonly #index: number;
  readonly #log: Logger;
  readonly #m: Metrics;
  readonly #src: SourceContext;
  readonly #backoff: Backoff;
  readonly #labels: { group: string; replica: string };

  #state: ReplicaState = "starting";
  #conn: Conn | null = null;
  #reader: BinlogReader | null = null;
  #readerError: Error | null = null;
  /** slots before #head are consumed and emptied (undefined), so a taken transaction is not kept alive by the queue */
  #queue: (Txn | undefined)[] = [];
  #head = 0;
  #queueBytes = 0;
  #inflight: Txn[] = [];
  #wake: (() => void) | null = null;
  #stopping = false;
  #done: Promise<void> | null = null;
  #schema = new SchemaCache(() => this.#conn!);
  #quarantine = new Set<string>();
  #appliedPos: Position | null = null;
  #checkpointPos: Position | null = null;
  #lastCheckpointAt = 0;
  #pendingSince: number | null = null;
  #appliedTxns = 0;
  #appliedRows = 0;
  #lastError: string | null = null;

  constructor(cfg: Config, index: number, src: SourceContext, log: Logger, metrics: Metrics, backoff: Backoff = defaultBackoff) {
    this.#cfg = cfg;
    this.#index = index;
    this.name = cfg.replicas[index].name;
    this.#src = src;
    this.#log = log.child({ component: "replica", replica: this.name });
    this.#m = metrics;
    this.#backoff = backoff;
    this.#labels = { group: cfg.group, replica: this.name };
    this.#m.up.set(this.#labels, 0);
    this.#m.lag.set(this.#labels, 0);
    this.#m.appliedRows.inc(this.#labels, 0);
    this.#m.appliedTxns.inc(this.#labels, 0);
    this.#m.snapshotRows.inc(this.#labels, 0);
  }

  get state(): ReplicaState {
    return this.#state;
  }

  start(): void {
    this.#done = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#done;
  }

  // ---------------------------------------------------------------- lifecycle

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopping) {
      try {
        await this.#session();
        attempt = 0;
      } catch (err: any) {
        if (this.#stopping) break;
        await this.#teardown();
        if (err instanceof PurgedPositionError) {
          this.#setState("needs-snapshot", err.message);
          this.#m.errors.inc({ ...this.#labels, kind: "purged" });
          this.#log.error({ position: this.#checkpointPos }, err.message);
          await this.#waitForResnapshot();
          continue;
        }
        if (err instanceof ApplyError && !err.transient) {
          this.#setState("failed", err.message);
          this.#m.errors.inc({ ...this.#labels, kind: "apply" });
          this.#log.error({ position: this.#checkpointPos, table: err.table, sqlError: err.sqlError }, `replica stopped: ${err.message}`);
          return;
        }
        attempt++;
        const delay = Math.min(this.#backoff.cap, this.#backoff.base * 2 ** Math.min(attempt - 1, 16)) * (0.75 + Math.random() * 0.5);
        const kind = err instanceof ReplicaUnavailable ? err.kind : isTransient(err) ? "connection" : "error";
        this.#m.errors.inc({ ...this.#labels, kind });
        this.#setState("down", scrub(String(err?.message ?? err)));
        this.#log.warn({ attempt, retryInMs: Math.round(delay), kind }, `replica unavailable, retrying: ${scrub(String(err?.message ?? err))}`);
        await this.#sleepUnlessStopped(delay);
      }
    }
    await this.#teardown();
    this.#setState("stopped", this.#lastError);
  }

  #setState(s: ReplicaState, err: string | null = null): void {
    this.#state = s;
    this.#lastError = err;
    this.#m.up.set(this.#labels, s === "streaming" ? 1 : 0);
  }

  async #sleepUnlessStopped(ms: number): Promise<void> {
    await Promise.race([this.#backoff.sleep(ms), new Promise<void>((r) => (this.#wake = r))]);
    this.#wake = null;
  }

  async #teardown(): Promise<void> {
    const reader = this.#reader;
    this.#reader = null;
    if (reader) await reader.stop().catch(() => undefined);
    const conn = this.#conn;
    this.#conn = null;
    if (conn) {
      await conn.query("ROLLBACK").catch(() => undefined);
      await conn.end().catch(() => conn.destroy());
    }
    this.#queue = [];
    this.#head = 0;
    this.#queueBytes = 0;
    this.#inflight = [];
    this.#readerError = null;
    this.#m.queueBytes.set(this.#labels, 0);
    this.#m.up.set(this.#labels, 0);
  }

  async #waitForResnapshot(): Promise<void> {
    const r = this.#cfg.replicas[this.#index];
    while (!this.#stopping) {
      await this.#sleepUnlessStopped(2000);
      try {
        const c = await connect(r, `replicas[${this.#index}]`);
        try {
          const cp = await readCheckpoint(c, this.#cfg.group);
          if (!cp || cp.state === "resnapshot") return;
        } finally {
          await c.end();
        }
      } catch {
        /* keep waiting */
      }
    }
  }

  async #session(): Promise<void> {
    this.#setState("connecting", this.#lastError);
    const r = this.#cfg.replicas[this.#index];
    const where = `replicas[${this.#index}]`;
    let conn: Conn;
    try {
      conn = await connect(r, where, { multipleStatements: true });
    } catch (err) {
      throw new ReplicaUnavailable("connection", describeConnError(err, `replica ${this.name}`, r), err);
    }
    this.#conn = conn;
    const report = await preflightReplica(this.#cfg, this.#index, this.#src.facts);
    if (report.failures.length) throw new ReplicaUnavailable("preflight", report.failures.map((f) => f.message).join("; "));
    await conn.query("SET SESSION transaction_isolation = 'READ-COMMITTED'").catch(() => conn.query("SET SESSION tx_isolation = 'READ-COMMITTED'"));
    await ensureBookkeeping(conn);
    let cp = await readCheckpoint(conn, this.#cfg.group);
    if (cp && cp.state === "resnapshot") {
      // Until the online snapshot lands, a resnapshot restarts streaming at the source's current position.
      cp = null;
    }
    if (cp && cp.sourceId && cp.sourceId !== this.#src.sourceId) {
      this.#log.warn({ checkpointSource: cp.sourceId, source: this.#src.sourceId }, "the checkpoint was written for another source server; resuming by GTID/position anyway");
    }
    let start: Position;
    if (!cp) {
      start = await this.#src.currentPosition();
      this.#log.warn(
        { position: start },
        "replica has no checkpoint for this group: streaming starts at the source's current position; rows that already exist on the source are NOT copied (the online snapshot will do that)",
      );
      await conn.query(checkpointSql(this.#cfg.group, this.#src.sourceId, this.#src.facts.version.flavor, start, Date.now(), 0, 0));
    } else {
      start = cp.pos;
      if (cp.ddlPending) start = await this.#resolvePendingDdl(cp.ddlPending, cp.pos);
    }
    this.#quarantine = await loadQuarantine(conn, this.#cfg.group);
    this.#schema.clear();
    this.#checkpointPos = start;
    this.#appliedPos = start;
    this.#lastCheckpointAt = Date.now();

    const srcCfg = this.#cfg.source;
    const reader = new BinlogReader({
      connection: connectionOptions(srcCfg, "source") as any,
      serverId: this.#src.serverIdBase + this.#index,
      flavor: this.#src.facts.version.flavor,
      start,
      databases: this.#cfg.databases,
      inScope: (db, t) => this.#src.inScope(db, t) && !this.#quarantine.has(`${db}.${t}`),
      onTxn: (t) => this.#enqueue(t),
      onError: (e) => {
        this.#readerError = e;
        this.#wake?.();
      },
      tableInfo: async (db, table) => {
        const c = this.#conn;
        if (!c) return null;
        const [rows] = await c.query<any[]>(
          `SELECT COLUMN_NAME, COLLATION_NAME, CHARACTER_SET_NAME, COLUMN_COMMENT, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
          [db, table],
        );
        return rows;
      },
    });
    this.#reader = reader;
    this.#readerError = null;
    try {
      await reader.start();
    } catch (err: any) {
      if (err instanceof PurgedPositionError) throw err;
      throw new ReplicaUnavailable("source", `binlog stream from the source failed to start: ${err?.message ?? err}`, err);
    }
    this.#setState("streaming");
    this.#log.info({ position: start }, "streaming");
    await this.#applyLoop();
  }

  // ---------------------------------------------------------------- queue

  #enqueue(t: Txn): boolean {
    this.#queue.push(t);
    this.#queueBytes += t.bytes;
    this.#m.queueBytes.set(this.#labels, this.#queueBytes);
    this.#wake?.();
    return this.#queueBytes < this.#cfg.apply.queueBytes;
  }

  #queued(): number {
    return this.#queue.length - this.#head;
  }

  #take(): Txn[] {
    const batch: Txn[] = [];
    let rows = 0;
    let bytes = 0;
    const max = this.#cfg.apply;
    while (this.#head < this.#queue.length) {
      const t = this.#queue[this.#head]!;
      const special = !!(t.ddl || t.statementDml);
      if (special && batch.length > 0) break;
      if (batch.length > 0 && (rows + t.rowCount > max.maxRows || bytes + t.bytes > max.maxBytes)) break;
      batch.push(t);
      // Release the slot: until the array is compacted below (after 4096 transactions), it would otherwise
      // keep every applied transaction and its rows alive (hundreds of MB with 1,000-row transactions).
      this.#queue[this.#head] = undefined;
      this.#head++;
      rows += t.rowCount;
      bytes += t.bytes;
      if (special) break;
    }
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return batch;
  }

  #release(batch: Txn[]): void {
    for (const t of batch) this.#queueBytes -= t.bytes;
    this.#m.queueBytes.set(this.#labels, Math.max(0, this.#queueBytes));
    if (this.#reader?.paused && this.#queueBytes < this.#cfg.apply.queueBytes / 2) this.#reader.resume();
  }

  // ---------------------------------------------------------------- apply

  async #applyLoop(): Promise<void> {
    const hb = Math.max(100, this.#cfg.heartbeatSeconds * 1000);
    while (!this.#stopping) {
      if (this.#readerError) throw this.#readerError;
      if (this.#queued() === 0) {
        await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => setTimeout(r, hb))]);
        this.#wake = null;
        if (this.#queued() === 0) await this.#heartbeat();
        continue;
      }
      const batch = this.#take();
      this.#inflight = batch;
      try {
        if (batch.length === 1 && (batch[0].ddl || batch[0].statementDml)) await this.#applySpecial(batch[0]);
        else await this.#applyRows(batch);
      } catch (err: any) {
        if (err instanceof ApplyError) throw err;
        if (isTransient(err)) throw err;
        throw new ApplyError(`applying source transactions up to ${fmtPos(batch[batch.length - 1].pos)} failed: ${err?.message ?? err}`, { sqlError: err?.message, cause: err });
      } finally {
        this.#inflight = [];
        this.#release(batch);
      }
    }
  }

  /** Moves the checkpoint when only out-of-scope transactions went by (an idle or filtered-out source). */
  async #heartbeat(): Promise<void> {
    if (!this.#conn || !this.#appliedPos || !this.#checkpointPos) return;
    if (comparePos(this.#appliedPos, this.#checkpointPos) > 0 || (this.#appliedPos.gtid ?? "") !== (this.#checkpointPos.gtid ?? "")) {
      await this.#conn.query(checkpointSql(this.#cfg.group, this.#src.sourceId, this.#src.facts.version.flavor, this.#appliedPos, 0, 0, 0));
      this.#checkpointPos = this.#appliedPos;
      this.#lastCheckpointAt = Date.now();
    }
  }

  async #applyRows(batch: Txn[]): Promise<void> {
    const conn = this.#conn!;
    const last = batch[batch.length - 1];
    const b = new StatementBuilder();
    let txns = 0;
    for (const t of batch) {
      if (t.changes.length === 0) continue;
      txns++;
      for (const ch of t.changes) {
        if (this.#quarantine.has(`${ch.db}.${ch.table}`)) continue;
        const meta = await this.#schema.get(ch.db, ch.table);
        if (!meta) {
          throw new ApplyError(
            `at source position ${fmtPos(t.pos)}: table \`${ch.db}\`.\`${ch.table}\` does not exist on replica ${this.name}; the replica diverged from the source. Create it or resnapshot the replica (datasync resnapshot --replica ${this.name}).`,
            { table: `${ch.db}.${ch.table}` },
          );
        }
        b.add(ch, meta, `replica ${this.name}, source position ${fmtPos(t.pos)}`);
      }
    }
    const stmts = b.finish();
    if (stmts.length === 0) {
      // Nothing in scope: advance in memory; the heartbeat persists the position now and then.
      this.#appliedPos = last.pos;
      if (Date.now() - this.#lastCheckpointAt >= this.#cfg.heartbeatSeconds * 1000) await this.#heartbeat();
      return;
    }
    const cp = checkpointSql(this.#cfg.group, this.#src.sourceId, this.#src.facts.version.flavor, last.pos, last.ts, txns, b.rows);
    const hasFallbacks = stmts.some((s) => s.fallback);
    await this.#runTransaction(conn, stmts, cp, hasFallbacks, batch);
    this.#appliedPos = last.pos;
    this.#checkpointPos = last.pos;
    this.#lastCheckpointAt = Date.now();
    this.#appliedTxns += txns;
    this.#appliedRows += b.rows;
    this.#m.appliedTxns.inc(this.#labels, txns);
    this.#m.appliedRows.inc(this.#labels, b.rows);
    this.#m.batches.inc(this.#labels);
  }

  /**
   * One target transaction: the statements and the checkpoint, sent as few multi-statement queries.
   * UPDATEs located by an old key report how many rows they matched; when one matched nothing, the
   * transaction is rolled back and replayed statement by statement with its upsert fallback.
   */
  async #runTransaction(conn: Conn, stmts: Statement[], checkpoint: string, checkMatches: boolean, batch: Txn[]): Promise<void> {
    const chunks: string[][] = [];
    let cur: string[] = ["START TRANSACTION"];
    let bytes = 0;
    for (const s of stmts) {
      if (bytes + s.sql.length > MULTI_QUERY_BYTES && cur.length > 0) {
        chunks.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(s.sql);
      bytes += s.sql.length;
    }
    cur.push(checkpoint);
    if (!checkMatches) cur.push("COMMIT");
    chunks.push(cur);
    try {
      const results: any[] = [];
      for (const ch of chunks) {
        const [res] = await conn.query<any>(ch.join(";\n"));
        if (Array.isArray(res)) results.push(...res);
        else results.push(res);
      }
      if (!checkMatches) return;
      // results[0] is START TRANSACTION; statements follow in order
      const unmatched = stmts.some((s, i) => s.fallback && Number(results[i + 1]?.affectedRows ?? 1) === 0);
      if (!unmatched) {
        await conn.query("COMMIT");
        return;
      }
      await conn.query("ROLLBACK");
      await this.#careful(conn, stmts, checkpoint);
    } catch (err: any) {
      await conn.query("ROLLBACK").catch(() => undefined);
      if (isTransient(err)) throw err;
      // Find the exact statement that fails so the report names the table and the SQL error.
      await this.#careful(conn, stmts, checkpoint, batch, err);
    }
  }

  async #careful(conn: Conn, stmts: Statement[], checkpoint: string, batch?: Txn[], original?: any): Promise<void> {
    await conn.query("START TRANSACTION");
    try {
      for (const s of stmts) {
        try {
          const [res] = await conn.query<any>(s.sql);
          if (s.fallback && Number(res.affectedRows) === 0) {
            this.#log.warn({ table: s.table }, "an update found no row on the replica (it diverged or was not seeded); applied as an upsert");
            await conn.query(s.fallback);
          }
        } catch (err: any) {
          if (isTransient(err)) throw err;
          const range = batch ? `${fmtPos(batch[0].pos)} … ${fmtPos(batch[batch.length - 1].pos)}` : "";
          throw new ApplyError(
            `replica ${this.name}: applying to \`${s.table.replace(".", "`.`")}\` failed with ${err.code ?? ""} ${err.errno ?? ""}: ${err.sqlMessage ?? err.message}` +
              `${range ? ` (source transactions ending at ${range})` : ""}. The replica diverged from the source; fix the row or resnapshot the replica (datasync resnapshot --replica ${this.name}), then restart the agent.`,
            { table: s.table, sqlError: `${err.errno}: ${err.sqlMessage ?? err.message}`, cause: err },
          );
        }
      }
      await conn.query(checkpoint);
      await conn.query("COMMIT");
    } catch (err) {
      await conn.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
    if (original) this.#log.debug({ err: original?.message }, "batch applied statement by statement after an error");
  }

  async #applySpecial(t: Txn): Promise<void> {
    const conn = this.#conn!;
    const cfg = this.#cfg;
    const flavor = this.#src.facts.version.flavor;
    const advance = async (extra: string[] = [], count = 0) => {
      await conn.query(["START TRANSACTION", ...extra, checkpointSql(cfg.group, this.#src.sourceId, flavor, t.pos, t.ts, count, 0), "COMMIT"].join(";\n"));
      this.#appliedPos = t.pos;
      this.#checkpointPos = t.pos;
      this.#lastCheckpointAt = Date.now();
    };
    if (t.statementDml) {
      const target = statementTarget(t.statementDml.sql, t.statementDml.schema);
      if (cfg.databases.includes(target.db) && (!target.table || this.#src.inScope(target.db, target.table))) {
        throw new ApplyError(
          `replica ${this.name} stopped at source position ${fmtPos(t.pos)}: a DML statement in synced schema \`${target.db}\` was logged as a statement, not as rows (a session switched binlog_format to STATEMENT or MIXED): ${scrub(t.statementDml.sql).slice(0, 300)}. ` +
            "Its effect cannot be applied exactly. Keep binlog_format=ROW for every session writing synced schemas, then resnapshot the replica (datasync resnapshot).",
          { table: target.table ? `${target.db}.${target.table}` : target.db },
        );
      }
      if (t.changes.length === 0) return advance();
    }
    if (!t.ddl) return this.#applyRows([{ ...t, statementDml: undefined }]);
    const plan: DdlPlan = planDdl(t.ddl.sql, t.ddl.schema, { databases: new Set(cfg.databases), inScope: this.#src.inScope });
    if (plan.kind === "skip") {
      if (plan.reason === "account") {
        this.#m.skipped.inc({ ...this.#labels, kind: "account" });
        this.#log.info({ position: t.pos }, "skipped an account/privilege statement (accounts are never replicated, rule 5)");
      } else if (plan.reason === "system") {
        this.#m.skipped.inc({ ...this.#labels, kind: "system" });
      }
      return advance();
    }
    if (plan.kind === "hold") {
      this.#m.skipped.inc({ ...this.#labels, kind: "trigger" });
      this.#log.warn({ position: t.pos, objects: plan.objects }, "trigger DDL held back from the replica while syncing (its effects arrive as rows); it is kept in _datasync.held_ddl for cutover");
      return advance([heldDdlSql(cfg.group, t.pos, t.ddl.schema, t.ddl.sql)]);
    }
    // apply
    const key = (o: { db: string; name: string }) => `${o.db}.${o.name}`;
    const tables = plan.objects.filter((o) => o.type === "table");
    const dropsQuarantined = (plan.drops ?? []).filter((o) => this.#quarantine.has(key(o)));
    if (tables.length > 0 && tables.every((o) => this.#quarantine.has(key(o)))) {
      const extra = dropsQuarantined.map((o) => unquarantineSql(cfg.group, o.db, o.name));
      dropsQuarantined.forEach((o) => this.#quarantine.delete(key(o)));
      return advance(extra);
    }
    if (plan.creates) {
      let hasPk = plan.creates.hasPrimaryKey;
      if (hasPk === "like" && plan.creates.likeOf) {
        const m = await this.#schema.get(plan.creates.likeOf.db, plan.creates.likeOf.name);
        hasPk = !!m && m.primaryKey.length > 0;
      }
      if (hasPk === false) {
        const name = `${plan.creates.db}.${plan.creates.table}`;
        this.#quarantine.add(name);
        this.#m.errors.inc({ ...this.#labels, kind: "quarantine" });
        this.#log.warn(
          { table: name, position: t.pos },
          `table ${name} was created on the source without a primary key: quarantined (not synced). Add a primary key on the source and resnapshot the table, or exclude it with tables.exclude`,
        );
        return advance([quarantineSql(cfg.group, plan.creates.db, plan.creates.table, "created without a primary key while streaming")]);
      }
    }
    await this.#executeDdl(conn, t.pos, t.ddl.sql, t.ddl.schema, plan);
  }

  /** Marks the DDL pending (with a fingerprint of what it touches), runs it, then moves the checkpoint past it. */
  async #executeDdl(conn: Conn, pos: Position, sql: string, schema: string, plan: Extract<DdlPlan, { kind: "apply" }>): Promise<void> {
    const cfg = this.#cfg;
    const flavor = this.#src.facts.version.flavor;
    const fp = await fingerprint(conn, plan.objects);
    const pending: DdlPending = { pos, fingerprint: fp, sql, schema };
    await conn.query(checkpointSql(cfg.group, this.#src.sourceId, flavor, this.#checkpointPos!, 0, 0, 0, pending));
    await this.#runDdl(conn, plan, schema);
    await this.#finishDdl(conn, pos, plan);
  }

  async #runDdl(conn: Conn, plan: Extract<DdlPlan, { kind: "apply" }>, schema: string): Promise<void> {
    try {
      if (schema && this.#cfg.databases.includes(schema)) {
        const [rows] = await conn.query<any[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [schema]);
        if (rows.length) await conn.query(`USE ${quoteId(schema)}`);
      }
      // DDL runs with foreign key checks off: the source already accepted it in this order.
      await conn.query("SET SESSION foreign_key_checks = 0");
      try {
        await conn.query(plan.sql);
        for (const a of plan.after) await conn.query(a);
      } finally {
        await conn.query("SET SESSION foreign_key_checks = 1");
        this.#schema.clear();
      }
    } catch (err: any) {
      if (isTransient(err)) throw err;
      throw new ApplyError(
        `replica ${this.name}: DDL on ${plan.objects.map((o) => `\`${o.db}\`.\`${o.name}\``).join(", ")} failed with ${err.errno ?? ""}: ${err.sqlMessage ?? err.message} (statement: ${scrub(plan.sql).slice(0, 300)}). The replica's schema diverged from the source; fix it by hand or resnapshot the replica.`,
        { table: plan.objects[0] ? `${plan.objects[0].db}.${plan.objects[0].name}` : undefined, sqlError: `${err.errno}: ${err.sqlMessage ?? err.message}`, cause: err },
      );
    }
  }

  async #finishDdl(conn: Conn, pos: Position, plan: Extract<DdlPlan, { kind: "apply" }>): Promise<void> {
    const cfg = this.#cfg;
    const extra: string[] = [];
    for (const o of plan.drops ?? []) {
      if (o.type === "database") {
        for (const q of [...this.#quarantine].filter((k) => k.startsWith(`${o.db}.`))) {
          extra.push(unquarantineSql(cfg.group, o.db, q.slice(o.db.length + 1)));
          this.#quarantine.delete(q);
        }
      } else if (this.#quarantine.has(`${o.db}.${o.name}`)) {
        extra.push(unquarantineSql(cfg.group, o.db, o.name));
        this.#quarantine.delete(`${o.db}.${o.name}`);
      }
    }
    await conn.query(["START TRANSACTION", ...extra, checkpointSql(cfg.group, this.#src.sourceId, this.#src.facts.version.flavor, pos, Date.now(), 1, 0), "COMMIT"].join(";\n"));
    this.#appliedPos = pos;
    this.#checkpointPos = pos;
    this.#lastCheckpointAt = Date.now();
    this.#appliedTxns++;
    this.#m.appliedTxns.inc(this.#labels);
    this.#log.info({ position: pos, objects: plan.objects }, "DDL applied");
  }

  /** A DDL was marked pending when the agent stopped: apply it only if it did not take effect. */
  async #resolvePendingDdl(p: DdlPending, before: Position): Promise<Position> {
    const conn = this.#conn!;
    const plan = planDdl(p.sql, p.schema, { databases: new Set(this.#cfg.databases), inScope: this.#src.inScope });
    if (plan.kind !== "apply") return before;
    const now = await fingerprint(conn, plan.objects);
    if (now === p.fingerprint) {
      this.#log.warn({ position: p.pos }, "a DDL was interrupted before it took effect on this replica: applying it now");
      await this.#runDdl(conn, plan, p.schema);
    } else {
      this.#log.warn({ position: p.pos }, "a DDL was interrupted after it took effect on this replica: not applying it twice");
    }
    this.#checkpointPos = before;
    await this.#finishDdl(conn, p.pos, plan);
    return p.pos;
  }

  // ---------------------------------------------------------------- observation

  /** Age of the oldest source change this replica has not applied; 0 when it has applied all the source wrote. */
  lagSeconds(now = Date.now()): number | null {
    if (this.#state !== "streaming") {
      return this.#pendingSince !== null ? (now - this.#pendingSince) / 1000 : null;
    }
    const oldest = this.#inflight[0] ?? (this.#queued() > 0 ? this.#queue[this.#head] : undefined);
    let since: number | null = null;
    if (oldest) {
      // binlog timestamps have second resolution: a transaction read within that second is as old as its read time
      since = oldest.ts + 999 >= oldest.readAt ? oldest.readAt : oldest.ts;
    }
    const end = this.#src.end();
    const applied = this.#appliedPos;
    if (end && applied && comparePos(applied, end.pos) < 0) {
      this.#pendingSince ??= end.at;
      since = since === null ? this.#pendingSince : Math.min(since, this.#pendingSince);
    } else if (!oldest) {
      this.#pendingSince = null;
    }
    if (since === null) return 0;
    return Math.max(0, (now - since) / 1000);
  }

  status(): ReplicaStatus {
    const lag = this.lagSeconds();
    this.#m.lag.set(this.#labels, lag ?? -1);
    return {
      name: this.name,
      state: this.#state,
      connected: this.#state === "streaming",
      lagSeconds: lag === null ? null : Math.round(lag * 1000) / 1000,
      position: this.#checkpointPos,
      appliedTransactions: this.#appliedTxns,
      appliedRows: this.#appliedRows,
      queueBytes: Math.max(0, this.#queueBytes),
      snapshot: null,
      lastError: this.#lastError,
      quarantined: [...this.#quarantine],
    };
  }
}

export class ReplicaUnavailable extends Error {
  readonly kind: string;
  constructor(kind: string, message: string, cause?: unknown) {
    super(message);
    this.name = "ReplicaUnavailable";
    this.kind = kind;
    if (cause) (this as any).cause = cause;
  }
}

export function fmtPos(p: Position): string {
  return `${p.file}:${p.pos}${p.gtid ? ` (GTID ${p.gtid})` : ""}`;
}

/** The table a statement-format DML writes to. */
export function statementTarget(sql: string, schema: string): { db: string; table: string | null } {
  const m = /^\s*(?:\/\*.*?\*\/\s*)*(?:INSERT|REPLACE)(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE))*\s+(?:INTO\s+)?((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)|^\s*UPDATE(?:\s+(?:LOW_PRIORITY|IGNORE))*\s+((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)|^\s*DELETE(?:\s+(?:LOW_PRIORITY|QUICK|IGNORE))*\s+FROM\s+((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)/is.exec(sql);
  const name = m?.[1] ?? m?.[2] ?? m?.[3];
  if (!name) return { db: schema, table: null };
  const parts = name.split(".").map((p) => p.replace(/^`|`$/g, ""));
  return parts.length === 2 ? { db: parts[0], table: parts[1] } : { db: schema, table: parts[0] };
}

export { SCHEMA };
