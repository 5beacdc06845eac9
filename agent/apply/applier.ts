// RowApplier owns writing source transactions to one replica: a group of consecutive transactions from the queue
// becomes one target transaction whose last statement is the checkpoint (agent/README.md "Positions and
// exactly-once"), an UPDATE that matched no row makes it replay statement by statement (careful), a source
// transaction too large to hold is applied in pieces into one open target transaction, and the next group is built
// while the current one executes (build-ahead, plain streaming only). It reaches the replica, the queue, the
// checkpoint and the snapshot through a narrow port (ApplierPort), so it is tested on fakes (test/unit/applier).
import { packedKeys, packsOf } from "../source/rowsql.js";
import type { Conn } from "../db.js";
import { isTransient } from "../db.js";
import { isWriterLost } from "../bookkeeping.js";
import type { Logger } from "../log.js";
import { scrub } from "../log.js";
import type { Metrics } from "../ops/metrics.js";
import type { RowChange, Txn } from "../source/reader.js";
import { comparePos, fmtPos, type Position } from "../source/positions.js";
import type { TableMeta } from "../tables.js";
import { StatementBuilder, laneTable, sessionToggles, type Statement } from "./sqlgen.js";
import { rowKeyId } from "../keys.js";
import { appliedAlone, type TxnQueue } from "./queue.js";
import { txnIdentity, type BuiltTxn, type SharedBuilds } from "./shared-builds.js";
import { ApplyError, RestartRequested } from "../errors.js";

const MULTI_QUERY_BYTES = 4 << 20;
/** DATASYNC_TRACE_BATCHES=1: one stderr line per target transaction (read once: the enqueue runs per source transaction) */
export const TRACE = !!process.env.DATASYNC_TRACE_BATCHES;
/** test seam: a pause between taking a batch from the queue and applying it (a replica that lags) */
const TEST_APPLY_DELAY_MS = Number(process.env.DATASYNC_TEST_APPLY_DELAY_MS ?? 0);
/** longer than any lock wait (innodb_lock_wait_timeout defaults to 50 s) */
export const APPLY_TIMEOUT_MS = 300_000;

/** What the applier needs of a replica connection: its queries (a recording fake in the unit test). */
export type ApplyConn = Pick<Conn, "query">;

/**
 * Where one replica's stream stands. The applier, the DDL applier and the lifecycle share it: the checkpoint
 * moves only with a committed target transaction that wrote it.
 */
export class ApplyProgress {
  /** the position after the last source transaction applied (or passed: out of scope) */
  applied: Position | null = null;
  /** the position the replica's checkpoint row holds (as this session wrote or read it) */
  checkpoint: Position | null = null;
  /** when the checkpoint was last written (ms) */
  checkpointAt = 0;
  /** source transactions and rows applied by this process */
  txns = 0;
  rows = 0;
}

/** What the row applier asks of the snapshot in progress (snapshot/session.ts), if any. */
export interface SnapshotView {
  /** a snapshot in progress keeps the applier from building ahead (and the reader from streaming pieces) */
  blocksStreaming(): boolean;
  /** the stream skips this table's change at `pos` (its copy has not started, or its definition was read after `pos`) */
  skips(name: string, pos: Position): boolean;
  /** the table is being copied: the stream's deletes and key changes on it are remembered (tombstones) */
  copying(name: string): boolean;
  tombstone(meta: TableMeta, ch: RowChange): void;
  /** tables whose statements run with foreign key checks off while they are copied */
  relaxing(): boolean;
  relaxed(table: string): boolean;
  /** the applier moved past a position (definition positions behind it are forgotten) */
  passed(): void;
}

/** Everything the row applier reaches outside itself. */
export interface ApplierPort {
  /** the replica's name (in errors) */
  readonly name: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly labels: { group: string; replica: string };
  readonly heartbeatSeconds: number;
  /** the synced databases and tables (a DML logged as a statement in them stops the replica) */
  readonly databases: string[];
  inScope(db: string, table: string): boolean;
  /** the session's replica connection */
  conn(): ApplyConn;
  /** the replica's tables (tables.ts SchemaCache) */
  readonly schema: { peek(db: string, table: string): TableMeta | undefined; get(db: string, table: string): Promise<TableMeta | null> };
  readonly progress: ApplyProgress;
  /** the checkpoint statement (a compare-and-set: each call expects the version the previous one wrote) */
  cp(pos: Position, ts: number, txns: number, rows: number): string;
  readonly queue: TxnQueue<Txn>;
  /** a batch is applied: its bytes leave the queue (and the reader resumes if it paused) */
  release(batch: Txn[]): void;
  readerPaused(): boolean;
  stopping(): boolean;
  /** throws when the session must end (writer lock lost, reader failed, binlog connection stalled) */
  interrupted(): void;
  /** waits `ms`, or less when news arrives (a transaction queued, a stop) */
  nap(ms: number): Promise<void>;
  quarantined(name: string): boolean;
  readonly snapshot: SnapshotView;
  /** a DDL or a statement-logged DML, applied alone (apply/ddl-applier.ts) */
  special(t: Txn): Promise<void>;
  /** the group's statements built once for replicas whose tables have the same shape (apply/shared-builds.ts), if shared */
  readonly builds?: SharedBuilds | null;
  /**
   * Parallel apply: a new connection to the replica for batches run early (READ COMMITTED, adopted by the writer
   * lease), or absent where parallel apply is off (apply.parallel: false)
   */
  openSide?(): Promise<SideConn>;
}

