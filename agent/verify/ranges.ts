// Ranges owns the SQL that verify and repair run over one table: the table's shape (columns, primary
// key), key ranges by primary key (composite keys included), the byte-exact row checksum, and the
// literals and statements that repair writes. Pure string building, no connections: unit-testable.
import { qualified, quoteId } from "../db.js";
import { type Key } from "../keys.js";
import type { ColumnDetails } from "../tables.js";
import { literal as sqlLiteral } from "../literals.js";

/** A column as verify compares and hashes it: tables.ts's ColumnDetails without its table. */
export type Column = Omit<ColumnDetails, "db" | "tbl">;

export interface TableShape {
  db: string;
  table: string;
  columns: Column[];
  /** primary key column names in key order; empty when the table has none */
  key: string[];
}

/** One value per key column, as mysql2 returns it with the agent's options (string, number, Buffer). */
export type { Key };

/** A range of primary keys: (after, through]; null is unbounded on that side. */
export interface KeyRange {
  after: Key | null;
  through: Key | null;
}

export const FULL_RANGE: KeyRange = Object.freeze({ after: null, through: null });

/**
 * The 64-bit row hash. `crc64` is CRC32 and CRC32C of the same bytes (MariaDB ≥ 10.8; about 1.5× faster
 * than MD5 there); `md5` is the first 64 bits of MD5 (MariaDB, MySQL before 9); `sha2` the first 64 bits
 * of SHA-256 (MySQL 9 has no MD5() or SHA1(); SHA2() exists everywhere). Both sides of a comparison must
 * use the same one. The per-row digest that narrows a differing range is MD5 with crc64/md5, SHA-256 with sha2.
 */
export type HashAlgo = "crc64" | "md5" | "sha2";

const STRING_TYPES = new Set(["char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"]);
const VARLEN_TYPES = new Set(["varchar", "tinytext", "text", "mediumtext", "longtext", "json", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "char", "binary"]);
const GEOMETRY_TYPES = new Set(["geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection", "geomcollection"]);
/** character sets whose values round-trip exactly through a utf8mb4 client connection as JS strings */
const UNICODE_SAFE_CHARSETS = /^(utf8|utf8mb3|utf8mb4|latin1|ascii|ucs2|utf16|utf16le|utf32)$/i;

export function tableName(s: { db: string; table: string }): string {
  return `${s.db}.${s.table}`;
}

/** columns that hold data (generated columns are derived from them) */
export function dataColumns(s: TableShape): Column[] {
  return s.columns.filter((c) => !c.generated);
}

/** The expression whose bytes stand for a column's value in the row checksum. */
export function hashTerm(c: Column): string {
  const id = quoteId(c.name);
  // FLOAT prints with 6 significant digits ("1.0000001" and "1.0000002" both print "1"); widened to
  // DOUBLE it prints the shortest text that round-trips, so distinct values stay distinct.
  if (c.dataType === "float") return `CAST(${id} AS DOUBLE)`;
  if (c.dataType === "bit") return `${id} + 0`;
  // as bytes: no charset conversion (and no "illegal mix of collations" between columns)
  if (STRING_TYPES.has(c.dataType)) return `CAST(${id} AS BINARY)`;
  return id;
}

/**
 * The row as one byte string: every data column, then the NULL flags (CONCAT_WS skips NULLs, so NULL and
 * '' would otherwise look alike) and the lengths of variable-length values (so a '#' inside a value cannot
 * move bytes from one column to the next unnoticed).
 */
export function rowString(s: TableShape): string {
  const cols = dataColumns(s);
  const parts = cols.map(hashTerm);
  const nullable = cols.filter((c) => c.nullable);
  if (nullable.length) parts.push(`CONCAT(${nullable.map((c) => `ISNULL(${quoteId(c.name)})`).join(", ")})`);
  for (const c of cols) if (VARLEN_TYPES.has(c.dataType)) parts.push(`LENGTH(${quoteId(c.name)})`);
  return `CONCAT_WS('#', ${parts.join(", ")})`;
}

/** an unsigned 64-bit hash of the row */
export function rowHash64(s: TableShape, algo: HashAlgo): string {
  const r = rowString(s);
  if (algo === "crc64") return `(CRC32(${r}) << 32 | CRC32C(${r}))`;
  return `CAST(CONV(LEFT(${algo === "sha2" ? `SHA2(${r}, 256)` : `MD5(${r})`}, 16), 16, 10) AS UNSIGNED)`;
}

/** the full digest of the row (hex text), compared row by row when a range differs */
export function rowDigest(s: TableShape, algo: HashAlgo): string {
  return algo === "sha2" ? `SHA2(${rowString(s)}, 256)` : `MD5(${rowString(s)})`;
}

/** A SQL literal for a value as mysql2 returned it (numbers of integer/decimal columns stay unquoted). */
export function literal(v: unknown, c?: Column): string {
  return sqlLiteral(v, c?.dataType);
}

