// Sqlgen owns turning row changes into SQL for a replica: multi-row upserts (never REPLACE: it deletes,
// and deletes cascade), updates located by the old key (which carries key changes and the replica's own
// cascades), deletes by key, generated columns never written, values escaped byte-exactly. Rows of an
// independent table (Lane) gather into one delete and one upsert per target transaction.
import { qualified, quoteId } from "../db.js";
import type { Row, RowChange } from "../source/reader.js";
import type { TableMeta } from "../tables.js";
import { ApplyError } from "../errors.js";
import { rowKeyId } from "../keys.js";
import { escapeValue } from "../literals.js";
import { ENUM_ERROR } from "../source/rowdecode.js";
import { beforeOf, packedFits, packedKeyId, packsOf, rowCount, rowOf, sameKeyPacked, type Pack } from "../source/rowsql.js";

export { escapeValue };

/**
 * Prefix of a statement that writes a value only a lenient sql_mode accepts (the ENUM error value): the
 * source stored it under its session's sql_mode, and a row event carries it as stored. MariaDB runs the
 * executable comment (SET STATEMENT … FOR); MySQL ignores it and takes the SET_VAR hint after the verb.
 */
const LENIENT_PREFIX = "/*M!100301 SET STATEMENT sql_mode='' FOR */ ";
const LENIENT_HINT = "/*+ SET_VAR(sql_mode='') */ ";

/** the statement made lenient (see LENIENT_PREFIX) */
export function lenient(sql: string): string {
  const m = /^(INSERT|UPDATE|DELETE)\s+/.exec(sql);
  if (!m) return sql;
  return LENIENT_PREFIX + m[0] + LENIENT_HINT + sql.slice(m[0].length);
}

function hasEnumError(row: Row): boolean {
  for (const k in row) if (row[k] === ENUM_ERROR) return true;
  return false;
}

/** where a change comes from, for error messages: a string, or a function that builds it only when needed */
export type Where = string | (() => string);

function whereText(w: Where): string {
  return typeof w === "function" ? w() : w;
}

function columnsOf(meta: TableMeta, row: Row, where: Where): string[] {
  const cols: string[] = [];
  for (const c of meta.writable) if (c in row) cols.push(c);
  knownColumns(meta, row, where);
  return cols;
}

/** every column of the source row exists on the replica, or the replica stops */
function knownColumns(meta: TableMeta, row: Row, where: Where): void {
  for (const k in row) {
    if (!meta.types.has(k)) {
      throw new ApplyError(
        `${whereText(where)}: the source row has column \`${k}\` that the replica's table \`${meta.db}\`.\`${meta.table}\` lacks; the replica's schema diverged from the source. Resnapshot the table (datasync resnapshot --tables ${meta.db}.${meta.table}).`,
        { table: `${meta.db}.${meta.table}` },
      );
    }
  }
}

function whereKey(meta: TableMeta, row: Row): string {
  return meta.primaryKey.map((k) => `${quoteId(k)} <=> ${escapeValue(row[k], meta.types.get(k))}`).join(" AND ");
}

export interface Statement {
  sql: string;
  table: string;
  rows: number;
  /** an UPDATE whose no-match must become an upsert of `fallback` */
  fallback?: string;
  /** run with foreign key checks off (a table in a key cycle while it is being copied; a change the source ran without them) */
  relaxFk?: boolean;
  /** MariaDB: run with check_constraint_checks off (the source session had them off) */
  relaxChecks?: boolean;
  /**
   * a lane's statement (an upsert of whole rows or a delete by key on a table with no foreign key, no unique key
   * but an integer primary key): rows of other keys commute with it (applier.ts "Parallel apply")
   */
  lane?: boolean;
}

/** rows event flag (binlog-raw.ts; foreign key checks travel as RowChange.noFkChecks) */
const ROWS_NO_CHECK_CONSTRAINT_CHECKS = 0x0080;

/** The session settings a statement runs under, as statements to run before and after it. */
export function sessionToggles(s: Pick<Statement, "relaxFk" | "relaxChecks">): { before: string[]; after: string[] } {
  const before: string[] = [];
  const after: string[] = [];
  if (s.relaxFk) {
    before.push("SET SESSION foreign_key_checks = 0");
    after.push("SET SESSION foreign_key_checks = 1");
  }
  if (s.relaxChecks) {
    before.push("SET SESSION check_constraint_checks = 0");
    after.push("SET SESSION check_constraint_checks = 1");
  }
  return { before, after };
}

