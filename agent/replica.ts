// Replica owns one replica's lifecycle: its session (connect, preflight, checkpoint, plan, reader), backoff and
// states, teardown and status. It composes the parts of its pipeline, each behind a narrow port: its own binlog
// stream from its own checkpoint (source/), the bounded queue (apply/queue.ts), the row applier
// (apply/applier.ts), the DDL applier (apply/ddl-applier.ts) and the snapshot session (snapshot/session.ts);
// the source checks before its reader streams are source/resume.ts's.
// A slow, failing or dead replica only ever affects itself.
import type { Config } from "./config.js";
import { describeConnError, isTransient, type Conn } from "./db.js";
import { connectionOptions } from "./db.js";
import { checkpointSql, ensureBookkeeping, isWriterLost, readCheckpoint, SCHEMA, type DdlPending } from "./bookkeeping.js";
import { sever, type LockView, type WriterGate } from "./ops/writer-lock.js";
import type { Logger } from "./log.js";
import { scrub } from "./log.js";
import type { Metrics } from "./ops/metrics.js";
import { preflightReplica, type SourceFacts } from "./preflight.js";
import { BinlogReader, type BinlogStream, type OpenStream, type Txn, type XaParked } from "./source/reader.js";
import { comparePos, fmtPos, type Position } from "./source/positions.js";
import { binlogColumns, SchemaCache } from "./tables.js";
import { TxnQueue } from "./apply/queue.js";
import { ApplyProgress, RowApplier, TRACE } from "./apply/applier.js";
import type { SharedBuilds } from "./apply/shared-builds.js";
import { DdlApplier } from "./apply/ddl-applier.js";
import { SnapshotSession } from "./snapshot/session.js";
import { sameSourceId } from "./source/provenance.js";
import { checkSource, proveOnNewSource } from "./source/resume.js";
import { ApplyWatch, processlistOf, watchConn, type StuckApply } from "./apply/watchdog.js";
import { acknowledgeCutover, cutoverView, isPromoted, readCutover, type CutoverView } from "./ops/cutover-record.js";
import { ApplyError, BackPressureLost, CutOverSeen, PurgedPositionError, ReplicaUnavailable, RestartRequested, WriterLost } from "./errors.js";

/**
 * Test seam: a lost wake-up, for the tests of the paused-reader check (#checkPausedIdle). `release`: the applier's
 * releases never resume a paused reader; `all`: nor does the check's own resume (the stall path).
 */
const TEST_LOSE_RESUME = process.env.DATASYNC_TEST_LOSE_RESUME ?? "";
/**
 * A reader that ignores back-pressure (#enqueue): past a full queue, a reader hands over at most the events of the
 * network read in hand, a shared stream's joiner at most its ring (apply.queueBytes, 1,024 transactions). Beyond
 * these many transactions, or a queue's worth of bytes plus this, the session ends rather than the heap.
 */
const OVERRUN_TXNS = Number(process.env.DATASYNC_TEST_OVERRUN_TXNS) || 20_000;
const OVERRUN_BYTES = 64 << 20;

export type ReplicaState = "starting" | "connecting" | "streaming" | "standby" | "down" | "failed" | "needs-snapshot" | "stopped" | "cut-over";

export interface ReplicaStatus {
  name: string;
  state: ReplicaState;
  connected: boolean;
  lagSeconds: number | null;
  position: Position | null;
  appliedTransactions: number;
  appliedRows: number;
  queueBytes: number;
  snapshot: { done: boolean; rowsCopied: number; rowsEstimate: number; rate: number; etaSeconds: number | null; tables: unknown[] } | null;
  lastError: string | null;
  quarantined: string[];
  /** a cutover of the group recorded on this replica (in progress or done) */
  cutover?: CutoverView | null;
  /** the replica's writer lock: this agent ("writer"), another agent ("standby", naming it), or unknown */
  writer: LockView | null;
  /** work queued and no applier step for apply.stuckSeconds (the watchdog, apply/watchdog.ts): what it waits on */
  applyStalled: { seconds: number; waitingOn: string } | null;
}

export interface SourceContext {
  facts: SourceFacts;
  sourceId: string;
  serverIdBase: number;
  /** current end of the source binlog (polled), null before the first poll */
  end: () => { pos: Position; at: number } | null;
  /** the source's current position for a replica that has no checkpoint */
  currentPosition: () => Promise<Position>;
  /** the binlog files the source still has */
  binlogFiles: () => Promise<string[]>;
  inScope: (db: string, table: string) => boolean;
  /** one writer per group and replica (agent/ops/writer-lock.ts): the replica's lock, when the agent takes locks */
  writerGate?: (index: number) => WriterGate;
  /** the group's statements built once for replicas whose tables have the same shape (apply/shared-builds.ts; main.ts) */
  builds?: SharedBuilds | null;
  /** builds the replica's binlog stream (main.ts); default: a BinlogReader of its own */
  openStream?: OpenStream;
  /** the shared stream's state (StreamHub.stats), for the warning of a lost back-pressure */
  streamStats?: () => unknown;
  /** opens a connection to replica `index` (main.ts): the session's (multiple statements), the snapshot's side ones, a poll */
  connectReplica: (index: number, opts?: { multipleStatements?: boolean }) => Promise<Conn>;
  /** opens a connection to the source (the binlog rules, the history proof, the snapshot's plan and copy order) */
  connectSource: () => Promise<Conn>;
}

