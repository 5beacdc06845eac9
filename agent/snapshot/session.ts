// SnapshotSession owns one replica's online snapshot within a session (agent/README.md "Snapshot"): where the
// stream starts and what must be copied (plan), the copier and its side connections to the replica, the chunk
// slots where chunks meet the stream (watermarks.ts), the keys the stream deleted while a table is copied
// (tombstones), the tables the stream skips (pending copy, definition read after the stream's position), and
// writing each chunk with its progress. The applier asks it narrow questions (blocksStreaming, skips, copying);
// it reaches the replica, the source and the checkpoint through a narrow port (SnapshotPort).
import type { Config } from "../config.js";
import { qualified, type Conn } from "../db.js";
import { SCHEMA, type Checkpoint, type DdlPending } from "../bookkeeping.js";
import { sever } from "../ops/writer-lock.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../ops/metrics.js";
import type { RowChange } from "../source/reader.js";
import { comparePos, type Position } from "../source/positions.js";
import type { TableMeta } from "../tables.js";
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
} from "./snapshot.js";
import { Watermarks, type ReadyChunk, type StreamView } from "./watermarks.js";
import { rowKeyId } from "../keys.js";
import { sameSourceId } from "../source/provenance.js";
import { APPLY_TIMEOUT_MS, packQueries } from "../apply/applier.js";
import { ApplyError } from "../errors.js";

/** Everything the snapshot session reaches outside itself. */
export interface SnapshotPort {
  /** the replica's name (in messages) */
  readonly name: string;
  readonly cfg: Config;
  readonly flavor: "mariadb" | "mysql";
  /** the source's identity (positions recorded on another source compare with nothing) */
  readonly sourceId: string;
  inScope(db: string, table: string): boolean;
  /** the source's current position */
  currentPosition(): Promise<Position>;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly labels: { group: string; replica: string };
  /** the session's replica connection */
  conn(): Conn;
  /** a connection to the source (closed by the caller) */
  connectSource(): Promise<Conn>;
  /** a second connection to the replica (multiple statements) for a chunk's other parts */
  openSide(): Promise<Conn>;
  /** lists a connection in the writer lease before it writes anything */
  adopt(c: Conn): Promise<void>;
  /** the checkpoint statement (a compare-and-set) */
  cp(pos: Position, ts: number, txns: number, rows: number): string;
  /** a DDL marked pending when the agent stopped (apply/ddl-applier.ts) */
  resolvePendingDdl(p: DdlPending, before: Position): Promise<Position>;
  /** the largest statement the replica takes, and the error naming a row above it (apply/applier.ts) */
  statementLimit(): number;
  packetError(table: string, bytes: number, what: string): ApplyError;
  /** the copy failed: the session ends with this error */
  failed(err: Error): void;
  /** what the watermarks read of the stream */
  readonly stream: StreamView;
}

export class SnapshotSession {
  readonly #port: SnapshotPort;
  readonly #cfg: Config;
  readonly #log: Logger;
  readonly #m: Metrics;
  readonly #labels: { group: string; replica: string };
  readonly name: string;
  #cpState: "streaming" | "snapshot" = "streaming";
  #copier: Copier | null = null;
  #copierDone: Promise<void> | null = null;
  #copierFinished = false;
  /** the snapshot's chunk slots and the stream's limit (snapshot/watermarks.ts) */
  readonly #marks: Watermarks;
  /** keys deleted by the stream while their table is being copied (a chunk must not resurrect them) */
  #tombstones = new Map<string, Set<string>>();
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
  #sides: Conn[] = [];

  constructor(port: SnapshotPort) {
    this.#port = port;
    this.#cfg = port.cfg;
    this.#log = port.log;
    this.#m = port.metrics;
    this.#labels = port.labels;
    this.name = port.name;
    this.#marks = new Watermarks(port.stream);
  }

  /** the replica's mode as the checkpoint records it: a snapshot in progress, or streaming */
  get state(): "streaming" | "snapshot" {
    return this.#cpState;
  }

  /**
   * A snapshot in progress (chunk watermarks, pending tables and tombstones depend on what the stream has
   * applied): the applier builds no batch ahead and the reader hands over no large transaction in pieces.
   */
  blocksStreaming(): boolean {
    return this.#cpState !== "streaming" || this.#marks.pending > 0 || this.#snapshotTables.size > 0 || this.#pendingTables.size > 0;
  }

