// Unit tests for agent/source/rowsql.ts, inserted rows written straight from the row image to SQL: the
// recorded binlogs of both flavors (test/fixtures/binlog: every column type with edge values, MINIMAL and
// NOBLOB images, spatial values, charsets) read with packing and without. Each packed tuple must be the very
// text the builder writes from the decoded row (sqlgen.ts: escapeValue of each value, joined), and the rows a
// pack decodes on demand the very rows of the unpacked path. Then the byte paths (text, latin1, bytes) on
// random bytes against the same reference.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { replayWith, splitBinlog, type RowsChange } from "../../dev/binlog-replay.js";
import { ENUM_ERROR } from "../../agent/source/rowdecode.js";
import { escapeValue } from "../../agent/literals.js";
import { beforeOf, litsOf, packedChange, packedFits, packedKeyId, packedKeys, packsOf, rowCount, rowOf, rowsOf, SqlText, writeTuple, type Pack } from "../../agent/source/rowsql.js";
import { rowKeyId } from "../../agent/keys.js";
import { StatementBuilder } from "../../agent/apply/sqlgen.js";
import type { TableMeta } from "../../agent/tables.js";
import { imageOf, type Cursor } from "../../agent/source/rowcodec.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "binlog");
const load = (flavor: string) => ({
  events: splitBinlog(readFileSync(join(fixtures, `${flavor}.binlog`))),
  schemas: JSON.parse(readFileSync(join(fixtures, `${flavor}.schemas.json`), "utf8")),
});

const YEAR = 13;

/** what the builder writes for a whole row (sqlgen.ts #laneUpsert / #tuple), from the decoded row */
function reference(pack: Pack, row: Record<string, unknown>): string {
  return `(${pack.plan.names.map((n, i) => escapeValue(row[n], pack.plan.columns[i].type === YEAR ? "year" : "varchar")).join(",")})`;
}

/** a value as text that tells every difference apart: type, -0, Buffer bytes and charset tag, symbol */
function tag(v: unknown): string {
  if (Buffer.isBuffer(v)) return `buffer:${(v as any).charset ?? "-"}:${v.toString("hex")}`;
  if (typeof v === "number") return Object.is(v, -0) ? "number:-0" : `number:${v}`;
  if (typeof v === "symbol") return `symbol:${v.description}`;
  return `${typeof v}:${String(v)}`;
}
const rowTags = (r: Record<string, unknown>) => Object.keys(r).map((k) => [k, tag(r[k])]);