const MAX_STMT_BYTES = 1 << 20;

/** a row_end of a current row: the largest TIMESTAMP (2038 on MariaDB before 11.5, 2106 from it) */
function isCurrentEnd(v: unknown): boolean {
  const s = v instanceof Date ? v.toISOString().replace("T", " ").replace("Z", "") : String(v);
  return s.startsWith("2038-01-19 03:14:07.999999") || s.startsWith("2106-02-07 06:28:15.999999");
}

/** microseconds since the epoch of a TIMESTAMP value as read (a UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]' string; the apply session is at +00:00) */
function micros(v: unknown): number {
  if (v instanceof Date) return v.getTime() * 1000;
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?/.exec(String(v));
  if (!m) throw new ApplyError(`internal: a system-versioned period value ${String(v)} is not a timestamp`);
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  return ms * 1000 + Number((m[7] ?? "").padEnd(6, "0"));
}

function fromMicros(us: number): string {
  const d = new Date(Math.floor(us / 1000));
  return `${d.toISOString().slice(0, 19).replace("T", " ")}.${String(us % 1_000_000).padStart(6, "0")}`;
}

/** the session `timestamp` of a period value (seconds with microseconds) */
function unixTime(v: unknown): string {
  const us = micros(v);
  return `${Math.floor(us / 1_000_000)}.${String(us % 1_000_000).padStart(6, "0")}`;
}

/**
 * A physical row of a system-versioned table with its period (`system_versioning_insert_history`); a
 * history row only where absent (the replica's own UPDATE or DELETE at the source's timestamp already left
 * it). Not ON DUPLICATE KEY UPDATE: on a versioned table that versions the row again.
 */
function historyInsertSql(meta: TableMeta, r: Row, cols: string[], ifAbsent: boolean): string {
  const v = meta.versioning!;
  const all = [...cols, v.start, v.end];
  const vals = all.map((k) => escapeValue(r[k], meta.types.get(k))).join(",");
  const t = qualified(meta.db, meta.table);
  const head = `SET STATEMENT system_versioning_insert_history = 1 FOR INSERT INTO ${t} (${all.map(quoteId).join(", ")})`;
  return ifAbsent ? `${head} SELECT ${vals} FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM ${t} FOR SYSTEM_TIME ALL WHERE ${whereKey(meta, r)})` : `${head} VALUES (${vals})`;
}

/**
 * The pending rows of one independent table (laneTable): keys to delete and whole rows to upsert, in one
 * DELETE and one multi-row upsert (emitted in that order) wherever the table's changes fall in the target
 * transaction. Identical in effect to the changes one by one, because:
 * - no foreign key is on either side of the table and a replica has no triggers (DESIGN.md), so its rows
 *   can move past other tables' statements: nothing else reads or writes them, and nothing cascades;
 * - no unique key but the primary key, an integer one, so rows of different keys never collide (integer keys
 *   are equal on the server exactly when equal here): a delete and an upsert of different keys commute;
 * - a key is never both deleted and upserted here: a delete of key K then a whole-row upsert of K is that
 *   upsert (every writable column is set, as the INSERT after the DELETE would; the key's AUTO_INCREMENT
 *   counter is already past K, as the row existed); an upsert of K then a delete of K emits the lane first
 *   (the insert stays, so the replica's AUTO_INCREMENT counter advances as the source's did);
 * - upserts of one key stay in their order in the one statement (ON DUPLICATE KEY UPDATE takes rows in order).
 */
interface Lane {
  meta: TableMeta;
  /** rows event flags of its rows (a lane never mixes CHECK constraint checks on and off) */
  flags: number;
  /** keys to delete: the key (rowKeyId) → its tuple, as the DELETE lists it */
  dels: Map<string, string>;
  /** upsert tuples of every writable column, in order, and their rows (a packed row as its pack, its index in upIdx) */
  ups: string[];
  upRows: (Row | Pack)[];
  /** per upRows entry: the row's index in its pack, or -1 for a row */
  upIdx: number[];
  /**
   * the keys (rowKeyId) of upRows, built on the lane's first delete: a lane of inserts only (a bulk load)
   * never pays a key identity per row
   */
  upKeys: Set<string> | null;
  lenient: boolean;
}

/**
 * Whether a table's rows may gather in a lane: no foreign key on either side (known, as loaded from the
 * replica), no unique key but the primary key, an ordinary table (not a sequence, not system-versioned).
 */