/** a side connection of parallel apply: queries, and a way to drop it (the replica rolls back what it holds open) */
export type SideConn = ApplyConn & { destroy(): void };

/** A batch run early on a side connection: its statements sent inside an open transaction, not yet committed. */
interface Early {
  conn: SideConn;
  /** the statements ran (the transaction holds them, open) or failed (then nothing of them stays) */
  done: Promise<{ ok: true } | { ok: false; err: any }>;
}

/** A batch built ahead while the one before it executes. */
export interface Ahead {
  batch: Txn[];
  built: Promise<BuiltBatch>;
  /** parallel apply: the batch's statements started on a side connection (null: it runs when its turn comes) */
  early?: Promise<Early | null>;
}

/** the smallest share of apply.queueBytes with which a replica runs batches early (the default 16 MiB: one or two replicas) */
export const PARALLEL_MIN_SHARE = 8 << 20;

/** InnoDB's lock wait timeout and deadlock: a batch run early met a lock it was not expected to meet */
const LOCK_ERRNOS = new Set([1205, 1213]);

export class RowApplier {
  readonly #port: ApplierPort;
  readonly #progress: ApplyProgress;
  readonly #queue: TxnQueue<Txn>;
  readonly #log: Logger;
  readonly #m: Metrics;
  readonly #labels: { group: string; replica: string };
  readonly #schema: ApplierPort["schema"];
  readonly name: string;
  #inflight: Txn[] = [];
  /** the next batch, taken and being built while the current one executes (pipelined streaming only) */
  #ahead: Ahead | null = null;
  /** the replica's max_allowed_packet, read per session */
  #maxPacket = 4 << 20;
  /** parallel apply's side connections (opened when first needed, dropped with the session), used in turn */
  #sides: (SideConn | null)[] = [null, null];
  #sideTurn = 0;
  /** parallel apply met a lock wait or deadlock: off for the rest of the process */
  #parallelOff = false;

  constructor(port: ApplierPort) {
    this.#port = port;
    this.#progress = port.progress;
    this.#queue = port.queue;
    this.#log = port.log;
    this.#m = port.metrics;
    this.#labels = port.labels;
    this.#schema = port.schema;
    this.name = port.name;
  }

  /**
   * The session ended: what was taken or built is dropped (the queue is reset by its owner), and the side
   * connections with it (the replica rolls back a batch run early that was not committed).
   */
  reset(): void {
    this.#inflight = [];
    this.#ahead = null;
    this.fence();
  }

  /** drops the side connections at once (the writer lock is lost, or the session ends) */
  fence(): void {
    const sides = this.#sides;
    this.#sides = [null, null];
    for (const c of sides) c?.destroy();
  }

  /** the largest statement the replica takes (a bigger one makes it drop the connection), read per session */
  async readMaxPacket(conn: ApplyConn): Promise<void> {
    const [[mp]] = await conn.query<any[]>("SELECT @@max_allowed_packet AS p");
    this.#maxPacket = Number(mp.p) || this.#maxPacket;
  }

  /** a batch is being applied right now */
  applying(): boolean {
    return this.#inflight.length > 0;
  }

  /** the oldest source transaction taken and not yet applied (lag) */
  oldest(): Txn | undefined {
    return this.#inflight[0] ?? this.#ahead?.batch[0];
  }

  /** the batch built ahead, handed over once (the apply loop takes it before the queue) */
  takeAhead(): Ahead | null {
    const ahead = this.#ahead;
    this.#ahead = null;
    return ahead;
  }

