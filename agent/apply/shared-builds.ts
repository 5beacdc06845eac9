// SharedBuilds owns building once for fan-out: the agent's replicas (one group) share the statements built for a
// source transaction when the tables it touches have the same shape on each of them, so the same SQL text is not
// built five times. A replica asks with the transaction's source identity and the shape signatures of its own
// table metadata; an entry is kept until every replica of the group passed that transaction, or until the cache's
// bounds push it out (a replica far behind builds its own). Statements in it are frozen: consumers only read them.
import { rowCount } from "../source/rowsql.js";
import type { Txn } from "../source/reader.js";
import type { TableMeta } from "../tables.js";
import type { Statement } from "./sqlgen.js";

/** Statements built for one source transaction alone (frozen, shared by the replicas that take them). */
export interface BuiltTxn {
  readonly stmts: readonly Statement[];
  /** row changes the statements carry (StatementBuilder.rows) */
  readonly rows: number;
}

export interface SharedBuildsOptions {
  /** the group's replicas: an entry is dropped once this many distinct replicas passed its transaction */
  replicas: number;
  /** source transactions with fewer rows are built with their batch as before (their statements merge with the neighbours') */
  minRows?: number;
  /** bounds: entries (source transaction and shape) and bytes of SQL text kept */
  maxEntries?: number;
  maxBytes?: number;
}

/** transactions below this many rows keep the batch-wide merging (see SharedBuildsOptions.minRows) */
export const SHARE_MIN_ROWS = 100;

interface Node {
  /** the order in which transactions were first built (a replica's freshness, see put) */
  seq: number;
  /** replicas that passed this source transaction (took an entry, or built one) */
  visited: Set<string>;
  /** by the shapes of the tables it touches (shapeKey) */
  byShape: Map<string, { built: BuiltTxn; bytes: number }>;
}

/**
 * A table shape's signature: every field of TableMeta (StatementBuilder reads db, table, writable, types,
 * primaryKey, hasSecondaryUnique, selfReferencing, foreignKeys, sequence, versioning; the others ride along, so a
 * field added to TableMeta is part of the signature without anyone remembering to add it). Maps and Sets keep
 * their order (the column order is part of the SQL text).
 */
export function shapeSignature(meta: TableMeta): string {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(meta).sort()) {
    const v = (meta as unknown as Record<string, unknown>)[k];
    out[k] = v instanceof Map ? ["Map", ...v.entries()] : v instanceof Set ? ["Set", ...v.values()] : v;
  }
  return JSON.stringify(out);
}

/**
 * The source identity of a transaction: its commit position (file, offset, GTID), commit time, and the list of
 * its changes as this replica sees them (table, kind, rows, flags; a replica whose scope or quarantine drops a
 * change sees another list and another key). Positions alone could repeat after a RESET MASTER on the source.
 * A piece of a large transaction (Txn.stream) shares its transaction's position with the other pieces: `piece` is
 * the binlog range it holds (applier.ts applyStreamed), without which a piece is never shared.
 */
export function txnIdentity(t: Txn, piece = ""): string {
  let k = `${t.pos.file}\u0000${t.pos.pos}\u0000${t.pos.gtid ?? ""}\u0000${t.ts}\u0000${t.rowCount}\u0000${t.stream ?? ""}\u0000${piece}`;
  for (const ch of t.changes) {
    k += `\u0001${ch.db}\u0000${ch.table}\u0000${ch.op}\u0000${rowCount(ch)}\u0000${ch.before?.length ?? -1}\u0000${ch.flags ?? 0}\u0000${ch.noFkChecks ? 1 : 0}\u0000${ch.savepoint ?? ""}`;
  }
  return k;
}

export class SharedBuilds {
  readonly replicas: number;
  readonly minRows: number;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  /** insertion order is eviction order */
  #nodes = new Map<string, Node>();
  #entries = 0;
  #bytes = 0;
  /** the newest transaction's seq, and the newest each replica passed */
  #seq = 0;
  #passed = new Map<string, number>();
  /** a loaded TableMeta's shape id (computed once per meta load: metas are never changed, a reload is a new object) */
  #shapeOf = new WeakMap<TableMeta, string>();
  /** shape signature → short id */
  #ids = new Map<string, string>();

