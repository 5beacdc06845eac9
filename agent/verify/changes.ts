// Changes owns "what changed since the verify before the fence": a binlog reader from that position that
// collects the primary keys of every row written in scope, so that the verify during the freeze compares
// only those rows (the rest was just verified and has not changed). Cascades are not in the binlog
// (InnoDB), so a delete or key change on a parent marks its cascading children for a whole-table compare;
// a DDL in scope marks its tables (or the whole scope) the same way.
import type { Config } from "../config.js";
import { connectionOptions, type Conn } from "../db.js";
import { dataColumns, readRowsSql, type Key, type TableShape } from "./ranges.js";
import { keyId, keyValues } from "../keys.js";
import { BinlogReader, type Txn } from "../source/reader.js";
import { comparePos, type Position } from "../source/positions.js";
import type { Flavor } from "../rules.js";

/** Keys beyond this per table: compare the whole table instead (bounded memory). */
const MAX_KEYS_PER_TABLE = 200_000;

export class ChangeTracker {
  readonly keys = new Map<string, Map<string, Key>>();
  /** tables to compare whole (cascade children, DDL, too many keys, unknown shape) */
  readonly whole = new Set<string>();
  allTables = false;
  transactions = 0;
  #reader: BinlogReader;
  #shapes: Map<string, TableShape>;
  #children: Map<string, CascadeEdge[]>;
  #error: Error | null = null;

