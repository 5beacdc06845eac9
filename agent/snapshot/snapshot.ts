// Snapshot owns seeding a replica online while the source keeps writing (see agent/README.md for the
// algorithm): it creates the tables from the source's definitions, reads the source in primary-key
// chunks (one short autocommit SELECT each, no locks, no SUPER/RELOAD), and hands each chunk to the
// replica's applier, which writes it "insert if absent" between stream batches. Streaming runs from the
// position taken before the first chunk, so every change after it arrives through the stream.
import mysql from "mysql2";
import type { Config } from "../config.js";
import { binlogStatus, connect, isTransient, qualified, quoteId, type Conn } from "../db.js";
import { normalizeDdl } from "../apply/ddl.js";
import type { Logger } from "../log.js";
import { makeTableFilter } from "../rules.js";
import { loadTableMeta, type TableMeta } from "../schema.js";
import { escapeValue, keyOf } from "../apply/sqlgen.js";
import { SCHEMA } from "../bookkeeping.js";

export { SNAPSHOT_DDL } from "../bookkeeping.js";

export interface SnapshotTable {
  db: string;
  table: string;
  state: "pending" | "copying" | "done" | "requested";
  lastKey: unknown[] | null;
  rowsCopied: number;
  rowsEstimate: number;
}

export interface Chunk {
  db: string;
  table: string;
  meta: TableMeta;
  rows: unknown[][];
  /** the key of the last row read (the resume cursor) */
  lastKey: unknown[] | null;
  /** no rows after this chunk */
  last: boolean;
  /** the source's binlog end right after the chunk's read: the chunk is written once the stream has applied up to here */
  hi?: { file: string; pos: number };
  /** when the chunk was read */
  readAt?: number;
  /** the chunk's INSERTs prebuilt by the copier (two halves, written in parallel), valid while the table has no tombstones */
  prebuilt?: { sql: string[]; written: number };
}

/**
 * Build a chunk's "insert if absent" as `parts` statements over consecutive slices of its rows; with
 * `maxBytes`, a slice whose statement is larger is split further (the replica's max_allowed_packet).
 */
export function chunkInsertParts(meta: TableMeta, rows: unknown[][], skip: Set<string> | undefined, parts: number, maxBytes = Infinity): { sql: string[]; written: number } {
  const out: string[] = [];
  let written = 0;
  const size = Math.max(1, Math.ceil(rows.length / parts));
  const add = (slice: unknown[][]) => {
    const { sql, written: w } = chunkInsertSql(meta, slice, skip);
    if (!sql) return;
    if (slice.length > 1 && Buffer.byteLength(sql) > maxBytes) {
      const half = Math.ceil(slice.length / 2);
      add(slice.slice(0, half));
      add(slice.slice(half));
      return;
    }
    out.push(sql);
    written += w;
  };
  for (let i = 0; i < rows.length; i += size) add(rows.slice(i, i + size));
  return { sql: out, written };
}

/**
 * A place in the stream reserved for a chunk before it is read: the applier applies no source
 * transaction past `lo` (the end before the read) until `hi` (the end after it) is known, and none past
 * `hi` until the chunk is written. The chunk thus lands exactly at its high watermark (DBLog's rule).
 */
export interface ChunkSlot {
  setHi(hi: { file: string; pos: number } | undefined): void;
  /**
   * Sets the high watermark to `hi` when the stream has not taken any transaction past it yet (then the
   * chunk lands exactly there); false when it has (the read must be retried at a later position).
   */
  tryHi(hi: { file: string; pos: number }): boolean;
  deliver(c: Chunk): Promise<void>;
  cancel(): void;
}

/** The scope signature stored with the checkpoint: a change of filters brings new tables in. */
export function scopeSignature(cfg: Pick<Config, "databases" | "tables">): string {
  return JSON.stringify({ databases: [...cfg.databases].sort(), include: cfg.tables?.include ?? [], exclude: cfg.tables?.exclude ?? [] });
}

export function scopeFromSignature(sig: string): (db: string, t: string) => boolean {
  const s = JSON.parse(sig);
  return makeTableFilter({ databases: s.databases, include: s.include.length ? s.include : undefined, exclude: s.exclude });
}

// JSON with Buffers kept exact
export function encodeKey(k: unknown[] | null): string | null {
  if (!k) return null;
  return JSON.stringify(k.map((v) => (Buffer.isBuffer(v) ? { $hex: v.toString("hex") } : v)));
}

