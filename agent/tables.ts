// Tables owns what the agent reads about a table's shape from a server's information_schema, in one place:
// columns in order, which are generated (never written), types, the primary key, whether other unique keys
// exist, self-references (TableMeta, for the applier and the snapshot; cached per replica until a DDL is
// applied), every column's details for verify (columnDetails), and the columns a binlog without names is
// decoded with (binlogColumns).
import { qualified, type Conn } from "./db.js";

export interface TableMeta {
  db: string;
  table: string;
  columns: string[];
  /** columns that may be written (not generated) */
  writable: string[];
  writableSet: Set<string>;
  /** data type per column, lower case */
  types: Map<string, string>;
  primaryKey: string[];
  /** another UNIQUE key besides the primary key exists */
  hasSecondaryUnique: boolean;
  /** a foreign key of the table references the table itself (row order within a statement matters) */
  selfReferencing?: boolean;
  /**
   * A foreign key of the table references a table, or one references it (false: neither, as loaded from
   * the replica's information_schema; undefined: not known). The applier reorders and merges a table's rows
   * only when false: a delete cascades, and rows of related tables are checked in statement order.
   */
  foreignKeys?: boolean;
  /**
   * A MariaDB SEQUENCE: one row, no key. The source logs every change of its state (NEXTVAL past the
   * cache, SETVAL) as a write of the whole row; an INSERT of that row sets the replica's state, as the
   * native applier does.
   */
  sequence?: boolean;
  /**
   * A MariaDB system-versioned table: the period's columns (implicit `row_start`/`row_end`, or the names
   * of PERIOD FOR SYSTEM_TIME). They are not in `writable`; `primaryKey` ends with `end` (the physical key
   * of current and history rows). `trx`: transaction-precise (ids of the source's transactions).
   */
  versioning?: { start: string; end: string; trx: boolean };
}

/** the TABLE_TYPEs of information_schema.TABLES the applier writes rows to (MariaDB: sequences, system-versioned tables) */
export const ROW_TABLE_TYPES = ["BASE TABLE", "SEQUENCE", "SYSTEM VERSIONED"];

export class SchemaCache {
  #conn: () => Conn;
  #cache = new Map<string, TableMeta | null>();

  constructor(conn: () => Conn) {
    this.#conn = conn;
  }

  clear(): void {
    this.#cache.clear();
  }

  /** the cached metadata of a table, undefined when not cached (or cached as missing: then get() answers null) */
  peek(db: string, table: string): TableMeta | undefined {
    return this.#cache.get(`${db}\u0000${table}`) ?? undefined;
  }

