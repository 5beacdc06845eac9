// Snapshot owns seeding a replica online while the source keeps writing (see agent/README.md for the
// algorithm): it creates the tables from the source's definitions, reads the source in primary-key
// chunks (one short autocommit SELECT each, no locks, no SUPER/RELOAD), and hands each chunk to the
// replica's applier, which writes it "insert if absent" between stream batches. Streaming runs from the
// position taken before the first chunk, so every change after it arrives through the stream.
import mysql from "mysql2";
import type { Config } from "../config.js";
import { binlogStatus, connect, isTransient, qualified, quoteId, type Conn } from "../db.js";
import { normalizeDdl, viewDependencyMissing } from "../apply/ddl.js";
import type { Logger } from "../log.js";
import { makeTableFilter } from "../rules.js";
import { loadTableMeta, type TableMeta } from "../tables.js";
import { escapeValue } from "../literals.js";
import { decodeKey, encodeKey, rowKeyId } from "../keys.js";
import { SCHEMA } from "../bookkeeping.js";
import { ReplicaUnavailable } from "../errors.js";

export { SNAPSHOT_DDL } from "../bookkeeping.js";

export interface SnapshotTable {
  db: string;
  table: string;
  state: "pending" | "copying" | "done" | "requested";
  lastKey: unknown[] | null;
  rowsCopied: number;
  rowsEstimate: number;
  /** the source position the replica's definition of the table was read at (null: registered by an older agent) */
  def?: { file: string; pos: number } | null;
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
  /**
   * A chunk read between watermarks of a table with foreign keys: a child row a cascade removed between
   * the read and the high watermark is not in the binlog where the source's InnoDB runs the cascade
   * (MySQL before 9.6, or innodb_native_foreign_keys=ON), so no tombstone covers it (see keepLiveRows).
   */
  orphans?: { fks: ForeignKeyRef[]; stillOnSource: (keys: unknown[][]) => Promise<Set<string>> };
}

/** one foreign key of a table: its columns and the columns of the parent they reference */
export interface ForeignKeyRef {
  columns: string[];
  parentDb: string;
  parentTable: string;
  parentColumns: string[];
}

export async function foreignKeysOf(src: Conn, db: string, table: string): Promise<ForeignKeyRef[]> {
  const [rows] = await src.query<any[]>(
    `SELECT CONSTRAINT_NAME AS c, COLUMN_NAME AS col, REFERENCED_TABLE_SCHEMA AS pdb, REFERENCED_TABLE_NAME AS pt, REFERENCED_COLUMN_NAME AS pcol
     FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION`,
    [db, table],
  );
  const byName = new Map<string, ForeignKeyRef>();
  for (const r of rows) {
    let fk = byName.get(r.c);
    if (!fk) byName.set(r.c, (fk = { columns: [], parentDb: r.pdb, parentTable: r.pt, parentColumns: [] }));
    fk.columns.push(r.col);
    fk.parentColumns.push(r.pcol);
  }
  return [...byName.values()];
}

/**
 * The chunk's rows less those a cascade removed between the read and the high watermark (Chunk.orphans).
 * Runs when the stream stands at the chunk's high watermark: a row whose parent is missing on the replica
 * is either an orphan the source holds too (loaded with foreign key checks off: kept) or a child removed
 * with its parent after the read: the source is asked which of them still exist, and the others are
 * dropped. Dropping a row the source removed later than the watermark is harmless too: the stream's
 * removal would find nothing to do.
 */
