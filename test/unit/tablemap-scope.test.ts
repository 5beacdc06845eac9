// Unit tests for agent/source/tablemap-scope.ts: a rows event refers to a table map logged in its own statement
// (the binlog row format: table maps, then rows events, the last with STMT_END_F). A rows event whose table id was
// not mapped in its statement is a decoding error, never rows decoded with another table's map (a reused table id)
// nor rows dropped as "filtered". On the recorded binlogs of both flavors (test/fixtures/binlog), with events
// relabelled the way a stale map would present them.
import { describe, expect, it } from "vitest";
import { Replayer } from "../../dev/binlog-replay.js";
import { tableMapScopeOf } from "../../agent/source/tablemap-scope.js";
import { TABLE_MAP, recordedBinlog, withTableId } from "../support/binlog-fixtures.js";

const ROWS = new Set([23, 24, 25, 30, 31, 32, 166, 167, 168, 169, 170, 171]);
/** the post-header of table map and rows events: a 6-byte table id at 19, then (rows events) 2 bytes of flags */
const FLAGS_AT = 25;

const tableIdOf = (ev: Buffer) => ev.readUIntLE(19, 6);
function withStmtEnd(ev: Buffer, on: boolean): Buffer {
  const out = Buffer.from(ev);
  const f = out.readUInt16LE(FLAGS_AT);
  out.writeUInt16LE(on ? f | 1 : f & ~1, FLAGS_AT);
  return out;
}

for (const flavor of ["mariadb", "mysql"] as const) {
  describe(`table map scope (${flavor})`, () => {
    const { events, schemas, format } = recordedBinlog(flavor);
    // each table's first table map and the rows event that follows it, for two tables
    const pairs: { map: Buffer; rows: Buffer; table: string }[] = [];
    const seen = new Set<string>();
    for (let i = 0; i + 1 < events.length && pairs.length < 2; i++) {
      const m = events[i];
      const r = events[i + 1];
      if (m[4] !== TABLE_MAP || !ROWS.has(r[4]) || tableIdOf(m) !== tableIdOf(r)) continue;
      const dbLen = m[27];
      const db = m.subarray(28, 28 + dbLen).toString();
      const tLen = m[28 + dbLen + 1];
      const table = `${db}.${m.subarray(30 + dbLen, 30 + dbLen + tLen).toString()}`;
      if (seen.has(table)) continue;
      seen.add(table);
      pairs.push({ map: m, rows: withStmtEnd(r, true), table });
    }
    const [a, b] = pairs;

    it("the whole recorded binlog decodes, every rows event within its statement's table maps", async () => {
      const r = await Replayer.create({ flavor, schemas });
      let rows = 0;
      for (const ev of events) {
        const out = r.decode(ev);
        if (out && "kind" in out) rows++;
      }
      const s = tableMapScopeOf(r.zongji.tableMap)!;
      expect(rows).toBeGreaterThan(10);
      expect(s.rows).toBe(events.filter((e) => ROWS.has(e[4])).length);
      expect(s.maps).toBe(events.filter((e) => e[4] === TABLE_MAP).length);
    });

    it("another table's rows under a table id mapped in an earlier statement are refused, not decoded with that map", async () => {
      expect(a && b && a.table !== b.table).toBe(true);
      const r = await Replayer.create({ flavor, schemas });
      r.decode(format);
      r.decode(a.map);
      expect((r.decode(a.rows) as any).table).toBe(a.table.split(".")[1]);
      // b's rows with a's table id (a reused id: the source restarted, b's own table map never reached the decoder)
      const stale = withTableId(b.rows, tableIdOf(a.map));
      expect(() => r.decode(stale)).toThrow(
        new RegExp(`a rows event of table id ${tableIdOf(a.map)} .*arrived without its table map in its statement \\(table ids mapped in the statement: none \\(the previous statement ended\\)\\): the decoder would decode it as ${a.table.replace(".", "\\.")} \\(a stale table map\\)`),
      );
      // a's own rows again, with no table map in their statement: refused too (the map in force may be a stale one)
      expect(() => r.decode(a.rows)).toThrow(/arrived without its table map in its statement/);
    });

    it("rows whose table id has no table map at all are refused, not dropped as filtered", async () => {
      const r = await Replayer.create({ flavor, schemas });
      r.decode(format);
      expect(() => r.decode(b.rows)).toThrow(new RegExp(`a rows event of table id ${tableIdOf(b.rows)} .*the decoder has no table map for it \\(its rows would be dropped as filtered\\)`));
    });

    it("a statement over two tables (both maps, then both rows events) decodes, and the next statement maps anew", async () => {
      const r = await Replayer.create({ flavor, schemas });
      r.decode(format);
      const idB = tableIdOf(a.map) + 1000;
      r.decode(a.map);
      r.decode(withTableId(b.map, idB));
      // the statement's first rows event does not end it; its last does
      expect((r.decode(withStmtEnd(a.rows, false)) as any).table).toBe(a.table.split(".")[1]);
      expect((r.decode(withTableId(b.rows, idB)) as any).table).toBe(b.table.split(".")[1]);
      expect(tableMapScopeOf(r.zongji.tableMap)!.open).toEqual([]);
      // the next statement: its table map opens the mapping again
      r.decode(a.map);
      expect((r.decode(a.rows) as any).table).toBe(a.table.split(".")[1]);
      // b's id, mapped two statements ago, is not mapped in this one
      r.decode(a.map);
      expect(() => r.decode(withTableId(b.rows, idB))).toThrow(/arrived without its table map in its statement \(table ids mapped in the statement: \d+\)/);
    });

    it("a table out of scope keeps its rows filtered (its table map counts as mapped)", async () => {
      const r = await Replayer.create({ flavor, schemas });
      r.zongji._skipSchema = (db: string, table: string) => `${db}.${table}` === b.table;
      r.decode(format);
      r.decode(b.map);
      expect(r.decode(b.rows)).toBeNull();
    });
  });
}