  /** Loads every table of these databases at once (tables already cached keep their entry). */
  async prewarm(dbs: string[]): Promise<number> {
    const metas = await loadDatabasesMeta(this.#conn(), dbs);
    for (const m of metas) {
      const key = `${m.db}\u0000${m.table}`;
      if (!this.#cache.has(key)) this.#cache.set(key, m);
    }
    return metas.length;
  }

  /** null when the table does not exist on the replica */
  async get(db: string, table: string): Promise<TableMeta | null> {
    const key = `${db}\u0000${table}`;
    if (this.#cache.has(key)) return this.#cache.get(key)!;
    const meta = await loadTableMeta(this.#conn(), db, table);
    this.#cache.set(key, meta);
    return meta;
  }
}

/**
 * A generated column (never written) by information_schema.COLUMNS.EXTRA: "VIRTUAL GENERATED", "STORED
 * GENERATED" (MySQL, MariaDB), "PERSISTENT GENERATED" (MariaDB). Not MySQL's "DEFAULT_GENERATED", which marks
 * an ordinary column with an expression default (DEFAULT CURRENT_TIMESTAMP, DEFAULT (expr)): that one holds
 * data and must be written and compared. (MySQL has no COLUMNS.IS_GENERATED; MariaDB's agrees with EXTRA.)
 */
export function isGeneratedExtra(extra: unknown): boolean {
  return /(^|\s)(VIRTUAL|STORED|PERSISTENT)(\s|$)/i.test(String(extra ?? ""));
}

export async function loadTableMeta(c: Conn, db: string, table: string): Promise<TableMeta | null> {
  const [cols] = await c.query<any[]>(
    `SELECT COLUMN_NAME AS name, DATA_TYPE AS type, EXTRA AS extra
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [db, table],
  );
  if (cols.length === 0) return null;
  const [types] = await c.query<any[]>("SELECT TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", [db, table]);
  const [keys] = await c.query<any[]>(
    `SELECT INDEX_NAME AS idx, COLUMN_NAME AS col FROM information_schema.STATISTICS
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX`,
    [db, table],
  );
  // every foreign key the table is on either side of (its own, and those of other tables, in any database, that reference it)
  const [fks] = await c.query<any[]>(
    `SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS tbl, UNIQUE_CONSTRAINT_SCHEMA AS refDb, REFERENCED_TABLE_NAME AS refTbl
     FROM information_schema.REFERENTIAL_CONSTRAINTS
     WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)`,
    [db, table, db, table],
  );
  const selfReferencing = fks.some((r) => r.db === db && r.tbl === table && r.refDb === db && r.refTbl === table);
  const meta: TableMeta = { ...buildMeta(db, table, cols, keys, types[0]?.type), selfReferencing, foreignKeys: fks.length > 0 };
  return types[0]?.type === "SYSTEM VERSIONED" ? withVersioning(c, meta) : meta;
}

/**
 * The period columns of a system-versioned table, from its definition (implicit ones are not in
 * information_schema.COLUMNS and are named row_start/row_end; explicit ones are named by PERIOD FOR
 * SYSTEM_TIME). The meta then writes them only explicitly and locates rows by the physical key.
 */
async function withVersioning(c: Conn, meta: TableMeta): Promise<TableMeta> {
  const [[r]] = await c.query<any[]>(`SHOW CREATE TABLE ${qualified(meta.db, meta.table)}`);
  const ddl = String(r?.["Create Table"] ?? "");
  const id = "`((?:[^`]|``)+)`";
  const m = new RegExp(`PERIOD FOR SYSTEM_TIME\\s*\\(\\s*${id}\\s*,\\s*${id}\\s*\\)`, "i").exec(ddl);
  const start = m ? m[1].replace(/``/g, "`") : "row_start";
  const end = m ? m[2].replace(/``/g, "`") : "row_end";
  const trx = /bigint/i.test(meta.types.get(start) ?? "");
  const writable = meta.writable.filter((c) => c !== start && c !== end);
  const types = new Map(meta.types);
  if (!types.has(start)) types.set(start, "timestamp");
  if (!types.has(end)) types.set(end, "timestamp");
  return {
    ...meta,
    writable,
    writableSet: new Set(writable),
    types,
    primaryKey: [...meta.primaryKey.filter((k) => k !== end), end],
    versioning: { start, end, trx },
  };
}

function buildMeta(db: string, table: string, cols: any[], keys: any[], tableType: unknown): TableMeta {
  const columns = cols.map((r) => String(r.name));
  const generated = new Set(cols.filter((r) => isGeneratedExtra(r.extra)).map((r) => String(r.name)));
  const writable = columns.filter((c) => !generated.has(c));
  return {
    db,
    table,
    columns,
    writable,
    writableSet: new Set(writable),
    types: new Map(cols.map((r) => [String(r.name), String(r.type).toLowerCase()])),
    primaryKey: keys.filter((k) => k.idx === "PRIMARY").map((k) => String(k.col)),
    hasSecondaryUnique: keys.some((k) => k.idx !== "PRIMARY"),
    ...(tableType === "SEQUENCE" ? { sequence: true } : {}),
  };
}

/**
 * The metadata of every table of the given databases in two queries (instead of two per table): a
 * session loads it before streaming, so the first transaction touching a table does not wait for
 * INFORMATION_SCHEMA, which is slow under load (≈ 90 ms a query measured under sysbench).
 */
export async function loadDatabasesMeta(c: Conn, dbs: string[]): Promise<TableMeta[]> {
  if (!dbs.length) return [];
  const [cols] = await c.query<any[]>(
    `SELECT c.TABLE_SCHEMA AS db, c.TABLE_NAME AS tbl, c.COLUMN_NAME AS name, c.DATA_TYPE AS type, c.EXTRA AS extra, t.TABLE_TYPE AS tableType
     FROM information_schema.COLUMNS c JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
     WHERE c.TABLE_SCHEMA IN (?) AND t.TABLE_TYPE IN (?) ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION`,
    [dbs, ROW_TABLE_TYPES],
  );
  const [keys] = await c.query<any[]>(
    `SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, INDEX_NAME AS idx, COLUMN_NAME AS col FROM information_schema.STATISTICS
     WHERE TABLE_SCHEMA IN (?) AND NON_UNIQUE = 0 ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
    [dbs],
  );
  const group = (rows: any[]) => {
    const m = new Map<string, any[]>();
    for (const r of rows) {
      const k = `${r.db}\u0000${r.tbl}`;
      let l = m.get(k);
      if (!l) m.set(k, (l = []));
      l.push(r);
    }
    return m;
  };
  // every foreign key with a side in these databases: both sides are related tables, a self-reference is one
  const [fks] = await c.query<any[]>(
    `SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS tbl, UNIQUE_CONSTRAINT_SCHEMA AS refDb, REFERENCED_TABLE_NAME AS refTbl
     FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN (?) OR UNIQUE_CONSTRAINT_SCHEMA IN (?)`,
    [dbs, dbs],
  );
  const selfRef = new Set(fks.filter((r) => r.db === r.refDb && r.tbl === r.refTbl).map((r) => `${r.db}\u0000${r.tbl}`));
  // names compared without case: a name spelled differently on one side must not hide a key (that errs on the safe side)
  const related = new Set(fks.flatMap((r) => [`${r.db}\u0000${r.tbl}`.toLowerCase(), `${r.refDb}\u0000${r.refTbl}`.toLowerCase()]));
  const byCols = group(cols);
  const byKeys = group(keys);
  const metas = [...byCols].map(([k, cs]): TableMeta => ({ ...buildMeta(cs[0].db, cs[0].tbl, cs, byKeys.get(k) ?? [], cs[0].tableType), selfReferencing: selfRef.has(k), foreignKeys: related.has(k.toLowerCase()) }));
  const versioned = new Set([...byCols].filter(([, cs]) => cs[0].tableType === "SYSTEM VERSIONED").map(([k]) => k));
  return Promise.all(metas.map((m) => (versioned.has(`${m.db}\u0000${m.table}`) ? withVersioning(c, m) : m)));
}

/** One column as information_schema.COLUMNS describes it (verify compares and hashes by these). */
export interface ColumnDetails {
  db: string;
  tbl: string;
  name: string;
  /** DATA_TYPE, lower case */
  dataType: string;
  columnType: string;
  nullable: boolean;
  generated: boolean;
  generationExpression: string | null;
  charset: string | null;
  collation: string | null;
}

/** Every column of the given databases, in table and ordinal order. */
export async function columnDetails(c: Conn, dbs: string[]): Promise<ColumnDetails[]> {
  if (!dbs.length) return [];
  const [cols] = await c.query<any[]>(
    `SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, COLUMN_NAME AS name, LOWER(DATA_TYPE) AS dataType, COLUMN_TYPE AS columnType,
            IS_NULLABLE AS nullable, EXTRA AS extra, GENERATION_EXPRESSION AS gen, CHARACTER_SET_NAME AS cs, COLLATION_NAME AS coll
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN (?) ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`,
    [dbs],
  );
  return cols.map((r) => {
    const generated = isGeneratedExtra(String(r.extra ?? "").toUpperCase());
    return {
      db: r.db,
      tbl: r.tbl,
      name: r.name,
      dataType: String(r.dataType),
      columnType: String(r.columnType),
      nullable: r.nullable === "YES",
      generated,
      generationExpression: generated ? (r.gen ?? null) : null,
      charset: r.cs ?? null,
      collation: r.coll ?? null,
    };
  });
}

/** The primary key columns of every table of the given databases, in key order. */
export async function primaryKeys(c: Conn, dbs: string[]): Promise<{ db: string; tbl: string; name: string }[]> {
  if (!dbs.length) return [];
  const [keys] = await c.query<any[]>(
    "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, COLUMN_NAME AS name FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN (?) AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_SCHEMA, TABLE_NAME, SEQ_IN_INDEX",
    [dbs],
  );
  return keys;
}

/**
 * The columns a rows event is decoded with where the binlog carries no column names (MySQL 5.7, no
 * binlog_row_metadata): names, collations, character sets, comments and types in ordinal order, read from the
 * replica (which stands at the same stream position: DDL is applied in order).
 */
export async function binlogColumns(c: Conn, db: string, table: string): Promise<any[]> {
  const [rows] = await c.query<any[]>(
    `SELECT COLUMN_NAME, COLLATION_NAME, CHARACTER_SET_NAME, COLUMN_COMMENT, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [db, table],
  );
  return rows;
}