export function decodeKey(s: string | null): unknown[] | null {
  if (!s) return null;
  return (JSON.parse(s) as unknown[]).map((v) => (v && typeof v === "object" && "$hex" in (v as any) ? Buffer.from((v as any).$hex, "hex") : v));
}

export async function loadSnapshotTables(c: Conn, group: string): Promise<SnapshotTable[]> {
  const [rows] = await c.query<any[]>(`SELECT db, tbl, state, last_key, rows_copied, rows_estimate FROM ${SCHEMA}.snapshot WHERE group_name = ? ORDER BY db, tbl`, [group]);
  return rows.map((r) => ({ db: r.db, table: r.tbl, state: r.state, lastKey: decodeKey(r.last_key), rowsCopied: Number(r.rows_copied), rowsEstimate: Number(r.rows_estimate) }));
}

/** Base tables in scope on the source, with their row estimates. */
export async function sourceTables(src: Conn, cfg: Config, inScope: (db: string, t: string) => boolean): Promise<{ db: string; table: string; estimate: number }[]> {
  const [rows] = await src.query<any[]>(
    "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (?) ORDER BY 1, 2",
    [cfg.databases],
  );
  return rows.filter((r) => inScope(r.db, r.t)).map((r) => ({ db: r.db, table: r.t, estimate: Number(r.n ?? 0) }));
}

/**
 * Create the databases and the given tables on the replica from the source's definitions (existing
 * tables of those names are replaced: tables in scope belong to the sync). Views of the synced
 * databases are created too, without DEFINER.
 */
export async function prepareReplicaTables(src: Conn, rep: Conn, cfg: Config, tables: { db: string; table: string }[], withViews: boolean): Promise<void> {
  const dbs = [...new Set([...tables.map((t) => t.db)])];
  for (const db of cfg.databases) {
    const [exists] = await src.query<any[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [db]);
    if (exists.length && !dbs.includes(db)) dbs.push(db);
  }
  await rep.query("SET SESSION foreign_key_checks = 0");
  try {
    for (const db of dbs) {
      const [[d]] = await src.query<any[]>(`SHOW CREATE DATABASE ${quoteId(db)}`);
      const ddl = String(d["Create Database"]).replace(/^CREATE DATABASE\s+/i, "CREATE DATABASE IF NOT EXISTS ").replace(/IF NOT EXISTS\s+\/\*!32312 IF NOT EXISTS\*\/\s*/i, "IF NOT EXISTS ");
      await rep.query(ddl);
    }
    for (const t of tables) await rep.query(`DROP TABLE IF EXISTS ${qualified(t.db, t.table)}`);
    for (const t of tables) {
      const [[r]] = await src.query<any[]>(`SHOW CREATE TABLE ${qualified(t.db, t.table)}`);
      const ddl = String(r["Create Table"]).replace(/^CREATE TABLE\s+`/i, `CREATE TABLE ${quoteId(t.db)}.\``);
      await rep.query(ddl);
    }
    if (withViews) {
      const [views] = await src.query<any[]>("SELECT TABLE_SCHEMA AS db, TABLE_NAME AS v FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN (?)", [cfg.databases]);
      for (const v of views) {
        try {
          const [[r]] = await src.query<any[]>(`SHOW CREATE VIEW ${qualified(v.db, v.v)}`);
          await rep.query(`USE ${quoteId(v.db)}`);
          await rep.query(normalizeDdl(String(r["Create View"])).replace(/^CREATE\s+/i, "CREATE OR REPLACE "));
        } catch {
          /* a view over tables out of scope: not created */
        }
      }
    }
  } finally {
    await rep.query("SET SESSION foreign_key_checks = 1");
  }
}

export interface CopyOrder {
  /** tables in an order where referenced (parent) tables come before the tables that reference them */
  order: string[];
  /** tables that reference themselves, sit in a cycle, or reference a table outside the copy: written with foreign key checks off */
  relaxed: Set<string>;
}

/**
 * Foreign keys decide the copy order: a parent table is complete before any child is copied, so child
 * rows can be written (and streamed) with foreign key checks on, and a child row whose parent was deleted
 * (cascading on the source, which logs no child rows) is refused instead of resurrected.
 */