  constructor(o: SharedBuildsOptions) {
    this.replicas = o.replicas;
    this.minRows = o.minRows ?? SHARE_MIN_ROWS;
    this.#maxEntries = o.maxEntries ?? 1024;
    this.#maxBytes = o.maxBytes ?? 16 << 20;
  }

  /** entries and bytes held (tests, and the bound) */
  get size(): { entries: number; bytes: number; transactions: number } {
    return { entries: this.#entries, bytes: this.#bytes, transactions: this.#nodes.size };
  }

  /** the short id of a table's shape (equal exactly when the signatures are equal) */
  shapeId(meta: TableMeta): string {
    let id = this.#shapeOf.get(meta);
    if (id === undefined) {
      const sig = shapeSignature(meta);
      id = this.#ids.get(sig);
      if (id === undefined) {
        id = String(this.#ids.size);
        this.#ids.set(sig, id);
      }
      this.#shapeOf.set(meta, id);
    }
    return id;
  }

  /**
   * Replica `replica` passes source transaction `txn` whose tables have shapes `shapes` (shapeId of each change's
   * meta, in order): the statements another replica built for the same transaction and shapes, if kept.
   */
  take(txn: string, shapes: string, replica: string): BuiltTxn | undefined {
    const node = this.#nodes.get(txn);
    if (!node) return undefined;
    this.#visit(node, replica);
    const hit = node.byShape.get(shapes)?.built;
    // every replica passed it: nobody will ask again (a replica that restarts from an older checkpoint builds its own)
    if (hit && node.visited.size >= this.replicas) this.#drop(txn, node);
    return hit;
  }

  /**
   * Keeps what `replica` built (frozen) for the others, and returns it. Kept only where another replica may still
   * ask: for a transaction some replica already built (another shape), or for a new one when this replica is at the
   * front (the last transaction it passed is the newest any replica built). A replica behind the others, whose
   * transactions were dropped or pushed out, builds for itself alone and pushes nothing out.
   */
  put(txn: string, shapes: string, replica: string, stmts: Statement[], rows: number): BuiltTxn {
    for (const s of stmts) Object.freeze(s);
    const built: BuiltTxn = Object.freeze({ stmts: Object.freeze(stmts), rows });
    if (this.replicas < 2) return built;
    let bytes = 64;
    for (const s of stmts) bytes += s.sql.length + (s.fallback?.length ?? 0) + 64;
    if (bytes > this.#maxBytes / 4) return built; // one transaction never takes most of the room
    let node = this.#nodes.get(txn);
    if (!node) {
      const last = this.#passed.get(replica);
      if (last === undefined ? this.#nodes.size > 0 : last !== this.#seq) return built;
      node = { seq: ++this.#seq, visited: new Set(), byShape: new Map() };
      this.#nodes.set(txn, node);
    }
    this.#visit(node, replica);
    if (node.visited.size >= this.replicas) {
      // the last replica to pass it built its own: nobody will take any of it
      this.#drop(txn, node);
      return built;
    }
    const old = node.byShape.get(shapes);
    if (old) {
      this.#entries--;
      this.#bytes -= old.bytes;
    }
    node.byShape.set(shapes, { built, bytes });
    this.#entries++;
    this.#bytes += bytes;
    this.#evict();
    return built;
  }

  #visit(node: Node, replica: string): void {
    node.visited.add(replica);
    if ((this.#passed.get(replica) ?? 0) < node.seq) this.#passed.set(replica, node.seq);
  }

  #drop(txn: string, node: Node): void {
    this.#nodes.delete(txn);
    for (const e of node.byShape.values()) {
      this.#entries--;
      this.#bytes -= e.bytes;
    }
  }

  /** oldest transactions first, until within the bounds */
  #evict(): void {
    for (const [txn, node] of this.#nodes) {
      if (this.#entries <= this.#maxEntries && this.#bytes <= this.#maxBytes) return;
      this.#drop(txn, node);
    }
  }
}