  constructor(cfg: Config, flavor: Flavor, serverId: number, start: Position, shapes: Map<string, TableShape>, children: Map<string, CascadeEdge[]>, inScope: (db: string, t: string) => boolean) {
    this.#shapes = shapes;
    this.#children = children;
    this.#reader = new BinlogReader({
      connection: connectionOptions(cfg.source, "source") as any,
      serverId,
      flavor,
      // by file and position: the same server, and exact
      start: { file: start.file, pos: start.pos },
      databases: cfg.databases,
      inScope,
      onTxn: (t) => {
        this.#take(t);
        return true;
      },
      onError: (e) => (this.#error = e),
    });
  }

  start(): Promise<void> {
    return this.#reader.start();
  }

  stop(): Promise<void> {
    return this.#reader.stop();
  }

  get lastRead(): Position {
    return this.#reader.lastRead;
  }

  get error(): Error | null {
    return this.#error;
  }

  /** Wait until the reader has read through `end` (the frozen source's final position). */
  async reached(end: { file: string; pos: number }, deadline: number): Promise<boolean> {
    while (Date.now() < deadline) {
      if (this.#error) throw this.#error;
      if (comparePos(this.#reader.lastRead, end) >= 0) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  #markWhole(name: string, seen = new Set<string>()): void {
    if (seen.has(name)) return;
    seen.add(name);
    this.whole.add(name);
    this.keys.delete(name);
    for (const c of this.#children.get(name) ?? []) this.#markWhole(c.child, seen);
  }

  #take(t: Txn): void {
    this.transactions++;
    if (t.ddl || t.statementDml) {
      // a DDL or a statement-logged DML: its rows are not known by key; compare the scope whole
      this.allTables = true;
      return;
    }
    for (const ch of t.changes) {
      const name = `${ch.db}.${ch.table}`;
      if (this.whole.has(name)) continue;
      const s = this.#shapes.get(name);
      if (!s || s.key.length === 0) {
        this.#markWhole(name);
        continue;
      }
      let m = this.keys.get(name);
      if (!m) this.keys.set(name, (m = new Map()));
      const add = (row: Record<string, unknown>) => {
        const k = keyValues(s.key, row);
        m!.set(keyId(k), k);
      };
      for (const r of ch.rows) add(r);
      for (const r of ch.before ?? []) add(r);
      // a delete, or an update of referenced columns, on a parent may cascade to children: not in the binlog
      for (const e of this.#children.get(name) ?? []) {
        if (this.whole.has(e.child)) continue;
        if (ch.op === "delete" && e.onDelete) this.#markWhole(e.child);
        else if (ch.op === "update" && e.onUpdate.length && ch.rows.some((after, i) => e.onUpdate.some((col) => !same(after[col], ch.before?.[i]?.[col])))) this.#markWhole(e.child);
      }
      if (m.size > MAX_KEYS_PER_TABLE) this.#markWhole(name);
    }
  }
}

/** Child tables whose rows a change of a parent may change through a cascading foreign key. */
export interface CascadeEdge {
  child: string;
  /** a delete of a parent row reaches the child */
  onDelete: boolean;
  /** an update of these parent columns reaches the child */
  onUpdate: string[];
}

/** Child tables whose rows a change of a parent may change through a cascading foreign key (by parent). */
export async function cascadingChildren(c: Conn, databases: string[]): Promise<Map<string, CascadeEdge[]>> {
  const [rows] = await c.query<any[]>(
    `SELECT r.CONSTRAINT_SCHEMA AS db, r.CONSTRAINT_NAME AS name, r.TABLE_NAME AS child, r.UNIQUE_CONSTRAINT_SCHEMA AS pdb, r.REFERENCED_TABLE_NAME AS parent,
            r.DELETE_RULE AS del, r.UPDATE_RULE AS upd, k.REFERENCED_COLUMN_NAME AS col
       FROM information_schema.REFERENTIAL_CONSTRAINTS r
       JOIN information_schema.KEY_COLUMN_USAGE k
         ON k.CONSTRAINT_SCHEMA = r.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = r.CONSTRAINT_NAME AND k.TABLE_NAME = r.TABLE_NAME
      WHERE r.CONSTRAINT_SCHEMA IN (?)`,
    [databases],
  );
  const acting = (rule: string) => ["CASCADE", "SET NULL", "SET DEFAULT"].includes(String(rule).toUpperCase());
  const byConstraint = new Map<string, { parent: string; edge: CascadeEdge }>();
  for (const r of rows) {
    if (!acting(r.del) && !acting(r.upd)) continue;
    const id = `${r.db}.${r.child}.${r.name}`;
    let e = byConstraint.get(id);
    if (!e) byConstraint.set(id, (e = { parent: `${r.pdb}.${r.parent}`, edge: { child: `${r.db}.${r.child}`, onDelete: acting(r.del), onUpdate: [] } }));
    if (acting(r.upd)) e.edge.onUpdate.push(String(r.col));
  }
  const out = new Map<string, CascadeEdge[]>();
  for (const { parent, edge } of byConstraint.values()) out.set(parent, [...(out.get(parent) ?? []), edge]);
  return out;
}

const same = (a: unknown, b: unknown) => (Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b || String(a) === String(b));

const norm = (v: unknown) => (Buffer.isBuffer(v) ? `x${v.toString("hex")}` : v === null || v === undefined ? null : `s${String(v)}`);

/** Compare the rows with these keys on both servers; returns the keys that differ (missing, extra or changed). */
export async function compareKeys(src: Conn, rep: Conn, s: TableShape, keys: Key[]): Promise<Key[]> {
  const differ: Key[] = [];
  const cols = dataColumns(s).map((c) => c.name);
  for (let i = 0; i < keys.length; i += 500) {
    const part = keys.slice(i, i + 500);
    const sql = readRowsSql(s, part);
    const [[a], [b]] = await Promise.all([src.query<any[]>(sql), rep.query<any[]>(sql)]);
    // compare what both servers returned (keys in the servers' own format: the binlog's may print differently)
    const byKey = (rows: any[]) => new Map(rows.map((r) => [keyId(keyValues(s.key, r)), { key: keyValues(s.key, r), row: JSON.stringify(cols.map((c) => norm(r[c]))) }]));
    const x = byKey(a);
    const y = byKey(b);
    for (const id of new Set([...x.keys(), ...y.keys()])) {
      if (x.get(id)?.row !== y.get(id)?.row) differ.push((x.get(id) ?? y.get(id))!.key);
    }
  }
  return differ;
}