export function laneTable(meta: TableMeta): boolean {
  let lane = LANE_TABLES.get(meta);
  if (lane === undefined) LANE_TABLES.set(meta, (lane = isLaneTable(meta)));
  return lane;
}

/** laneTable per TableMeta (a meta is never edited once loaded; this runs per change) */
const LANE_TABLES = new WeakMap<TableMeta, boolean>();

function isLaneTable(meta: TableMeta): boolean {
  if (meta.foreignKeys !== false || meta.selfReferencing || meta.hasSecondaryUnique || meta.sequence || meta.versioning || meta.primaryKey.length === 0) return false;
  // keys equal on the server only when equal here (rowKeyId): integers. Not strings ('a' and 'A' are one key
  // under a _ci collation, 'a' and 'a ' under PAD SPACE: an upsert of 'A' then a delete of 'a' would be missed)
  for (const k of meta.primaryKey) if (!INTEGER_TYPES.has(meta.types.get(k) ?? "")) return false;
  return true;
}

/** the data type of each of meta.writable, in order (cached per TableMeta: a meta is never edited once loaded) */
const WRITABLE_TYPES = new WeakMap<TableMeta, (string | undefined)[]>();
function writableTypes(meta: TableMeta): (string | undefined)[] {
  let t = WRITABLE_TYPES.get(meta);
  if (!t) WRITABLE_TYPES.set(meta, (t = meta.writable.map((c) => meta.types.get(c))));
  return t;
}

/** the index of each key column in meta.writable, or null when one is not writable (cached per TableMeta) */
const KEY_INDEXES = new WeakMap<TableMeta, number[] | null>();
function keyIndexes(meta: TableMeta): number[] | null {
  let k = KEY_INDEXES.get(meta);
  if (k === undefined) {
    const idx = meta.primaryKey.map((c) => meta.writable.indexOf(c));
    KEY_INDEXES.set(meta, (k = idx.length > 0 && idx.every((i) => i >= 0) ? idx : null));
  }
  return k;
}

const INTEGER_TYPES = new Set(["tinyint", "smallint", "mediumint", "int", "integer", "bigint"]);

/** two rows have the same key (keys.ts rowKeyId): the same values at once, else their key identities compared */
function sameKey(pk: readonly string[], a: Row, b: Row): boolean {
  let same = true;
  for (const k of pk) if (a[k] !== b[k]) same = false;
  return same || rowKeyId(pk, a) === rowKeyId(pk, b);
}

/** the row carries every writable column (a FULL row image of a table the replica defines alike) */
function wholeRow(meta: TableMeta, row: Row): boolean {
  for (const c of meta.writable) if (!(c in row)) return false;
  return true;
}

/** Builds the statements of one target transaction, merging consecutive changes of the same kind and table. */
export class StatementBuilder {
  readonly out: Statement[] = [];
  /** independent tables' pending rows (Lane), by table */
  #lanes = new Map<string, Lane>();
  /** the lane #lane returned last, while it is in #lanes */
  #lastLane: Lane | null = null;
  #kind: "upsert" | "delete" | null = null;
  #meta: TableMeta | null = null;
  #cols: string[] = [];
  /** the data type of each of #cols */
  #types: (string | undefined)[] = [];
  #colsKey = "";
  #parts: string[] = [];
  #bytes = 0;
  /** the rows event flags of the changes being merged (statements never merge rows written under different CHECK constraint checks) */
  #flags = 0;
  /** the pending statement writes the ENUM error value */
  #lenient = false;
  /** the current statement's changes ran without foreign key checks on the source */
  #noFk = false;
  rows = 0;

  #push(st: Statement): void {
    if (this.#flags & ROWS_NO_CHECK_CONSTRAINT_CHECKS) st.relaxChecks = true;
    this.out.push(st);
  }