function keyColumns(s: TableShape): Column[] {
  return s.key.map((k) => {
    const c = s.columns.find((x) => x.name === k);
    if (!c) throw new Error(`${tableName(s)}: primary key column ${k} is not a column of the table`);
    return c;
  });
}

/**
 * key > after (strict) or key <= through, expanded for composite keys as a leading-column bound plus a
 * disjunction, a form the range optimizer of every MySQL and MariaDB version turns into an index range.
 */
export function keyBound(s: TableShape, op: ">" | "<=", key: Key): string {
  const cols = keyColumns(s);
  if (key.length !== cols.length) throw new Error(`${tableName(s)}: a key of ${key.length} values for ${cols.length} key columns`);
  const id = cols.map((c) => quoteId(c.name));
  const lit = cols.map((c, i) => literal(key[i], c));
  if (cols.length === 1) return `${id[0]} ${op} ${lit[0]}`;
  const strict = op === ">" ? ">" : "<";
  const lead = op === ">" ? ">=" : "<=";
  const alts: string[] = [];
  for (let i = 0; i < cols.length; i++) {
    const eq = id.slice(0, i).map((x, j) => `${x} = ${lit[j]}`);
    const last = i === cols.length - 1 && op === "<=" ? "<=" : strict;
    alts.push([...eq, `${id[i]} ${last} ${lit[i]}`].join(" AND "));
  }
  return `${id[0]} ${lead} ${lit[0]} AND (${alts.map((a) => `(${a})`).join(" OR ")})`;
}

export function rangeWhere(s: TableShape, r: KeyRange): string {
  const parts: string[] = [];
  if (r.after) parts.push(`(${keyBound(s, ">", r.after)})`);
  if (r.through) parts.push(`(${keyBound(s, "<=", r.through)})`);
  return parts.length ? parts.join(" AND ") : "TRUE";
}

function keyList(s: TableShape): string {
  return s.key.map(quoteId).join(", ");
}

/** row count and XOR of the 64-bit row hashes over a key range (order-independent) */
export function checksumSql(s: TableShape, r: KeyRange, algo: HashAlgo): string {
  return `SELECT COUNT(*) AS n, CAST(COALESCE(BIT_XOR(${rowHash64(s, algo)}), 0) AS CHAR) AS x FROM ${qualified(s.db, s.table)} WHERE ${rangeWhere(s, r)}`;
}

/** the key `rows` positions after `after` (the inclusive end of a chunk of that many rows), or none */
export function boundarySql(s: TableShape, after: Key | null, rows: number): string {
  return `SELECT ${keyList(s)} FROM ${qualified(s.db, s.table)} WHERE ${rangeWhere(s, { after, through: null })} ORDER BY ${keyList(s)} LIMIT 1 OFFSET ${Math.max(0, rows - 1)}`;
}

/** the keys of a range in key order (to split it) */
export function keysSql(s: TableShape, r: KeyRange, limit?: number): string {
  return `SELECT ${keyList(s)} FROM ${qualified(s.db, s.table)} WHERE ${rangeWhere(s, r)} ORDER BY ${keyList(s)}${limit ? ` LIMIT ${limit}` : ""}`;
}

/** key columns and the full digest of each row of a range, in key order */
export function rowHashesSql(s: TableShape, r: KeyRange, algo: HashAlgo, limit?: number): string {
  return `SELECT ${keyList(s)}, ${rowDigest(s, algo)} AS \`#h\` FROM ${qualified(s.db, s.table)} WHERE ${rangeWhere(s, r)} ORDER BY ${keyList(s)}${limit ? ` LIMIT ${limit}` : ""}`;
}

/** WHERE clause selecting exactly these keys */
export function keysWhere(s: TableShape, keys: Key[]): string {
  const cols = keyColumns(s);
  if (keys.length === 0) return "FALSE";
  if (cols.length === 1) return `${quoteId(cols[0].name)} IN (${keys.map((k) => literal(k[0], cols[0])).join(", ")})`;
  return keys.map((k) => `(${cols.map((c, i) => `${quoteId(c.name)} = ${literal(k[i], c)}`).join(" AND ")})`).join(" OR ");
}

export function rowHashesByKeySql(s: TableShape, keys: Key[], algo: HashAlgo): string {
  return `SELECT ${keyList(s)}, ${rowDigest(s, algo)} AS \`#h\` FROM ${qualified(s.db, s.table)} WHERE ${keysWhere(s, keys)}`;
}

/** How repair reads a column so that writing it back is byte-exact. */
export function readTerm(c: Column): string {
  const id = quoteId(c.name);
  if (c.dataType === "float") return `CAST(${id} AS DOUBLE) AS ${id}`;
  // mysql2 would parse geometry into objects; its internal bytes load back as they are (like mysqldump --hex-blob)
  if (GEOMETRY_TYPES.has(c.dataType)) return `CAST(${id} AS BINARY) AS ${id}`;
  if (STRING_TYPES.has(c.dataType) && c.charset && !UNICODE_SAFE_CHARSETS.test(c.charset)) return `CAST(${id} AS BINARY) AS ${id}`;
  return id;
}