export async function copyOrder(src: Conn, tables: { db: string; table: string }[]): Promise<CopyOrder> {
  const names = tables.map((t) => `${t.db}.${t.table}`);
  const set = new Set(names);
  const dbs = [...new Set(tables.map((t) => t.db))];
  const deps = new Map<string, Set<string>>(names.map((n) => [n, new Set()]));
  const relaxed = new Set<string>();
  if (dbs.length) {
    const [rows] = await src.query<any[]>(
      "SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS t, UNIQUE_CONSTRAINT_SCHEMA AS pdb, REFERENCED_TABLE_NAME AS pt FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN (?)",
      [dbs],
    );
    for (const r of rows) {
      const child = `${r.db}.${r.t}`;
      const parent = `${r.pdb}.${r.pt}`;
      if (!set.has(child)) continue;
      if (child === parent || !set.has(parent)) relaxed.add(child);
      else deps.get(child)!.add(parent);
    }
  }
  const order: string[] = [];
  const state = new Map<string, number>(); // 1 visiting, 2 done
  const visit = (n: string, stack: string[]) => {
    if (state.get(n) === 2) return;
    if (state.get(n) === 1) {
      for (const x of stack.slice(stack.indexOf(n))) relaxed.add(x);
      return;
    }
    state.set(n, 1);
    for (const p of [...deps.get(n)!].sort()) visit(p, [...stack, n]);
    state.set(n, 2);
    order.push(n);
  };
  for (const n of [...names].sort()) visit(n, []);
  return { order, relaxed };
}

/**
 * MariaDB ties a consistent-snapshot transaction to a binlog position (binlog_snapshot_file/_position):
 * the snapshot sees exactly the transactions binlogged before it. A chunk read in such a transaction is
 * the table's state at that position, with no window at all, even for changes the binlog does not carry
 * (foreign-key cascades). Undefined where the server has no such status (MySQL): then the chunk is read
 * between two watermarks.
 */
export async function consistentSnapshotPos(c: Conn): Promise<{ file: string; pos: number } | undefined> {
  const [rows] = await c.query<any[]>("SHOW SESSION STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')");
  const v = new Map(rows.map((r) => [String(r.Variable_name).toLowerCase(), String(r.Value)]));
  const file = v.get("binlog_snapshot_file");
  const pos = Number(v.get("binlog_snapshot_position"));
  return file && Number.isFinite(pos) && pos > 0 ? { file, pos } : undefined;
}

export async function binlogEnd(c: Conn): Promise<{ file: string; pos: number } | undefined> {
  const st = await binlogStatus(c);
  return st ? { file: String(st.File), pos: Number(st.Position) } : undefined;
}

/**
 * mysql2 parses spatial values into {x, y} objects (SRID and type lost): read their bytes instead, the
 * server's internal format (SRID, then WKB), which a replica's spatial column takes back as is.
 */
function keepGeometry(field: any, next: () => unknown): unknown {
  return field.type === "GEOMETRY" ? field.buffer() : next();
}

/** Reads one table in key order, chunk by chunk, from a cursor. */
export class ChunkReader {
  /** locking reads (config snapshot.lockingReads) until the source refuses them (privileges) */
  static locking = false;
  static onLockingRefused: ((e: any) => void) | null = null;
  #src: Conn;
  #meta: TableMeta;
  #select: string;
  #cursor: unknown[] | null;
  #n: number;
  done = false;

  constructor(src: Conn, meta: TableMeta, cursor: unknown[] | null, chunkRows: number) {
    this.#src = src;
    this.#meta = meta;
    this.#cursor = cursor;
    this.#n = chunkRows;
    // FLOAT prints with 6 significant digits in the text protocol: widen it to DOUBLE (exact) to read it
    const cols = meta.writable.map((c) => (meta.types.get(c) === "float" ? `CAST(${quoteId(c)} AS DOUBLE)` : quoteId(c)));
    this.#select = `SELECT ${cols.join(", ")} FROM ${qualified(meta.db, meta.table)}`;
  }

  /** `a > x OR (a = x AND b > y) …`: a range the optimizer uses on the primary key */
  #after(cursor: unknown[]): string {
    const pk = this.#meta.primaryKey;
    const esc = (i: number) => escapeValue(cursor[i], this.#meta.types.get(pk[i]));
    const ors: string[] = [];
    for (let i = 0; i < pk.length; i++) {
      const eqs = pk.slice(0, i).map((c, j) => `${quoteId(c)} = ${esc(j)}`);
      ors.push([...eqs, `${quoteId(pk[i])} > ${esc(i)}`].join(" AND "));
    }
    return ors.length === 1 ? ors[0] : `(${ors.map((o) => `(${o})`).join(" OR ")})`;
  }

