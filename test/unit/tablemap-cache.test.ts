// Unit tests for agent/source/tablemap-cache.ts: a table map event whose bytes equal the previous one of its table
// id is not parsed again (zongji's entry gets the same column schemas and columns, and with them the compiled
// decoders), and what it decodes to is exactly what a fresh parse gives; other bytes are parsed anew. On the
// recorded binlogs of both flavors (test/fixtures/binlog).
import { describe, expect, it } from "vitest";
import { Replayer } from "../../dev/binlog-replay.js";
import { tableMapCacheOf } from "../../agent/source/tablemap-cache.js";
import { TABLE_MAP, recordedBinlog, withTableId } from "../support/binlog-fixtures.js";

/** a table map entry as plain data (every field the row decoders read) */
function plain(tm: any): unknown {
  return JSON.parse(
    JSON.stringify({ db: tm.parentSchema, table: tm.tableName, schemas: tm.columnSchemas, columns: tm.columns }, (_k, v) => (Buffer.isBuffer(v) ? `hex:${v.toString("hex")}` : v)),
  );
}

for (const flavor of ["mariadb", "mysql"] as const) {
  describe(`table map cache (${flavor})`, () => {
    const { events, schemas, format } = recordedBinlog(flavor);
    const maps = events.filter((e) => e[4] === TABLE_MAP);

    it("decodes every table map as a fresh parse does, and repeated ones from the cache", async () => {
      const r = await Replayer.create({ flavor, schemas });
      let checked = 0;
      for (const ev of events) {
        const out = r.decode(ev);
        if (!out || !("tableMap" in out)) continue;
        // a replayer that never saw this table: parses the event whole
        const fresh = await Replayer.create({ flavor, schemas });
        fresh.decode(format);
        const ref = fresh.decode(ev) as { tableMap: any };
        expect(plain(out.tableMap)).toEqual(plain(ref.tableMap));
        checked++;
      }
      expect(checked).toBe(maps.length);
      // the recorded binlog logs several transactions per table: most of its table maps repeat
      expect(tableMapCacheOf(r.zongji)!.hits).toBeGreaterThan(maps.length / 2);
    });

    it("a repeated table map keeps the entry's column schemas and columns (the compiled decoders stay on them)", async () => {
      const r = await Replayer.create({ flavor, schemas });
      r.decode(format);
      const ev = maps.find((m) => (r.decode(m) as any).tableMap.tableName === "orders")!;
      const first = (r.decode(ev) as any).tableMap;
      const second = (r.decode(ev) as any).tableMap;
      expect(second.columnSchemas).toBe(first.columnSchemas);
      expect(second.columns).toBe(first.columns);
      expect(tableMapCacheOf(r.zongji)!.hits).toBeGreaterThanOrEqual(1);
    });

    it("another table map under the same table id is parsed anew", async () => {
      const r = await Replayer.create({ flavor, schemas });
      r.decode(format);
      const byName = new Map<string, Buffer>();
      for (const m of maps) byName.set((r.decode(m) as any).tableMap.tableName, m);
      const a = withTableId(byName.get("orders")!, 4242);
      const other = [...byName.entries()].find(([name, m]) => name !== "orders" && m.length !== a.length)!;
      const b = withTableId(other[1], 4242);
      const ta = (r.decode(a) as any).tableMap;
      const tb = (r.decode(b) as any).tableMap;
      expect(tb.tableName).toBe(other[0]);
      expect(tb.columns).not.toBe(ta.columns);
      const fresh = await Replayer.create({ flavor, schemas });
      fresh.decode(format);
      expect(plain(tb)).toEqual(plain((fresh.decode(b) as any).tableMap));
      // and back: the first shape again is parsed anew too (the id's entry is the other table's now)
      const again = (r.decode(a) as any).tableMap;
      expect(again.tableName).toBe("orders");
      expect(plain(again)).toEqual(plain(ta));
    });

    it("a table map whose entry zongji replaced meanwhile is parsed anew", async () => {
      const r = await Replayer.create({ flavor, schemas });
      r.decode(format);
      const ev = maps.find((m) => (r.decode(m) as any).tableMap.tableName === "orders")!;
      const first = (r.decode(ev) as any).tableMap;
      // zongji drops an entry on a schema drift, or the reader's INFORMATION_SCHEMA path sets its own
      const id = Number(ev.readUIntLE(19, 6));
      r.zongji.tableMap[id] = { ...first, columns: [...first.columns] };
      const hits = tableMapCacheOf(r.zongji)!.hits;
      const next = (r.decode(ev) as any).tableMap;
      expect(tableMapCacheOf(r.zongji)!.hits).toBe(hits);
      expect(next.columns).not.toBe(first.columns);
      expect(plain(next)).toEqual(plain(first));
    });
  });
}
