// Warmup owns the agent's start-up warm-up: before any replica streams, the hot path from a rows event to its
// SQL (zongji's event parsing, the table map handling, rowdecode/rowcodec's decoding, sqlgen's statements and
// value escaping) runs a few thousand times on recorded events (warmup-events.ts), so that V8 has compiled it
// when the first real transactions arrive. Without it the first ~2,000 source transactions run that path cold,
// at 10-30x the warm CPU cost per transaction, just when a load starts (bench/results.md, "Start-up backlog").
// Nothing here touches a server or the agent's state: the decoded rows and the SQL are dropped.
import { Replayer } from "./binlog-replay.js";
import { beforeOf, packedChange, rowOf } from "./rowsql.js";
import { WARMUP_EVENTS } from "./warmup-events.js";
import { StatementBuilder, type Statement } from "../apply/sqlgen.js";
import type { RowChange } from "./reader.js";
import type { TableMeta } from "../tables.js";
import type { Flavor } from "../rules.js";

export interface WarmupResult {
  /** source transactions decoded and built (each a table map and one rows event) */
  txns: number;
  /** statements built */
  statements: number;
  ms: number;
}

/** the metadata sqlgen needs for a recorded table (an independent table keyed by its first column) */
function metaOf(tm: any): TableMeta {
  const columns: string[] = tm.columnSchemas.map((c: any) => String(c.COLUMN_NAME));
  const types = new Map<string, string>(tm.columnSchemas.map((c: any) => [String(c.COLUMN_NAME), String(c.COLUMN_TYPE ?? c.DATA_TYPE ?? "").split(/[ (]/)[0].toLowerCase()]));
  return {
    db: tm.parentSchema,
    table: tm.tableName,
    columns,
    writable: columns,
    writableSet: new Set(columns),
    types,
    primaryKey: [columns[0]],
    hasSecondaryUnique: false,
    selfReferencing: false,
    foreignKeys: false,
  };
}

/**
 * Decodes and builds `txns` source transactions shaped like an OLTP write mix (update, update, delete, insert),
 * in slices that yield to the event loop (the HTTP endpoints stay responsive meanwhile). `onBuilt` sees each target
 * transaction's statements (tests).
 */
export async function warmUp(flavor: Flavor, txns = 3000, onBuilt?: (stmts: Statement[]) => void): Promise<WarmupResult> {
  const t0 = Date.now();
  const ev = WARMUP_EVENTS[flavor];
  const bytes = (s: string) => Buffer.from(s, "base64");
  const kinds = ["update", "update", "delete", "write"] as const;
  // per table and kind: [table map, rows event] with their packets
  const tables = ev.tables.map((t) => {
    const pair = (m: string, r: string) => {
      const e = [bytes(m), bytes(r)];
      return { events: e, packets: e.map((x) => Replayer.packet(x)) };
    };
    return { write: pair(t.writeMap, t.write), update: pair(t.updateMap, t.update), delete: pair(t.deleteMap, t.delete), meta: null as TableMeta | null };
  });
  // inserts and updates read as SQL tuples, as the agent's readers read them (rowsql.ts)
  const r = await Replayer.create({ flavor, pack: true });
  r.decode(bytes(ev.fde));
  let statements = 0;
  let done = 0;
  const where = () => "start-up warm-up";
  let packedBuild = new StatementBuilder();
  while (done < txns) {
    const b = new StatementBuilder();
    // a target transaction of up to 100 source transactions, as the applier groups them under load
    for (let i = 0; i < 100 && done < txns; i++, done++) {
      // four transactions on one table (update, update, delete, insert, as in an OLTP write mix), then the next table
      const t = tables[Math.floor(done / kinds.length) % tables.length];
      const kind = kinds[done % kinds.length];
      const { events, packets } = t[kind];
      const tm = r.decode(events[0], packets[0]) as { tableMap: any };
      const meta = (t.meta ??= metaOf(tm.tableMap));
      const out = r.decode(events[1], packets[1]);
      if (!out || !("kind" in out)) throw new Error("internal: the warm-up's rows event did not decode");
      // the first row of the event, on a key of its own (the transaction's number), as in an OLTP mix (one key over
      // and over would exercise sqlgen's merging instead)
      const pk = meta.primaryKey[0];
      const keyed = (row: any) => ({ ...row, [pk]: done });
      // an insert or update read as SQL tuples: built as such too (the packed path, dropped), and as a row keyed as above
      const pack = out.pack;
      if (pack) packedBuild.add(packedChange(out.db, out.table, pack), meta, where);
      const first = !pack ? out.rows[0] : pack.update ? { before: beforeOf(pack, 0), after: rowOf(pack, 0) } : rowOf(pack, 0);
      const change: RowChange =
        out.kind === "update"
          ? { op: "update", db: out.db, table: out.table, rows: [keyed(first.after)], before: [keyed(first.before)] }
          : { op: out.kind === "write" ? "insert" : "delete", db: out.db, table: out.table, rows: [keyed(first)] };
      b.add(change, meta, where);
    }
    const stmts = b.finish();
    packedBuild.finish();
    packedBuild = new StatementBuilder();
    statements += stmts.length;
    onBuilt?.(stmts);
    await new Promise<void>((res) => setImmediate(res));
  }
  return { txns: done, statements, ms: Date.now() - t0 };
}