  async next(): Promise<{ rows: unknown[][]; lastKey: unknown[] | null }> {
    const order = this.#meta.primaryKey.map(quoteId).join(", ");
    const where = this.#cursor ? ` WHERE ${this.#after(this.#cursor)}` : "";
    const sql = `${this.#select}${where} ORDER BY ${order} LIMIT ${this.#n}`;
    let rows: any[];
    try {
      // A locking read (shared locks for this one statement, released at its end) waits for any
      // transaction already in the binlog but not yet committed in InnoDB that touched these rows, so the
      // chunk reflects every transaction binlogged before it: the binlog order and the read agree.
      [rows] = await this.#src.query<any[]>({ sql: ChunkReader.locking ? `${sql} LOCK IN SHARE MODE` : sql, rowsAsArray: true, typeCast: keepGeometry });
    } catch (e: any) {
      // MySQL 8.0.22+ asks for LOCK TABLES (or UPDATE/DELETE) besides SELECT for a locking read
      if (!ChunkReader.locking || (e?.errno !== 1142 && e?.errno !== 1227 && e?.errno !== 1044)) throw e;
      ChunkReader.locking = false;
      ChunkReader.onLockingRefused?.(e);
      [rows] = await this.#src.query<any[]>({ sql, rowsAsArray: true, typeCast: keepGeometry });
    }
    if (rows.length < this.#n) this.done = true;
    if (rows.length) {
      const idx = this.#meta.primaryKey.map((k) => this.#meta.writable.indexOf(k));
      const last = rows[rows.length - 1];
      this.#cursor = idx.map((i) => last[i]);
    }
    return { rows, lastKey: this.#cursor };
  }
}

/** SQL that writes a chunk where rows are absent (existing rows came from the stream and are newer). */
export function chunkInsertSql(meta: TableMeta, rows: unknown[][], skip: Set<string> | undefined): { sql: string | null; written: number } {
  const pkIdx = meta.primaryKey.map((k) => meta.writable.indexOf(k));
  const tuples: string[] = [];
  for (const r of rows) {
    if (skip && skip.size) {
      const rowObj: Record<string, unknown> = {};
      meta.primaryKey.forEach((k, j) => (rowObj[k] = r[pkIdx[j]]));
      if (skip.has(keyOf(meta, rowObj))) continue;
    }
    let t = "(";
    for (let i = 0; i < r.length; i++) t += (i ? "," : "") + escapeValue(r[i], meta.types.get(meta.writable[i]));
    tuples.push(t + ")");
  }
  if (!tuples.length) return { sql: null, written: 0 };
  // A row that exists came from the stream and is newer: the duplicate is a no-op. Not IGNORE, which
  // would also turn any other error (a value the column refuses, a foreign key) into a silent warning.
  // The chunk is written with foreign key checks off (the source's rows may have been loaded with them
  // off: a dump loads children before parents), so the copy holds exactly the source's rows.
  const k = quoteId(meta.primaryKey[0]);
  return {
    sql: `INSERT INTO ${qualified(meta.db, meta.table)} (${meta.writable.map(quoteId).join(", ")}) VALUES ${tuples.join(",")} ON DUPLICATE KEY UPDATE ${k} = ${k}`,
    written: tuples.length,
  };
}

export function progressSql(group: string, c: { db: string; table: string }, state: string, lastKey: unknown[] | null, rows: number): string {
  const e = mysql.escape;
  return `UPDATE ${SCHEMA}.snapshot SET state = ${e(state)}, last_key = ${e(encodeKey(lastKey))}, rows_copied = rows_copied + ${rows} WHERE group_name = ${e(group)} AND db = ${e(c.db)} AND tbl = ${e(c.table)}`;
}

export function registerTablesSql(group: string, tables: { db: string; table: string; estimate: number }[]): string[] {
  const e = mysql.escape;
  return tables.map(
    (t) =>
      `INSERT INTO ${SCHEMA}.snapshot (group_name, db, tbl, state, last_key, rows_copied, rows_estimate) VALUES (${e(group)}, ${e(t.db)}, ${e(t.table)}, 'pending', NULL, 0, ${t.estimate}) ` +
      "ON DUPLICATE KEY UPDATE state = 'pending', last_key = NULL, rows_copied = 0, rows_estimate = VALUES(rows_estimate), started_at = CURRENT_TIMESTAMP(6)",
  );
}

export interface CopierProgress {
  table: string;
  rowsCopied: number;
  rowsEstimate: number;
}

/**
 * The copier: reads the pending tables chunk by chunk on its own source connection and hands chunks to
 * the applier through `deliver`, which resolves when the chunk is committed (at most one in flight
 * beyond the one being read: memory stays at two chunks). Throttled to `rowsPerSecond` when set.
 */
export class Copier {
  #cfg: Config;
  #log: Logger;
  #tables: SnapshotTable[];
  #reserve: (lo: { file: string; pos: number } | undefined) => ChunkSlot;
  #stopped = false;
  #src: Conn | null = null;
  readonly startedAt = Date.now();
  copiedThisRun = 0;

  #onStart: (t: SnapshotTable) => void;

  constructor(cfg: Config, log: Logger, tables: SnapshotTable[], reserve: (lo: { file: string; pos: number } | undefined) => ChunkSlot, onStart: (t: SnapshotTable) => void = () => undefined) {
    this.#onStart = onStart;
    this.#cfg = cfg;
    this.#log = log;
    this.#tables = tables;
    this.#reserve = reserve;
  }

  stop(): void {
    this.#stopped = true;
  }

  async run(): Promise<void> {
    const rps = this.#cfg.snapshot.rowsPerSecond;
    // test seam: the copy starts late (the stream runs alone for a while)
    const delay = Number(process.env.DATASYNC_TEST_COPY_START_DELAY_MS ?? 0);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    let attempt = 0;
    for (const t of this.#tables) {
      if (t.state === "done") continue;
      while (!this.#stopped) {
        try {
          if (!this.#src) {
            this.#src = await connect(this.#cfg.source, "source");
            // a consistent snapshot needs REPEATABLE READ (READ COMMITTED would ignore it)
            await this.#src.query("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
          }
          const meta = await loadTableMeta(this.#src, t.db, t.table);
          if (!meta || meta.primaryKey.length === 0) {
            // dropped (or changed) on the source meanwhile: the stream carries what happened to it
            await this.#reserve(undefined).deliver({ db: t.db, table: t.table, meta: meta!, rows: [], lastKey: t.lastKey, last: true });
            t.state = "done";
            break;
          }
          const reader = new ChunkReader(this.#src, meta, t.lastKey, this.#cfg.snapshot.chunkRows);
          // before the first read: from here on the stream must apply this table's changes
          this.#onStart(t);
          t.state = "copying";
          let pending: Promise<void> | null = null;
          while (!reader.done && !this.#stopped) {
            const t0 = Date.now();
            // the low watermark: the stream holds here while the read runs
            const slot = this.#reserve(await binlogEnd(this.#src));
            let rows: unknown[][];
            let lastKey: unknown[] | null;
            let hi: { file: string; pos: number } | undefined;
            try {
              if (this.#exact !== false) hi = await this.#openSnapshot(slot);
              ({ rows, lastKey } = await reader.next());
              if (hi) await this.#src.query("COMMIT");
              // otherwise every transaction the read could see is at or before this position (the high watermark)
              else slot.setHi((hi = await binlogEnd(this.#src)));
            } catch (e) {
              slot.cancel();
              throw e;
            }
            const readAt = Date.now();
            await this.#testPause(t, rows.length);
            if (pending) await pending; // at most one chunk waiting for the applier
            if (this.#stopped) {
              slot.cancel();
              break;
            }
            // the SQL is built here, while the applier writes the previous chunk
            const prebuilt = rows.length ? chunkInsertParts(meta, rows, undefined, this.#cfg.snapshot.writers) : { sql: [], written: 0 };
            const chunk: Chunk = { db: t.db, table: t.table, meta, rows, lastKey, last: reader.done, prebuilt, hi, readAt };
            pending = slot.deliver(chunk).then(() => {
              t.rowsCopied += rows.length;
              t.lastKey = lastKey;
              this.copiedThisRun += rows.length;
            });
            // awaited below; until then a rejection (the session ending) must not count as unhandled
            pending.catch(() => undefined);
            if (rps > 0 && rows.length) {
              const want = (rows.length / rps) * 1000 - (Date.now() - t0);
              if (want > 0) await new Promise((r) => setTimeout(r, want));
            }
          }
          if (pending) await pending;
          if (!this.#stopped) t.state = "done";
          attempt = 0;
          break;
        } catch (err: any) {
          if (this.#stopped) return;
          if (!isTransient(err) && err?.errno !== 1146) throw err;
          attempt++;
          this.#src?.destroy();
          this.#src = null;
          const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
          this.#log.warn({ table: `${t.db}.${t.table}`, retryInMs: delay }, `snapshot read failed, retrying: ${err?.message}`);
          await new Promise((r) => setTimeout(r, delay));
        }
      }
      if (this.#stopped) break;
    }
    await this.#src?.end().catch(() => undefined);
    this.#src = null;
  }

  /** whether the source ties consistent snapshots to binlog positions (MariaDB); null until asked */
  #exact: boolean | null = null;

  /**
   * Opens a consistent-snapshot transaction on the copier's connection at a binlog position P the stream
   * has not passed, and sets the slot's high watermark to P: the chunk read next is the state at P. The
   * stream holds at the low watermark meanwhile; P can lag it by transactions binlogged but not yet
   * committed, so when the stream already took one of those, the snapshot is reopened a moment later
   * (P catches up with the low watermark within milliseconds). Undefined when the source cannot do it.
   */
  async #openSnapshot(slot: ChunkSlot): Promise<{ file: string; pos: number } | undefined> {
    const src = this.#src!;
    for (let attempt = 0; attempt < 200; attempt++) {
      await src.query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
      const p = await consistentSnapshotPos(src);
      if (!p) {
        await src.query("COMMIT");
        if (this.#exact) throw new Error("the source stopped reporting binlog_snapshot_position");
        this.#exact = false;
        this.#log.info({ exact: false }, "snapshot chunks are read between binlog watermarks");
        return undefined;
      }
      if (this.#exact === null) {
        this.#exact = true;
        // a locking read would read the newest rows, not the snapshot's (and is not needed with it)
        ChunkReader.locking = false;
        this.#log.info({ exact: true }, "snapshot chunks are read at exact binlog positions (consistent snapshots)");
      }
      if (slot.tryHi(p)) return p;
      await src.query("COMMIT");
      await new Promise((r) => setTimeout(r, Math.min(50, 1 + attempt)));
    }
    // not expected (P reaches the low watermark within milliseconds); this chunk falls back to watermarks
    this.#log.warn("a consistent snapshot did not reach the stream's position within 10 s; this chunk is read between watermarks");
    return undefined;
  }

  #paused = new Set<string>();

  /**
   * Test hook (DATASYNC_TEST_CHUNK_PAUSE_MS): hold the first chunk (of each table in the comma-separated
   * DATASYNC_TEST_CHUNK_PAUSE_TABLE when set, `db.table[:ms]`) between reading it and handing it to the
   * applier, so a test can commit conflicting changes in that window.
   */
  async #testPause(t: SnapshotTable, rows: number): Promise<void> {
    const name = `${t.db}.${t.table}`;
    // "db.table" or "db.table:ms" entries
    const only = process.env.DATASYNC_TEST_CHUNK_PAUSE_TABLE?.split(",").map((e) => e.split(":"));
    const entry = only?.find(([n]) => n === name);
    const ms = Number(entry?.[1] ?? process.env.DATASYNC_TEST_CHUNK_PAUSE_MS ?? 0);
    if (!ms || (only ? !entry || this.#paused.has(name) : this.#paused.size > 0)) return;
    this.#paused.add(name);
    this.#log.warn({ table: `${t.db}.${t.table}`, rows, pauseMs: ms }, "test hook: chunk read, pausing before it is written");
    await new Promise((r) => setTimeout(r, ms));
  }

  progress(): { tables: CopierProgress[]; rowsCopied: number; rowsEstimate: number; rate: number; etaSeconds: number | null; done: boolean } {
    const tables = this.#tables.map((t) => ({ table: `${t.db}.${t.table}`, state: t.state, rowsCopied: t.rowsCopied, rowsEstimate: Math.max(t.rowsEstimate, t.rowsCopied) }));
    const rowsCopied = tables.reduce((a, t) => a + t.rowsCopied, 0);
    const rowsEstimate = tables.reduce((a, t) => a + t.rowsEstimate, 0);
    const secs = (Date.now() - this.startedAt) / 1000;
    const rate = secs > 0 ? this.copiedThisRun / secs : 0;
    const done = this.#tables.every((t) => t.state === "done");
    const etaSeconds = done ? 0 : rate > 0 ? Math.max(0, (rowsEstimate - rowsCopied) / rate) : null;
    return { tables, rowsCopied, rowsEstimate, rate: Math.round(rate), etaSeconds: etaSeconds === null ? null : Math.round(etaSeconds), done };
  }
}