  /** The stream skips this table's change at `pos`: its copy has not started, or its definition was read after `pos`. */
  skips(name: string, pos: Position): boolean {
    if (this.#pendingTables.size && this.#pendingTables.has(name)) return true;
    return this.#defPos.size > 0 && this.beforeDefinition(name, pos);
  }

  /** The table is being copied (its stream deletes and key changes are tombstones). */
  copying(name: string): boolean {
    return this.#snapshotTables.size > 0 && this.#snapshotTables.has(name);
  }

  relaxing(): boolean {
    return this.#relaxedTables.size > 0;
  }

  relaxed(table: string): boolean {
    return this.#relaxedTables.has(table);
  }

  /** The applier moved on: definition positions it passed are forgotten. */
  passed(): void {
    if (this.#defPos.size) this.pruneDefPos();
  }

  /** tables renamed into the scope by a DDL: the stream skips them until the next session starts their copy */
  seedPending(names: string[]): void {
    for (const n of names) this.#pendingTables.add(n);
  }

  /** a chunk whose watermark the stream has reached, to be written now */
  takeReady(): ReadyChunk | undefined {
    return this.#marks.takeReady();
  }

  hasReady(): boolean {
    return this.#marks.hasReady();
  }

  /** chunks being read or waiting for their watermark */
  chunksWaiting(): number {
    return this.#marks.pending;
  }

  /** the position the stream may not pass (a chunk's watermark), null: none */
  streamLimit(): Position | null {
    return this.#marks.limit();
  }

  /** Every table is copied (or was dropped meanwhile): the replica is consistent from here on. */
  async completeIfCopied(conn: Conn): Promise<void> {
    if (this.#copierFinished && this.#marks.pending === 0 && this.#cpState === "snapshot") {
      this.#cpState = "streaming";
      await conn.query(`UPDATE ${SCHEMA}.checkpoints SET state = 'streaming' WHERE group_name = ?`, [this.#cfg.group]);
      this.#log.info("snapshot complete: the replica is consistent with the source");
    }
  }

  /** for status: the copy's progress, null when no copy ran in this session */
  progress(): { done: boolean; rowsCopied: number; rowsEstimate: number; rate: number; etaSeconds: number | null; tables: unknown[] } | null {
    return this.#copier ? { ...this.#copier.progress(), done: this.#cpState === "streaming" } : null;
  }

  /** the writer lock is lost: no side connection may write any more, the copy stops */
  fence(reason: string): void {
    for (const c of this.#sides) sever(c, reason);
    this.#copier?.stop();
  }

  /** stop: the copy stops reading */
  stop(): void {
    this.#copier?.stop();
  }

  /** stop did not finish in time: the side connections are destroyed (the replica rolls their work back) */
  destroySides(): void {
    for (const c of this.#sides) c.destroy();
  }

  /** The session ended: the copy stops, waiting chunks are failed, tombstones and side connections go. */
  async reset(): Promise<void> {
    this.#copier?.stop();
    this.#marks.clear(new Error("replica session ended"));
    this.#port.stream.wake();
    await this.#copierDone?.catch(() => undefined);
    this.#copier = null;
    this.#copierDone = null;
    this.#tombstones.clear();
    await this.#closeSides();
  }

  /**
   * Decides where streaming starts and what must be copied: a replica without a checkpoint (or marked
   * for resnapshot) is seeded whole; tables requested by `datasync resnapshot --tables` or newly brought
   * into scope by the filters are seeded alone while the others keep streaming.
   */
  async plan(conn: Conn, cp: Checkpoint | null): Promise<Position> {
    const cfg = this.#cfg;
    const sig = scopeSignature(cfg);
    let start: Position;
    /** tables registered for a copy by this call (their definitions were read on this source) */
    const seededNow = new Set<string>();
    const src = await this.#port.connectSource();
    try {
      if (!cp || cp.state === "resnapshot") {
        // the stream starts where the definitions were read: every DDL after it reaches the replica once
        const read = await readDefinitions(src, cfg, {
          list: () => sourceTables(src, cfg, this.#port.inScope),
          position: () => this.#port.currentPosition(),
          wholeScope: true,
          log: this.#log,
          pause: () => testPause("DATASYNC_TEST_SNAPSHOT_DEFS_PAUSE_MS", this.#log),
          afterList: () => testPause("DATASYNC_TEST_SNAPSHOT_LIST_PAUSE_MS", this.#log),
        });
        start = read.pos;
        const tables = read.tables;
        this.#log.info({ position: start, tables: tables.length, rows: tables.reduce((a, t) => a + t.estimate, 0) }, cp ? "resnapshot requested: seeding the replica again" : "replica has no checkpoint: seeding it with an online snapshot");
        const leftOut = await createReplicaTables(src, conn, cfg, read.defs, { withViews: true, inScope: this.#port.inScope });
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
            this.#port.cp(start, Date.now(), 0, 0),
            `UPDATE ${SCHEMA}.checkpoints SET scope = ${conn.escape(sig)} WHERE group_name = ${conn.escape(cfg.group)}`,
            "COMMIT",
          ].join(";\n"),
        );
      } else {
        start = cp.pos;
        if (cp.ddlPending) start = await this.#port.resolvePendingDdl(cp.ddlPending, cp.pos);
        const requested = (await loadSnapshotTables(conn, cfg.group)).filter((t) => t.state === "requested");
        let fresh: { db: string; table: string; estimate: number }[] = [];
        if (cp.scope && cp.scope !== sig) {
          const before = scopeFromSignature(cp.scope);
          fresh = (await sourceTables(src, cfg, this.#port.inScope)).filter((t) => !before(t.db, t.table));
        }
        const all = await sourceTables(src, cfg, this.#port.inScope);
        const want = [...all.filter((t) => requested.some((r) => r.db === t.db && r.table === t.table)), ...fresh];
        if (want.length) {
          this.#log.info({ tables: want.map((t) => `${t.db}.${t.table}`) }, "seeding tables with an online snapshot (requested, or newly in scope) while the others stream");
          // The stream resumes at the checkpoint, before the position these definitions are read at: what it
          // reads on these tables up to that position is already in them (and in their copy), so it skips it
          // (#defPos), DDL included; after it, everything is applied as usual.
          const names = new Set(want.map((t) => `${t.db}.${t.table}`));
          const read = await readDefinitions(src, cfg, {
            list: async () => (await sourceTables(src, cfg, this.#port.inScope)).filter((t) => names.has(`${t.db}.${t.table}`)),
            position: () => this.#port.currentPosition(),
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
        const gone = (await loadSnapshotTables(conn, cfg.group)).filter((t) => t.state !== "done" && !this.#port.inScope(t.db, t.table));
        // and requested tables the source does not have (a typo in resnapshot --tables, dropped meanwhile): left
        // 'requested', they would make the control poll restart every session before the copy reached them
        for (const t of await loadSnapshotTables(conn, cfg.group)) {
          if (t.state === "requested" && this.#port.inScope(t.db, t.table)) {
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
      const sameSource = !cp || cp.state === "resnapshot" || sameSourceId(cp.sourceId, this.#port.sourceId);
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
  beforeDefinition(name: string, pos: Position): boolean {
    const d = this.#defPos.get(name);
    return !!d && comparePos(pos, d) <= 0;
  }

  /** Forgets the definition positions the applier has passed. */
  pruneDefPos(): void {
    const at = this.#port.stream.applied();
    if (!at) return;
    for (const [name, d] of this.#defPos) if (comparePos(d, at) <= 0) this.#defPos.delete(name);
  }

  async start(conn: Conn): Promise<void> {
    const all = await loadSnapshotTables(conn, this.#cfg.group);
    const src = await this.#port.connectSource();
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
        this.#port.stream.wake();
      },
      (err) => {
        this.#port.failed(err instanceof ApplyError ? err : new ApplyError(`snapshot failed: ${err?.message ?? err}`, { cause: err }));
      },
    );
  }

  tombstone(meta: TableMeta, ch: RowChange): void {
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

  /** One chunk, "insert if absent", with the snapshot progress in the same target transaction. */
  async writeChunk(chunk: Chunk): Promise<void> {
    const conn = this.#port.conn();
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
      const limit = this.#port.statementLimit();
      if (built.sql.some((q) => q.length * 3 > limit && Buffer.byteLength(q) > limit)) {
        built = chunkInsertParts(chunk.meta, chunk.rows, tomb, this.#cfg.snapshot.writers, limit);
        const big = built.sql.find((q) => Buffer.byteLength(q) > limit);
        if (big) throw this.#port.packetError(`${chunk.db}.${chunk.table}`, Buffer.byteLength(big), "a snapshot row");
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
    const mariadb = this.#port.flavor === "mariadb";
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
    const limit = this.#port.statementLimit();
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

  async #sideConnection(i: number): Promise<Conn> {
    if (!this.#sides[i]) {
      const c = await this.#port.openSide();
      this.#sides[i] = c;
      await this.#port.adopt(c);
    }
    return this.#sides[i];
  }

  async #closeSides(): Promise<void> {
    const sides = this.#sides;
    this.#sides = [];
    await Promise.all(sides.map((c) => c.end().catch(() => c.destroy())));
  }

  logProgress(): void {
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
}

/** Test seam: a pause of `env` ms (when set) at a point of the snapshot's start, logged so a test can act in it. */
async function testPause(env: string, log: Logger): Promise<void> {
  const ms = Number(process.env[env] ?? 0);
  if (!(ms > 0)) return;
  log.warn({ seam: env, pauseMs: ms }, "test hook: pausing");
  await new Promise((r) => setTimeout(r, ms));
}