  #flush(): void {
    if (!this.#kind || !this.#meta || this.#parts.length === 0) {
      this.#kind = null;
      return;
    }
    const m = this.#meta;
    const t = qualified(m.db, m.table);
    if (this.#kind === "upsert") {
      const cols = this.#cols.map(quoteId).join(", ");
      const upd = this.#cols.filter((c) => !m.primaryKey.includes(c)).map((c) => `${quoteId(c)} = VALUES(${quoteId(c)})`);
      // a table of key columns only: a no-op assignment keeps ON DUPLICATE KEY valid
      const onDup = upd.length ? upd.join(", ") : `${quoteId(m.primaryKey[0])} = ${quoteId(m.primaryKey[0])}`;
      const sql = `INSERT INTO ${t} (${cols}) VALUES ${this.#parts.join(",")} ON DUPLICATE KEY UPDATE ${onDup}`;
      this.#push({ sql: this.#lenient ? lenient(sql) : sql, table: `${m.db}.${m.table}`, rows: this.#parts.length });
    } else {
      const pk = m.primaryKey.length === 1 ? quoteId(m.primaryKey[0]) : `(${m.primaryKey.map(quoteId).join(", ")})`;
      this.#push({ sql: `DELETE FROM ${t} WHERE ${pk} IN (${this.#parts.join(",")})`, table: `${m.db}.${m.table}`, rows: this.#parts.length });
    }
    if (this.#noFk) this.out[this.out.length - 1].relaxFk = true;
    this.#kind = null;
    this.#parts = [];
    this.#bytes = 0;
    this.#lenient = false;
  }

  finish(): Statement[] {
    this.#flush();
    this.#flushLanes();
    return this.out;
  }

  #flushLanes(): void {
    for (const lane of this.#lanes.values()) this.#emitLane(lane);
    this.#lanes.clear();
    this.#lastLane = null;
  }

  /** emits a table's lane, if any, and forgets it (its later rows start a new one, after these statements) */
  #flushLane(meta: TableMeta): void {
    const key = `${meta.db}\u0000${meta.table}`;
    const lane = this.#lanes.get(key);
    if (!lane) return;
    this.#lanes.delete(key);
    if (this.#lastLane === lane) this.#lastLane = null;
    this.#emitLane(lane);
  }

