// Replica owns one replica's pipeline: its own binlog reader from its own checkpoint, a bounded queue,
// and the applier that groups source transactions into target transactions with the checkpoint in the
// same commit. A slow, failing or dead replica only ever affects itself.
import type { Config } from "./config.js";
import { connect, describeConnError, isTransient, qualified, quoteId, type Conn } from "./db.js";
import { connectionOptions } from "./db.js";
import { planDdl, fingerprint, viewDependencyMissing, type DdlPlan } from "./apply/ddl.js";
import { DdlSession, ddlContext, lexModeOf, type DdlContext } from "./apply/ddl-session.js";
import {
  checkpointSql,
  ensureBookkeeping,
  heldDdlSql,
  isWriterLost,
  loadQuarantine,
  quarantineSql,
  readCheckpoint,
  unquarantineSql,
  SCHEMA,
  type DdlPending,
} from "./bookkeeping.js";
import { sever, type LockView, type WriterGate } from "./ops/writer-lock.js";
import type { Logger } from "./log.js";
import { scrub } from "./log.js";
import type { Metrics } from "./ops/metrics.js";
import { preflightReplica, readVariables, type SourceFacts } from "./preflight.js";
import { checkBinlogSettings } from "./rules.js";
import { BinlogReader, type BinlogStream, type OpenStream, type Txn, type XaParked } from "./source/reader.js";
import { comparePos, fmtPos, type Position } from "./source/positions.js";
import { binlogColumns, loadTableMeta, SchemaCache } from "./tables.js";
import {
  Copier,
  chunkInsertParts,
  copyOrder,
  loadSnapshotTables,
  keepLiveRows,
  createReplicaTables,
  readDefinitions,
  progressSql,
  registerTablesSql,
  scopeFromSignature,
  scopeSignature,
  sourceTables,
  type Chunk,
} from "./snapshot/snapshot.js";
import { StatementBuilder, sessionToggles, type Statement } from "./apply/sqlgen.js";
import { rowKeyId } from "./keys.js";
import { appliedAlone, TxnQueue } from "./apply/queue.js";
import { Watermarks } from "./snapshot/watermarks.js";
import { proveHistory, sameSourceId } from "./source/provenance.js";
import { acknowledgeCutover, cutoverView, isPromoted, readCutover, type CutoverView } from "./ops/cutover-record.js";
import { ApplyError, CutOverSeen, DdlSessionError, HistoryMismatchError, PurgedPositionError, ReplicaUnavailable, RestartRequested, WriterLost } from "./errors.js";

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
  /** builds the replica's binlog stream (main.ts); default: a BinlogReader of its own */
  openStream?: OpenStream;
}

export interface Backoff {
  sleep: (ms: number) => Promise<void>;
  base: number;
  cap: number;
}

const defaultBackoff: Backoff = { sleep: (ms) => new Promise((r) => setTimeout(r, ms)), base: 500, cap: 10_000 };

