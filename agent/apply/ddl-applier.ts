// DdlApplier owns the special transactions of one replica's stream, each applied alone: a DDL (exactly once
// through the checkpoint: marked pending with a fingerprint of what it touches, run in the session the source ran
// it in, then the checkpoint moved past it; a crash between is settled at the next session by resolvePendingDdl),
// trigger DDL held back, tables created without a primary key quarantined, views that select from outside the
// scope left out, tables renamed into the scope seeded; and a DML logged as a statement. It reaches the replica,
// the checkpoint, the row applier and the snapshot through a narrow port (DdlPort).
import { isTransient, qualified, quoteId, type Conn } from "../db.js";
import { planDdl, fingerprint, viewDependencyMissing, type DdlPlan } from "./ddl.js";
import { DdlSession, ddlContext, lexModeOf, type DdlContext } from "./ddl-session.js";
import { heldDdlSql, loadQuarantine, quarantineSql, unquarantineSql, SCHEMA, type DdlPending } from "../bookkeeping.js";
import type { Logger } from "../log.js";
import { scrub } from "../log.js";
import type { Metrics } from "../ops/metrics.js";
import type { Txn } from "../source/reader.js";
import { comparePos, fmtPos, type Position } from "../source/positions.js";
import { loadTableMeta, type SchemaCache } from "../tables.js";
import type { ApplyProgress } from "./applier.js";
import { ApplyError, DdlSessionError, RestartRequested } from "../errors.js";

/** Everything the DDL applier reaches outside itself. */
export interface DdlPort {
  /** the replica's name (in errors) */
  readonly name: string;
  readonly group: string;
  readonly databases: string[];
  readonly flavor: "mariadb" | "mysql";
  inScope(db: string, table: string): boolean;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly labels: { group: string; replica: string };
  /** the session's replica connection */
  conn(): Conn;
  /** the replica's tables: cleared after every DDL */
  readonly schema: SchemaCache;
  readonly progress: ApplyProgress;
  /** the checkpoint statement, optionally marking a DDL pending (a compare-and-set) */
  cp(pos: Position, ts: number, txns: number, rows: number, pending?: DdlPending | null): string;
  /** rows applied as one target transaction with the checkpoint (apply/applier.ts) */
  applyRows(batch: Txn[]): Promise<void>;
  /** stops the replica when a DML logged as a statement writes the synced scope */
  refuseStatementDml(t: Txn): void;
  /** the snapshot created this table from a definition read at or after `pos` */
  beforeDefinition(name: string, pos: Position): boolean;
  /** tables renamed into the scope: the stream skips them until their copy starts */
  seedPending(names: string[]): void;
}

export class DdlApplier {
  readonly #port: DdlPort;
  readonly #progress: ApplyProgress;
  readonly #log: Logger;
  readonly #m: Metrics;
  readonly #labels: { group: string; replica: string };
  readonly #schema: SchemaCache;
  readonly name: string;
  /** collation ids and the SET statements that run a DDL in its source session */
  #ddlSession: DdlSession | null = null;
  #quarantine = new Set<string>();
  /** a DDL-with-rows transaction whose DDL already took effect: apply only its rows when it is re-read */
  #skipDdlAt: Position | null = null;

  constructor(port: DdlPort) {
    this.#port = port;
    this.#progress = port.progress;
    this.#log = port.log;
    this.#m = port.metrics;
    this.#labels = port.labels;
    this.#schema = port.schema;
    this.name = port.name;
  }

  /** the tables quarantined on this replica (`_datasync.quarantine`), read at every session start */
  async loadQuarantine(conn: Conn): Promise<void> {
    this.#quarantine = await loadQuarantine(conn, this.#port.group);
  }

  quarantined(name: string): boolean {
    return this.#quarantine.size > 0 && this.#quarantine.has(name);
  }