export interface Backoff {
  sleep: (ms: number) => Promise<void>;
  base: number;
  cap: number;
}

const defaultBackoff: Backoff = { sleep: (ms) => new Promise((r) => setTimeout(r, ms)), base: 500, cap: 10_000 };

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
  #reader: BinlogStream | null = null;
  #readerError: Error | null = null;
  #queue: TxnQueue<Txn>;
  #wake: (() => void) | null = null;
  #stopping = false;
  #done: Promise<void> | null = null;
  #schema = new SchemaCache(() => this.#conn!);
  /** where the stream stands: applied, checkpointed, counted (shared with the appliers) */
  readonly #progress = new ApplyProgress();
  /** rows: build, commit, careful replay, pieces, build-ahead (apply/applier.ts) */
  readonly #rows: RowApplier;
  /** DDL and statement-logged DML, applied alone, exactly once (apply/ddl-applier.ts) */
  readonly #ddl: DdlApplier;
  /** the online snapshot of this session (snapshot/session.ts) */
  readonly #snapshot: SnapshotSession;
  #lag = new LagClock();
  #lastError: string | null = null;
  /** the position of the last transaction the reader handed over that changes something (not position-only) */
  #lastChange: Position | null = null;
  /** the position after the last DDL the reader handed over (reader-side table metadata waits until it is applied) */
  #lastDdlPos: Position | null = null;
  /** prepared XA transactions read by the last reader, handed to the next one (reader.ts) */
  #xaParked: ReadonlyMap<string, XaParked> | undefined;
  /** since when the reader has been behind the source's end while able to receive (stall detection) */
  #behindSince: number | null = null;
  /** since when the reader has been paused with nothing queued or being applied (a lost wake-up; stall detection) */
  #pausedIdleSince: number | null = null;
  /** the reader waits for the applier (a table map decoded with the replica's schema after a DDL) */
  #readerWaits = false;
  /** what the reader handed over after the queue told it to pause (a reader that ignores back-pressure: #enqueue) */
  #overPushes = 0;
  #overBytes = 0;
  #attempt = 0;
  #lastControlPoll = 0;
  #cutover: CutoverView | null = null;
  #gate: WriterGate | null;
  /** set when the writer lock was lost during a session: the session's connections are already destroyed */
  #fenced: string | null = null;
  /** the checkpoint's compare-and-set version as this session read or last wrote it (null: no row) */
  #cpSeq: number | null = null;
  /** the stuck-apply watchdog: what the applier awaits and since when it made no step */
  readonly #watch = new ApplyWatch();
  #watchTimer: NodeJS.Timeout | null = null;
  #stuck: StuckApply | null = null;

  constructor(cfg: Config, index: number, src: SourceContext, log: Logger, metrics: Metrics, backoff: Backoff = defaultBackoff) {
    this.#cfg = cfg;
    this.#index = index;
    this.name = cfg.replicas[index].name;
    this.#src = src;
    this.#log = log.child({ component: "replica", replica: this.name });
    this.#m = metrics;
    this.#backoff = backoff;
    this.#queue = new TxnQueue<Txn>(cfg.apply);
    this.#labels = { group: cfg.group, replica: this.name };
    const flavor = src.facts.version.flavor;
    const shared = { name: this.name, log: this.#log, metrics: this.#m, labels: this.#labels, inScope: src.inScope };
    this.#snapshot = new SnapshotSession({
      ...shared,
      cfg,
      flavor,
      sourceId: src.sourceId,
      currentPosition: () => src.currentPosition(),
      conn: () => this.#conn!,
      connectSource: () => src.connectSource(),
      openSide: () => src.connectReplica(index, { multipleStatements: true }),
      adopt: async (c) => {
        await this.#gate?.adopt(c);
      },
      cp: (pos, ts, txns, rows) => this.#cp(pos, ts, txns, rows),
      resolvePendingDdl: (p, before) => this.#ddl.resolvePendingDdl(p, before),
      statementLimit: () => this.#rows.statementLimit(),
      packetError: (table, bytes, what) => this.#rows.packetError(table, bytes, what),
      failed: (err) => {
        this.#readerError = err;
        this.#wake?.();
      },
      stream: {
        applied: () => this.#progress.applied,
        taken: () => this.#queue.takenPos,
        applying: () => this.#rows.applying(),
        next: () => this.#queue.peek(),
        readerAt: () => this.#reader?.lastRead ?? null,
        wake: () => this.#wake?.(),
      },
    });
    this.#rows = new RowApplier({
      ...shared,
      heartbeatSeconds: cfg.heartbeatSeconds,
      databases: cfg.databases,
      conn: () => this.#conn!,
      schema: this.#schema,
      progress: this.#progress,
      cp: (pos, ts, txns, rows) => this.#cp(pos, ts, txns, rows),
      queue: this.#queue,
      release: (batch) => this.#release(batch),
      readerPaused: () => !!this.#reader?.paused,
      stopping: () => this.#stopping,
      interrupted: () => {
        if (this.#fenced !== null) throw new WriterLost(this.#fenced);
        if (this.#readerError) throw this.#readerError;
        this.#checkStall();
      },
      nap: async (ms) => {
        // (a transaction applied in pieces waits here for its next piece)
        this.#watch.waiting("the next piece of a large transaction from the source stream");
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => (timer = setTimeout(r, ms)))]);
        clearTimeout(timer);
        this.#wake = null;
        this.#watch.waiting("applying a piece of a large transaction");
      },
      quarantined: (name) => this.#ddl.quarantined(name),
      snapshot: this.#snapshot,
      special: (t) => this.#ddl.apply(t),
      builds: src.builds ?? null,
      ...(cfg.apply.parallel ? { openSide: () => this.#openApplySide() } : {}),
    });
    this.#ddl = new DdlApplier({
      ...shared,
      group: cfg.group,
      databases: cfg.databases,
      flavor,
      conn: () => this.#conn!,
      schema: this.#schema,
      progress: this.#progress,
      cp: (pos, ts, txns, rows, pending) => this.#cp(pos, ts, txns, rows, pending),
      applyRows: (batch) => this.#rows.applyRows(batch),
      refuseStatementDml: (t) => this.#rows.refuseStatementDml(t),
      beforeDefinition: (name, pos) => this.#snapshot.beforeDefinition(name, pos),
      seedPending: (names) => this.#snapshot.seedPending(names),
    });
    this.#m.up.set(this.#labels, 0);
    this.#m.lag.set(this.#labels, 0);
    this.#m.appliedRows.inc(this.#labels, 0);
    this.#m.reusedTxns.inc(this.#labels, 0);
    this.#m.parallelBatches.inc(this.#labels, 0);
    this.#m.appliedTxns.inc(this.#labels, 0);
    this.#m.snapshotRows.inc(this.#labels, 0);
    this.#m.applyStalled.set(this.#labels, 0);
    this.#gate = src.writerGate?.(index) ?? null;
    this.#gate?.onLost((reason) => this.#fence(reason));
  }

  /** A side connection for parallel apply (RowApplier): the session's settings, recorded in the writer lease. */
  async #openApplySide(): Promise<Conn> {
    const r = this.#cfg.replicas[this.#index];
    let c: Conn;
    try {
      c = await this.#src.connectReplica(this.#index, { multipleStatements: true });
    } catch (err) {
      throw new ReplicaUnavailable("connection", describeConnError(err, `replica ${this.name}`, r), err);
    }
    try {
      await this.#gate?.adopt(c);
      await c.query("SET SESSION transaction_isolation = 'READ-COMMITTED'").catch(() => c.query("SET SESSION tx_isolation = 'READ-COMMITTED'"));
      if (this.#fenced !== null) throw new WriterLost(this.#fenced);
    } catch (err) {
      c.destroy();
      throw err;
    }
    return c;
  }

  /** The writer lock is lost: no statement of this session may reach the replica any more. */
  #fence(reason: string): void {
    this.#fenced = reason;
    sever(this.#conn, reason);
    this.#rows.fence();
    this.#snapshot.fence(reason);
    this.#wake?.();
  }

  get state(): ReplicaState {
    return this.#state;
  }

  start(): void {
    this.#done = this.#run();
  }

  /**
   * Stop reading, let the in-flight target transaction finish, and end. If it does not finish within the
   * grace period (a stalled connection), the connections are destroyed: the replica rolls back the open
   * transaction and the checkpoint stays where it was committed last.
   */
  async stop(graceMs = 10_000): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    this.#snapshot.stop();
    const done = this.#done ?? Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
    clearTimeout(timer);
    if (timedOut) {
      this.#log.warn({ graceMs }, "in-flight work did not finish in time: closing the connections (the replica rolls back the open transaction)");
      this.#conn?.destroy();
      this.#snapshot.destroySides();
      void this.#reader?.stop();
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    }
  }

  // ---------------------------------------------------------------- lifecycle

  async #run(): Promise<void> {
    while (!this.#stopping) {
      // a standby opens no binlog connection and writes nothing: it waits here for the lock
      if (this.#gate) await this.#gate.wait(() => this.#stopping, (s, detail) => this.#setState(s, detail));
      if (this.#stopping) break;
      try {
        await this.#session();
        this.#attempt = 0;
      } catch (err: any) {
        if (this.#stopping) break;
        await this.#teardown();
        if (err instanceof RestartRequested) continue;
        if (err instanceof CutOverSeen) {
          // the group was cut over: from here the new primary takes writes; this agent applies no more
          this.#setState("cut-over", null);
          this.#log.info({ cutover: this.#cutover }, "the group was cut over: this replica is no longer applied (state cut-over)");
          return;
        }
        if (this.#fenced !== null || isWriterLost(err)) {
          const reason = this.#fenced ?? `the checkpoint moved under this agent (compare-and-set from ${this.#progress.checkpoint ? fmtPos(this.#progress.checkpoint) : "no checkpoint"} failed): another agent writes this replica`;
          if (this.#fenced === null) this.#gate?.lost(reason);
          this.#fenced = null;
          this.#m.errors.inc({ ...this.#labels, kind: "writer-lost" });
          this.#setState("down", reason);
          this.#log.warn({ position: this.#progress.checkpoint }, `stopped applying (writer lock lost; the open transaction is rolled back): ${reason}`);
          if (!this.#gate) await this.#sleepUnlessStopped(1000);
          continue;
        }
        if (err instanceof PurgedPositionError) {
          this.#setState("needs-snapshot", err.message);
          this.#m.errors.inc({ ...this.#labels, kind: "purged" });
          this.#log.error({ position: this.#progress.checkpoint }, err.message);
          await this.#waitForResnapshot();
          continue;
        }
        if (err instanceof ApplyError && !err.transient) {
          this.#setState("failed", err.message);
          this.#m.errors.inc({ ...this.#labels, kind: "apply" });
          this.#log.error({ position: this.#progress.checkpoint, table: err.table, sqlError: err.sqlError }, `replica stopped: ${err.message}`);
          return;
        }
        const attempt = ++this.#attempt;
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
    this.#stopWatch();
    // each part resets itself: the snapshot's copy, chunk slots, tombstones and side connections first
    await this.#snapshot.reset();
    const reader = this.#reader;
    this.#reader = null;
    if (reader) this.#xaParked = reader.xaParked;
    if (reader) await reader.stop().catch(() => undefined);
    const conn = this.#conn;
    this.#conn = null;
    if (conn) {
      const ended = await Promise.race([
        conn
          .query("ROLLBACK")
          .catch(() => undefined)
          .then(() => conn.end())
          .then(() => true, () => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 3000).unref()),
      ]);
      if (!ended) conn.destroy();
    }
    this.#queue.clear();
    this.#rows.reset();
    this.#readerError = null;
    this.#m.queueBytes.set(this.#labels, 0);
    this.#m.up.set(this.#labels, 0);
  }

  async #waitForResnapshot(): Promise<void> {
    while (!this.#stopping) {
      await this.#sleepUnlessStopped(2000);
      try {
        const c = await this.#src.connectReplica(this.#index);
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
    let conn: Conn;
    try {
      conn = await this.#src.connectReplica(this.#index, { multipleStatements: true });
    } catch (err) {
      throw new ReplicaUnavailable("connection", describeConnError(err, `replica ${this.name}`, r), err);
    }
    // the appliers' statements go through the watchdog's view of the connection (what is in flight, since when)
    this.#conn = watchConn(conn, this.#watch);
    await this.#gate?.adopt(conn);
    const report = await preflightReplica(this.#cfg, this.#index, this.#src.facts);
    if (report.failures.length) throw new ReplicaUnavailable("preflight", report.failures.map((f) => f.message).join("; "));
    // the largest statement the replica takes (a bigger one makes it drop the connection)
    await this.#rows.readMaxPacket(conn);
    await conn.query("SET SESSION transaction_isolation = 'READ-COMMITTED'").catch(() => conn.query("SET SESSION tx_isolation = 'READ-COMMITTED'"));
    await ensureBookkeeping(conn);
    await this.#checkCutover(conn);
    const cp = await readCheckpoint(conn, this.#cfg.group);
    this.#cpSeq = cp ? cp.seq : null;
    let start = await this.#snapshot.plan(conn, cp);
    if (cp && cp.state !== "resnapshot" && !sameSourceId(cp.sourceId, this.#src.sourceId)) {
      // a failover or the way back: resume only where the new source's history provably holds the checkpoint
      start = await proveOnNewSource(() => this.#src.connectSource(), this.#src.facts.version.flavor, this.#src.sourceId, cp.sourceId, start, this.#log);
    }
    // MySQL resumes by its GTID set: the checkpoint's file may be purged while every transaction after it is still
    // there (the dump starts from them), and the server itself refuses (1236, needs-snapshot) when one is gone.
    const byMysqlGtid = this.#src.facts.version.flavor === "mysql" && !!start.gtid;
    if (cp && sameSourceId(cp.sourceId, this.#src.sourceId) && !byMysqlGtid) {
      // A resume point in a purged file is lost history: MariaDB may even accept an old GTID position
      // and silently skip what was purged, so check the file before streaming.
      const files = await this.#src.binlogFiles();
      if (files.length && !files.includes(start.file)) {
        // a checkpoint beyond the newest file: the history was reset, not purged
        if (comparePos({ file: start.file, pos: 0 }, { file: files[files.length - 1], pos: 0 }) > 0) {
          throw new PurgedPositionError(start, `binlog file ${start.file} is gone and the newest the source has is ${files[files.length - 1]}`, true);
        }
        throw new PurgedPositionError(start, `binlog file ${start.file} is gone; the oldest the source has is ${files[0]}`);
      }
    }
    await this.#ddl.loadQuarantine(conn);
    this.#schema.clear();
    // the tables' metadata in two queries now, rather than two per table when a table is first touched
    await this.#schema.prewarm(this.#cfg.databases).catch((e) => this.#log.debug({ err: e?.message }, "schema prewarm failed; tables load when first touched"));
    this.#progress.checkpoint = start;
    this.#progress.applied = start;
    this.#lastChange = null;
    this.#queue.clear(start);
    this.#progress.checkpointAt = Date.now();

    await checkSource(() => this.#src.connectSource(), this.#cfg.source, this.#src.facts.version.flavor, cp && sameSourceId(cp.sourceId, this.#src.sourceId) ? start : null);
    const srcCfg = this.#cfg.source;
    const reader = (this.#src.openStream ?? ((o) => new BinlogReader(o)))({
      connection: connectionOptions(srcCfg, "source") as any,
      serverId: this.#src.serverIdBase + this.#index,
      flavor: this.#src.facts.version.flavor,
      start,
      xaParked: this.#xaParked,
      databases: this.#cfg.databases,
      inScope: (db, t) => this.#src.inScope(db, t) && !this.#ddl.quarantined(`${db}.${t}`),
      onTxn: (t) => this.#enqueue(t),
      // a source transaction larger than a target transaction's share of the budget arrives in pieces,
      // applied as they come into one open target transaction (RowApplier.applyStreamed); a piece is at most a
      // quarter of the queue, so the reader reads the next pieces while the applier writes one
      streamBytes: Math.min(this.#cfg.apply.maxBytes, Math.floor(this.#cfg.apply.queueBytes / 4)),
      canStream: () => !this.#snapshot.blocksStreaming(),
      packRows: true,
      onError: (e) => {
        this.#readerError = e;
        this.#wake?.();
      },
      tableInfo: async (db, table) => {
        // A table map without column names (binlog_row_metadata not FULL) is decoded with the replica's
        // schema, which is right only at the same stream position: a DDL the reader passed but the applier
        // has not applied yet would put values in the wrong columns. So wait for it (the reader is paused).
        const c0 = this.#conn;
        this.#readerWaits = true;
        try {
          while (this.#conn === c0 && c0 && this.#lastDdlPos && this.#progress.applied && comparePos(this.#progress.applied, this.#lastDdlPos) < 0) {
            await new Promise((r) => setTimeout(r, 20));
          }
        } finally {
          this.#readerWaits = false;
        }
        const c = this.#conn;
        if (!c) return null;
        return binlogColumns(c, db, table);
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
    this.#attempt = 0; // the backoff restarts once a session streams again
    this.#behindSince = null;
    if (TRACE) process.stderr.write(`streaming at=${Date.now() % 100000}\n`);
    this.#log.info({ position: start, snapshot: this.#snapshot.state === "snapshot" }, "streaming");
    this.#startWatch(conn);
    if (this.#snapshot.state === "snapshot") await this.#snapshot.start(conn);
    await this.#applyLoop();
  }

  /** the checkpoint statement, with the replica's mode (snapshot or streaming) */
  #cp(pos: Position, ts: number, txns: number, rows: number, pending: DdlPending | null = null): string {
    // compare-and-set from the version this session read or last wrote (every failure ends the session,
    // and the next one reads it again, so counting on here is exact)
    const expect = this.#cpSeq;
    this.#cpSeq = (expect ?? 0) + 1;
    return checkpointSql(this.#cfg.group, this.#src.sourceId, this.#src.facts.version.flavor, pos, ts, txns, rows, pending, this.#snapshot.state, expect);
  }

  // ---------------------------------------------------------------- queue

  #enqueue(t: Txn): boolean {
    if (TRACE && (this.#progress.txns + this.#queue.length) % 1000 === 0) process.stderr.write(`enqueue at=${Date.now() % 100000} queued=${this.#queue.length} applied=${this.#progress.txns}\n`);
    if (this.#readerError instanceof BackPressureLost) return false; // the session ends: nothing more is held
    const over = this.#queue.heldBytes >= this.#cfg.apply.queueBytes;
    if (t.ddl) this.#lastDdlPos = t.pos;
    if (t.changes.length > 0 || t.ddl || t.statementDml || t.stream) this.#lastChange = t.pos;
    const more = this.#queue.push(t);
    if (!over) {
      this.#overPushes = 0;
      this.#overBytes = 0;
    } else if (++this.#overPushes > OVERRUN_TXNS || (this.#overBytes += t.bytes) > this.#cfg.apply.queueBytes + OVERRUN_BYTES) {
      this.#backPressureLost();
      return false;
    }
    this.#wake?.();
    return more;
  }

  /**
   * The reader went on handing transactions over long after the queue asked it to pause: more than a network
   * read's worth of events (mysql2 handles the packets of the chunk in hand) or a shared stream's join (at most
   * its slack). Back-pressure is lost somewhere, and memory would grow until the process runs out of heap. The
   * session ends instead (its queue is dropped: nothing is lost, the next session reads again from the
   * checkpoint) with a warning that names the state, for the bug report.
   */
  #backPressureLost(): void {
    const r = this.#reader;
    const detail = { queued: this.#queue.length, heldBytes: this.#queue.heldBytes, queueBytes: this.#cfg.apply.queueBytes, overPushes: this.#overPushes, overBytes: this.#overBytes, readerPaused: r?.paused ?? null, readerAt: r?.lastRead ?? null, hub: this.#src.streamStats?.() ?? null };
    this.#log.warn(detail, "the binlog reader kept handing transactions over after the queue was full (back-pressure lost): ending the session, it restarts from the checkpoint");
    this.#readerError = new BackPressureLost(`the binlog reader ignored back-pressure (${this.#overPushes} transactions, ${this.#overBytes} bytes past a full queue); restarting from the checkpoint`);
    this.#overPushes = 0;
    this.#overBytes = 0;
    this.#wake?.();
  }

  #release(batch: Txn[]): void {
    this.#queue.release(batch);
    if (this.#reader?.paused && this.#queue.canResume() && !TEST_LOSE_RESUME) this.#reader.resume();
  }

  // ---------------------------------------------------------------- apply

  async #applyLoop(): Promise<void> {
    const hb = Math.max(100, this.#cfg.heartbeatSeconds * 1000);
    while (!this.#stopping) {
      if (this.#fenced !== null) throw new WriterLost(this.#fenced);
      if (this.#readerError) throw this.#readerError;
      const c = this.#snapshot.takeReady();
      if (c) {
        try {
          this.#watch.waiting("writing a snapshot chunk");
          await this.#snapshot.writeChunk(c.chunk);
          this.#watch.step();
          c.resolve();
        } catch (err: any) {
          c.reject(err);
          if (isTransient(err)) throw err;
        }
      }
      this.#snapshot.logProgress();
      this.#checkStall();
      // every table is copied (or was dropped meanwhile): the replica is consistent from here on
      this.#watch.waiting("bookkeeping (snapshot state, control poll)");
      await this.#snapshot.completeIfCopied(this.#conn!);
      if (Date.now() - this.#lastControlPoll > 5000) await this.#controlPoll();
      const ahead = this.#rows.takeAhead();
      if (!ahead && this.#queue.length === 0) {
        if (this.#snapshot.hasReady()) continue;
        // a chunk waiting for its watermark is rechecked soon
        const wait = this.#snapshot.chunksWaiting() > 0 ? Math.min(hb, 200) : hb;
        this.#watch.waiting(this.#reader?.paused ? "the source stream (its reader is paused by back-pressure)" : "the source stream");
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => (timer = setTimeout(r, wait)))]);
        clearTimeout(timer);
        this.#wake = null;
        if (this.#queue.length === 0) {
          this.#checkStall();
          await this.#rows.heartbeat();
        }
        continue;
      }
      const batch = ahead ? ahead.batch : this.#queue.take(this.#snapshot.streamLimit());
      if (batch.length === 0) {
        // the next transaction is past a chunk's watermark: wait for the chunk
        this.#watch.waiting("the watermark limit (the next transaction waits for a snapshot chunk to be written)");
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => (timer = setTimeout(r, 200)))]);
        clearTimeout(timer);
        continue;
      }
      this.#watch.waiting(batch[0].ddl ? "applying a DDL" : `applying ${batch.length} transaction(s)${batch[0].stream ? " (a piece of a large one)" : ""}`);
      if (batch[0].stream) {
        await this.#rows.applyStreamed(batch[0]);
        this.#watch.step();
        continue;
      }
      await this.#rows.apply(batch, ahead);
      this.#watch.step();
    }
  }

  /**
   * A binlog connection can stall silently (half-open TCP, a hung proxy): the source's end moved past what
   * the reader has seen, yet no event arrived for a while. Then the session restarts from the checkpoint.
   */
  #checkStall(): void {
    const r = this.#reader;
    const end = this.#src.end();
    if (this.#checkPausedIdle(r)) return;
    // Behind counts only while the reader can receive: not paused by a full queue (back-pressure), not
    // waiting for the applier in tableInfo. It is checked at every turn of the apply loop, busy or idle, so a
    // stall is found within the limit even while the applier works through a backlog.
    if (!r || !end || r.paused || this.#readerWaits || comparePos(r.lastRead, end.pos) >= 0) {
      this.#behindSince = null;
      return;
    }
    const limit = (this.#cfg.stallSeconds ?? Math.max(30, this.#cfg.heartbeatSeconds * 5)) * 1000;
    const now = Date.now();
    this.#behindSince ??= now;
    if (now - this.#behindSince > limit && now - r.lastEventAt > limit) {
      this.#behindSince = null;
      throw new ReplicaUnavailable("stall", `the binlog connection stalled: the source is at ${end.pos.file}:${end.pos.pos} but nothing arrived for ${Math.round((Date.now() - r.lastEventAt) / 1000)} s; reconnecting`);
    }
  }

  /**
   * A reader paused by back-pressure is resumed by the applier's releases (#release, once the queue holds less than
   * half its budget). Paused while the queue has room, or with nothing queued, built ahead or being applied,
   * nothing would ever resume it: a lost wake-up (a shared-stream subscriber left full, a release that bypassed the
   * port), and the replica would make no progress and log nothing (the stall check below skips a paused reader). It
   * is resumed at once with a warning; if it stays paused for the stall limit, the session ends as a stall and
   * restarts from the checkpoint. Returns whether the reader is in that state (the stall check then skips it).
   */
  #checkPausedIdle(r: BinlogStream | null): boolean {
    const room = this.#queue.canResume();
    if (!r || !r.paused || this.#readerWaits || (!room && (this.#queue.length > 0 || this.#rows.oldest()))) {
      this.#pausedIdleSince = null;
      return false;
    }
    const now = Date.now();
    if (this.#pausedIdleSince === null) {
      this.#pausedIdleSince = now;
      if (room) {
        this.#log.warn({ position: this.#progress.applied, queued: this.#queue.length }, "the binlog stream was paused while its queue had room (a lost wake-up): resuming it");
        if (TEST_LOSE_RESUME !== "all") r.resume();
      }
    }
    const limit = (this.#cfg.stallSeconds ?? Math.max(30, this.#cfg.heartbeatSeconds * 5)) * 1000;
    if (r.paused && now - this.#pausedIdleSince > limit) {
      this.#pausedIdleSince = null;
      throw new ReplicaUnavailable(
        "stall",
        `the binlog stream stalled: it stayed paused for ${Math.round(limit / 1000)} s while nothing it waited for was left to apply (at ${this.#progress.applied ? fmtPos(this.#progress.applied) : "the start"}); reconnecting`,
      );
    }
    return true;
  }

  // ---------------------------------------------------------------- watchdog

  /**
   * The stuck-apply watchdog (apply/watchdog.ts) runs on a timer of its own, since a stuck applier is inside one
   * await and runs none of the loop's checks: one warning per stall naming what it waits on (and, for a
   * statement, the replica server's processlist row of the apply connection), the gauge
   * datasync_replica_apply_stalled_seconds and `applyStalled` in the status while it lasts.
   */
  #startWatch(conn: Conn): void {
    this.#stopWatch();
    this.#watch.reset();
    const limit = this.#cfg.apply.stuckSeconds * 1000;
    const threadId = (conn as any).threadId as number | undefined;
    this.#watchTimer = setInterval(() => void this.#checkStuck(limit, threadId), Math.min(5000, Math.max(200, limit / 5)));
    this.#watchTimer.unref?.();
  }

  #stopWatch(): void {
    if (this.#watchTimer) clearInterval(this.#watchTimer);
    this.#watchTimer = null;
    this.#stuck = null;
    this.#m.applyStalled.set(this.#labels, 0);
  }

  async #checkStuck(limitMs: number, threadId: number | undefined): Promise<void> {
    const work = this.#queue.length > 0 || this.#queue.heldBytes > 0 || this.#rows.applying();
    const s = this.#watch.check(work, limitMs);
    const was = this.#stuck;
    this.#stuck = s;
    this.#m.applyStalled.set(this.#labels, s ? s.seconds : 0);
    if (!s) {
      if (was) this.#log.info({ position: this.#progress.applied, stalledSeconds: was.seconds }, `the applier makes progress again (it had waited on ${was.waitingOn})`);
      return;
    }
    if (!s.fresh) return;
    const fields: Record<string, unknown> = {
      position: this.#progress.applied,
      stalledSeconds: s.seconds,
      waitingOn: s.waitingOn,
      queued: this.#queue.length,
      queueBytes: this.#queue.heldBytes,
      reader: !this.#reader ? "none" : this.#reader.paused ? "paused by back-pressure" : "reading",
    };
    if (s.statement && threadId !== undefined) {
      // the server's side of the statement (a lock wait names itself here: "Waiting for table metadata lock")
      try {
        const side = await this.#src.connectReplica(this.#index);
        try {
          const p = await processlistOf(side, threadId);
          fields.server = p ? { connection: threadId, state: p.state, seconds: p.time, statement: p.info } : { connection: threadId, gone: true };
        } finally {
          await side.end().catch(() => undefined);
        }
      } catch (e: any) {
        fields.server = { connection: threadId, error: scrub(String(e?.message ?? e)) };
      }
      if (!this.#stuck) return; // it moved on meanwhile (a later tick of a still-stuck applier is no reason to stay quiet)
    }
    this.#log.warn(fields, `the applier has completed no step for ${Math.round(s.seconds)} s while work is queued: waiting on ${s.waitingOn}`);
  }

  // ---------------------------------------------------------------- control

  /** Every few seconds: has `datasync resnapshot` asked for a new snapshot? Then the session restarts. */
  async #controlPoll(): Promise<void> {
    this.#lastControlPoll = Date.now();
    const conn = this.#conn;
    if (!conn) return;
    await this.#checkCutover(conn);
    const [rows] = await conn.query<any[]>(
      `SELECT (SELECT state FROM ${SCHEMA}.checkpoints WHERE group_name = ?) AS state, (SELECT COUNT(*) FROM ${SCHEMA}.snapshot WHERE group_name = ? AND state = 'requested') AS requested`,
      [this.#cfg.group, this.#cfg.group],
    );
    if (rows[0]?.state === "resnapshot" || Number(rows[0]?.requested) > 0) {
      this.#log.info("a new snapshot was requested (datasync resnapshot): restarting this replica's session");
      throw new RestartRequested();
    }
  }

  /** A cutover recorded on this replica: shown in status; once promoted, this replica stops applying. */
  async #checkCutover(conn: Conn): Promise<void> {
    const rec = await readCutover(conn, this.#cfg.group);
    this.#cutover = cutoverView(rec);
    if (isPromoted(rec)) {
      await acknowledgeCutover(conn, this.#cfg.group);
      throw new CutOverSeen();
    }
  }

  // ---------------------------------------------------------------- observation

  /** Age of the oldest source change this replica has not applied; 0 when it has applied all the source wrote. */
  lagSeconds(now = Date.now()): number | null {
    if (this.#state !== "streaming") {
      // down or reconnecting: what the source wrote since the replica's last applied position waits
      return this.#progress.applied ? this.#lag.lag(now, undefined, this.#src.end(), this.#progress.applied) : null;
    }
    // Read up to the source's last polled end, with every change handed over applied: nothing waits. What may
    // still sit in the queue is position-only (a rotation, a new file's header, transactions out of scope), no
    // change of the source's data; counted as one, an idle replica showed a lag of a millisecond after FLUSH
    // BINARY LOGS (or MariaDB's late binlog checkpoint event) until the applier took the marker.
    const end = this.#src.end();
    const applied = this.#progress.applied;
    const read = this.#reader?.lastRead;
    if (end && read && applied && comparePos(read, end.pos) >= 0 && (!this.#lastChange || comparePos(applied, this.#lastChange) >= 0)) {
      return this.#lag.lag(now, undefined, null, applied);
    }
    const oldest = this.#rows.oldest() ?? this.#queue.peek();
    return this.#lag.lag(now, oldest, end, applied);
  }

  status(): ReplicaStatus {
    const lag = this.lagSeconds();
    this.#m.lag.set(this.#labels, lag ?? -1);
    // gauges are refreshed here (every heartbeat and every /metrics scrape), not per source transaction
    this.#m.queueBytes.set(this.#labels, this.#queue.heldBytes);
    return {
      name: this.name,
      state: this.#state,
      connected: this.#state === "streaming",
      lagSeconds: lag === null ? null : Math.round(lag * 1000) / 1000,
      position: this.#progress.checkpoint,
      appliedTransactions: this.#progress.txns,
      appliedRows: this.#progress.rows,
      queueBytes: this.#queue.heldBytes,
      snapshot: this.#snapshot.progress(),
      lastError: this.#lastError,
      quarantined: this.#ddl.quarantinedTables(),
      cutover: this.#cutover,
      writer: this.#gate ? this.#gate.view() : null,
      applyStalled: this.#stuck ? { seconds: this.#stuck.seconds, waitingOn: this.#stuck.waitingOn } : null,
    };
  }
}

export { SCHEMA };

/**
 * The lag of one replica: the age of the oldest source change it has not applied. Read-but-unapplied
 * transactions carry their commit time; unread ones are at most as old as the first sighting of a source
 * end (polled every heartbeat) that is still ahead of the replica.
 */
export class LagClock {
  #since: number | null = null;
  #pos: { file: string; pos: number } | null = null;

  lag(now: number, oldest: { ts: number; readAt: number } | undefined, end: { pos: { file: string; pos: number }; at: number } | null, applied: { file: string; pos: number } | null): number {
    let since: number | null = null;
    if (oldest) {
      // binlog timestamps have second resolution: a transaction read within that second is as old as its read time
      since = oldest.ts + 999 >= oldest.readAt ? oldest.readAt : oldest.ts;
    }
    if (end && applied && comparePos(applied, end.pos) < 0) {
      // once the replica passes the end that started the count, it restarts at the current end: under a
      // steady load a replica is always a little behind the last polled end, and that must not add up
      if (this.#pos && comparePos(applied, this.#pos) >= 0) this.#since = null;
      if (this.#since === null) {
        this.#since = end.at;
        this.#pos = end.pos;
      }
      since = since === null ? this.#since : Math.min(since, this.#since);
    } else {
      this.#since = null;
    }
    if (since === null) return 0;
    return Math.max(0, (now - since) / 1000);
  }
}