const MULTI_QUERY_BYTES = 4 << 20;
/** DATASYNC_TRACE_BATCHES=1: one stderr line per target transaction (read once: #enqueue runs per source transaction) */
const TRACE = !!process.env.DATASYNC_TRACE_BATCHES;
/** test seam: a pause between taking a batch from the queue and applying it (a replica that lags) */
const TEST_APPLY_DELAY_MS = Number(process.env.DATASYNC_TEST_APPLY_DELAY_MS ?? 0);
/** longer than any lock wait (innodb_lock_wait_timeout defaults to 50 s) */
const APPLY_TIMEOUT_MS = 300_000;

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
  #inflight: Txn[] = [];
  /** the next batch, taken and being built while the current one executes (pipelined streaming only) */
  #ahead: { batch: Txn[]; built: Promise<BuiltBatch> } | null = null;
  #wake: (() => void) | null = null;
  #stopping = false;
  #done: Promise<void> | null = null;
  #schema = new SchemaCache(() => this.#conn!);
  /** the replica's max_allowed_packet, read per session */
  #maxPacket = 4 << 20;
  /** collation ids and the SET statements that run a DDL in its source session */
  #ddlSession: DdlSession | null = null;
  #quarantine = new Set<string>();
  #appliedPos: Position | null = null;
  #checkpointPos: Position | null = null;
  #lastCheckpointAt = 0;
  #lag = new LagClock();
  #appliedTxns = 0;
  #appliedRows = 0;
  #lastError: string | null = null;
  #cpState: "streaming" | "snapshot" = "streaming";
  #copier: Copier | null = null;
  #copierDone: Promise<void> | null = null;
  /** the snapshot's chunk slots and the stream's limit (snapshot/watermarks.ts) */
  readonly #marks: Watermarks;
  /** keys deleted by the stream while their table is being copied (a chunk must not resurrect them) */
  #tombstones = new Map<string, Set<string>>();
  /** the position after the last DDL the reader handed over (reader-side table metadata waits until it is applied) */
  #lastDdlPos: Position | null = null;
  /** prepared XA transactions read by the last reader, handed to the next one (reader.ts) */
  #xaParked: ReadonlyMap<string, XaParked> | undefined;
  #snapshotTables = new Set<string>();
  /**
   * Tables created on the replica from a definition the snapshot read at a source position after the stream's
   * start (a table seeded alone while the others stream): up to that position, the stream skips their DDL and
   * rows, which the definition and the copy already hold. Entries leave once the applier has passed them.
   */
  #defPos = new Map<string, { file: string; pos: number }>();
  /** tables waiting for their copy to start: the stream skips them (the copy will read their current rows) */
  #pendingTables = new Set<string>();
  /** tables in a foreign-key cycle or self-reference, or referencing a table outside the copy, while copied */
  #relaxedTables = new Set<string>();
  #lastProgressLog = 0;
  /** since when the reader has been behind the source's end while able to receive (stall detection) */
  #behindSince: number | null = null;
  /** the reader waits for the applier (a table map decoded with the replica's schema after a DDL) */
  #readerWaits = false;
  #attempt = 0;
  #copierFinished = false;
  #lastControlPoll = 0;
  /** a DDL-with-rows transaction whose DDL already took effect: apply only its rows when it is re-read */
  #skipDdlAt: Position | null = null;
  #cutover: CutoverView | null = null;
  #gate: WriterGate | null;
  /** set when the writer lock was lost during a session: the session's connections are already destroyed */
  #fenced: string | null = null;
  /** the checkpoint's compare-and-set version as this session read or last wrote it (null: no row) */
  #cpSeq: number | null = null;

  constructor(cfg: Config, index: number, src: SourceContext, log: Logger, metrics: Metrics, backoff: Backoff = defaultBackoff) {
    this.#cfg = cfg;
    this.#index = index;
    this.name = cfg.replicas[index].name;
    this.#src = src;
    this.#log = log.child({ component: "replica", replica: this.name });
    this.#m = metrics;
    this.#backoff = backoff;
    this.#queue = new TxnQueue<Txn>(cfg.apply);
    this.#marks = new Watermarks({
      applied: () => this.#appliedPos,
      taken: () => this.#queue.takenPos,
      applying: () => this.#inflight.length > 0,
      next: () => this.#queue.peek(),
      readerAt: () => this.#reader?.lastRead ?? null,
      wake: () => this.#wake?.(),
    });
    this.#labels = { group: cfg.group, replica: this.name };
    this.#m.up.set(this.#labels, 0);
    this.#m.lag.set(this.#labels, 0);
    this.#m.appliedRows.inc(this.#labels, 0);
    this.#m.appliedTxns.inc(this.#labels, 0);
    this.#m.snapshotRows.inc(this.#labels, 0);
    this.#gate = src.writerGate?.(index) ?? null;
    this.#gate?.onLost((reason) => this.#fence(reason));
  }

  /** The writer lock is lost: no statement of this session may reach the replica any more. */
  #fence(reason: string): void {
    this.#fenced = reason;
    sever(this.#conn, reason);
    for (const c of this.#sides) sever(c, reason);
    this.#copier?.stop();
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
    this.#copier?.stop();
    const done = this.#done ?? Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
    clearTimeout(timer);
    if (timedOut) {
      this.#log.warn({ graceMs }, "in-flight work did not finish in time: closing the connections (the replica rolls back the open transaction)");
      this.#conn?.destroy();
      for (const c of this.#sides) c.destroy();
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
          const reason = this.#fenced ?? `the checkpoint moved under this agent (compare-and-set from ${this.#checkpointPos ? fmtPos(this.#checkpointPos) : "no checkpoint"} failed): another agent writes this replica`;
          if (this.#fenced === null) this.#gate?.lost(reason);
          this.#fenced = null;
          this.#m.errors.inc({ ...this.#labels, kind: "writer-lost" });
          this.#setState("down", reason);
          this.#log.warn({ position: this.#checkpointPos }, `stopped applying (writer lock lost; the open transaction is rolled back): ${reason}`);
          if (!this.#gate) await this.#sleepUnlessStopped(1000);
          continue;
        }
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
    this.#copier?.stop();
    this.#marks.clear(new Error("replica session ended"));
    this.#wake?.();
    await this.#copierDone?.catch(() => undefined);
    this.#copier = null;
    this.#copierDone = null;
    this.#tombstones.clear();
    await this.#closeSides();
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
    this.#inflight = [];
    this.#ahead = null;
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
    await this.#gate?.adopt(conn);
    const report = await preflightReplica(this.#cfg, this.#index, this.#src.facts);
    if (report.failures.length) throw new ReplicaUnavailable("preflight", report.failures.map((f) => f.message).join("; "));
    // the largest statement the replica takes (a bigger one makes it drop the connection)
    const [[mp]] = await conn.query<any[]>("SELECT @@max_allowed_packet AS p");
    this.#maxPacket = Number(mp.p) || this.#maxPacket;
    await conn.query("SET SESSION transaction_isolation = 'READ-COMMITTED'").catch(() => conn.query("SET SESSION tx_isolation = 'READ-COMMITTED'"));
    await ensureBookkeeping(conn);
    await this.#checkCutover(conn);
    const cp = await readCheckpoint(conn, this.#cfg.group);
    this.#cpSeq = cp ? cp.seq : null;
    let start = await this.#planSnapshot(conn, cp);
    if (cp && cp.state !== "resnapshot" && !sameSourceId(cp.sourceId, this.#src.sourceId)) {
      // a failover or the way back: resume only where the new source's history provably holds the checkpoint
      start = await this.#proveOnNewSource(cp.sourceId, start);
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
    this.#quarantine = await loadQuarantine(conn, this.#cfg.group);
    this.#schema.clear();
    // the tables' metadata in two queries now, rather than two per table when a table is first touched
    await this.#schema.prewarm(this.#cfg.databases).catch((e) => this.#log.debug({ err: e?.message }, "schema prewarm failed; tables load when first touched"));
    this.#checkpointPos = start;
    this.#appliedPos = start;
    this.#queue.clear(start);
    this.#lastCheckpointAt = Date.now();

    await this.#checkSource(cp && sameSourceId(cp.sourceId, this.#src.sourceId) ? start : null);
    const srcCfg = this.#cfg.source;
    const reader = (this.#src.openStream ?? ((o) => new BinlogReader(o)))({
      connection: connectionOptions(srcCfg, "source") as any,
      serverId: this.#src.serverIdBase + this.#index,
      flavor: this.#src.facts.version.flavor,
      start,
      xaParked: this.#xaParked,
      databases: this.#cfg.databases,
      inScope: (db, t) => this.#src.inScope(db, t) && !this.#quarantine.has(`${db}.${t}`),
      onTxn: (t) => this.#enqueue(t),
      // a source transaction larger than a target transaction's share of the budget arrives in pieces,
      // applied as they come into one open target transaction (#applyStreamed); a piece is at most a
      // quarter of the queue, so the reader reads the next pieces while the applier writes one
      streamBytes: Math.min(this.#cfg.apply.maxBytes, Math.floor(this.#cfg.apply.queueBytes / 4)),
      canStream: () => this.#cpState === "streaming" && this.#marks.pending === 0 && this.#snapshotTables.size === 0 && this.#pendingTables.size === 0,
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
          while (this.#conn === c0 && c0 && this.#lastDdlPos && this.#appliedPos && comparePos(this.#appliedPos, this.#lastDdlPos) < 0) {
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
    this.#log.info({ position: start, snapshot: this.#cpState === "snapshot" }, "streaming");
    if (this.#cpState === "snapshot") await this.#startCopier(conn);
    await this.#applyLoop();
  }

  async #proveOnNewSource(checkpointSource: string, pos: Position): Promise<Position> {
    const src = await connect(this.#cfg.source, "source");
    try {
      const proof = await proveHistory(src, this.#src.facts.version.flavor, pos);
      if (!proof.ok) throw new HistoryMismatchError(pos, checkpointSource, this.#src.sourceId, proof.reason);
      this.#log.info({ checkpointSource, source: this.#src.sourceId, position: pos, start: proof.start }, `the checkpoint was written for another source server; resuming: ${proof.how}`);
      return proof.start;
    } finally {
      await src.end().catch(() => undefined);
    }
  }

  /**
   * The source's binlog rules again, at every reader (re)connect: a setting made with SET GLOBAL is lost
   * at a source restart (binlog_row_metadata=FULL most often), and events written without it cannot be
   * decoded safely. The replica waits (down, retried with backoff) naming the setting and the fix.
   */
  async #checkSource(resume: Position | null): Promise<void> {
    let c: Conn;
    try {
      c = await connect(this.#cfg.source, "source");
    } catch (err) {
      throw new ReplicaUnavailable("source", describeConnError(err, "source", this.#cfg.source), err);
    }
    try {
      const failures = checkBinlogSettings(`source (${this.#cfg.source.host}:${this.#cfg.source.port})`, await readVariables(c), this.#src.facts.version.flavor);
      if (failures.length) throw new ReplicaUnavailable("source-settings", `the source's binlog settings changed since the agent started: ${failures.map((f) => f.message).join(" ")}`);
      if (resume) await this.#checkHistory(c, resume);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /**
   * The resume point must lie in the source's binlog history. A RESET MASTER (RESET BINARY LOGS AND GTIDS)
   * starts the history again: the checkpoint's file may exist again but be shorter than its position,
   * and its GTIDs are no longer executed; a reader started there would wait for positions that never
   * come (or the source refuses it, again and again). That is a replica that needs a new snapshot.
   */
  async #checkHistory(c: Conn, resume: Position): Promise<void> {
    const [logs] = await c.query<any[]>("SHOW BINARY LOGS");
    const file = logs.find((r) => String(r.Log_name) === resume.file);
    if (file && Number(file.File_size) < resume.pos) {
      throw new PurgedPositionError(resume, `binlog file ${resume.file} is ${file.File_size} bytes long, shorter than the checkpoint's position ${resume.pos}`, true);
    }
    if (!resume.gtid) return;
    if (this.#src.facts.version.flavor === "mysql") {
      const [[r]] = await c.query<any[]>("SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed) AS ok, @@GLOBAL.gtid_executed AS executed", [resume.gtid]);
      if (!Number(r.ok)) throw new PurgedPositionError(resume, `the source's executed GTIDs (${String(r.executed).replace(/\s/g, "") || "none"}) do not contain the checkpoint's`, true);
      return;
    }
    const [[r]] = await c.query<any[]>("SELECT @@GLOBAL.gtid_binlog_pos AS pos");
    const have = new Map<string, bigint>();
    for (const g of String(r.pos ?? "").split(",").filter(Boolean)) {
      const [d, , n] = g.trim().split("-");
      have.set(d, BigInt(n));
    }
    for (const g of resume.gtid.split(",").filter(Boolean)) {
      const [d, , n] = g.trim().split("-");
      const h = have.get(d);
      if (h !== undefined && BigInt(n) > h) {
        throw new PurgedPositionError(resume, `the source's binlog ends at GTID ${String(r.pos)}, before the checkpoint's ${g.trim()} in domain ${d}`, true);
      }
    }
  }

  /** the checkpoint statement, with the replica's mode (snapshot or streaming) */
  #cp(pos: Position, ts: number, txns: number, rows: number, pending: DdlPending | null = null): string {
    // compare-and-set from the version this session read or last wrote (every failure ends the session,
    // and the next one reads it again, so counting on here is exact)
    const expect = this.#cpSeq;
    this.#cpSeq = (expect ?? 0) + 1;
    return checkpointSql(this.#cfg.group, this.#src.sourceId, this.#src.facts.version.flavor, pos, ts, txns, rows, pending, this.#cpState, expect);
  }

  // ---------------------------------------------------------------- queue

  #enqueue(t: Txn): boolean {
    if (TRACE && (this.#appliedTxns + this.#queue.length) % 1000 === 0) process.stderr.write(`enqueue at=${Date.now() % 100000} queued=${this.#queue.length} applied=${this.#appliedTxns}\n`);
    if (t.ddl) this.#lastDdlPos = t.pos;
    const more = this.#queue.push(t);
    this.#wake?.();
    return more;
  }

  #release(batch: Txn[]): void {
    this.#queue.release(batch);
    if (this.#reader?.paused && this.#queue.canResume()) this.#reader.resume();
  }

  // ---------------------------------------------------------------- apply

  async #applyLoop(): Promise<void> {
    const hb = Math.max(100, this.#cfg.heartbeatSeconds * 1000);
    while (!this.#stopping) {
      if (this.#fenced !== null) throw new WriterLost(this.#fenced);
      if (this.#readerError) throw this.#readerError;
      const c = this.#marks.takeReady();
      if (c) {
        try {
          await this.#writeChunk(c.chunk);
          c.resolve();
        } catch (err: any) {
          c.reject(err);
          if (isTransient(err)) throw err;
        }
      }
      this.#periodic();
      this.#checkStall();
      if (this.#copierFinished && this.#marks.pending === 0 && this.#cpState === "snapshot") {
        // every table is copied (or was dropped meanwhile): the replica is consistent from here on
        this.#cpState = "streaming";
        await this.#conn!.query(`UPDATE ${SCHEMA}.checkpoints SET state = 'streaming' WHERE group_name = ?`, [this.#cfg.group]);
        this.#log.info("snapshot complete: the replica is consistent with the source");
      }
      if (Date.now() - this.#lastControlPoll > 5000) await this.#controlPoll();
      const ahead = this.#ahead;
      this.#ahead = null;
      if (!ahead && this.#queue.length === 0) {
        if (this.#marks.hasReady()) continue;
        // a chunk waiting for its watermark is rechecked soon
        const wait = this.#marks.pending > 0 ? Math.min(hb, 200) : hb;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => (timer = setTimeout(r, wait)))]);
        clearTimeout(timer);
        this.#wake = null;
        if (this.#queue.length === 0) {
          this.#checkStall();
          await this.#heartbeat();
        }
        continue;
      }
      const batch = ahead ? ahead.batch : this.#queue.take(this.#marks.limit());
      if (batch.length === 0) {
        // the next transaction is past a chunk's watermark: wait for the chunk
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => (timer = setTimeout(r, 200)))]);
        clearTimeout(timer);
        continue;
      }
      if (batch[0].stream) {
        await this.#applyStreamed(batch[0]);
        continue;
      }
      this.#inflight = batch;
      if (TEST_APPLY_DELAY_MS > 0) await new Promise((r) => setTimeout(r, TEST_APPLY_DELAY_MS));
      try {
        if (batch.length === 1 && (batch[0].ddl || batch[0].statementDml)) await this.#applySpecial(batch[0]);
        else {
          const built = await (ahead ? ahead.built : this.#buildRows(batch));
          // the batch's statements are on their way to the replica: build the next batch meanwhile
          const running = this.#commitRows(built);
          this.#prepareAhead();
          await running;
        }
      } catch (err: any) {
        if (err instanceof ApplyError || err instanceof RestartRequested || isWriterLost(err)) throw err;
        if (isTransient(err)) throw err;
        throw new ApplyError(`applying source transactions up to ${fmtPos(batch[batch.length - 1].pos)} failed: ${err?.message ?? err}`, { sqlError: err?.message, cause: err });
      } finally {
        this.#inflight = [];
        this.#release(batch);
        if (this.#defPos.size) this.#pruneDefPos();
      }
    }
  }

  /**
   * A binlog connection can stall silently (half-open TCP, a hung proxy): the source's end moved past what
   * the reader has seen, yet no event arrived for a while. Then the session restarts from the checkpoint.
   */
  #checkStall(): void {
    const r = this.#reader;
    const end = this.#src.end();
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

  /** Moves the checkpoint when only out-of-scope transactions went by (an idle or filtered-out source). */
  async #heartbeat(): Promise<void> {
    if (!this.#conn || !this.#appliedPos || !this.#checkpointPos) return;
    if (comparePos(this.#appliedPos, this.#checkpointPos) > 0 || (this.#appliedPos.gtid ?? "") !== (this.#checkpointPos.gtid ?? "")) {
      await this.#conn.query(this.#cp(this.#appliedPos, 0, 0, 0));
      this.#checkpointPos = this.#appliedPos;
      this.#lastCheckpointAt = Date.now();
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
  #prepareAhead(): void {
    if (this.#stopping || this.#ahead || this.#cpState !== "streaming" || this.#marks.pending > 0 || this.#snapshotTables.size > 0 || this.#pendingTables.size > 0) return;
    const next = this.#queue.peek();
    if (!next || appliedAlone(next)) return;
    // only when a worthwhile batch is waiting: otherwise the next batch is better taken after this one commits
    if (!this.#reader?.paused && !this.#queue.worthBuildingAhead()) return;
    const batch = this.#queue.take(null);
    if (batch.length === 0) return;
    if (batch.some((t) => t.ddl || t.statementDml)) throw new Error("internal: a DDL batch was built ahead");
    const built = this.#buildRows(batch);
    built.catch(() => undefined); // reported when its turn comes
    this.#ahead = { batch, built };
  }

  async #applyRows(batch: Txn[]): Promise<void> {
    await this.#commitRows(await this.#buildRows(batch));
  }

  async #buildRows(batch: Txn[]): Promise<BuiltBatch> {
    const b = new StatementBuilder();
    let txns = 0;
    for (const t of batch) {
      if (t.changes.length === 0) continue;
      txns++;
      // the error context is built only when an error needs it (this runs per source transaction)
      const where = () => `replica ${this.name}, source position ${fmtPos(t.pos)}`;
      for (const ch of t.changes) {
        if (ch.savepoint !== undefined) {
          b.marker(ch);
          continue;
        }
        const name = `${ch.db}.${ch.table}`;
        if (this.#quarantine.size && this.#quarantine.has(name)) continue;
        if (this.#pendingTables.size && this.#pendingTables.has(name)) continue;
        if (this.#defPos.size && this.#beforeDefinition(name, t.pos)) continue;
        const meta = this.#schema.peek(ch.db, ch.table) ?? (await this.#schema.get(ch.db, ch.table));
        if (!meta) {
          throw new ApplyError(
            `at source position ${fmtPos(t.pos)}: table \`${ch.db}\`.\`${ch.table}\` does not exist on replica ${this.name}; the replica diverged from the source. Create it or resnapshot the replica (datasync resnapshot --replica ${this.name}).`,
            { table: name },
          );
        }
        if (this.#snapshotTables.size && this.#snapshotTables.has(name) && ch.op !== "insert") this.#tombstone(meta, ch);
        b.add(ch, meta, where);
      }
    }
    const stmts = b.finish();
    if (this.#relaxedTables.size) for (const st of stmts) if (this.#relaxedTables.has(st.table)) st.relaxFk = true;
    return { batch, stmts, txns, rows: b.rows };
  }

  /** Runs a built batch as one target transaction with its checkpoint. Sends its first query before its first await. */
  async #commitRows(built: BuiltBatch): Promise<void> {
    const { batch, stmts, txns } = built;
    const conn = this.#conn!;
    const last = batch[batch.length - 1];
    const b = { rows: built.rows };
    if (stmts.length === 0) {
      // Nothing in scope: advance in memory; the heartbeat persists the position now and then.
      this.#appliedPos = last.pos;
      if (Date.now() - this.#lastCheckpointAt >= this.#cfg.heartbeatSeconds * 1000) await this.#heartbeat();
      return;
    }
    const cp = this.#cp(last.pos, last.ts, txns, b.rows);
    const hasFallbacks = stmts.some((s) => s.fallback);
    const t0 = Date.now();
    await this.#runTransaction(conn, stmts, cp, hasFallbacks, batch);
    if (TRACE) process.stderr.write(`at=${Date.now() % 100000} batch txns=${batch.length} rows=${b.rows} stmts=${stmts.length} ms=${Date.now() - t0} queued=${this.#queue.length}\n`);
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
   * A source transaction too large to hold (the reader hands it over in pieces, Txn.stream): one target
   * transaction that stays open while its pieces arrive, each applied and released as it comes (a full
   * queue pauses the reader, so memory stays within the budget whatever the transaction's size), and that
   * commits with the checkpoint after the last piece. A crash or any error before that rolls the whole
   * target transaction back and the session re-reads the source transaction from its start (exactly once).
   * Statements go one per query so an UPDATE that matched no row takes its upsert fallback at once (there
   * is no replay from the start: earlier pieces are gone) and a failing statement is named exactly.
   */
  async #applyStreamed(first: Txn): Promise<void> {
    const conn = this.#conn!;
    // the lag counts from the transaction's start: a stand-in that holds no rows
    this.#inflight = [{ ...first, changes: [] }];
    let part: Txn | undefined = first;
    let rows = 0;
    let pieces = 0;
    const t0 = Date.now();
    /** time spent waiting for the reader's next piece (the rest is the replica's) */
    let waited = 0;
    let open = false;
    try {
      if (first.stream === "abort") return;
      await conn.query("START TRANSACTION");
      open = true;
      for (;;) {
        const p: Txn = part!;
        part = undefined;
        if (p.stream === "abort") {
          this.#queue.release([p]);
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
        if (p.statementDml) this.#refuseStatementDml(p);
        const built = await this.#buildRows([{ ...p, statementDml: undefined }]);
        // the piece's rows are no longer needed once its SQL is built
        p.changes = [];
        await this.#runPiece(conn, built.stmts, p);
        rows += built.rows;
        pieces++;
        this.#release([p]);
        if (TRACE) process.stderr.write(`at=${Date.now() % 100000} piece ${pieces} rows=${built.rows} stmts=${built.stmts.length} queued=${this.#queue.length}\n`);
        if (p.stream === "last") {
          await conn.query({ sql: `${this.#cp(p.pos, p.ts, 1, rows)};\nCOMMIT`, timeout: APPLY_TIMEOUT_MS });
          open = false;
          this.#appliedPos = p.pos;
          this.#checkpointPos = p.pos;
          this.#lastCheckpointAt = Date.now();
          this.#appliedTxns++;
          this.#appliedRows += rows;
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
          if (this.#stopping) throw new RestartRequested();
          if (this.#fenced !== null) throw new WriterLost(this.#fenced);
          if (this.#readerError) throw this.#readerError;
          // a binlog connection that stalls mid-transaction must not hold the open target transaction forever
          this.#checkStall();
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([new Promise<void>((r) => (this.#wake = r)), new Promise((r) => (timer = setTimeout(r, 200)))]);
          clearTimeout(timer);
          this.#wake = null;
        }
        waited += Date.now() - w0;
        if (this.#stopping) throw new RestartRequested();
        const next = this.#queue.take(null);
        if (next.length !== 1 || !next[0].stream) throw new Error(`internal: a piece of a large source transaction was expected at ${fmtPos(next[0]?.pos ?? p.pos)}`);
        part = next[0];
      }
    } catch (err) {
      if (open) await conn.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      // (a piece that failed is not released: the session ends and the queue is reset)
      if (first.stream === "abort") this.#queue.release([first]);
      this.#inflight = [];
    }
  }

  /** A piece's statements inside the open target transaction, one query each (see #applyStreamed). */
  async #runPiece(conn: Conn, stmts: Statement[], p: Txn): Promise<void> {
    const limit = this.#statementLimit();
    for (const s of stmts) {
      if (s.sql.length * 3 > limit && Buffer.byteLength(s.sql) > limit) throw this.#packetError(s.table, Buffer.byteLength(s.sql), "a row");
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
  async #runTransaction(conn: Conn, stmts: Statement[], checkpoint: string, checkMatches: boolean, batch: Txn[]): Promise<void> {
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
    const limit = this.#statementLimit();
    for (let i = 0; i < stmts.length; i++) {
      const q = stmts[i].sql;
      if (q.length * 3 > limit && Buffer.byteLength(q) > limit) throw this.#packetError(stmts[i].table, Buffer.byteLength(q), "a row");
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

  async #careful(conn: Conn, stmts: Statement[], checkpoint: string, batch?: Txn[], original?: any): Promise<void> {
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
  #refuseStatementDml(t: Txn): void {
    if (!t.statementDml) return;
    const target = statementTarget(t.statementDml.sql, t.statementDml.schema);
    if (this.#cfg.databases.includes(target.db) && (!target.table || this.#src.inScope(target.db, target.table))) {
      throw new ApplyError(
        `replica ${this.name} stopped at source position ${fmtPos(t.pos)}: a DML statement in synced schema \`${target.db}\` was logged as a statement, not as rows (a session switched binlog_format to STATEMENT or MIXED): ${scrub(t.statementDml.sql).slice(0, 300)}. ` +
          "Its effect cannot be applied exactly. Keep binlog_format=ROW for every session writing synced schemas, then resnapshot the replica (datasync resnapshot).",
        { table: target.table ? `${target.db}.${target.table}` : target.db },
      );
    }
  }

  async #applySpecial(t: Txn): Promise<void> {
    const conn = this.#conn!;
    const cfg = this.#cfg;
    const advance = async (extra: string[] = [], count = 0) => {
      await conn.query(["START TRANSACTION", ...extra, this.#cp(t.pos, t.ts, count, 0), "COMMIT"].join(";\n"));
      this.#appliedPos = t.pos;
      this.#checkpointPos = t.pos;
      this.#lastCheckpointAt = Date.now();
    };
    if (t.statementDml) {
      this.#refuseStatementDml(t);
      if (t.changes.length === 0) return advance();
    }
    if (!t.ddl) return this.#applyRows([{ ...t, statementDml: undefined }]);
    // the statement as the source client wrote it (its character set) and the session it ran in
    this.#ddlSession ??= new DdlSession(this.#src.facts.version.flavor);
    const ctx = ddlContext(t.ddl.session, t.ddl.ts);
    let sql = t.ddl.sql;
    let undecodable: Error | null = null;
    try {
      sql = await this.#ddlSession.text(conn, t.ddl.raw, ctx, t.ddl.sql);
    } catch (e) {
      if (!(e instanceof DdlSessionError)) throw e;
      undecodable = e;
    }
    const plan: DdlPlan = planDdl(sql, t.ddl.schema, { databases: new Set(cfg.databases), inScope: this.#src.inScope }, lexModeOf(ctx));
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
      return advance([heldDdlSql(cfg.group, t.pos, t.ddl.schema, sql)]);
    }
    // apply
    const key = (o: { db: string; name: string }) => `${o.db}.${o.name}`;
    const tables = plan.objects.filter((o) => o.type === "table");
    if (this.#defPos.size && tables.length > 0 && tables.every((o) => this.#beforeDefinition(key(o), t.pos))) {
      // the snapshot created these tables from definitions read after this statement: it is in them already
      // (and its rows, if any, are in their copy)
      this.#log.info({ position: t.pos, objects: plan.objects }, "DDL not applied: the snapshot read these tables' definitions after it");
      return advance();
    }
    const dropsQuarantined = (plan.drops ?? []).filter((o) => this.#quarantine.has(key(o)));
    if (tables.length > 0 && tables.every((o) => this.#quarantine.has(key(o)))) {
      const extra = dropsQuarantined.map((o) => unquarantineSql(cfg.group, o.db, o.name));
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
        return this.#applyRows([rowsOnly]);
      }
      const fp = await fingerprint(conn, plan.objects);
      await conn.query(this.#cp(this.#checkpointPos!, 0, 0, 0, { pos: t.pos, fingerprint: fp, sql, schema: t.ddl.schema, withRows: true, context: ctx }));
      await this.#runDdl(conn, plan, t.ddl.schema, ctx);
      faultPoint("ddl-ran");
      const keyless = await this.#keylessCreated(conn, plan, t.pos);
      if (keyless.length) return advance(keyless);
      return this.#applyRows([rowsOnly]);
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
    return [quarantineSql(this.#cfg.group, c.db, c.table, "created without a primary key while streaming")];
  }

  /** Marks the DDL pending (with a fingerprint of what it touches), runs it, then moves the checkpoint past it. */
  async #executeDdl(conn: Conn, pos: Position, sql: string, schema: string, plan: Extract<DdlPlan, { kind: "apply" }>, ctx: DdlContext): Promise<void> {
    const fp = await fingerprint(conn, plan.objects);
    const pending: DdlPending = { pos, fingerprint: fp, sql, schema, context: ctx };
    await conn.query(this.#cp(this.#checkpointPos!, 0, 0, 0, pending));
    faultPoint("ddl-marked");
    await this.#runDdl(conn, plan, schema, ctx);
    faultPoint("ddl-ran");
    await this.#finishDdl(conn, pos, plan);
  }

  async #runDdl(conn: Conn, plan: Extract<DdlPlan, { kind: "apply" }>, schema: string, ctx?: DdlContext): Promise<void> {
    try {
      if (schema && this.#cfg.databases.includes(schema)) {
        const [rows] = await conn.query<any[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [schema]);
        if (rows.length) await conn.query(`USE ${quoteId(schema)}`);
      }
      // the source statement's session: sql_mode, timestamp, time zone, character sets, checks
      this.#ddlSession ??= new DdlSession(this.#src.facts.version.flavor);
      const session = await this.#ddlSession.enter(conn, ctx);
      // DDL runs with foreign key checks off: the source already accepted it in this order.
      await conn.query("SET SESSION foreign_key_checks = 0");
      try {
        for (const q of session.enter) await conn.query(q);
        await conn.query(plan.sql);
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
    const missing = viewDependencyMissing(err, { databases: new Set(this.#cfg.databases), inScope: this.#src.inScope });
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
    const cfg = this.#cfg;
    const extra: string[] = await this.#keylessCreated(conn, plan, pos);
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
    for (const o of plan.seeds ?? []) {
      // seeded online by the next session (the control poll restarts this one when it sees the request)
      extra.push(
        `INSERT INTO ${SCHEMA}.snapshot (group_name, db, tbl, state) VALUES (${conn.escape(cfg.group)}, ${conn.escape(o.db)}, ${conn.escape(o.name)}, 'requested') ` +
          "ON DUPLICATE KEY UPDATE state = 'requested', last_key = NULL, rows_copied = 0",
      );
      this.#log.info({ table: `${o.db}.${o.name}`, position: pos }, "a table was renamed into the scope: it is seeded with an online snapshot");
    }
    await conn.query(["START TRANSACTION", ...extra, this.#cp(pos, Date.now(), 1, 0), "COMMIT"].join(";\n"));
    this.#appliedPos = pos;
    this.#checkpointPos = pos;
    this.#lastCheckpointAt = Date.now();
    this.#appliedTxns++;
    this.#m.appliedTxns.inc(this.#labels);
    this.#log.info({ position: pos, objects: plan.objects }, "DDL applied");
    if (plan.seeds?.length) {
      // the stream skips them until their copy starts; a new session plans the copy now
      for (const o of plan.seeds) this.#pendingTables.add(`${o.db}.${o.name}`);
      throw new RestartRequested();
    }
  }

  /** A DDL was marked pending when the agent stopped: apply it only if it did not take effect. */
  async #resolvePendingDdl(p: DdlPending, before: Position): Promise<Position> {
    const conn = this.#conn!;
    const plan = planDdl(p.sql, p.schema, { databases: new Set(this.#cfg.databases), inScope: this.#src.inScope }, lexModeOf(p.context));
    if (plan.kind !== "apply") return before;
    const now = await fingerprint(conn, plan.objects);
    if (p.withRows) {
      // its rows were not committed (they carry the checkpoint): re-read the transaction, apply the rows only
      if (now === p.fingerprint) await this.#runDdl(conn, plan, p.schema, p.context);
      this.#skipDdlAt = p.pos;
      return before;
    }
    if (now === p.fingerprint) {
      this.#log.warn({ position: p.pos }, "a DDL was interrupted before it took effect on this replica: applying it now");
      await this.#runDdl(conn, plan, p.schema, p.context);
    } else {
      this.#log.warn({ position: p.pos }, "a DDL was interrupted after it took effect on this replica: not applying it twice");
    }
    this.#checkpointPos = before;
    await this.#finishDdl(conn, p.pos, plan);
    return p.pos;
  }

  // ---------------------------------------------------------------- snapshot

  /**
   * Decides where streaming starts and what must be copied: a replica without a checkpoint (or marked
   * for resnapshot) is seeded whole; tables requested by `datasync resnapshot --tables` or newly brought
   * into scope by the filters are seeded alone while the others keep streaming.
   */
  async #planSnapshot(conn: Conn, cp: Awaited<ReturnType<typeof readCheckpoint>>): Promise<Position> {
    const cfg = this.#cfg;
    const sig = scopeSignature(cfg);
    let start: Position;
    /** tables registered for a copy by this call (their definitions were read on this source) */
    const seededNow = new Set<string>();
    const src = await connect(cfg.source, "source");
    try {
      if (!cp || cp.state === "resnapshot") {
        // the stream starts where the definitions were read: every DDL after it reaches the replica once
        const read = await readDefinitions(src, cfg, {
          list: () => sourceTables(src, cfg, this.#src.inScope),
          position: () => this.#src.currentPosition(),
          wholeScope: true,
          log: this.#log,
          pause: () => testPause("DATASYNC_TEST_SNAPSHOT_DEFS_PAUSE_MS", this.#log),
        });
        start = read.pos;
        const tables = read.tables;
        this.#log.info({ position: start, tables: tables.length, rows: tables.reduce((a, t) => a + t.estimate, 0) }, cp ? "resnapshot requested: seeding the replica again" : "replica has no checkpoint: seeding it with an online snapshot");
        const leftOut = await createReplicaTables(src, conn, cfg, read.defs, { withViews: true, inScope: this.#src.inScope });
        for (const v of leftOut) {
          this.#m.skipped.inc({ ...this.#labels, kind: "view" });
          this.#log.warn(
            { views: v.view },
            `view ${v.view} not created on replica ${this.name}: ${v.reason}. Its rows are unaffected; add that database (databases) or table to the scope, or create the object on the replica and recreate the view there, if the replica needs it.`,
          );
        }
        this.#cpState = "snapshot";
        await conn.query(
          [
            "START TRANSACTION",
            `DELETE FROM ${SCHEMA}.snapshot WHERE group_name = ${conn.escape(cfg.group)}`,
            ...registerTablesSql(cfg.group, tables, start),
            this.#cp(start, Date.now(), 0, 0),
            `UPDATE ${SCHEMA}.checkpoints SET scope = ${conn.escape(sig)} WHERE group_name = ${conn.escape(cfg.group)}`,
            "COMMIT",
          ].join(";\n"),
        );
      } else {
        start = cp.pos;
        if (cp.ddlPending) start = await this.#resolvePendingDdl(cp.ddlPending, cp.pos);
        const requested = (await loadSnapshotTables(conn, cfg.group)).filter((t) => t.state === "requested");
        let fresh: { db: string; table: string; estimate: number }[] = [];
        if (cp.scope && cp.scope !== sig) {
          const before = scopeFromSignature(cp.scope);
          fresh = (await sourceTables(src, cfg, this.#src.inScope)).filter((t) => !before(t.db, t.table));
        }
        const all = await sourceTables(src, cfg, this.#src.inScope);
        const want = [...all.filter((t) => requested.some((r) => r.db === t.db && r.table === t.table)), ...fresh];
        if (want.length) {
          this.#log.info({ tables: want.map((t) => `${t.db}.${t.table}`) }, "seeding tables with an online snapshot (requested, or newly in scope) while the others stream");
          // The stream resumes at the checkpoint, before the position these definitions are read at: what it
          // reads on these tables up to that position is already in them (and in their copy), so it skips it
          // (#defPos), DDL included; after it, everything is applied as usual.
          const names = new Set(want.map((t) => `${t.db}.${t.table}`));
          const read = await readDefinitions(src, cfg, {
            list: async () => (await sourceTables(src, cfg, this.#src.inScope)).filter((t) => names.has(`${t.db}.${t.table}`)),
            position: () => this.#src.currentPosition(),
            wholeScope: false,
            log: this.#log,
            pause: () => testPause("DATASYNC_TEST_SNAPSHOT_DEFS_PAUSE_MS", this.#log),
          });
          await createReplicaTables(src, conn, cfg, read.defs, { withViews: false });
          this.#cpState = "snapshot";
          await conn.query(["START TRANSACTION", ...registerTablesSql(cfg.group, read.tables, read.pos), `UPDATE ${SCHEMA}.checkpoints SET state = 'snapshot' WHERE group_name = ${conn.escape(cfg.group)}`, "COMMIT"].join(";\n"));
          for (const t of read.tables) seededNow.add(`${t.db}.${t.table}`);
        }
        // tables an unfinished snapshot registered that the scope no longer holds (excluded, e.g. to get
        // past a table the copy broke on) are not copied
        const gone = (await loadSnapshotTables(conn, cfg.group)).filter((t) => t.state !== "done" && !this.#src.inScope(t.db, t.table));
        // and requested tables the source does not have (a typo in resnapshot --tables, dropped meanwhile): left
        // 'requested', they would make the control poll restart every session before the copy reached them
        for (const t of await loadSnapshotTables(conn, cfg.group)) {
          if (t.state === "requested" && this.#src.inScope(t.db, t.table)) {
            this.#log.warn({ table: `${t.db}.${t.table}` }, "a new snapshot was requested for a table the source does not have: request dropped");
            gone.push(t);
          }
        }
        if (gone.length) {
          this.#log.info({ tables: gone.map((t) => `${t.db}.${t.table}`) }, "tables left the scope (or do not exist) before their snapshot finished: not copied");
          for (const t of gone) await conn.query(`DELETE FROM ${SCHEMA}.snapshot WHERE group_name = ? AND db = ? AND tbl = ?`, [cfg.group, t.db, t.table]);
        }
        const todo = (await loadSnapshotTables(conn, cfg.group)).filter((t) => t.state !== "done");
        this.#cpState = todo.length ? "snapshot" : "streaming";
        if (cp.state !== this.#cpState || cp.scope !== sig) {
          await conn.query(`UPDATE ${SCHEMA}.checkpoints SET state = ?, scope = ? WHERE group_name = ?`, [this.#cpState, sig, cfg.group]);
        }
      }
      // Tables whose definitions were read after the stream's start: the stream skips what it reads on them up
      // to there. Positions recorded on another source server (before a failover) compare with nothing here.
      const sameSource = !cp || cp.state === "resnapshot" || sameSourceId(cp.sourceId, this.#src.sourceId);
      this.#defPos.clear();
      for (const t of await loadSnapshotTables(conn, cfg.group)) {
        const name = `${t.db}.${t.table}`;
        if (t.def && (seededNow.has(name) || (sameSource && comparePos(t.def, start) > 0))) this.#defPos.set(name, t.def);
      }
    } finally {
      await src.end().catch(() => undefined);
    }
    return start;
  }

  /** Whether the replica's table was created from a definition read at or after `pos` (then what the stream reads there is in it). */
  #beforeDefinition(name: string, pos: Position): boolean {
    const d = this.#defPos.get(name);
    return !!d && comparePos(pos, d) <= 0;
  }

  /** Forgets the definition positions the applier has passed. */
  #pruneDefPos(): void {
    const at = this.#appliedPos;
    if (!at) return;
    for (const [name, d] of this.#defPos) if (comparePos(d, at) <= 0) this.#defPos.delete(name);
  }

  async #startCopier(conn: Conn): Promise<void> {
    const all = await loadSnapshotTables(conn, this.#cfg.group);
    const src = await connect(this.#cfg.source, "source");
    let order: Awaited<ReturnType<typeof copyOrder>>;
    try {
      order = await copyOrder(src, all);
    } finally {
      await src.end().catch(() => undefined);
    }
    const rank = new Map(order.order.map((n, i) => [n, i]));
    const tables = all.filter((t) => t.state !== "done").sort((a, b) => rank.get(`${a.db}.${a.table}`)! - rank.get(`${b.db}.${b.table}`)!);
    this.#snapshotTables = new Set(tables.map((t) => `${t.db}.${t.table}`));
    this.#pendingTables = new Set(tables.filter((t) => t.state === "pending").map((t) => `${t.db}.${t.table}`));
    this.#relaxedTables = new Set(tables.map((t) => `${t.db}.${t.table}`).filter((n) => order.relaxed.has(n)));
    // A pending table has no chunk yet, but in an earlier session its copy may have started and the stream
    // applied changes to it (rows upserted from after-images) before the session ended, first chunk unlanded.
    // This session's stream skips it again until its copy starts, so such rows would stay stale under the
    // chunk's INSERT IGNORE: empty it, its rows all come from the copy and the stream after the copy starts.
    const pending = tables.filter((t) => t.state === "pending").map((t) => `DELETE FROM ${qualified(t.db, t.table)}`);
    if (pending.length) await conn.query(["SET SESSION foreign_key_checks = 0", ...pending, "SET SESSION foreign_key_checks = 1"].join(";\n"));
    const resumed = tables.filter((t) => t.rowsCopied > 0);
    if (resumed.length) this.#log.info({ tables: resumed.map((t) => ({ table: `${t.db}.${t.table}`, rowsCopied: t.rowsCopied })) }, "snapshot resumes where it stopped");
    const copier = new Copier(
      this.#cfg,
      this.#log,
      tables,
      (lo) => this.#marks.reserve(lo),
      (t) => this.#pendingTables.delete(`${t.db}.${t.table}`),
      {
        on: this.#cfg.snapshot.lockingReads,
        onRefused: (e) =>
          this.#log.warn(
            { err: e?.message },
            "the source refused a locking read (SELECT … LOCK IN SHARE MODE); the snapshot continues with plain reads, which can miss a transaction committing at the very moment of a chunk read. Grant LOCK TABLES on the synced databases to the sync user to close that window.",
          ),
      },
    );
    this.#copier = copier;
    this.#copierFinished = false;
    this.#copierDone = copier.run().then(
      () => {
        this.#copierFinished = true;
        this.#wake?.();
      },
      (err) => {
        this.#readerError = err instanceof ApplyError ? err : new ApplyError(`snapshot failed: ${err?.message ?? err}`, { cause: err });
        this.#wake?.();
      },
    );
  }

  #tombstone(meta: import("./tables.js").TableMeta, ch: import("./source/reader.js").RowChange): void {
    const key = `${ch.db}.${ch.table}`;
    let set = this.#tombstones.get(key);
    if (!set) this.#tombstones.set(key, (set = new Set()));
    if (ch.op === "delete") for (const r of ch.rows) set.add(rowKeyId(meta.primaryKey, r));
    else
      ch.rows.forEach((after, i) => {
        const k = rowKeyId(meta.primaryKey, ch.before![i]);
        if (k !== rowKeyId(meta.primaryKey, after)) set!.add(k);
      });
  }

  /** the largest statement (bytes) sent to this replica: its max_allowed_packet less the protocol's headroom */
  #statementLimit(): number {
    return Math.max(64 << 10, this.#maxPacket - 4096);
  }

  /** A row the replica cannot take in one statement: stop this replica, naming the table, the size, the setting and the fix. */
  #packetError(table: string, bytes: number, what: string): ApplyError {
    const need = Math.ceil((bytes + 65536) / (1 << 20));
    return new ApplyError(
      `replica ${this.name}: ${what} of \`${table.replace(".", "`.`")}\` needs a ${Math.ceil(bytes / 1024)} KiB statement (binary values are sent as hex, twice their size), ` +
        `above the replica's max_allowed_packet of ${this.#maxPacket} bytes. Raise max_allowed_packet on the replica to at least ${need}M ` +
        "(SET GLOBAL max_allowed_packet = …, or the server parameter on Azure), then restart the agent.",
      { table },
    );
  }

  /** One chunk, "insert if absent", with the snapshot progress in the same target transaction. */
  async #writeChunk(chunk: Chunk): Promise<void> {
    const conn = this.#conn!;
    if (chunk.orphans) {
      // child rows a cascade removed between the read and the high watermark (not in the binlog on InnoDB-native foreign keys)
      const kept = await keepLiveRows(conn, chunk);
      if (kept.length !== chunk.rows.length) {
        this.#log.info({ table: `${chunk.db}.${chunk.table}`, dropped: chunk.rows.length - kept.length }, "snapshot chunk: rows removed on the source by a cascade after the read are not copied");
        chunk = { ...chunk, rows: kept, prebuilt: undefined };
      }
    }
    const key = `${chunk.db}.${chunk.table}`;
    const tables = this.#copier ? this.#copier.progress().tables : [];
    const othersDone = tables.every((t: any) => t.table === key || t.state === "done");
    const finishing = chunk.last && othersDone;
    let parts: string[] = [];
    let written = 0;
    if (chunk.meta && chunk.rows.length) {
      const tomb = this.#tombstones.get(key);
      // tombstones are checked now, after every stream batch before this point has committed
      let built = tomb && tomb.size ? chunkInsertParts(chunk.meta, chunk.rows, tomb, this.#cfg.snapshot.writers) : (chunk.prebuilt ?? chunkInsertParts(chunk.meta, chunk.rows, undefined, this.#cfg.snapshot.writers));
      // the replica refuses a statement above its max_allowed_packet: smaller statements then
      const limit = this.#statementLimit();
      if (built.sql.some((q) => q.length * 3 > limit && Buffer.byteLength(q) > limit)) {
        built = chunkInsertParts(chunk.meta, chunk.rows, tomb, this.#cfg.snapshot.writers, limit);
        const big = built.sql.find((q) => Buffer.byteLength(q) > limit);
        if (big) throw this.#packetError(`${chunk.db}.${chunk.table}`, Buffer.byteLength(big), "a snapshot row");
      }
      parts = built.sql;
      written = built.written;
    }
    // parts beyond the writers are run one after the other on the writers' connections
    const writers = Math.max(1, this.#cfg.snapshot.writers);
    const lanes: string[][] = Array.from({ length: Math.min(writers, Math.max(1, parts.length)) }, () => []);
    parts.forEach((p, i) => lanes[i % lanes.length].push(p));
    const mainParts = lanes[0] ?? [];
    const stmts: string[] = ["START TRANSACTION", ...mainParts];
    stmts.push(progressSql(this.#cfg.group, chunk, chunk.last ? "done" : "copying", chunk.lastKey, chunk.rows.length));
    if (finishing) stmts.push(`UPDATE ${SCHEMA}.checkpoints SET state = 'streaming' WHERE group_name = ${conn.escape(this.#cfg.group)}`);
    // every chunk is written with foreign key checks off (DESIGN.md): the source's rows may have been
    // loaded with them off (children before parents, orphans), and the copy must hold exactly those rows;
    // on MariaDB likewise CHECK constraints (rows written under check_constraint_checks=OFF)
    const mariadb = this.#src.facts.version.flavor === "mariadb";
    const off = ["SET SESSION foreign_key_checks = 0", ...(mariadb ? ["SET SESSION check_constraint_checks = 0"] : [])];
    const on = ["SET SESSION foreign_key_checks = 1", ...(mariadb ? ["SET SESSION check_constraint_checks = 1"] : [])];
    // The rest of the chunk goes through a second connection at the same time (the replica server can
    // use two cores). No stream batch runs meanwhile, so the tombstone check above still holds. The main
    // transaction (with the progress) commits only once the other parts have committed: a crash before
    // that only means the chunk is copied again "insert if absent", which is harmless; the progress never
    // runs ahead of rows that did not land.
    const sideLanes = lanes.slice(1).filter((l) => l.length > 0);
    const sides = await Promise.all(sideLanes.map((_, i) => this.#sideConnection(i)));
    await conn.query(off.join(";\n"));
    const limit = this.#statementLimit();
    // a lane's statements go as few multi-statement queries as the replica's packet allows
    const runLane = async (c: Conn, qs: string[]) => {
      for (const group of packQueries(qs, limit)) await c.query({ sql: group.join(";\n"), timeout: APPLY_TIMEOUT_MS });
    };
    try {
      await Promise.all([
        runLane(conn, stmts),
        ...sideLanes.map((l, i) => runLane(sides[i], [...off, "START TRANSACTION", ...l, "COMMIT", ...on])),
      ]);
      await conn.query("COMMIT");
    } catch (err: any) {
      await conn.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      await conn.query(on.join(";\n")).catch(() => undefined);
    }
    this.#m.snapshotRows.inc(this.#labels, written);
    if (chunk.last) {
      this.#snapshotTables.delete(key);
      this.#tombstones.delete(key);
      this.#relaxedTables.delete(key);
    }
    if (finishing) {
      this.#cpState = "streaming";
      await this.#closeSides();
      const p = this.#copier!.progress();
      this.#log.info({ rowsCopied: p.rowsCopied, seconds: Math.round((Date.now() - this.#copier!.startedAt) / 100) / 10 }, "snapshot complete: the replica is consistent with the source");
    }
  }

  #sides: Conn[] = [];

  async #sideConnection(i: number): Promise<Conn> {
    if (!this.#sides[i]) {
      const c = await connect(this.#cfg.replicas[this.#index], `replicas[${this.#index}]`, { multipleStatements: true });
      this.#sides[i] = c;
      await this.#gate?.adopt(c);
    }
    return this.#sides[i];
  }

  async #closeSides(): Promise<void> {
    const sides = this.#sides;
    this.#sides = [];
    await Promise.all(sides.map((c) => c.end().catch(() => c.destroy())));
  }

  #periodic(): void {
    const now = Date.now();
    if (this.#copier && this.#cpState === "snapshot" && now - this.#lastProgressLog >= 5000) {
      this.#lastProgressLog = now;
      const p = this.#copier.progress();
      this.#log.info(
        { rowsCopied: p.rowsCopied, rowsEstimate: p.rowsEstimate, rowsPerSecond: p.rate, etaSeconds: p.etaSeconds, tables: p.tables },
        `snapshot ${p.rowsEstimate ? Math.min(100, Math.round((100 * p.rowsCopied) / p.rowsEstimate)) : 0}%`,
      );
    }
  }

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
      return this.#appliedPos ? this.#lag.lag(now, undefined, this.#src.end(), this.#appliedPos) : null;
    }
    const oldest = this.#inflight[0] ?? this.#ahead?.batch[0] ?? this.#queue.peek();
    return this.#lag.lag(now, oldest, this.#src.end(), this.#appliedPos);
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
      position: this.#checkpointPos,
      appliedTransactions: this.#appliedTxns,
      appliedRows: this.#appliedRows,
      queueBytes: this.#queue.heldBytes,
      snapshot: this.#copier ? { ...this.#copier.progress(), done: this.#cpState === "streaming" } : null,
      lastError: this.#lastError,
      quarantined: [...this.#quarantine],
      cutover: this.#cutover,
      writer: this.#gate ? this.#gate.view() : null,
    };
  }
}

interface BuiltBatch {
  batch: Txn[];
  stmts: Statement[];
  /** source transactions with changes */
  txns: number;
  rows: number;
}

/**
 * Fault injection for tests: DATASYNC_FAULT=<point> makes the process die (as a crash would) when it
 * reaches that point. Points: ddl-marked (pending DDL recorded, not run), ddl-ran (run, checkpoint not moved).
 */
/** Test seam: a pause of `env` ms (when set) at a point of the snapshot's start, logged so a test can act in it. */
async function testPause(env: string, log: Logger): Promise<void> {
  const ms = Number(process.env[env] ?? 0);
  if (!(ms > 0)) return;
  log.warn({ seam: env, pauseMs: ms }, "test hook: pausing");
  await new Promise((r) => setTimeout(r, ms));
}

function faultPoint(name: string): void {
  if (process.env.DATASYNC_FAULT === name) {
    process.stderr.write(`datasync: fault injection: crashing at ${name}\n`);
    process.kill(process.pid, "SIGKILL");
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000); // never returns: the signal ends the process
  }
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