export async function keepLiveRows(rep: Conn, chunk: Chunk): Promise<unknown[][]> {
  const o = chunk.orphans;
  if (!o || !chunk.rows.length) return chunk.rows;
  const meta = chunk.meta;
  const cols = copyColumns(meta);
  const suspect = new Set<number>();
  for (const fk of o.fks) {
    const idx = fk.columns.map((c) => cols.indexOf(c));
    if (idx.some((i) => i < 0)) continue;
    const tuple = (r: unknown[]) => `(${idx.map((i, j) => escapeValue(r[i], meta.types.get(fk.columns[j]))).join(",")})`;
    const withParent = chunk.rows.map((r, n) => ({ r, n })).filter(({ r }) => idx.every((i) => r[i] !== null && r[i] !== undefined));
    if (!withParent.length) continue;
    const pcols = fk.parentColumns.map(quoteId).join(", ");
    const [found] = await rep.query<any[]>({
      sql: `SELECT ${pcols} FROM ${qualified(fk.parentDb, fk.parentTable)} WHERE (${pcols}) IN (${[...new Set(withParent.map(({ r }) => tuple(r)))].join(",")})`,
      rowsAsArray: true,
    });
    const present = new Set(found.map((p: unknown[]) => `(${p.map((v, j) => escapeValue(v, meta.types.get(fk.columns[j]))).join(",")})`));
    for (const { r, n } of withParent) if (!present.has(tuple(r))) suspect.add(n);
  }
  if (!suspect.size) return chunk.rows;
  const pkIdx = meta.primaryKey.map((k) => cols.indexOf(k));
  const keyText = (k: unknown[]) => {
    const row: Record<string, unknown> = {};
    meta.primaryKey.forEach((c, j) => (row[c] = k[j]));
    return rowKeyId(meta.primaryKey, row);
  };
  const keys = [...suspect].map((n) => pkIdx.map((i) => chunk.rows[n][i]));
  const live = await o.stillOnSource(keys);
  return chunk.rows.filter((r, n) => !suspect.has(n) || live.has(keyText(pkIdx.map((i) => r[i]))));
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

export async function loadSnapshotTables(c: Conn, group: string): Promise<SnapshotTable[]> {
  const [rows] = await c.query<any[]>(`SELECT db, tbl, state, last_key, rows_copied, rows_estimate, def_file, def_pos FROM ${SCHEMA}.snapshot WHERE group_name = ? ORDER BY db, tbl`, [group]);
  return rows.map((r) => ({
    db: r.db,
    table: r.tbl,
    state: r.state,
    lastKey: decodeKey(r.last_key),
    rowsCopied: Number(r.rows_copied),
    rowsEstimate: Number(r.rows_estimate),
    def: r.def_file ? { file: String(r.def_file), pos: Number(r.def_pos) } : null,
  }));
}

/** Base tables (and MariaDB's system-versioned ones) in scope on the source, with their row estimates. */
export async function sourceTables(src: Conn, cfg: Config, inScope: (db: string, t: string) => boolean): Promise<{ db: string; table: string; estimate: number }[]> {
  const [rows] = await src.query<any[]>(
    "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND TABLE_SCHEMA IN (?) ORDER BY 1, 2",
    [cfg.databases],
  );
  return rows.filter((r) => inScope(r.db, r.t)).map((r) => ({ db: r.db, table: r.t, estimate: Number(r.n ?? 0) }));
}

/** The source's definitions of what a snapshot creates on a replica, all read at one binlog position. */
export interface Definitions {
  /** CREATE DATABASE IF NOT EXISTS … of the synced databases that exist on the source */
  databases: string[];
  tables: { db: string; table: string; ddl: string }[];
}

/** the names of the synced databases and of everything in them: a DDL that creates, drops or renames one changes it */
async function objectNames(src: Conn, cfg: Config): Promise<string> {
  const [dbs] = await src.query<any[]>("SELECT SCHEMA_NAME AS d FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN (?) ORDER BY 1", [cfg.databases]);
  const [objs] = await src.query<any[]>("SELECT TABLE_SCHEMA AS d, TABLE_NAME AS t, TABLE_TYPE AS k FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (?) ORDER BY 1, 2", [cfg.databases]);
  return JSON.stringify([dbs.map((r) => r.d), objs.map((r) => [r.d, r.t, r.k])]);
}

/** errors after which reading the definitions is simply tried again: a table dropped meanwhile, a lock wait, a deadlock */
const RETRY_DEFINITIONS = new Set([1146, 1205, 1213, 1412, 1049]);

/** an XID as XA RECOVER gives it, in the form XA COMMIT/ROLLBACK take: X'gtrid',X'bqual',formatID */
function recoveredXid(r: any): string {
  const data: Buffer = Buffer.isBuffer(r.data) ? r.data : Buffer.from(String(r.data ?? ""), "binary");
  const g = Number(r.gtrid_length);
  return `X'${data.subarray(0, g).toString("hex")}',X'${data.subarray(g, g + Number(r.bqual_length)).toString("hex")}',${Number(r.formatID)}`.toUpperCase();
}

/**
 * The XA transactions prepared on the source (XA RECOVER), or null when the sync user may not see them
 * (MySQL needs XA_RECOVER_ADMIN; MariaDB 10.11 lets any user run XA RECOVER).
 */
async function preparedXa(src: Conn): Promise<string[] | null> {
  try {
    const [rows] = await src.query<any[]>("XA RECOVER");
    return rows.map(recoveredXid).sort();
  } catch (e: any) {
    if (e?.errno === 1401 || e?.errno === 1227 || e?.errno === 1044) return null;
    throw e;
  }
}

/** XA COMMIT and XA ROLLBACK statements run on the source since it started (any user may read them) */
async function xaEnds(src: Conn): Promise<number> {
  const [rows] = await src.query<any[]>("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_xa_commit', 'Com_xa_rollback')");
  return rows.reduce((a, r) => a + Number(r.Value ?? 0), 0);
}

/** how long a snapshot waits for XA transactions prepared on the source to end (DATASYNC_XA_WAIT_MS: tests) */
const XA_WAIT_MS = Number(process.env.DATASYNC_XA_WAIT_MS) || 10 * 60_000;

/**
 * An XA transaction prepared on the source when the snapshot takes its position would be lost: its
 * rows are invisible to the copy and its XA PREPARE lies before the stream's start, so the stream sees
 * only its XA COMMIT (native replication from a dump stops there with an unknown XID). Waits (checking
 * every second, each new set of XIDs logged once) until none is prepared; after XA_WAIT_MS, stops with
 * an error naming them. Returns the source's count of XA COMMIT/ROLLBACK statements read *before* the
 * check, for the check after the position (`noXaAcross`); null when the sync user may not run XA RECOVER.
 */
async function waitNoPreparedXa(src: Conn, log: Logger, state: { warned: boolean; since: number; logged: string }): Promise<number | null> {
  for (;;) {
    const ends = await xaEnds(src);
    const xids = await preparedXa(src);
    if (xids === null) {
      if (!state.warned) {
        state.warned = true;
        log.warn(
          "the sync user may not run XA RECOVER on the source, so the snapshot cannot see XA transactions prepared there: one prepared before the snapshot's position and committed after it would be missing on the replica. Fix: GRANT XA_RECOVER_ADMIN ON *.* TO the sync user (MySQL), or make sure no XA transaction is left prepared while a replica is seeded.",
        );
      }
      return null;
    }
    if (!xids.length) return ends;
    if (Date.now() - state.since > XA_WAIT_MS) {
      throw new ReplicaUnavailable(
        "xa-prepared",
        `the snapshot cannot start while XA transactions are prepared on the source (their rows would be missing on the replica): ${xids.join("; ")} still prepared after ${Math.round(XA_WAIT_MS / 1000)} s. Fix: end them on the source (XA COMMIT <xid> or XA ROLLBACK <xid>, e.g. XA COMMIT ${xids[0]}); the agent retries the snapshot.`,
      );
    }
    const key = xids.join(";");
    if (key !== state.logged) {
      state.logged = key;
      log.warn({ xids }, "XA transactions are prepared on the source: the snapshot waits for their XA COMMIT or XA ROLLBACK before taking its position (their rows would otherwise be missed)");
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * Reads the definitions of `tables` (the list is taken again at each attempt) at one binlog position, and
 * that position, so that every DDL on those tables is either in the definitions (at or before the
 * position) or in the stream after it, never both and never neither. No SUPER/RELOAD, no global lock: the
 * tables' shared metadata locks are held (a `SELECT … LIMIT 0` of each in one transaction) while the
 * position and the definitions are read, which a DDL on any of them waits for (it is binlogged while it
 * holds its exclusive lock), and writers are not blocked. With `wholeScope` (the initial snapshot, whose
 * stream starts at the position) the names of everything in the synced databases are compared before and
 * after: a table created, dropped or renamed meanwhile (not held by the locks) makes it try again.
 */
export async function readDefinitions<T extends { db: string; table: string }, P>(
  src: Conn,
  cfg: Config,
  opts: {
    list: () => Promise<T[]>;
    position: () => Promise<P>;
    wholeScope: boolean;
    log: Logger;
    /** test seam: called between the position and the definitions */
    pause?: () => Promise<void>;
    /** test seam: called right after the tables are listed */
    afterList?: () => Promise<void>;
  },
): Promise<{ tables: T[]; defs: Definitions; pos: P }> {
  // READ COMMITTED: information_schema (InnoDB data dictionary tables on MySQL) is read afresh by every statement
  await src.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
  // never wait long behind a DDL that holds a table: let go of every lock and try again
  await src.query("SET SESSION lock_wait_timeout = 10");
  let lastErr: unknown = null;
  const xa = { warned: false, since: Date.now(), logged: "" };
  for (let attempt = 1; attempt <= 50; attempt++) {
    // the names first, then the list: a table created between the two is in the list but not in `before`, so the
    // check after the position reads again (the other order missed it: listed without it, named with it, and the
    // replica never got the table)
    const before = opts.wholeScope ? await objectNames(src, cfg) : "";
    const tables = await opts.list();
    await opts.afterList?.();
    // no XA transaction may be prepared at the position (checked before it and again after it)
    const xaEndsBefore = await waitNoPreparedXa(src, opts.log, xa);
    await src.query("START TRANSACTION");
    try {
      // shared metadata locks on every table until COMMIT (a UNION opens all tables of a batch at once)
      for (let i = 0; i < tables.length; i += 50) {
        const batch = tables.slice(i, i + 50);
        await src.query(batch.map((t) => `(SELECT 1 FROM ${qualified(t.db, t.table)} LIMIT 0)`).join(" UNION ALL "));
      }
      const pos = await opts.position();
      await opts.pause?.();
      // an XA prepared before the position is still prepared now (seen), or ended since (counted): the
      // position is taken again. XA COMMIT/ROLLBACK count when they start, before they are binlogged.
      if (xaEndsBefore !== null) {
        const now = await preparedXa(src);
        if ((now !== null && now.length) || (await xaEnds(src)) !== xaEndsBefore) {
          await src.query("ROLLBACK");
          attempt--;
          if (Date.now() - xa.since > XA_WAIT_MS) throw new ReplicaUnavailable("xa-prepared", `the snapshot could not take a position with no XA transaction prepared on the source in ${Math.round(XA_WAIT_MS / 1000)} s (XA transactions kept being prepared and ended). Fix: pause the XA workload on the source while the replica is seeded; the agent retries the snapshot.`);
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
      }
      if (opts.wholeScope && (await objectNames(src, cfg)) !== before) {
        await src.query("ROLLBACK");
        opts.log.info({ attempt }, "tables were created, dropped or renamed on the source while the snapshot read their definitions; reading them again");
        await new Promise((r) => setTimeout(r, Math.min(1000, 20 * attempt)));
        continue;
      }
      const defs: Definitions = { databases: [], tables: [] };
      const dbs = [...new Set(tables.map((t) => t.db))];
      for (const db of cfg.databases) {
        const [exists] = await src.query<any[]>("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", [db]);
        if (exists.length && !dbs.includes(db)) dbs.push(db);
      }
      for (const db of dbs) {
        const [[d]] = await src.query<any[]>(`SHOW CREATE DATABASE ${quoteId(db)}`);
        defs.databases.push(String(d["Create Database"]).replace(/^CREATE DATABASE\s+/i, "CREATE DATABASE IF NOT EXISTS ").replace(/IF NOT EXISTS\s+\/\*!32312 IF NOT EXISTS\*\/\s*/i, "IF NOT EXISTS "));
      }
      for (const t of tables) {
        const [[r]] = await src.query<any[]>(`SHOW CREATE TABLE ${qualified(t.db, t.table)}`);
        defs.tables.push({ db: t.db, table: t.table, ddl: String(r["Create Table"]).replace(/^CREATE TABLE\s+`/i, `CREATE TABLE ${quoteId(t.db)}.\``) });
      }
      await src.query("COMMIT");
      return { tables, defs, pos };
    } catch (e: any) {
      await src.query("ROLLBACK").catch(() => undefined);
      if (!RETRY_DEFINITIONS.has(e?.errno)) throw e;
      lastErr = e;
      opts.log.info({ attempt, err: e?.message }, "reading the tables' definitions for the snapshot: trying again");
      await new Promise((r) => setTimeout(r, Math.min(2000, 50 * attempt)));
    }
  }
  throw new Error(`the snapshot could not read the source's table definitions at one binlog position in 50 attempts (tables kept changing, or a DDL kept them locked): ${(lastErr as any)?.message ?? "the names changed at every attempt"}`);
}

/**
 * Creates the databases and tables of `defs` on the replica (existing tables of those names are replaced:
 * tables in scope belong to the sync); with `withViews` (the initial snapshot) also the scope's sequences
 * with their state, before the tables, and its views, read now (a view is DDL: the stream replays any later
 * change, and CREATE OR REPLACE makes a replay harmless). Returns the views left out, with the reason.
 */
export async function createReplicaTables(
  src: Conn,
  rep: Conn,
  cfg: Config,
  defs: Definitions,
  opts: { withViews: boolean; inScope?: (db: string, t: string) => boolean },
): Promise<{ view: string; reason: string }[]> {
  const leftOut: { view: string; reason: string }[] = [];
  await rep.query("SET SESSION foreign_key_checks = 0");
  try {
    for (const ddl of defs.databases) await rep.query(ddl);
    for (const t of defs.tables) await rep.query(`DROP TABLE IF EXISTS ${qualified(t.db, t.table)}`);
    // sequences first: a table's DEFAULT NEXTVAL(seq) needs its sequence
    if (opts.withViews && opts.inScope) await copySequences(src, rep, cfg, opts.inScope);
    for (const t of defs.tables) await rep.query(t.ddl);
    if (opts.withViews) leftOut.push(...(await createViews(src, rep, cfg, opts.inScope)));
  } finally {
    await rep.query("SET SESSION foreign_key_checks = 1");
  }
  return leftOut;
}

/**
 * The synced databases' views, without DEFINER, each after the views it selects from (passes until none
 * more can be created). A view that selects from what the replica does not hold by design (another
 * database, an excluded table) is left out and returned, to be reported; any other failure is an error.
 */
async function createViews(src: Conn, rep: Conn, cfg: Config, inScope?: (db: string, t: string) => boolean): Promise<{ view: string; reason: string }[]> {
  const [views] = await src.query<any[]>("SELECT TABLE_SCHEMA AS db, TABLE_NAME AS v FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN (?) ORDER BY 1, 2", [cfg.databases]);
  let todo: { db: string; v: string; ddl: string; err?: any }[] = [];
  for (const v of views) {
    const [[r]] = await src.query<any[]>(`SHOW CREATE VIEW ${qualified(v.db, v.v)}`);
    todo.push({ db: v.db, v: v.v, ddl: normalizeDdl(String(r["Create View"])).replace(/^CREATE\s+/i, "CREATE OR REPLACE ") });
  }
  for (let progress = true; todo.length && progress; ) {
    progress = false;
    const failed: typeof todo = [];
    for (const v of todo) {
      try {
        await rep.query(`USE ${quoteId(v.db)}`);
        await rep.query(v.ddl);
        progress = true;
      } catch (err) {
        if (isTransient(err)) throw err;
        failed.push({ ...v, err });
      }
    }
    todo = failed;
  }
  const scope = { databases: new Set(cfg.databases), inScope: inScope ?? (() => true) };
  return todo.map((v) => {
    const missing = viewDependencyMissing(v.err, scope);
    return { view: `\`${v.db}\`.\`${v.v}\``, reason: missing ? `it selects from ${missing}, which is outside the synced scope` : `the replica refused it with ${v.err?.errno ?? ""}: ${v.err?.sqlMessage ?? v.err?.message}` };
  });
}

/**
 * MariaDB sequences in scope, created on the replica with their current state (their one row). The state
 * is read after the snapshot's start position, and every later change of it arrives through the stream
 * as a write of the whole row, so the replica ends with the source's last state.
 */
async function copySequences(src: Conn, rep: Conn, cfg: Config, inScope: (db: string, t: string) => boolean): Promise<void> {
  const [seqs] = await src.query<any[]>("SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_TYPE = 'SEQUENCE' AND TABLE_SCHEMA IN (?) ORDER BY 1, 2", [
    cfg.databases,
  ]);
  for (const q of seqs.filter((r) => inScope(r.db, r.t))) {
    const name = qualified(q.db, q.t);
    const [[def]] = await src.query<any[]>(`SHOW CREATE SEQUENCE ${name}`);
    const ddl = String(def["Create Table"]).replace(/^CREATE\s+SEQUENCE\s+`(?:[^`]|``)+`/i, `CREATE OR REPLACE SEQUENCE ${name}`);
    await rep.query(ddl);
    const [[row]] = await src.query<any[]>(`SELECT * FROM ${name}`);
    const cols = Object.keys(row);
    await rep.query(`INSERT INTO ${name} (${cols.map(quoteId).join(", ")}) VALUES (${cols.map((c) => mysql.escape(row[c])).join(", ")})`);
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

/**
 * Whether chunk reads lock their rows: config `snapshot.lockingReads`, held by one copier (never process-wide:
 * each replica's copier has its own), turned off when the source refuses a locking read (privileges) or when
 * consistent snapshots make it unnecessary.
 */
export interface ReadLocking {
  on: boolean;
  /** called once when the source refuses a locking read (the copy goes on with plain reads) */
  onRefused?: (e: any) => void;
}

/** Reads one table in key order, chunk by chunk, from a cursor. */
export class ChunkReader {
  readonly #locking: ReadLocking;
  #src: Conn;
  #meta: TableMeta;
  #select: string;
  #cursor: unknown[] | null;
  #n: number;
  done = false;

  constructor(src: Conn, meta: TableMeta, cursor: unknown[] | null, chunkRows: number, locking: ReadLocking = { on: false }) {
    this.#locking = locking;
    this.#src = src;
    this.#meta = meta;
    this.#cursor = cursor;
    this.#n = chunkRows;
    // FLOAT prints with 6 significant digits in the text protocol: widen it to DOUBLE (exact) to read it
    const cols = copyColumns(meta).map((c) => (meta.types.get(c) === "float" ? `CAST(${quoteId(c)} AS DOUBLE)` : quoteId(c)));
    // a system-versioned table is copied whole: current and history rows with their periods
    this.#select = `SELECT ${cols.join(", ")} FROM ${qualified(meta.db, meta.table)}${meta.versioning ? " FOR SYSTEM_TIME ALL" : ""}`;
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
      [rows] = await this.#src.query<any[]>({ sql: this.#locking.on ? `${sql} LOCK IN SHARE MODE` : sql, rowsAsArray: true, typeCast: keepGeometry });
    } catch (e: any) {
      // MySQL 8.0.22+ asks for LOCK TABLES (or UPDATE/DELETE) besides SELECT for a locking read
      if (!this.#locking.on || (e?.errno !== 1142 && e?.errno !== 1227 && e?.errno !== 1044)) throw e;
      this.#locking.on = false;
      this.#locking.onRefused?.(e);
      [rows] = await this.#src.query<any[]>({ sql, rowsAsArray: true, typeCast: keepGeometry });
    }
    if (rows.length < this.#n) this.done = true;
    if (rows.length) {
      const cols = copyColumns(this.#meta);
      const idx = this.#meta.primaryKey.map((k) => cols.indexOf(k));
      const last = rows[rows.length - 1];
      this.#cursor = idx.map((i) => last[i]);
    }
    return { rows, lastKey: this.#cursor };
  }
}

/** the columns a chunk reads and writes: the writable ones, and a system-versioned table's period */
export function copyColumns(meta: TableMeta): string[] {
  return meta.versioning ? [...meta.writable, meta.versioning.start, meta.versioning.end] : meta.writable;
}

/** A DDL changed the table being copied between the read of its columns and a chunk's read. */
class DefinitionChanged extends Error {}

/** The table's definition as the source shows it (AUTO_INCREMENT counters aside), null when it is gone. */
async function tableDefinition(c: Conn, db: string, table: string): Promise<string | null> {
  try {
    const [[r]] = await c.query<any[]>(`SHOW CREATE TABLE ${qualified(db, table)}`);
    return String(r["Create Table"]).replace(/\sAUTO_INCREMENT=\d+/, "");
  } catch (e: any) {
    if (e?.errno === 1146) return null;
    throw e;
  }
}

/** SQL that writes a chunk where rows are absent (existing rows came from the stream and are newer). */
export function chunkInsertSql(meta: TableMeta, rows: unknown[][], skip: Set<string> | undefined): { sql: string | null; written: number } {
  const cols = copyColumns(meta);
  const pkIdx = meta.primaryKey.map((k) => cols.indexOf(k));
  const tuples: string[] = [];
  for (const r of rows) {
    if (skip && skip.size) {
      const rowObj: Record<string, unknown> = {};
      meta.primaryKey.forEach((k, j) => (rowObj[k] = r[pkIdx[j]]));
      if (skip.has(rowKeyId(meta.primaryKey, rowObj))) continue;
    }
    let t = "(";
    for (let i = 0; i < r.length; i++) t += (i ? "," : "") + escapeValue(r[i], meta.types.get(cols[i]));
    tuples.push(t + ")");
  }
  if (!tuples.length) return { sql: null, written: 0 };
  if (meta.versioning) {
    // physical rows with their periods, each only where absent (the stream's UPDATE and DELETE leave
    // history rows of their own); ON DUPLICATE KEY UPDATE would version the row again
    if (meta.versioning.trx) {
      throw new Error(
        `table \`${meta.db}\`.\`${meta.table}\` is system-versioned by transaction ids (BIGINT UNSIGNED ROW START/END): its history cannot be reproduced on another server. Exclude it (tables.exclude).`,
      );
    }
    const t = qualified(meta.db, meta.table);
    const head = `SET STATEMENT system_versioning_insert_history = 1 FOR INSERT INTO ${t} (${cols.map(quoteId).join(", ")})`;
    const sql: string[] = [];
    for (const r of rows) {
      const rowObj: Record<string, unknown> = {};
      cols.forEach((k, j) => (rowObj[k] = r[j]));
      if (skip?.size && skip.has(rowKeyId(meta.primaryKey, rowObj))) continue;
      const key = meta.primaryKey.map((k) => `${quoteId(k)} <=> ${escapeValue(rowObj[k], meta.types.get(k))}`).join(" AND ");
      sql.push(`${head} SELECT ${cols.map((k) => escapeValue(rowObj[k], meta.types.get(k))).join(",")} FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM ${t} FOR SYSTEM_TIME ALL WHERE ${key})`);
    }
    return { sql: sql.join(";\n"), written: tuples.length };
  }
  // A row that exists came from the stream and is newer: the duplicate is a no-op. Not IGNORE, which
  // would also turn any other error (a value the column refuses, a foreign key) into a silent warning.
  // The chunk is written with foreign key checks off (the source's rows may have been loaded with them
  // off: a dump loads children before parents), so the copy holds exactly the source's rows.
  const k = quoteId(meta.primaryKey[0]);
  return {
    sql: `INSERT INTO ${qualified(meta.db, meta.table)} (${cols.map(quoteId).join(", ")}) VALUES ${tuples.join(",")} ON DUPLICATE KEY UPDATE ${k} = ${k}`,
    written: tuples.length,
  };
}

export function progressSql(group: string, c: { db: string; table: string }, state: string, lastKey: unknown[] | null, rows: number): string {
  const e = mysql.escape;
  return `UPDATE ${SCHEMA}.snapshot SET state = ${e(state)}, last_key = ${e(encodeKey(lastKey))}, rows_copied = rows_copied + ${rows} WHERE group_name = ${e(group)} AND db = ${e(c.db)} AND tbl = ${e(c.table)}`;
}

/**
 * Registers tables as pending, with the source position their definitions on the replica were read at
 * (`def_file`, `def_pos`): the stream skips what it reads on them up to there (readDefinitions).
 */
export function registerTablesSql(group: string, tables: { db: string; table: string; estimate: number }[], def: { file: string; pos: number }): string[] {
  const e = mysql.escape;
  return tables.map(
    (t) =>
      `INSERT INTO ${SCHEMA}.snapshot (group_name, db, tbl, state, last_key, rows_copied, rows_estimate, def_file, def_pos) VALUES (${e(group)}, ${e(t.db)}, ${e(t.table)}, 'pending', NULL, 0, ${t.estimate}, ${e(def.file)}, ${Number(def.pos)}) ` +
      "ON DUPLICATE KEY UPDATE state = 'pending', last_key = NULL, rows_copied = 0, rows_estimate = VALUES(rows_estimate), started_at = CURRENT_TIMESTAMP(6), def_file = VALUES(def_file), def_pos = VALUES(def_pos)",
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
  readonly #locking: ReadLocking;

  constructor(
    cfg: Config,
    log: Logger,
    tables: SnapshotTable[],
    reserve: (lo: { file: string; pos: number } | undefined) => ChunkSlot,
    onStart: (t: SnapshotTable) => void = () => undefined,
    locking: ReadLocking = { on: cfg.snapshot.lockingReads },
  ) {
    this.#onStart = onStart;
    this.#locking = locking;
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
      /** the primary key the chunks so far were read by (the cursor is a value of it) */
      let keyOfCursor: string[] | null = null;
      while (!this.#stopped) {
        let pending: Promise<void> | null = null;
        try {
          if (!this.#src) {
            this.#src = await connect(this.#cfg.source, "source");
            // a consistent snapshot needs REPEATABLE READ (READ COMMITTED would ignore it)
            await this.#src.query("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
          }
          // the definition before the columns: a DDL between the two shows at the first chunk's check
          const definition = await tableDefinition(this.#src, t.db, t.table);
          const meta = await loadTableMeta(this.#src, t.db, t.table);
          if (!meta || meta.primaryKey.length === 0) {
            // dropped (or changed) on the source meanwhile: the stream carries what happened to it
            await this.#reserve(undefined).deliver({ db: t.db, table: t.table, meta: meta!, rows: [], lastKey: t.lastKey, last: true });
            t.state = "done";
            break;
          }
          if (keyOfCursor && t.lastKey && keyOfCursor.join("\u0000") !== meta.primaryKey.join("\u0000")) {
            throw new Error(
              `the primary key of \`${t.db}\`.\`${t.table}\` changed on the source during its snapshot copy (${keyOfCursor.join(", ")} → ${meta.primaryKey.join(", ")}): ` +
                `its copy cannot go on from the old key. Copy the table again: datasync resnapshot --replica <name> --tables ${t.db}.${t.table}`,
            );
          }
          keyOfCursor = meta.primaryKey;
          const reader = new ChunkReader(this.#src, meta, t.lastKey, this.#cfg.snapshot.chunkRows, this.#locking);
          const fks = await foreignKeysOf(this.#src, t.db, t.table);
          // before the first read: from here on the stream must apply this table's changes
          this.#onStart(t);
          t.state = "copying";
          while (!reader.done && !this.#stopped) {
            const t0 = Date.now();
            // the low watermark: the stream holds here while the read runs
            const slot = this.#reserve(await binlogEnd(this.#src));
            let rows: unknown[][];
            let lastKey: unknown[] | null;
            let hi: { file: string; pos: number } | undefined;
            let watermarked = false;
            try {
              if (this.#exact !== false) hi = await this.#openSnapshot(slot);
              // A transaction: the read's shared metadata lock on the table lasts until COMMIT, so no DDL on it
              // is binlogged between the read and the definition check and high watermark below. A DDL on it
              // binlogged before is complete (the read waited for it); one after waits for the COMMIT.
              if (!hi) await this.#src.query("START TRANSACTION");
              ({ rows, lastKey } = await reader.next());
              // the rows have the table's shape the stream has at the high watermark, or the chunk is read again
              if ((await tableDefinition(this.#src, t.db, t.table)) !== definition) throw new DefinitionChanged();
              // without a consistent snapshot, every transaction the read could see is at or before this position (the high watermark)
              if (!hi) {
                watermarked = true;
                await this.#testHiDelay(t);
                slot.setHi((hi = await binlogEnd(this.#src)));
              }
              await this.#src.query("COMMIT");
            } catch (e: any) {
              slot.cancel();
              await this.#src.query("ROLLBACK").catch(() => undefined);
              // 1054: a column read is gone; 1412: the table changed after the consistent snapshot began
              if (e?.errno === 1054 || e?.errno === 1412) throw new DefinitionChanged();
              throw e;
            }
            const readAt = Date.now();
            await this.#testPause(t, rows.length);
            // the SQL is built here, while the applier still writes the previous chunk (built after it, the replica
            // waited for every build: bench/results.md, "Issue 17, 2026-12-03 day"); the applier builds it again if
            // the stream left tombstones in the table by the time the chunk lands (session.ts)
            const prebuilt = rows.length && !this.#stopped ? chunkInsertParts(meta, rows, undefined, this.#cfg.snapshot.writers) : { sql: [], written: 0 };
            if (pending) await pending; // at most one chunk waiting for the applier
            if (this.#stopped) {
              slot.cancel();
              break;
            }
            const chunk: Chunk = { db: t.db, table: t.table, meta, rows, lastKey, last: reader.done, prebuilt, hi, readAt };
            if (watermarked && fks.length && rows.length) chunk.orphans = { fks, stillOnSource: (keys) => this.#stillOnSource(meta, keys) };
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
          if (err instanceof DefinitionChanged) {
            // a DDL on the table since its columns were read: the chunk is read again with the new definition,
            // from the cursor of the last chunk handed over
            this.#log.info({ table: `${t.db}.${t.table}` }, "the table's definition changed on the source during its copy: reading on with the new definition");
            try {
              if (pending) await pending;
            } catch (e) {
              if (this.#stopped) return;
              throw e;
            }
            continue;
          }
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
        this.#locking.on = false;
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
  /** which of these keys the source's table still holds (Chunk.orphans), as rowKeyId texts */
  async #stillOnSource(meta: TableMeta, keys: unknown[][]): Promise<Set<string>> {
    const c = await connect(this.#cfg.source, "source");
    try {
      const pk = meta.primaryKey.map(quoteId).join(", ");
      const tuples = keys.map((k) => `(${k.map((v, j) => escapeValue(v, meta.types.get(meta.primaryKey[j]))).join(",")})`);
      const [rows] = await c.query<any[]>({ sql: `SELECT ${pk} FROM ${qualified(meta.db, meta.table)}${meta.versioning ? " FOR SYSTEM_TIME ALL" : ""} WHERE (${pk}) IN (${tuples.join(",")})`, rowsAsArray: true });
      return new Set(
        rows.map((r: unknown[]) => {
          const row: Record<string, unknown> = {};
          meta.primaryKey.forEach((k, j) => (row[k] = r[j]));
          return rowKeyId(meta.primaryKey, row);
        }),
      );
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /** test seam DATASYNC_TEST_CHUNK_HI_DELAY=db.table:ms: the first chunk of that table waits between its read and its high watermark */
  async #testHiDelay(t: SnapshotTable): Promise<void> {
    const [name, ms] = (process.env.DATASYNC_TEST_CHUNK_HI_DELAY ?? "").split(":");
    if (!ms || name !== `${t.db}.${t.table}` || this.#paused.has(`hi:${name}`)) return;
    this.#paused.add(`hi:${name}`);
    this.#log.warn({ table: name, delayMs: Number(ms) }, "test hook: chunk read, waiting before its high watermark");
    await new Promise((r) => setTimeout(r, Number(ms)));
  }

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