  quarantinedTables(): string[] {
    return [...this.#quarantine];
  }

  async apply(t: Txn): Promise<void> {
    const conn = this.#port.conn();
        const advance = async (extra: string[] = [], count = 0) => {
      await conn.query(["START TRANSACTION", ...extra, this.#port.cp(t.pos, t.ts, count, 0), "COMMIT"].join(";\n"));
      this.#progress.applied = t.pos;
      this.#progress.checkpoint = t.pos;
      this.#progress.checkpointAt = Date.now();
    };
    if (t.statementDml) {
      this.#port.refuseStatementDml(t);
      if (t.changes.length === 0) return advance();
    }
    if (!t.ddl) return this.#port.applyRows([{ ...t, statementDml: undefined }]);
    // the statement as the source client wrote it (its character set) and the session it ran in
    this.#ddlSession ??= new DdlSession(this.#port.flavor);
    const ctx = ddlContext(t.ddl.session, t.ddl.ts);
    let sql = t.ddl.sql;
    let undecodable: Error | null = null;
    try {
      sql = await this.#ddlSession.text(conn, t.ddl.raw, ctx, t.ddl.sql);
    } catch (e) {
      if (!(e instanceof DdlSessionError)) throw e;
      undecodable = e;
    }
    const plan: DdlPlan = planDdl(sql, t.ddl.schema, { databases: new Set(this.#port.databases), inScope: this.#port.inScope }, lexModeOf(ctx));
    if (undecodable && plan.kind !== "skip") {
      throw new ApplyError(`replica ${this.name} stopped at source position ${fmtPos(t.pos)}: ${undecodable.message}; then resnapshot the replica (datasync resnapshot).`, {
        table: plan.objects[0] ? `${plan.objects[0].db}.${plan.objects[0].name}` : undefined,
      });
    }
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
      return advance([heldDdlSql(this.#port.group, t.pos, t.ddl.schema, sql)]);
    }
    // apply
    const key = (o: { db: string; name: string }) => `${o.db}.${o.name}`;
    const tables = plan.objects.filter((o) => o.type === "table");
    if (tables.length > 0 && tables.every((o) => this.#port.beforeDefinition(key(o), t.pos))) {
      // the snapshot created these tables from definitions read after this statement: it is in them already
      // (and its rows, if any, are in their copy)
      this.#log.info({ position: t.pos, objects: plan.objects }, "DDL not applied: the snapshot read these tables' definitions after it");
      return advance();
    }
    const dropsQuarantined = (plan.drops ?? []).filter((o) => this.#quarantine.has(key(o)));
    if (tables.length > 0 && tables.every((o) => this.#quarantine.has(key(o)))) {
      const extra = dropsQuarantined.map((o) => unquarantineSql(this.#port.group, o.db, o.name));
      dropsQuarantined.forEach((o) => this.#quarantine.delete(key(o)));
      return advance(extra);
    }
    // A CREATE TABLE runs whatever its text says about keys (a column attribute `KEY` alone is a primary
    // key, names may hold quotes): whether the table has a primary key is read from the replica after it
    // (#keylessCreated), and a table without one is dropped again and quarantined.
    if (t.changes.length > 0) {
      // CREATE TABLE … SELECT (MySQL's atomic one; MariaDB's CREATE and rows under one GTID): the DDL, then
      // its rows with the checkpoint in one target transaction
      const rowsOnly: Txn = { ...t, ddl: undefined };
      if (this.#skipDdlAt && comparePos(this.#skipDdlAt, t.pos) === 0) {
        this.#skipDdlAt = null;
        return this.#port.applyRows([rowsOnly]);
      }
      const fp = await fingerprint(conn, plan.objects);
      await conn.query(this.#port.cp(this.#progress.checkpoint!, 0, 0, 0, { pos: t.pos, fingerprint: fp, sql, schema: t.ddl.schema, withRows: true, context: ctx }));
      await this.#runDdl(conn, plan, t.ddl.schema, ctx);
      faultPoint("ddl-ran");
      const keyless = await this.#keylessCreated(conn, plan, t.pos);
      if (keyless.length) return advance(keyless);
      return this.#port.applyRows([rowsOnly]);
    }
    await this.#executeDdl(conn, t.pos, sql, t.ddl.schema, plan, ctx);
  }

  /**
   * After a CREATE TABLE ran: a table without a primary key (read from the replica, not guessed from the
   * statement) is dropped again and quarantined; returns the bookkeeping SQL for the checkpoint's
   * transaction. Idempotent, so a crash anywhere around it is settled by running it again.
   */
  async #keylessCreated(conn: Conn, plan: Extract<DdlPlan, { kind: "apply" }>, pos: Position): Promise<string[]> {
    const c = plan.creates;
    if (!c) return [];
    const name = `${c.db}.${c.table}`;
    const meta = await loadTableMeta(conn, c.db, c.table);
    // a sequence (CREATE TABLE … SEQUENCE=1) has no key by design: its one row is written whole
    if (!meta || meta.primaryKey.length > 0 || meta.sequence) return [];
    await conn.query(`DROP TABLE IF EXISTS ${qualified(c.db, c.table)}`);
    this.#schema.clear();
    this.#quarantine.add(name);
    this.#m.errors.inc({ ...this.#labels, kind: "quarantine" });
    this.#log.warn(
      { table: name, position: pos },
      `table ${name} was created on the source without a primary key: quarantined (not synced). Add a primary key on the source and resnapshot the table, or exclude it with tables.exclude`,
    );
    return [quarantineSql(this.#port.group, c.db, c.table, "created without a primary key while streaming")];
  }

  /** Marks the DDL pending (with a fingerprint of what it touches), runs it, then moves the checkpoint past it. */
  async #executeDdl(conn: Conn, pos: Position, sql: string, schema: string, plan: Extract<DdlPlan, { kind: "apply" }>, ctx: DdlContext): Promise<void> {
    const fp = await fingerprint(conn, plan.objects);
    const pending: DdlPending = { pos, fingerprint: fp, sql, schema, context: ctx };
    await conn.query(this.#port.cp(this.#progress.checkpoint!, 0, 0, 0, pending));
    faultPoint("ddl-marked");
    await this.#runDdl(conn, plan, schema, ctx);
    faultPoint("ddl-ran");
    await this.#finishDdl(conn, pos, plan);
  }

  async #runDdl(conn: Conn, plan: Extract<DdlPlan, { kind: "apply" }>, schema: string, ctx?: DdlContext): Promise<void> {
    try {
      if (schema && this.#port.databases.includes(schema)) {
        const [rows] = await conn.query<any[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [schema]);
        if (rows.length) await conn.query(`USE ${quoteId(schema)}`);
      }
      // the source statement's session: sql_mode, timestamp, time zone, character sets, checks
      this.#ddlSession ??= new DdlSession(this.#port.flavor);
      const session = await this.#ddlSession.enter(conn, ctx);
      // DDL runs with foreign key checks off: the source already accepted it in this order.
      await conn.query("SET SESSION foreign_key_checks = 0");
      try {
        for (const q of session.enter) await conn.query(q);
        await conn.query(plan.sql);
        faultPoint("ddl-before-after");
        for (const a of plan.after) await conn.query(a);
      } finally {
        for (const q of session.leave) await conn.query(q);
        await conn.query("SET SESSION foreign_key_checks = 1");
        this.#schema.clear();
      }
    } catch (err: any) {
      if (isTransient(err)) throw err;
      if (err instanceof DdlSessionError) throw new ApplyError(`replica ${this.name}: ${err.message}`, { cause: err });
      if (plan.view && (await this.#viewLeftOut(conn, plan, err))) return;
      throw new ApplyError(
        `replica ${this.name}: DDL on ${plan.objects.map((o) => `\`${o.db}\`.\`${o.name}\``).join(", ")} failed with ${err.errno ?? ""}: ${err.sqlMessage ?? err.message} (statement: ${scrub(plan.sql).slice(0, 300)}). The replica's schema diverged from the source; fix it by hand or resnapshot the replica.`,
        { table: plan.objects[0] ? `${plan.objects[0].db}.${plan.objects[0].name}` : undefined, sqlError: `${err.errno}: ${err.sqlMessage ?? err.message}`, cause: err },
      );
    }
  }

  /**
   * A view that selects from what the replica does not hold by design (another database, an excluded
   * table) is left out, reported, not a stopped replica: it carries no rows (agent/README.md). No stale
   * definition stays behind; its later DROP finds nothing to drop.
   */
  async #viewLeftOut(conn: Conn, plan: Extract<DdlPlan, { kind: "apply" }>, err: any): Promise<boolean> {
    const views = plan.objects.map((o) => `\`${o.db}\`.\`${o.name}\``).join(", ");
    if (plan.view === "drop") {
      if (err?.errno !== 1051 && err?.errno !== 4092) return false;
      // MySQL drops none of the named views when one is missing: the others still go
      for (const o of plan.objects) await conn.query(`DROP VIEW IF EXISTS ${qualified(o.db, o.name)}`);
      this.#log.info({ views }, "DROP VIEW of a view the replica does not have (it was left out): nothing to drop");
      return true;
    }
    const missing = viewDependencyMissing(err, { databases: new Set(this.#port.databases), inScope: this.#port.inScope });
    if (!missing) return false;
    for (const o of plan.objects) await conn.query(`DROP VIEW IF EXISTS ${qualified(o.db, o.name)}`);
    this.#m.skipped.inc({ ...this.#labels, kind: "view" });
    this.#log.warn(
      { views, missing },
      `view ${views} not created on replica ${this.name}: it selects from ${missing}, which is outside the synced scope. Its rows are unaffected; add that database (databases) or table to the scope, or create the object on the replica and recreate the view there, if the replica needs it.`,
    );
    return true;
  }

  async #finishDdl(conn: Conn, pos: Position, plan: Extract<DdlPlan, { kind: "apply" }>): Promise<void> {
        const extra: string[] = await this.#keylessCreated(conn, plan, pos);
    for (const o of plan.drops ?? []) {
      if (o.type === "database") {
        for (const q of [...this.#quarantine].filter((k) => k.startsWith(`${o.db}.`))) {
          extra.push(unquarantineSql(this.#port.group, o.db, q.slice(o.db.length + 1)));
          this.#quarantine.delete(q);
        }
      } else if (this.#quarantine.has(`${o.db}.${o.name}`)) {
        extra.push(unquarantineSql(this.#port.group, o.db, o.name));
        this.#quarantine.delete(`${o.db}.${o.name}`);
      }
    }
    for (const o of plan.seeds ?? []) {
      // seeded online by the next session (the control poll restarts this one when it sees the request)
      extra.push(
        `INSERT INTO ${SCHEMA}.snapshot (group_name, db, tbl, state) VALUES (${conn.escape(this.#port.group)}, ${conn.escape(o.db)}, ${conn.escape(o.name)}, 'requested') ` +
          "ON DUPLICATE KEY UPDATE state = 'requested', last_key = NULL, rows_copied = 0",
      );
      this.#log.info({ table: `${o.db}.${o.name}`, position: pos }, "a table was renamed into the scope: it is seeded with an online snapshot");
    }
    await conn.query(["START TRANSACTION", ...extra, this.#port.cp(pos, Date.now(), 1, 0), "COMMIT"].join(";\n"));
    this.#progress.applied = pos;
    this.#progress.checkpoint = pos;
    this.#progress.checkpointAt = Date.now();
    this.#progress.txns++;
    this.#m.appliedTxns.inc(this.#labels);
    this.#log.info({ position: pos, objects: plan.objects }, "DDL applied");
    if (plan.seeds?.length) {
      // the stream skips them until their copy starts; a new session plans the copy now
      this.#port.seedPending(plan.seeds.map((o) => `${o.db}.${o.name}`));
      throw new RestartRequested();
    }
  }

  /**
   * The statements that follow a DDL on a replica (ALTER EVENT … DISABLE: a scheduled event runs on the source only),
   * for a DDL that took effect before an interruption. Without them the event would run on the replica too.
   */
  async #runAfter(conn: Conn, plan: Extract<DdlPlan, { kind: "apply" }>): Promise<void> {
    for (const a of plan.after) {
      try {
        await conn.query(a);
      } catch (err: any) {
        if (isTransient(err)) throw err;
        throw new ApplyError(
          `replica ${this.name}: after an interrupted DDL on ${plan.objects.map((o) => `\`${o.db}\`.\`${o.name}\``).join(", ")}, \`${a}\` failed with ${err.errno ?? ""}: ${err.sqlMessage ?? err.message}. Run it on the replica by hand (a scheduled event must not run on a replica), or resnapshot the replica.`,
          { sqlError: `${err.errno}: ${err.sqlMessage ?? err.message}`, cause: err },
        );
      }
    }
  }

  /** A DDL was marked pending when the agent stopped: apply it only if it did not take effect. */
  async resolvePendingDdl(p: DdlPending, before: Position): Promise<Position> {
    const conn = this.#port.conn();
    const plan = planDdl(p.sql, p.schema, { databases: new Set(this.#port.databases), inScope: this.#port.inScope }, lexModeOf(p.context));
    if (plan.kind !== "apply") return before;
    const now = await fingerprint(conn, plan.objects);
    if (p.withRows) {
      // its rows were not committed (they carry the checkpoint): re-read the transaction, apply the rows only
      if (now === p.fingerprint) await this.#runDdl(conn, plan, p.schema, p.context);
      else await this.#runAfter(conn, plan);
      this.#skipDdlAt = p.pos;
      return before;
    }
    if (now === p.fingerprint) {
      this.#log.warn({ position: p.pos }, "a DDL was interrupted before it took effect on this replica: applying it now");
      await this.#runDdl(conn, plan, p.schema, p.context);
    } else {
      this.#log.warn({ position: p.pos }, "a DDL was interrupted after it took effect on this replica: not applying it twice");
      // what follows the statement (an event created disabled) may not have run: it is idempotent, run it now
      await this.#runAfter(conn, plan);
    }
    this.#progress.checkpoint = before;
    await this.#finishDdl(conn, p.pos, plan);
    return p.pos;
  }
}

/**
 * Fault injection for tests: DATASYNC_FAULT=<point> makes the process die (as a crash would) when it
 * reaches that point. Points: ddl-marked (pending DDL recorded, not run), ddl-before-after (the statement ran, what
 * follows it, such as ALTER EVENT … DISABLE, not), ddl-ran (run, checkpoint not moved).
 */
function faultPoint(name: string): void {
  if (process.env.DATASYNC_FAULT === name) {
    process.stderr.write(`datasync: fault injection: crashing at ${name}\n`);
    process.kill(process.pid, "SIGKILL");
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000); // never returns: the signal ends the process
  }
}