for (const flavor of ["mariadb", "mysql"] as const) {
  for (const forceSchemas of [false, true]) {
    describe(`recorded ${flavor} binlog${forceSchemas ? ", columns from INFORMATION_SCHEMA" : ""}`, async () => {
      const { events, schemas } = load(flavor);
      const plain = await replayWith(events, { flavor, schemas, forceSchemas });
      const packed = await replayWith(events, { flavor, schemas, forceSchemas, pack: true });
      const pairs: [RowsChange, RowsChange][] = plain.changes.map((c, i) => [c, packed.changes[i]]);

      it("writes every packed row as the builder writes its decoded row, and decodes it back to the same row", () => {
        expect(packed.changes.length).toBe(plain.changes.length);
        let rows = 0;
        for (const [p, q] of pairs) {
          if (q.pack?.update) continue;
          if (!q.pack) {
            expect(q.rows).toEqual(p.rows);
            continue;
          }
          expect(q.kind).toBe("write");
          const pack = q.pack;
          expect(q.rows).toEqual(pack.tuples);
          expect(pack.tuples.length).toBe(p.rows.length);
          for (let j = 0; j < p.rows.length; j++) {
            expect(pack.tuples[j], `${q.db}.${q.table} row ${j}`).toBe(reference(pack, p.rows[j]));
            expect(rowTags(rowOf(pack, j))).toEqual(rowTags(p.rows[j]));
          }
          expect(rowsOf([pack]).map(rowTags)).toEqual(p.rows.map(rowTags));
          const lenient = p.rows.flatMap((r, j) => (Object.values(r).includes(ENUM_ERROR) ? [j] : []));
          expect(pack.lenient ?? []).toEqual(lenient);
          rows += p.rows.length;
        }
        expect(rows).toBeGreaterThan(300);
      });

      it("writes an updated row's after image as the builder writes it, keeps both images, and tells unchanged columns only where the values are equal", () => {
        let rows = 0;
        let keptKey = 0;
        for (const [p, q] of pairs) {
          if (!q.pack?.update) continue;
          expect(p.kind).toBe("update");
          const pack = q.pack;
          const n = pack.plan.names.length;
          for (let j = 0; j < p.rows.length; j++) {
            const { before, after } = p.rows[j];
            expect(pack.tuples[j], `${q.db}.${q.table} row ${j}`).toBe(reference(pack, after));
            expect(rowTags(rowOf(pack, j))).toEqual(rowTags(after));
            expect(rowTags(beforeOf(pack, j))).toEqual(rowTags(before));
            const same = pack.update!.same[j];
            for (let i = 0; i < Math.min(n, 30); i++) {
              const name = pack.plan.names[i];
              const equal = tag(before[name]) === tag(after[name]);
              // a bit only where the values are equal
              if (same & (1 << i)) expect(equal, `${q.table}.${name}`).toBe(true);
            }
            if (same & 1) keptKey++;
          }
          expect(rowsOf([pack], true).map(rowTags)).toEqual(p.rows.map((r) => rowTags(r.before)));
          rows += p.rows.length;
        }
        expect(rows).toBeGreaterThan(50);
        expect(keptKey).toBeGreaterThan(10);
      });

      it("builds the same statements from packed changes as from their rows: lanes and sequential upserts, key updates, merges across changes", () => {
        const metaOf = (db: string, table: string, lane: boolean, keyCol: number): TableMeta => {
          const cols: any[] = schemas[`${db}.${table}`];
          const columns = cols.map((c) => String(c.COLUMN_NAME));
          const types = new Map(cols.map((c) => [String(c.COLUMN_NAME), String(c.COLUMN_TYPE).toLowerCase().split(/[ (]/)[0]]));
          return { db, table, columns, writable: columns, writableSet: new Set(columns), types, primaryKey: [columns[Math.min(keyCol, columns.length - 1)]], hasSecondaryUnique: !lane, selfReferencing: false, foreignKeys: false } as unknown as TableMeta;
        };
        const op = (k: string) => (k === "write" ? "insert" : k);
        const asRows = (c: RowsChange) =>
          c.kind === "update" ? { op: "update" as const, db: c.db, table: c.table, rows: c.rows.map((r) => r.after), before: c.rows.map((r) => r.before) } : { op: op(c.kind) as "insert" | "delete", db: c.db, table: c.table, rows: c.rows };
        const asPacked = (c: RowsChange) => (c.pack ? packedChange(c.db, c.table, c.pack) : asRows(c));
        const build = (changes: any[], metas: Map<string, TableMeta>): string[] => {
          const out: string[] = [];
          let b = new StatementBuilder();
          for (const ch of changes) {
            try {
              b.add(ch, metas.get(`${ch.db}.${ch.table}`)!, "test");
            } catch (e) {
              out.push(...b.finish().map((st) => st.sql), `error: ${(e as Error).message}`);
              b = new StatementBuilder();
            }
          }
          return [...out, ...b.finish().map((st) => `${st.sql}${st.fallback ? ` | ${st.fallback}` : ""}${st.lane ? " (lane)" : ""}${st.relaxFk ? " (no fk)" : ""}${st.relaxChecks ? " (no checks)" : ""} ${st.rows}`)];
        };
        let packedChanges = 0;
        let keyUpdates = 0;
        // the key the first column, or the second (which updates change: key updates)
        for (const [lane, keyCol] of [[true, 0], [false, 0], [true, 1], [false, 1]] as const) {
          const metas = new Map<string, TableMeta>();
          for (const [p] of pairs) if (!metas.has(`${p.db}.${p.table}`) && schemas[`${p.db}.${p.table}`]) metas.set(`${p.db}.${p.table}`, metaOf(p.db, p.table, lane, keyCol));
          for (const [p, q] of pairs) {
            const k = metas.get(`${p.db}.${p.table}`)?.primaryKey[0];
            if (q.pack?.update && k) keyUpdates += p.rows.filter((r) => tag(r.before[k]) !== tag(r.after[k])).length;
          }
          const used = pairs.filter(([p]) => metas.has(`${p.db}.${p.table}`));
          // each change on its own, then every change of a table in one target transaction
          for (const [p, q] of used) {
            const a = build([asRows(p)], metas);
            const packedOne = asPacked(q);
            if (packsOf(packedOne)) packedChanges++;
            expect(build([packedOne], metas), `${p.db}.${p.table} ${p.kind}`).toEqual(a);
          }
          for (const name of metas.keys()) {
            const mine = used.filter(([p]) => `${p.db}.${p.table}` === name);
            expect(build(mine.map(([, q]) => asPacked(q)), metas), name).toEqual(build(mine.map(([p]) => asRows(p)), metas));
          }
        }
        expect(packedChanges).toBeGreaterThan(100);
        expect(keyUpdates).toBeGreaterThan(10);
      });

      it("tells a packed row's keys as the decoded rows' (packedKeys, packedKeyId), on keys the updates keep and change", () => {
        let n = 0;
        for (const [p, q] of pairs) {
          if (!q.pack) continue;
          const names = q.pack.plan.names;
          for (const pk of [[names[0]], names.slice(0, 2), [names[names.length - 1]]]) {
            for (let j = 0; j < p.rows.length; j++) {
              const after = q.pack.update ? p.rows[j].after : p.rows[j];
              const want = new Set([rowKeyId(pk, after), ...(q.pack.update ? [rowKeyId(pk, p.rows[j].before)] : [])]);
              const got = new Set<string>();
              packedKeys(q.pack, j, pk, got);
              expect(got).toEqual(want);
              expect(packedKeyId(q.pack, j, pk)).toBe(rowKeyId(pk, after));
              n++;
            }
          }
        }
        expect(n).toBeGreaterThan(500);
      });

      it("packs the write events it can, and only those: every column compiled, a full image", () => {
        const writes = pairs.filter(([p]) => p.kind === "write");
        const packedWrites = writes.filter(([, q]) => q.pack);
        expect(packedWrites.length).toBeGreaterThan(writes.length / 2);
        // MINIMAL/NOBLOB images and tables with columns only the per-value path reads stay rows
        expect(packedWrites.length).toBeLessThan(writes.length);
        for (const [p, q] of pairs) if (p.kind === "delete") expect(q.pack).toBeUndefined();
        const text = packedWrites.flatMap(([, q]) => q.pack!.tuples).join("\n");
        // what the byte paths and the value path write: escapes, hex, charset-tagged bytes, NULL, YEAR 0000, -0
        for (const s of ["\\'", "\\\\", "\\0", "\\n", "X'", "NULL", ",0,"]) expect(text).toContain(s);
        expect(text).toMatch(/_[a-z0-9]+ X'/);
        expect(text).toMatch(/'[^'\\]*[\u00a0-\u00ff][^']*'/);
      });
    });
  }
}

describe("the byte paths on random bytes", async () => {
  const { events, schemas } = load("mysql");
  const packed = await replayWith(events, { flavor: "mysql", schemas, pack: true });
  // one packed table per column kind the byte paths write
  const byKind = new Map<string, { pack: Pack; col: number }>();
  for (const c of packed.changes) {
    if (!c.pack) continue;
    c.pack.plan.kinds.forEach((k, i) => {
      if (!byKind.has(k)) byKind.set(k, { pack: c.pack!, col: i });
    });
  }

  it("writes what escapeValue writes of the decoded value, for text in utf8, latin1 and ascii, bytes and BINARY(n)", () => {
    const kinds = ["utf8", "latin1", "varbinary", "blob", "binary", "i32", "u8"].filter((k) => byKind.has(k));
    expect(kinds.length).toBeGreaterThanOrEqual(6);
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
    // bytes biased to the interesting ones: escapes, ASCII, C1, UTF-8 lead and continuation bytes
    const special = [0, 8, 9, 10, 13, 26, 34, 39, 92, 0x41, 0x7f, 0x80, 0x9f, 0xa0, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xa0, 0xff];
    for (const kind of kinds) {
      const { pack, col } = byKind.get(kind)!;
      const plan = pack.plan;
      const lits = litsOf(plan)!;
      const md = plan.columns[col].metadata ?? {};
      const lengthSize = plan.columns[col].type === 15 || plan.columns[col].type === 254 ? (md.max_length > 255 ? 2 : 1) : (md.length_size ?? 0);
      for (let n = 0; n < 3000; n++) {
        const len = Math.floor(rand() * 12);
        const body = Buffer.from(Array.from({ length: len }, () => (rand() < 0.6 ? special[Math.floor(rand() * special.length)] : Math.floor(rand() * 256))));
        const fixed = { i32: 4, u8: 1 }[kind as "i32" | "u8"];
        const bytes = fixed ? Buffer.from(Array.from({ length: fixed }, () => Math.floor(rand() * 256))) : Buffer.concat([Buffer.from([len, 0, 0, 0].slice(0, lengthSize)), body]);
        const buf = Buffer.concat([Buffer.from([0xaa]), bytes, Buffer.from([0x55])]);
        const w = new SqlText();
        const c: Cursor = { buf, pos: 1, parser: null };
        lits[col](c, w);
        const d: Cursor = { buf, pos: 1, parser: null };
        const v = plan.decoders[col](d);
        expect(c.pos, kind).toBe(d.pos);
        expect(w.take(0), `${kind} ${bytes.toString("hex")}`).toBe(escapeValue(v, plan.columns[col].type === YEAR ? "year" : "varchar"));
      }
    }
  });

  it("a packed change decodes its rows when first read (spread, JSON, a write), counts them without decoding, and an update's before images with them", () => {
    const ins = packed.changes.find((c) => c.pack && !c.pack.update && c.rows.length > 1)!;
    const upd = packed.changes.find((c) => c.pack?.update)!;
    const make = (c: RowsChange) => packedChange(c.db, c.table, c.pack!) as any;
    const a = make(ins);
    expect(rowCount(a)).toBe(ins.rows.length);
    expect(packsOf(a)).toHaveLength(1);
    expect(Object.keys(a)).toEqual(["op", "db", "table", "rows", "before"]);
    const spread = { ...a };
    expect(packsOf(a)).toBeUndefined();
    expect(spread.rows.map(rowTags)).toEqual(rowsOf([ins.pack!]).map(rowTags));
    expect(a.rows).toBe(spread.rows);
    const b = make(ins);
    expect(JSON.parse(JSON.stringify(b)).rows).toHaveLength(ins.rows.length);
    const c = make(ins);
    c.rows = [];
    expect(packsOf(c)).toBeUndefined();
    expect(c.rows).toEqual([]);
    const u = make(upd) as any;
    expect(Object.keys(u)).toEqual(["op", "db", "table", "rows", "before"]);
    const before = u.before;
    expect(packsOf(u)).toBeUndefined();
    expect(before.map(rowTags)).toEqual(rowsOf([upd.pack!], true).map(rowTags));
    expect(u.rows.map(rowTags)).toEqual(rowsOf([upd.pack!]).map(rowTags));
    expect(rowCount(u)).toBe(upd.rows.length);
  });

  it("a tuple grows the buffer it is written to, and packedFits wants the replica's columns in the source's order and YEAR alike", () => {
    const { pack } = byKind.get("utf8")!;
    const w = new SqlText();
    w.buf = Buffer.alloc(1);
    const c: Cursor = { buf: pack.buf, pos: pack.starts[0], parser: null };
    writeTuple(litsOf(pack.plan)!, imageOf(Buffer.alloc(8, 0xff), pack.plan.names.length, pack.plan), c, w);
    expect(w.take(0)).toBe(pack.tuples[0]);
    const names = pack.plan.names;
    const types = new Map(names.map((n) => [n, "varchar"]));
    expect(packedFits(pack.plan, names, types, {})).toBe(true);
    expect(packedFits(pack.plan, [...names].reverse(), types, {})).toBe(names.length < 2);
    expect(packedFits(pack.plan, names.slice(1), types, {})).toBe(false);
    expect(packedFits(pack.plan, names, new Map(names.map((n) => [n, "year"])), {})).toBe(false);
  });
});