export function readRowsSql(s: TableShape, keys: Key[]): string {
  return `SELECT ${dataColumns(s).map(readTerm).join(", ")} FROM ${qualified(s.db, s.table)} WHERE ${keysWhere(s, keys)} ORDER BY ${keyList(s)}`;
}

/** rows of a range in key order, read for writing (a page of a table copy) */
export function readRangeSql(s: TableShape, r: KeyRange, limit: number): string {
  return `SELECT ${dataColumns(s).map(readTerm).join(", ")} FROM ${qualified(s.db, s.table)} WHERE ${rangeWhere(s, r)} ORDER BY ${keyList(s)} LIMIT ${limit}`;
}

/** Multi-row INSERT of source rows. Not an upsert: if a secondary unique key collided, an upsert would
 *  silently update another row; a plain INSERT fails and repair retries the range after a fresh look. */
export function insertSql(s: TableShape, rows: Record<string, unknown>[]): string {
  const cols = dataColumns(s);
  const values = rows.map((r) => `(${cols.map((c) => literal(r[c.name], c)).join(", ")})`).join(",\n  ");
  return `INSERT INTO ${qualified(s.db, s.table)} (${cols.map((c) => quoteId(c.name)).join(", ")}) VALUES\n  ${values}`;
}

/** UPDATE one row to the source's values; the key columns too (a key equal by collation may differ in bytes). */
export function updateSql(s: TableShape, key: Key, row: Record<string, unknown>): string {
  const set = dataColumns(s).map((c) => `${quoteId(c.name)} = ${literal(row[c.name], c)}`);
  return `UPDATE ${qualified(s.db, s.table)} SET ${set.join(", ")} WHERE ${keysWhere(s, [key])}`;
}

export function deleteSql(s: TableShape, keys: Key[]): string {
  return `DELETE FROM ${qualified(s.db, s.table)} WHERE ${keysWhere(s, keys)}`;
}

/** A key for people: `42`, `'abc'`, `(1, 'x')`, binary as 0x… */
export function formatKey(k: Key | null, side: "lo" | "hi" = "lo"): string {
  if (k === null) return side === "lo" ? "-∞" : "∞";
  const one = (v: unknown) => (Buffer.isBuffer(v) ? `0x${v.toString("hex")}` : typeof v === "number" || (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v)) ? String(v) : JSON.stringify(v));
  return k.length === 1 ? one(k[0]) : `(${k.map(one).join(", ")})`;
}

/** A key for JSON output: Buffers as "0x…" strings. */
export function jsonKey(k: Key | null): unknown[] | null {
  return k === null ? null : k.map((v) => (Buffer.isBuffer(v) ? `0x${v.toString("hex")}` : v));
}

/** Compare two shapes; every difference in words (empty: same columns, types, key). */
export function compareShapes(src: TableShape, rep: TableShape): string[] {
  const out: string[] = [];
  const rmap = new Map(rep.columns.map((c) => [c.name, c]));
  const smap = new Map(src.columns.map((c) => [c.name, c]));
  for (const c of src.columns) {
    const r = rmap.get(c.name);
    if (!r) {
      out.push(`column ${quoteId(c.name)} is missing on the replica`);
      continue;
    }
    if (r.columnType !== c.columnType) out.push(`column ${quoteId(c.name)} is ${c.columnType} on the source, ${r.columnType} on the replica`);
    if (r.nullable !== c.nullable) out.push(`column ${quoteId(c.name)} is ${c.nullable ? "NULL" : "NOT NULL"} on the source, ${r.nullable ? "NULL" : "NOT NULL"} on the replica`);
    if ((r.collation ?? "") !== (c.collation ?? "")) out.push(`column ${quoteId(c.name)} has collation ${c.collation} on the source, ${r.collation} on the replica`);
    if (r.generated !== c.generated || (r.generationExpression ?? "") !== (c.generationExpression ?? "")) {
      out.push(`column ${quoteId(c.name)} is ${c.generated ? `generated as ${c.generationExpression}` : "not generated"} on the source, ${r.generated ? `generated as ${r.generationExpression}` : "not generated"} on the replica`);
    }
  }
  for (const r of rep.columns) if (!smap.has(r.name)) out.push(`column ${quoteId(r.name)} exists only on the replica`);
  if (out.length === 0) {
    const so = src.columns.map((c) => c.name).join(",");
    const ro = rep.columns.map((c) => c.name).join(",");
    if (so !== ro) out.push(`columns are in a different order (source: ${src.columns.map((c) => c.name).join(", ")}; replica: ${rep.columns.map((c) => c.name).join(", ")})`);
  }
  if (src.key.join(",") !== rep.key.join(",")) {
    out.push(`primary key is (${src.key.join(", ") || "none"}) on the source, (${rep.key.join(", ") || "none"}) on the replica`);
  }
  return out;
}