  /** One batch taken from the queue (or built ahead): applied as one target transaction with its checkpoint. */
  async apply(batch: Txn[], ahead: Ahead | null): Promise<void> {
    this.#inflight = batch;
    if (TEST_APPLY_DELAY_MS > 0) await new Promise((r) => setTimeout(r, TEST_APPLY_DELAY_MS));
    try {
      if (batch.length === 1 && (batch[0].ddl || batch[0].statementDml)) await this.#port.special(batch[0]);
      else {
        const built = await (ahead ? ahead.built : this.#buildRows(batch));
        // the batch's statements are on their way to the replica (or ran early): build the next batch meanwhile,
        // and run it early where it is independent of this one
        const running = ahead?.early ? this.#commitEarly(ahead.early, built) : this.#commitRows(built);
        this.#prepareAhead(built);
        await running;
      }
    } catch (err: any) {
      // a lock wait or deadlock while a batch ran early: whatever the cause, parallel apply stops for this process
      if (LOCK_ERRNOS.has(err?.errno ?? err?.cause?.errno) && this.#ahead?.early && !this.#parallelOff) {
        this.#parallelOff = true;
        this.#log.warn({ err: err?.message }, "a lock wait or deadlock while a batch ran early on a second connection: parallel apply is off until the agent restarts");
      }
      if (err instanceof ApplyError || err instanceof RestartRequested || isWriterLost(err)) throw err;
      if (isTransient(err)) throw err;
      throw new ApplyError(`applying source transactions up to ${fmtPos(batch[batch.length - 1].pos)} failed: ${err?.message ?? err}`, { sqlError: err?.message, cause: err });
    } finally {
      this.#inflight = [];
      this.#port.release(batch);
      this.#port.snapshot.passed();
    }
  }

  /** Moves the checkpoint when only out-of-scope transactions went by (an idle or filtered-out source). */
  async heartbeat(): Promise<void> {
    const conn = this.#port.conn();
    if (!conn || !this.#progress.applied || !this.#progress.checkpoint) return;
    if (comparePos(this.#progress.applied, this.#progress.checkpoint) > 0 || (this.#progress.applied.gtid ?? "") !== (this.#progress.checkpoint.gtid ?? "")) {
      await conn.query(this.#port.cp(this.#progress.applied, 0, 0, 0));
      this.#progress.checkpoint = this.#progress.applied;
      this.#progress.checkpointAt = Date.now();
    }
  }

  /**
   * Pipelining: while a batch executes on the replica, take the next one and build its SQL. Only in plain
   * streaming (no snapshot in progress: chunk watermarks, pending tables and tombstones depend on what the
   * stream has applied) and only for row batches (a DDL changes the schema the SQL is built from, so a
   * DDL is never built ahead, and a batch is never built ahead of a DDL it follows: DDL batches run alone
   * and are not pipelined). Commit order and the checkpoint in each target transaction are unchanged: a
   * batch built ahead is committed after the current one, or dropped with the session.
   */
  #prepareAhead(current: BuiltBatch): void {
    if (this.#port.stopping() || this.#ahead || this.#port.snapshot.blocksStreaming()) return;
    const next = this.#queue.peek();
    if (!next || appliedAlone(next)) return;
    // only when a worthwhile batch is waiting: otherwise the next batch is better taken after this one commits
    if (!this.#port.readerPaused() && !this.#queue.worthBuildingAhead()) return;
    const batch = this.#queue.take(null);
    if (batch.length === 0) return;
    if (batch.some((t) => t.ddl || t.statementDml)) throw new Error("internal: a DDL batch was built ahead");
    const built = this.#buildRows(batch);
    built.catch(() => undefined); // reported when its turn comes
    const early = this.#parallel(current, built);
    this.#ahead = { batch, built, ...(early ? { early } : {}) };
  }

  /**
   * Parallel apply (agent/README.md "Parallel apply"). The batch built ahead runs at once on a side connection,
   * inside a transaction left open, while the current batch commits on its own connection; its checkpoint and
   * COMMIT are sent when its turn comes, after the current batch committed. Exactly once and in order, because:
   * - its target transaction holds its statements and its checkpoint together, as every target transaction does;
   * - its checkpoint is a compare-and-set on the version the current batch writes, sent only after that commit: it
   *   cannot commit before the current batch, nor after a current batch that failed (the set fails, nothing stays);
   * - the two batches commute: every statement of both is a lane's (apply/sqlgen.ts: whole-row upserts and deletes
   *   by key, on tables with no foreign key, no trigger on a replica, no unique key but an integer primary key)
   *   and no key is in both, so neither reads or writes a row of the other, and under READ COMMITTED InnoDB
   *   takes record locks on those rows only (no gap locks for the searches, and a duplicate primary key is
   *   locked as its record alone): the result is the serial one, whichever statement the server runs first.
   * Anything else (a snapshot in progress, a DDL, an UPDATE with its fallback, savepoints, relaxed checks) runs
   * when its turn comes, as before. A batch run early that fails is rolled back and runs again when its turn comes
   * on the session's connection, where its error is reported as usual.
   */
  #parallel(current: BuiltBatch, nextBuilt: Promise<BuiltBatch>): Promise<Early | null> | null {
    // memory: a replica whose share of apply.queueBytes is small (fan-out: 16 MiB among 3 to 5 replicas) keeps one
    // connection; the memory scenario went over its 300 MB with side connections for five replicas
    if (this.#parallelOff || !this.#port.openSide || current.stmts.length === 0 || this.#queue.budget < PARALLEL_MIN_SHARE) return null;
    const mine = laneKeys(current.stmts, current.batch, this.#schema);
    if (!mine) return null;
    const turn = this.#sideTurn;
    const early = nextBuilt.then(async (next) => {
      if (next.stmts.length === 0 || this.#port.stopping()) return null;
      const theirs = laneKeys(next.stmts, next.batch, this.#schema);
      if (!theirs || !disjoint(mine, theirs)) return null;
      // memory: a batch run early holds its statements' packet on top of the current batch's; both within half
      // of this replica's share of apply.queueBytes (in fan-out the shares are small and the cores already busy)
      if (sqlBytes(current.stmts) + sqlBytes(next.stmts) > this.#queue.budget / 2) return null;
      const limit = this.statementLimit();
      for (const st of next.stmts) if (st.sql.length * 3 > limit && Buffer.byteLength(st.sql) > limit) return null;
      let conn = this.#sides[turn];
      if (!conn) {
        conn = await this.#port.openSide!();
        this.#sides[turn] = conn;
      }
      const c = conn;
      const chunks = packQueries(["START TRANSACTION", ...next.stmts.map((st) => st.sql)], Math.min(MULTI_QUERY_BYTES, limit));
      const done = (async () => {
        try {
          for (const ch of chunks) await c.query({ sql: ch.join(";\n"), timeout: APPLY_TIMEOUT_MS });
          return { ok: true as const };
        } catch (err: any) {
          return { ok: false as const, err };
        }
      })();
      return { conn: c, done };
    });
    // a side connection that cannot be opened (max_connections, the network): the batch runs when its turn comes,
    // and parallel apply stops for this process rather than wait for a connection before every batch
    const safe = early.catch((err) => {
      if (!this.#parallelOff) {
        this.#parallelOff = true;
        this.#log.warn({ err: err?.message }, "parallel apply could not open a second connection to the replica: it is off until the agent restarts (one connection applies everything, as with apply.parallel: false)");
      }
      return null;
    });
    this.#sideTurn = 1 - turn;
    return safe;
  }

  /** Commits a batch that ran early (#parallel): its checkpoint and COMMIT, or, if it failed, the batch again in its turn. */
  async #commitEarly(early: Promise<Early | null>, built: BuiltBatch): Promise<void> {
    const e = await early;
    if (!e) return this.#commitRows(built);
    const r = await e.done;
    if (!r.ok) {
      // nothing of it stays: rolled back here, or with the connection
      await e.conn.query("ROLLBACK").catch(() => this.#dropSide(e.conn));
      if (isWriterLost(r.err)) throw r.err;
      if (LOCK_ERRNOS.has(r.err?.errno) && !this.#parallelOff) {
        this.#parallelOff = true;
        this.#log.warn({ err: r.err?.message }, "a batch run early on a second connection met a lock wait or deadlock: parallel apply is off until the agent restarts");
      }
      this.#log.debug({ err: r.err?.message }, "a batch run early failed; it runs again in its turn");
      return this.#commitRows(built);
    }
    const { batch, txns } = built;
    const last = batch[batch.length - 1];
    const t0 = Date.now();
    try {
      await e.conn.query({ sql: `${this.#port.cp(last.pos, last.ts, txns, built.rows)};\nCOMMIT`, timeout: APPLY_TIMEOUT_MS });
    } catch (err) {
      // (a failed checkpoint ends the session; the transaction is rolled back with the connection)
      this.#dropSide(e.conn);
      throw err;
    }
    if (TRACE) process.stderr.write(`at=${Date.now() % 100000} batch txns=${batch.length} rows=${built.rows} stmts=${built.stmts.length} ms=${Date.now() - t0} queued=${this.#queue.length} early=1\n`);
    this.#committed(built);
    this.#m.parallelBatches.inc(this.#labels);
  }

  #dropSide(c: SideConn): void {
    const i = this.#sides.indexOf(c);
    if (i >= 0) this.#sides[i] = null;
    c.destroy();
  }

  async applyRows(batch: Txn[]): Promise<void> {
    await this.#commitRows(await this.#buildRows(batch));
  }

  /** `piece`: a piece of a large transaction (applyStreamed), the binlog range it holds (its identity for SharedBuilds) */
  async #buildRows(batch: Txn[], piece?: string | null): Promise<BuiltBatch> {
    const shared = this.#port.builds ?? null;
    // a snapshot in progress makes the build depend on this replica's state (skips, tombstones, relaxed tables)
    const sharing = shared !== null && !this.#port.snapshot.blocksStreaming() && !this.#port.snapshot.relaxing();
    let b = new StatementBuilder();
    let stmts: Statement[] = [];
    let rows = 0;
    let txns = 0;
    for (const t of batch) {
      if (t.changes.length === 0) continue;
      txns++;
      if (sharing && !t.ownSchema && (!t.stream || piece) && t.rowCount >= shared.minRows) {
        const one = await this.#sharedTxn(shared, t, t.stream ? piece! : "");
        if (one) {
          // what the batch gathered so far goes first, in order; the transaction's own statements follow
          for (const s of b.finish()) stmts.push(s);
          rows += b.rows;
          b = new StatementBuilder();
          for (const s of one.stmts) stmts.push(s);
          rows += one.rows;
          continue;
        }
      }
      // synchronous unless a table's metadata must be loaded (a promise per source transaction is a cost
      // of its own with single-row transactions)
      const pending = this.#addTxn(b, t, 0);
      if (pending) await pending;
    }
    for (const s of b.finish()) stmts.push(s);
    rows += b.rows;
    // statements may be shared with other replicas (frozen): relaxed ones are copies
    if (this.#port.snapshot.relaxing()) stmts = stmts.map((st) => (this.#port.snapshot.relaxed(st.table) ? { ...st, relaxFk: true } : st));
    return { batch, stmts, txns, rows };
  }

  /**
   * One source transaction's changes (from change `from` on) into the builder (what this replica skips: quarantine,
   * the snapshot's pending tables). Synchronous while every table's metadata is cached; else a promise that loads it
   * and goes on from that change, in order.
   */
  #addTxn(b: StatementBuilder, t: Txn, from: number): Promise<void> | undefined {
    // the error context is built only when an error needs it (this runs per source transaction)
    const where = () => `replica ${this.name}, source position ${fmtPos(t.pos)}`;
    const changes = t.changes;
    for (let i = from; i < changes.length; i++) {
      const ch = changes[i];
      if (ch.savepoint !== undefined) {
        b.marker(ch);
        continue;
      }
      const name = `${ch.db}.${ch.table}`;
      if (this.#port.quarantined(name)) continue;
      if (this.#port.snapshot.skips(name, t.pos)) continue;
      const meta = this.#schema.peek(ch.db, ch.table);
      if (!meta) return this.#loadAndAdd(b, t, i);
      if (ch.op !== "insert" && this.#port.snapshot.copying(name)) this.#port.snapshot.tombstone(meta, ch);
      b.add(ch, meta, where);
    }
    return undefined;
  }

  /** #addTxn at change `i`, whose table's metadata is not cached: loaded (or found missing), then #addTxn from there */
  async #loadAndAdd(b: StatementBuilder, t: Txn, i: number): Promise<void> {
    const ch = t.changes[i];
    if (!(await this.#schema.get(ch.db, ch.table))) {
      throw new ApplyError(
        `at source position ${fmtPos(t.pos)}: table \`${ch.db}\`.\`${ch.table}\` does not exist on replica ${this.name}; the replica diverged from the source. Create it or resnapshot the replica (datasync resnapshot --replica ${this.name}).`,
        { table: `${ch.db}.${ch.table}` },
      );
    }
    // cached now: change i and the rest go in as #addTxn adds them
    const rest = this.#addTxn(b, t, i);
    if (rest) await rest;
  }

  /**
   * Building once for fan-out (agent/README.md "Build once for fan-out"): the statements of one source
   * transaction built alone, taken from another replica's build when the transaction and the shapes of every table
   * it touches are the same here, else built here and kept for the others. Null where this replica's build is not a
   * function of those alone (a quarantined or skipped table, tombstones, a table missing here): built with the batch.
   * A build that fails keeps nothing, so each replica reports its own error.
   */
  async #sharedTxn(shared: SharedBuilds, t: Txn, piece: string): Promise<BuiltTxn | null> {
    const metas: TableMeta[] = [];
    let shapes = "";
    for (const ch of t.changes) {
      if (ch.savepoint !== undefined) continue;
      const name = `${ch.db}.${ch.table}`;
      if (this.#port.quarantined(name) || this.#port.snapshot.skips(name, t.pos)) return null;
      if (ch.op !== "insert" && this.#port.snapshot.copying(name)) return null;
      const meta = this.#schema.peek(ch.db, ch.table) ?? (await this.#schema.get(ch.db, ch.table));
      if (!meta) return null;
      metas.push(meta);
      shapes += `${shared.shapeId(meta)},`;
    }
    const key = txnIdentity(t, piece);
    const hit = shared.take(key, shapes, this.name);
    if (hit) {
      this.#m.reusedTxns.inc(this.#labels);
      return hit;
    }
    // built from exactly the metas the shapes name (no await from here on)
    const b = new StatementBuilder();
    const where = () => `replica ${this.name}, source position ${fmtPos(t.pos)}`;
    let i = 0;
    for (const ch of t.changes) {
      if (ch.savepoint !== undefined) b.marker(ch);
      else b.add(ch, metas[i++], where);
    }
    return shared.put(key, shapes, this.name, b.finish(), b.rows);
  }

  /** Runs a built batch as one target transaction with its checkpoint. Sends its first query before its first await. */
  async #commitRows(built: BuiltBatch): Promise<void> {
    const { batch, stmts, txns } = built;
    const conn = this.#port.conn();
    const last = batch[batch.length - 1];
    const b = { rows: built.rows };
    if (stmts.length === 0) {
      // Nothing in scope: advance in memory; the heartbeat persists the position now and then.
      this.#progress.applied = last.pos;
      if (Date.now() - this.#progress.checkpointAt >= this.#port.heartbeatSeconds * 1000) await this.heartbeat();
      return;
    }
    const cp = this.#port.cp(last.pos, last.ts, txns, b.rows);
    const hasFallbacks = stmts.some((s) => s.fallback);
    const t0 = Date.now();
    await this.#runTransaction(conn, stmts, cp, hasFallbacks, batch);
    if (TRACE) process.stderr.write(`at=${Date.now() % 100000} batch txns=${batch.length} rows=${b.rows} stmts=${stmts.length} ms=${Date.now() - t0} queued=${this.#queue.length}\n`);
    this.#committed(built);
  }

  /** a batch's target transaction committed with its checkpoint */
  #committed(built: BuiltBatch): void {
    const last = built.batch[built.batch.length - 1];
    this.#progress.applied = last.pos;
    this.#progress.checkpoint = last.pos;
    this.#progress.checkpointAt = Date.now();
    this.#progress.txns += built.txns;
    this.#progress.rows += built.rows;
    this.#m.appliedTxns.inc(this.#labels, built.txns);
    this.#m.appliedRows.inc(this.#labels, built.rows);
    this.#m.batches.inc(this.#labels);
  }

  /**
   * A source transaction too large to hold (the reader hands it over in pieces, Txn.stream): one target
   * transaction that stays open while its pieces arrive, each applied and released as it comes (a full
   * queue pauses the reader, so memory stays within the budget whatever the transaction's size), and that
   * commits with the checkpoint after the last piece. A crash or any error before that rolls the whole
   * target transaction back and the session re-reads the source transaction from its start (exactly once).
   * Statements go one per query so an UPDATE that matched no row takes its upsert fallback at once (there
   * is no replay from the start: earlier pieces are gone) and a failing statement is named exactly.
   */
  async applyStreamed(first: Txn): Promise<void> {
    const conn = this.#port.conn();
    // the lag counts from the transaction's start: a stand-in that holds no rows
    this.#inflight = [{ ...first, changes: [] }];
    let part: Txn | undefined = first;
    let rows = 0;
    let pieces = 0;
    const t0 = Date.now();
    /** time spent waiting for the reader's next piece (the rest is the replica's) */
    let waited = 0;
    let open = false;
    /** where the next piece starts in the binlog (null: unknown, its pieces are not shared) */
    let from: number | null = first.stream === "part" ? first.pos.pos : null;
    try {
      if (first.stream === "abort") return;
      await conn.query("START TRANSACTION");
      open = true;
      for (;;) {
        const p: Txn = part!;
        part = undefined;
        if (p.stream === "abort") {
          // through the port, like every piece: the reader may be paused on this queue (a shared-stream
          // subscriber that left is, until it is resumed), and the queue may be empty after it
          this.#port.release([p]);
          await conn.query("ROLLBACK");
          open = false;
          this.#log.warn({ position: p.pos, pieces }, "a large source transaction ended without a commit in the binlog: what was applied of it is rolled back");
          return;
        }
        if (p.ddl) {
          throw new ApplyError(
            `replica ${this.name} stopped at source position ${fmtPos(p.pos)}: a statement that is not DML (${scrub(p.ddl.sql).slice(0, 200)}) arrived inside a large source transaction being applied in pieces; it cannot be placed exactly. Resnapshot the replica (datasync resnapshot).`,
          );
        }
        if (p.statementDml) this.refuseStatementDml(p);
        // the piece's identity: the binlog range it holds, from the previous cut (a part's pos is the transaction's start)
        const cut = p.stream === "last" ? p.pos.pos : (p.cut ?? null);
        const piece = from !== null && cut !== null ? `${from}-${cut}` : null;
        from = cut;
        const built = await this.#buildRows([{ ...p, statementDml: undefined }], piece);
        // the piece's rows are no longer needed once its SQL is built
        p.changes = [];
        await this.#runPiece(conn, built.stmts, p);
        rows += built.rows;
        pieces++;
        this.#port.release([p]);
        if (TRACE) process.stderr.write(`at=${Date.now() % 100000} piece ${pieces} rows=${built.rows} stmts=${built.stmts.length} queued=${this.#queue.length}\n`);
        if (p.stream === "last") {
          await conn.query({ sql: `${this.#port.cp(p.pos, p.ts, 1, rows)};\nCOMMIT`, timeout: APPLY_TIMEOUT_MS });
          open = false;
          this.#progress.applied = p.pos;
          this.#progress.checkpoint = p.pos;
          this.#progress.checkpointAt = Date.now();
          this.#progress.txns++;
          this.#progress.rows += rows;
          this.#m.appliedTxns.inc(this.#labels, 1);
          this.#m.appliedRows.inc(this.#labels, rows);
          this.#m.batches.inc(this.#labels);
          this.#log.info(
            { position: p.pos, rows, pieces, seconds: Math.round((Date.now() - t0) / 100) / 10, waitingForSourceSeconds: Math.round(waited / 100) / 10 },
            "a large source transaction was applied in pieces",
          );
          return;
        }
        // the next piece: the reader is still reading the transaction (nothing else runs on this session meanwhile)
        const w0 = Date.now();
        while (this.#queue.length === 0) {
          if (this.#port.stopping()) throw new RestartRequested();
          // the writer lock lost, the reader failed; a binlog connection that stalls mid-transaction must not
          // hold the open target transaction forever
          this.#port.interrupted();
          await this.#port.nap(200);
        }
        waited += Date.now() - w0;
        if (this.#port.stopping()) throw new RestartRequested();
        const next = this.#queue.take(null);
        if (next.length !== 1 || !next[0].stream) throw new Error(`internal: a piece of a large source transaction was expected at ${fmtPos(next[0]?.pos ?? p.pos)}`);
        part = next[0];
      }
    } catch (err) {
      if (open) await conn.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      // (a piece that failed is not released: the session ends and the queue is reset)
      if (first.stream === "abort") this.#port.release([first]);
      this.#inflight = [];
    }
  }

  /** A piece's statements inside the open target transaction, one query each (see applyStreamed). */
  async #runPiece(conn: ApplyConn, stmts: Statement[], p: Txn): Promise<void> {
    const limit = this.statementLimit();
    for (const s of stmts) {
      if (s.sql.length * 3 > limit && Buffer.byteLength(s.sql) > limit) throw this.packetError(s.table, Buffer.byteLength(s.sql), "a row");
      const t = sessionToggles(s);
      try {
        if (t.before.length) await conn.query(t.before.join(";\n"));
        const [res] = await conn.query<any>({ sql: s.sql, timeout: APPLY_TIMEOUT_MS });
        if (s.fallback && Number(res.affectedRows) === 0) {
          this.#log.warn({ table: s.table }, "an update found no row on the replica (it diverged or was not seeded); applied as an upsert");
          await conn.query({ sql: s.fallback, timeout: APPLY_TIMEOUT_MS });
        }
        if (t.after.length) await conn.query(t.after.join(";\n"));
      } catch (err: any) {
        if (isTransient(err) || isWriterLost(err) || err instanceof ApplyError) throw err;
        throw new ApplyError(
          `replica ${this.name}: applying to \`${s.table.replace(".", "`.`")}\` failed with ${err.code ?? ""} ${err.errno ?? ""}: ${err.sqlMessage ?? err.message} ` +
            `(a large source transaction applied in pieces, committed at the source after ${fmtPos(p.pos)}). The replica diverged from the source; fix the row or resnapshot the replica (datasync resnapshot --replica ${this.name}), then restart the agent.`,
          { table: s.table, sqlError: `${err.errno}: ${err.sqlMessage ?? err.message}`, cause: err },
        );
      }
    }
  }

  /**
   * One target transaction: the statements and the checkpoint, sent as few multi-statement queries.
   * UPDATEs located by an old key report how many rows they matched; when one matched nothing, the
   * transaction is rolled back and replayed statement by statement with its upsert fallback.
   */
  async #runTransaction(conn: ApplyConn, stmts: Statement[], checkpoint: string, checkMatches: boolean, batch: Txn[]): Promise<void> {
    // flatten (a statement written under relaxed checks on the source is wrapped in their toggles) and
    // remember where each result lands
    const flat: string[] = ["START TRANSACTION"];
    const at: number[] = [];
    for (const s of stmts) {
      const t = sessionToggles(s);
      flat.push(...t.before);
      at.push(flat.length);
      flat.push(s.sql);
      flat.push(...t.after);
    }
    flat.push(checkpoint);
    if (!checkMatches) flat.push("COMMIT");
    const limit = this.statementLimit();
    for (let i = 0; i < stmts.length; i++) {
      const q = stmts[i].sql;
      if (q.length * 3 > limit && Buffer.byteLength(q) > limit) throw this.packetError(stmts[i].table, Buffer.byteLength(q), "a row");
    }
    const chunks = packQueries(flat, Math.min(MULTI_QUERY_BYTES, limit));
    try {
      const results: any[] = [];
      for (const ch of chunks) {
        // a hung replica connection (half-open TCP) must not hang the pipeline forever
        const [res] = await conn.query<any>({ sql: ch.join(";\n"), timeout: APPLY_TIMEOUT_MS });
        if (ch.length > 1 && Array.isArray(res)) results.push(...res);
        else results.push(res);
      }
      if (!checkMatches) return;
      const unmatched = stmts.some((s, i) => s.fallback && Number(results[at[i]]?.affectedRows ?? 1) === 0);
      if (!unmatched) {
        await conn.query("COMMIT");
        return;
      }
      await conn.query("ROLLBACK");
      await this.#careful(conn, stmts, checkpoint);
    } catch (err: any) {
      await conn.query("ROLLBACK").catch(() => undefined);
      if (isTransient(err) || isWriterLost(err)) throw err;
      // Find the exact statement that fails so the report names the table and the SQL error.
      await this.#careful(conn, stmts, checkpoint, batch, err);
    }
  }

  async #careful(conn: ApplyConn, stmts: Statement[], checkpoint: string, batch?: Txn[], original?: any): Promise<void> {
    await conn.query("START TRANSACTION");
    try {
      for (const s of stmts) {
        try {
          const t = sessionToggles(s);
          for (const q of t.before) await conn.query(q);
          try {
            const [res] = await conn.query<any>(s.sql);
            if (s.fallback && Number(res.affectedRows) === 0) {
              this.#log.warn({ table: s.table }, "an update found no row on the replica (it diverged or was not seeded); applied as an upsert");
              await conn.query(s.fallback);
            }
          } finally {
            for (const q of t.after) await conn.query(q);
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

  /** DML logged as a statement in a synced schema stops the replica: its effect cannot be reproduced exactly. */
  refuseStatementDml(t: Txn): void {
    if (!t.statementDml) return;
    const target = statementTarget(t.statementDml.sql, t.statementDml.schema);
    if (this.#port.databases.includes(target.db) && (!target.table || this.#port.inScope(target.db, target.table))) {
      throw new ApplyError(
        `replica ${this.name} stopped at source position ${fmtPos(t.pos)}: a DML statement in synced schema \`${target.db}\` was logged as a statement, not as rows (a session switched binlog_format to STATEMENT or MIXED): ${scrub(t.statementDml.sql).slice(0, 300)}. ` +
          "Its effect cannot be applied exactly. Keep binlog_format=ROW for every session writing synced schemas, then resnapshot the replica (datasync resnapshot).",
        { table: target.table ? `${target.db}.${target.table}` : target.db },
      );
    }
  }

  /** the largest statement (bytes) sent to this replica: its max_allowed_packet less the protocol's headroom */
  statementLimit(): number {
    return Math.max(64 << 10, this.#maxPacket - 4096);
  }

  /** A row the replica cannot take in one statement: stop this replica, naming the table, the size, the setting and the fix. */
  packetError(table: string, bytes: number, what: string): ApplyError {
    const need = Math.ceil((bytes + 65536) / (1 << 20));
    return new ApplyError(
      `replica ${this.name}: ${what} of \`${table.replace(".", "`.`")}\` needs a ${Math.ceil(bytes / 1024)} KiB statement (binary values are sent as hex, twice their size), ` +
        `above the replica's max_allowed_packet of ${this.#maxPacket} bytes. Raise max_allowed_packet on the replica to at least ${need}M ` +
        "(SET GLOBAL max_allowed_packet = …, or the server parameter on Azure), then restart the agent.",
      { table },
    );
  }
}

export interface BuiltBatch {
  batch: Txn[];
  stmts: Statement[];
  /** source transactions with changes */
  txns: number;
  rows: number;
}

/**
 * Statements grouped into multi-statement queries of at most `limit` bytes each (a statement above it
 * goes alone; the caller has refused those the replica cannot take).
 */
export function packQueries(qs: string[], limit: number): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let bytes = 0;
  for (const q of qs) {
    const n = q.length * 3 > limit ? Buffer.byteLength(q) + 2 : q.length + 2;
    if (bytes + n > limit && cur.length > 0) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(q);
    bytes += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** The table a statement-format DML writes to. */
export function statementTarget(sql: string, schema: string): { db: string; table: string | null } {
  const m = /^\s*(?:\/\*.*?\*\/\s*)*(?:INSERT|REPLACE)(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE))*\s+(?:INTO\s+)?((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)|^\s*UPDATE(?:\s+(?:LOW_PRIORITY|IGNORE))*\s+((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)|^\s*DELETE(?:\s+(?:LOW_PRIORITY|QUICK|IGNORE))*\s+FROM\s+((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)/is.exec(sql);
  const name = m?.[1] ?? m?.[2] ?? m?.[3];
  if (!name) return { db: schema, table: null };
  const parts = name.split(".").map((p) => p.replace(/^`|`$/g, ""));
  return parts.length === 2 ? { db: parts[0], table: parts[1] } : { db: schema, table: parts[0] };
}

/**
 * The keys a batch's statements write, per table, when every statement is a lane's (sqlgen.ts Statement.lane):
 * every row of every change, before and after images (a superset of what the statements touch: rows a replica
 * skips are counted too). Null when a statement is not a lane's or a table is not known here.
 */
export function laneKeys(stmts: Statement[], batch: Txn[], schema: { peek(db: string, table: string): TableMeta | undefined }): Map<string, Set<string>> | null {
  for (const st of stmts) if (!st.lane || st.fallback || st.relaxFk || st.relaxChecks) return null;
  const keys = new Map<string, Set<string>>();
  for (const t of batch) {
    for (const ch of t.changes) {
      if (ch.savepoint !== undefined) return null;
      const meta = schema.peek(ch.db, ch.table);
      if (!meta || !laneTable(meta)) return null;
      const name = `${ch.db}.${ch.table}`;
      let set = keys.get(name);
      if (!set) keys.set(name, (set = new Set()));
      const packs = packsOf(ch);
      if (packs) {
        // rows read as SQL tuples (source/rowsql.ts): their keys decoded without keeping the rows
        for (const p of packs) for (let i = 0; i < p.starts.length; i++) packedKeys(p, i, meta.primaryKey, set);
        continue;
      }
      for (const r of ch.rows) set.add(rowKeyId(meta.primaryKey, r));
      if (ch.before) for (const r of ch.before) set.add(rowKeyId(meta.primaryKey, r));
    }
  }
  return keys;
}

/** no key of one map's tables is in the other's */
export function disjoint(a: Map<string, Set<string>>, b: Map<string, Set<string>>): boolean {
  for (const [table, ka] of a) {
    const kb = b.get(table);
    if (!kb) continue;
    const [small, large] = ka.size <= kb.size ? [ka, kb] : [kb, ka];
    for (const k of small) if (large.has(k)) return false;
  }
  return true;
}

/** the statements' text length (bytes for ASCII, which SQL text with hex literals mostly is) */
function sqlBytes(stmts: Statement[]): number {
  let n = 0;
  for (const st of stmts) n += st.sql.length;
  return n;
}