  #emitLane(lane: Lane): void {
    const m = lane.meta;
    const t = qualified(m.db, m.table);
    const name = `${m.db}.${m.table}`;
    const relaxChecks = (lane.flags & ROWS_NO_CHECK_CONSTRAINT_CHECKS) !== 0;
    const emit = (parts: string[], sql: (list: string) => string) => {
      for (let i = 0; i < parts.length; ) {
        let bytes = 0;
        let j = i;
        while (j < parts.length && (j === i || bytes + parts[j].length <= MAX_STMT_BYTES)) bytes += parts[j++].length + 1;
        this.out.push({ sql: sql(parts.slice(i, j).join(",")), table: name, rows: j - i, lane: true, ...(relaxChecks ? { relaxChecks: true } : {}) });
        i = j;
      }
    };
    if (lane.dels.size) {
      const pk = m.primaryKey.length === 1 ? quoteId(m.primaryKey[0]) : `(${m.primaryKey.map(quoteId).join(", ")})`;
      emit([...lane.dels.values()], (list) => `DELETE FROM ${t} WHERE ${pk} IN (${list})`);
    }
    if (lane.ups.length) {
      const upd = m.writable.filter((c) => !m.primaryKey.includes(c)).map((c) => `${quoteId(c)} = VALUES(${quoteId(c)})`);
      const onDup = upd.length ? upd.join(", ") : `${quoteId(m.primaryKey[0])} = ${quoteId(m.primaryKey[0])}`;
      const head = `INSERT INTO ${t} (${m.writable.map(quoteId).join(", ")}) VALUES `;
      emit(lane.ups, (list) => {
        const sql = `${head}${list} ON DUPLICATE KEY UPDATE ${onDup}`;
        return lane.lenient ? lenient(sql) : sql;
      });
    }
  }

  /** the table's lane for rows under these flags (a lane under other flags is emitted first) */
  #lane(meta: TableMeta, flags: number): Lane {
    // the lane of the previous row (the common case: a table's rows one after another); only while still pending
    const last = this.#lastLane;
    if (last !== null && last.meta === meta && last.flags === flags) return last;
    const lane = this.#findLane(meta, flags);
    this.#lastLane = lane;
    return lane;
  }

  #findLane(meta: TableMeta, flags: number): Lane {
    const key = `${meta.db}\u0000${meta.table}`;
    let lane = this.#lanes.get(key);
    if (lane && (lane.meta !== meta || lane.flags !== flags)) {
      this.#flushLane(meta);
      lane = undefined;
    }
    if (!lane) {
      // the table's rows pending in a consecutive statement go first
      if (this.#meta === meta) this.#flush();
      lane = { meta, flags, dels: new Map(), ups: [], upRows: [], upIdx: [], upKeys: null, lenient: false };
      this.#lanes.set(key, lane);
    }
    return lane;
  }

  #keyTuple(meta: TableMeta, row: Row): string {
    const pk = meta.primaryKey;
    if (pk.length === 1) return escapeValue(row[pk[0]], meta.types.get(pk[0]));
    return `(${pk.map((k) => escapeValue(row[k], meta.types.get(k))).join(",")})`;
  }

  #laneUpsert(meta: TableMeta, flags: number, row: Row): void {
    const lane = this.#lane(meta, flags);
    if (lane.dels.size || lane.upKeys) {
      const key = rowKeyId(meta.primaryKey, row);
      // a delete of this key before it: the whole-row upsert is the delete and the insert (see Lane)
      lane.dels.delete(key);
      lane.upKeys?.add(key);
    }
    const cols = meta.writable;
    const types = writableTypes(meta);
    // an array joined: one flat string per row (concatenation would keep a tree of pieces per row alive
    // until the lane is emitted, which the garbage collector pays for: 2x the CPU per row, bench/decode.mjs --build)
    const vals = new Array<string>(cols.length);
    for (let i = 0; i < cols.length; i++) vals[i] = escapeValue(row[cols[i]], types[i]);
    if (!lane.lenient && hasEnumError(row)) lane.lenient = true;
    lane.ups.push(`(${vals.join(",")})`);
    lane.upRows.push(row);
    lane.upIdx.push(-1);
  }

  /** #laneUpsert of row i of a pack: its tuple as read (rowsql.ts), its key decoded only if the lane needs keys */
  #lanePacked(meta: TableMeta, flags: number, p: Pack, i: number): void {
    const lane = this.#lane(meta, flags);
    if (lane.dels.size || lane.upKeys) {
      const key = packedKeyId(p, i, meta.primaryKey);
      lane.dels.delete(key);
      lane.upKeys?.add(key);
    }
    if (!lane.lenient && p.lenient?.includes(i)) lane.lenient = true;
    lane.ups.push(p.tuples[i]);
    lane.upRows.push(p);
    lane.upIdx.push(i);
  }

  #laneDelete(meta: TableMeta, flags: number, row: Row): void {
    const key = rowKeyId(meta.primaryKey, row);
    let lane = this.#lane(meta, flags);
    if (!lane.upKeys && lane.upRows.length) lane.upKeys = new Set(lane.upRows.map((r, j) => lane.upIdx[j] < 0 ? rowKeyId(meta.primaryKey, r as Row) : packedKeyId(r as Pack, lane.upIdx[j], meta.primaryKey)));
    if (lane.upKeys?.has(key)) {
      // an upsert of this key before it: that upsert runs first, as written (see Lane)
      this.#flushLane(meta);
      lane = this.#lane(meta, flags);
    }
    lane.dels.set(key, this.#keyTuple(meta, row));
  }

  #upsertRow(meta: TableMeta, row: Row, where: Where, noFk: boolean): void {
    const cols = columnsOf(meta, row, where);
    const key = cols.length === meta.writable.length ? "*" : cols.join("\u0000");
    if (this.#kind !== "upsert" || this.#meta !== meta || this.#colsKey !== key || this.#bytes > MAX_STMT_BYTES || this.#noFk !== noFk) {
      this.#flush();
      this.#noFk = noFk;
      this.#kind = "upsert";
      this.#meta = meta;
      this.#cols = cols;
      this.#types = cols.map((c) => meta.types.get(c));
      this.#colsKey = key;
    }
    this.#tuple(row);
  }

  /** #upsertRow of row i of a pack (a whole row, its columns the table's writable ones: packedFits) */
  #upsertPacked(meta: TableMeta, p: Pack, i: number, noFk: boolean): void {
    if (this.#kind !== "upsert" || this.#meta !== meta || this.#colsKey !== "*" || this.#bytes > MAX_STMT_BYTES || this.#noFk !== noFk) {
      this.#flush();
      this.#noFk = noFk;
      this.#kind = "upsert";
      this.#meta = meta;
      this.#cols = meta.writable;
      this.#types = writableTypes(meta);
      this.#colsKey = "*";
    }
    if (!this.#lenient && p.lenient?.includes(i)) this.#lenient = true;
    const tuple = p.tuples[i];
    this.#parts.push(tuple);
    this.#bytes += tuple.length;
  }

  /** appends the row's tuple of the current upsert's columns */
  #tuple(row: Row): void {
    const cols = this.#cols;
    const types = this.#types;
    const vals = new Array<string>(cols.length);
    for (let i = 0; i < cols.length; i++) vals[i] = escapeValue(row[cols[i]], types[i]);
    if (!this.#lenient && hasEnumError(row)) this.#lenient = true;
    const tuple = `(${vals.join(",")})`;
    this.#parts.push(tuple);
    this.#bytes += tuple.length;
  }

  #deleteRow(meta: TableMeta, row: Row, noFk: boolean): void {
    // A table that references itself: InnoDB checks each row as the statement reaches it, in key order,
    // not in the source's order (a parent before its child fails with 1451 under RESTRICT). One
    // statement per row keeps the source's order.
    if (this.#kind !== "delete" || this.#meta !== meta || this.#bytes > MAX_STMT_BYTES || this.#noFk !== noFk || meta.selfReferencing) {
      this.#flush();
      this.#noFk = noFk;
      this.#kind = "delete";
      this.#meta = meta;
    }
    const vals = meta.primaryKey.map((k) => escapeValue(row[k], meta.types.get(k)));
    const tuple = vals.length === 1 ? vals[0] : `(${vals.join(",")})`;
    this.#parts.push(tuple);
    this.#bytes += tuple.length;
  }

  /** Single-row upsert statement (the fallback of an UPDATE that matched nothing). */
  upsertSql(meta: TableMeta, row: Row, where: Where): string {
    const cols = columnsOf(meta, row, where);
    const upd = cols.filter((c) => !meta.primaryKey.includes(c)).map((c) => `${quoteId(c)} = VALUES(${quoteId(c)})`);
    const onDup = upd.length ? upd.join(", ") : `${quoteId(meta.primaryKey[0])} = ${quoteId(meta.primaryKey[0])}`;
    const sql = `INSERT INTO ${qualified(meta.db, meta.table)} (${cols.map(quoteId).join(", ")}) VALUES (${cols.map((c) => escapeValue(row[c], meta.types.get(c))).join(",")}) ON DUPLICATE KEY UPDATE ${onDup}`;
    return hasEnumError(row) ? lenient(sql) : sql;
  }

  /**
   * A MariaDB sequence's state: the source logs each change (NEXTVAL past the cache, SETVAL, the values an
   * INSERT … DEFAULT NEXTVAL took) as a write of its one row, whole; an INSERT of that row replaces the
   * replica's state, as the native applier does. Nothing else is ever logged for a sequence.
   */
  #sequence(change: RowChange, meta: TableMeta, where: Where): void {
    const t = `${meta.db}.${meta.table}`;
    if (change.op !== "insert") {
      throw new ApplyError(`${whereText(where)}: an ${change.op} of the rows of sequence \`${meta.db}\`.\`${meta.table}\` cannot be applied (a sequence's state is only ever written whole). Resnapshot the replica (datasync resnapshot).`, {
        table: t,
      });
    }
    this.#flush();
    this.rows += change.rows.length;
    for (const r of change.rows) {
      const cols = columnsOf(meta, r, where);
      this.#push({ sql: `INSERT INTO ${qualified(meta.db, meta.table)} (${cols.map(quoteId).join(", ")}) VALUES (${cols.map((c) => escapeValue(r[c], meta.types.get(c))).join(",")})`, table: t, rows: 1 });
    }
  }

  /**
   * A MariaDB system-versioned table. The source logs physical rows with their period (row_start,
   * row_end): an INSERT writes a current row; an UPDATE changes the current row and writes the old one
   * as a history row; a DELETE changes the current row into a history row; DELETE HISTORY deletes history
   * rows. The replica reproduces each as its own server would under the source's clock: the UPDATE and
   * DELETE run at the source's timestamp (`SET STATEMENT timestamp`), so the history row they leave is the
   * one the source logged (that logged row is then written only if absent); inserted rows keep their
   * period (`system_versioning_insert_history`); DELETE HISTORY removes exactly the history ending up to
   * the last logged row (the replica holds the source's history, so that is the logged set). What cannot
   * be reproduced this way (transaction-precise periods, a changed history row) stops the replica.
   */
  #versioned(change: RowChange, meta: TableMeta, where: Where): void {
    const v = meta.versioning!;
    const t = qualified(meta.db, meta.table);
    const name = `${meta.db}.${meta.table}`;
    const stop = (what: string) =>
      new ApplyError(
        `${whereText(where)}: ${what} of system-versioned table \`${meta.db}\`.\`${meta.table}\` cannot be reproduced exactly on the replica. Exclude the table (tables.exclude) or resnapshot it after the change (datasync resnapshot --tables ${name}).`,
        { table: name },
      );
    if (v.trx) throw stop(`a change (its period is made of the source's transaction ids, WITH SYSTEM VERSIONING on BIGINT UNSIGNED ROW START/END)`);
    this.#flush();
    this.rows += change.rows.length;
    const cols = (r: Row) => columnsOf(meta, r, where);
    const push = (sql: string, fallback?: string) => this.#push({ sql, table: name, rows: 1, ...(fallback ? { fallback } : {}), ...(change.noFkChecks ? { relaxFk: true } : {}) });
    if (change.op === "insert") {
      for (const r of change.rows) push(historyInsertSql(meta, r, cols(r), !isCurrentEnd(r[v.end])));
    } else if (change.op === "update") {
      for (let i = 0; i < change.rows.length; i++) {
        const b = change.before![i];
        const a = change.rows[i];
        if (!isCurrentEnd(b[v.end])) throw stop("an update of a history row");
        if (isCurrentEnd(a[v.end])) {
          const c = cols(a);
          const set = c.map((k) => `${quoteId(k)} = ${escapeValue(a[k], meta.types.get(k))}`).join(", ");
          push(`SET STATEMENT timestamp = ${unixTime(a[v.start])} FOR UPDATE ${t} SET ${set} WHERE ${whereKey(meta, b)}`, historyInsertSql(meta, a, c, false));
        } else {
          push(`SET STATEMENT timestamp = ${unixTime(a[v.end])} FOR DELETE FROM ${t} WHERE ${whereKey(meta, b)}`, historyInsertSql(meta, a, cols(a), true));
        }
      }
    } else {
      if (change.rows.some((r) => isCurrentEnd(r[v.end]))) throw stop("a delete of a current row (not through DELETE or DELETE HISTORY)");
      let last = -Infinity;
      for (const r of change.rows) last = Math.max(last, micros(r[v.end]));
      push(`DELETE HISTORY FROM ${t} BEFORE SYSTEM_TIME TIMESTAMP'${fromMicros(last + 1)}'`);
    }
  }

  /** A source savepoint or a rollback to it (reader.ts): run on the replica in place, its engines decide what is undone. */
  marker(change: RowChange): void {
    this.#flush();
    // a rollback to a savepoint undoes exactly the changes written after it: every pending row goes first
    this.#flushLanes();
    const name = quoteId(change.savepoint ?? "");
    this.out.push({ sql: change.op === "savepoint" ? `SAVEPOINT ${name}` : `ROLLBACK TO SAVEPOINT ${name}`, table: "", rows: 0 });
  }

  add(change: RowChange, meta: TableMeta, where: Where): void {
    if (change.savepoint !== undefined) return this.marker(change);
    if (meta.sequence) return this.#sequence(change, meta, where);
    if (meta.versioning) return this.#versioned(change, meta, where);
    if (meta.primaryKey.length === 0) {
      throw new ApplyError(`${whereText(where)}: table \`${meta.db}\`.\`${meta.table}\` has no primary key on the replica; rows cannot be located. Add the key on the replica or exclude the table.`, {
        table: `${meta.db}.${meta.table}`,
      });
    }
    const flags = change.flags ?? 0;
    if (flags !== this.#flags) {
      this.#flush();
      this.#flags = flags;
    }
    if (this.#addPacked(change, meta, flags, where)) return;
    if (change.op !== "insert") {
      // a row image without the whole key (a session's binlog_row_image=NOBLOB on a table whose key the
      // replica defines differently, or an image that left key columns out) cannot locate its row
      for (const r of change.before ?? change.rows) {
        let whole = true;
        for (const k of meta.primaryKey) if (!(k in r)) whole = false;
        if (!whole) {
          const missing = meta.primaryKey.filter((k) => !(k in r));
          throw new ApplyError(
            `${whereText(where)}: the ${change.op} of \`${meta.db}\`.\`${meta.table}\` arrived without the key column(s) ${missing.map((k) => `\`${k}\``).join(", ")} in its row image (the source session wrote it with binlog_row_image other than FULL), so the row cannot be located on the replica. Set binlog_row_image=FULL on the source for every session (SET GLOBAL binlog_row_image='FULL' and drop session overrides), then resnapshot the table (datasync resnapshot --tables ${meta.db}.${meta.table}).`,
            { table: `${meta.db}.${meta.table}` },
          );
        }
      }
    }
    const noFk = change.noFkChecks === true;
    this.rows += change.rows.length;
    if (laneTable(meta)) {
      // foreign key checks (noFk) concern no row of a table without foreign keys
      for (let i = 0; i < change.rows.length; i++) {
        const row = change.rows[i];
        if (change.op === "delete") {
          this.#laneDelete(meta, flags, row);
          continue;
        }
        const before = change.before?.[i];
        if (wholeRow(meta, row) && (!before || sameKey(meta.primaryKey, before, row))) {
          knownColumns(meta, row, where);
          this.#laneUpsert(meta, flags, row);
          continue;
        }
        // a row image without every column (binlog_row_image MINIMAL or NOBLOB, a column only the replica
        // has), or an update of the key: after the table's lane, as a statement of its own below
        this.#flushLane(meta);
        this.#sequential({ ...change, rows: [row], ...(before ? { before: [before] } : {}) }, meta, where, noFk);
      }
      return;
    }
    this.#sequential(change, meta, where, noFk);
  }

  /**
   * add() of an insert or update whose rows were read as SQL tuples (rowsql.ts) while they fit the replica's table
   * (its writable columns are the row image's, in order, and hold the key): the statements the rows would give,
   * from the tuples. A row whose key changed, or an update of a table with another unique key, is decoded and
   * takes the rows' path. False (nothing done) for any other change.
   */
  #addPacked(change: RowChange, meta: TableMeta, flags: number, where: Where): boolean {
    if (change.op !== "insert" && change.op !== "update") return false;
    const packs = packsOf(change);
    if (!packs) return false;
    for (const p of packs) if (!packedFits(p.plan, meta.writable, meta.types, meta)) return false;
    const keyIdx = keyIndexes(meta);
    if (!keyIdx) return false;
    this.rows += rowCount(change);
    const noFk = change.noFkChecks === true;
    const lane = laneTable(meta);
    for (const p of packs) {
      for (let i = 0; i < p.tuples.length; i++) {
        if (p.update && (!sameKeyPacked(p, i, keyIdx, meta.primaryKey, sameKey) || (!lane && meta.hasSecondaryUnique))) {
          // the rows' path for this row (a key update, or an UPDATE that another unique key must not turn into an upsert)
          if (lane) this.#flushLane(meta);
          this.#sequential({ op: "update", db: change.db, table: change.table, rows: [rowOf(p, i)], before: [beforeOf(p, i)] }, meta, where, noFk);
        } else if (lane) this.#lanePacked(meta, flags, p, i);
        else this.#upsertPacked(meta, p, i, noFk);
      }
    }
    return true;
  }

  /** the change's rows in statements in their order, consecutive rows of one table and kind merged */
  #sequential(change: RowChange, meta: TableMeta, where: Where, noFk: boolean): void {
    if (change.op === "insert") {
      for (const r of change.rows) this.#upsertRow(meta, r, where, noFk);
    } else if (change.op === "delete") {
      for (const r of change.rows) this.#deleteRow(meta, r, noFk);
    } else {
      for (let i = 0; i < change.rows.length; i++) {
        const before = change.before![i];
        const after = change.rows[i];
        const keyChanged = !sameKey(meta.primaryKey, before, after);
        if (!keyChanged && !meta.hasSecondaryUnique) {
          // Same key, full after image, no other unique key that an upsert could hit by mistake:
          // an upsert is the UPDATE (or the upsert DESIGN.md asks for when no row matched).
          this.#upsertRow(meta, after, where, noFk);
          continue;
        }
        this.#flush();
        const cols = columnsOf(meta, after, where);
        const set = cols.map((c) => `${quoteId(c)} = ${escapeValue(after[c], meta.types.get(c))}`).join(", ");
        const upd = `UPDATE ${qualified(meta.db, meta.table)} SET ${set} WHERE ${whereKey(meta, before)}`;
        this.#push({
          sql: hasEnumError(after) ? lenient(upd) : upd,
          table: `${meta.db}.${meta.table}`,
          rows: 1,
          fallback: this.upsertSql(meta, after, where),
          ...(noFk ? { relaxFk: true } : {}),
        });
      }
    }
  }
}
