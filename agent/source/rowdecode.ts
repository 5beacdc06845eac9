// Rowdecode owns how the values of a row event become JavaScript values, where zongji's own decoding
// is not exact: text keeps its bytes (latin1 as the server itself maps it, other single- and multi-byte
// charsets as raw bytes written back with their introducer), negative TIME values, the ENUM error value
// (index 0), SET bits without a member, and columns absent from a MINIMAL/NOBLOB row image (left out of
// the row, never turned into NULL). Every other type is decoded by zongji's own readMysqlValue.
//
// zongji parses a rows event in the event's constructor through the prototype method `_fetchOneRow`
// (lib/rows_event.js). That method is replaced once per process by one that decodes exactly, but only for
// zongji instances that carry the EXACT flag (a BinlogReader's); any other zongji keeps its behaviour.
// The rows are read by rowcodec.ts's decoders, compiled once per table map; the per-value path below
// (readValue) decodes the columns rowcodec.ts has no decoder for; a zongji that also carries the PER_VALUE
// flag reads its rows the way they were read before rowcodec.ts, per value (the reference that the tests
// and bench/decode.mjs compare the compiled decoders to).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { CodecLib, Cursor, Image, TablePlan } from "./rowcodec.js";
import { installTableMapScope } from "./tablemap-scope.js";
import { installTableMapCache } from "./tablemap-cache.js";

/** set on a zongji instance whose row events are decoded by this module */
export const EXACT = Symbol.for("datasync.exactRows");

/** with EXACT: rows read per value by readRow/readValue below, as before the compiled decoders (the tests' and benchmark's reference) */
export const PER_VALUE = Symbol.for("datasync.perValueRows");

/**
 * with EXACT: a write rows event of a table whose columns all have compiled decoders, in a full image, is read
 * as SQL tuples (rowsql.ts): the event's rows are the tuples' text and PACKED holds the Pack (the reader's
 * RowChange decodes the row objects only if something reads them)
 */
export const PACK = Symbol.for("datasync.packRows");
/** the Pack of a write rows event read with PACK (rowsql.ts) */
export const PACKED = Symbol.for("datasync.packed");

/** the ENUM error value (index 0, the empty string a lenient sql_mode stores for an invalid value) */
export const ENUM_ERROR: unique symbol = Symbol.for("datasync.enumError") as any;

/** a text value kept as its bytes, written back with its character set introducer */
export type CharsetBuffer = Buffer & { charset?: string };

// MySQL's latin1 is cp1252 in which the five bytes cp1252 leaves undefined map to the C1 controls of the
// same number: a bijection of the 256 bytes, the one the server itself uses to convert latin1 to utf8mb4
// (so a latin1 value decoded this way equals what a query returns, and the server maps it back exactly).
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];
const LATIN1 = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i >= 0x80 && i < 0xa0 ? CP1252_HIGH[i - 0x80] : i));

function decodeLatin1(b: Buffer): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += LATIN1[b[i]];
  return s;
}

/**
 * A text column's bytes as a value that writes back byte for byte: a string where the server's own
 * conversion to and from utf8mb4 is a bijection (utf8mb3/utf8mb4 when valid, ascii, latin1), else the
 * bytes themselves tagged with their character set.
 */
export function decodeText(b: Buffer, charset: string | null | undefined): string | CharsetBuffer {
  const cs = (charset ?? "").toLowerCase();
  if (cs === "utf8mb4" || cs === "utf8mb3" || cs === "utf8" || cs === "") {
    const s = b.toString("utf8");
    // U+FFFD marks a byte sequence that was not UTF-8 (or a real U+FFFD): check it round-trips
    if (!s.includes("\ufffd") || Buffer.from(s, "utf8").equals(b)) return s;
  } else if (cs === "latin1") {
    return decodeLatin1(b);
  } else if (cs === "ascii") {
    let ascii = true;
    for (let i = 0; i < b.length && ascii; i++) ascii = b[i] < 0x80;
    if (ascii) return b.toString("latin1");
  }
  const out: CharsetBuffer = Buffer.from(b);
  if (/^[a-z0-9_]+$/.test(cs)) out.charset = cs;
  return out;
}

// MySQL type codes (binlog.h enum_field_types)
const T = { VARCHAR: 15, STRING: 254, VAR_STRING: 253, TINY_BLOB: 249, MEDIUM_BLOB: 250, LONG_BLOB: 251, BLOB: 252, ENUM: 247, SET: 248, TIME2: 19 };

/**
 * TIME2 as the server decodes it (my_time_packed_from_binary, TIME_from_longlong_time_packed): the
 * integer part and the fraction form one signed packed value; a negative one is negated as a whole. zongji
 * negates the parts separately, so '-01:00:00' came out as '00:00:00'.
 */
export function decodeTime2(buf: Buffer, offset: number, decimals: number): { value: string; size: number } {
  const OFS = 0x800000n;
  let packed: bigint;
  let size: number;
  const intpart = BigInt(buf.readUIntBE(offset, 3)) - OFS;
  if (decimals >= 5) {
    size = 6;
    packed = BigInt(buf.readUIntBE(offset, 6)) - 0x800000000000n;
  } else if (decimals >= 3) {
    size = 5;
    let ip = intpart;
    let frac = BigInt(buf.readUInt16BE(offset + 3));
    if (ip < 0n && frac) {
      ip++;
      frac -= 0x10000n;
    }
    packed = (ip << 24n) + frac * 100n;
  } else if (decimals >= 1) {
    size = 4;
    let ip = intpart;
    let frac = BigInt(buf[offset + 3]);
    if (ip < 0n && frac) {
      ip++;
      frac -= 0x100n;
    }
    packed = (ip << 24n) + frac * 10000n;
  } else {
    size = 3;
    packed = intpart << 24n;
  }
  const neg = packed < 0n;
  if (neg) packed = -packed;
  const hms = packed >> 24n;
  const micro = Number(packed % (1n << 24n));
  const hour = Number((hms >> 12n) % 1024n);
  const minute = Number((hms >> 6n) % 64n);
  const second = Number(hms % 64n);
  let s = `${neg ? "-" : ""}${String(hour).padStart(2, "0")}:${String(minute).padStart(2, "0")}:${String(second).padStart(2, "0")}`;
  if (decimals > 0) s += "." + String(micro).padStart(6, "0").slice(0, decimals);
  return { value: s, size };
}

export interface Common {
  readMysqlValue(parser: any, column: any, columnSchema: any, tableMap: any, zongji: any): unknown;
}

function isBit(bitmap: Buffer, i: number): boolean {
  return (bitmap[i >> 3] & (1 << (i & 7))) !== 0;
}

function countBits(bitmap: Buffer, n: number): number {
  let c = 0;
  for (let i = 0; i < n; i++) if (isBit(bitmap, i)) c++;
  return c;
}

/** one value of the exact decoding, per value (zongji's readMysqlValue where that is exact) */
export function readValue(common: Common, parser: any, column: any, schema: any, tablemap: any, zongji: any): unknown {
  switch (column.type) {
    case T.VARCHAR:
    case T.STRING: {
      const def = String(schema?.COLUMN_TYPE ?? "");
      // binary strings and MariaDB's UUID/INET types stay with zongji
      if (column.charset == null || /^(binary|varbinary|uuid|inet4|inet6|vector)/i.test(def)) break;
      const prefix = column.metadata.max_length > 255 ? 2 : 1;
      const size = parser.parseUnsignedNumber(prefix);
      return decodeText(parser.parseBuffer(size), column.charset);
    }
    case T.TINY_BLOB:
    case T.MEDIUM_BLOB:
    case T.LONG_BLOB:
    case T.BLOB: {
      if (column.charset == null) break;
      const len = parser.parseUnsignedNumber(column.metadata.length_size);
      return decodeText(parser.parseBuffer(len), column.charset);
    }
    case T.ENUM: {
      const size = column.metadata.size;
      const raw = parser._buffer.readUIntLE(parser._offset, size);
      if (raw !== 0) break;
      parser._offset += size;
      return ENUM_ERROR;
    }
    case T.SET: {
      const size = column.metadata.size;
      const choices: unknown[] | undefined = schema?.SET_VALUES;
      let raw = 0n;
      for (let i = size - 1; i >= 0; i--) raw = (raw << 8n) | BigInt(parser._buffer[parser._offset + i]);
      const known = choices ? BigInt.asUintN(64, (1n << BigInt(choices.length)) - 1n) : null;
      // bits without a member (zongji would write "undefined"): the number itself, which the server stores as is
      if (known === null || (raw & ~known) === 0n) break;
      parser._offset += size;
      return raw;
    }
    case T.TIME2: {
      const { value, size } = decodeTime2(parser._buffer, parser._offset, column.metadata.decimals ?? 0);
      parser._offset += size;
      return value;
    }
  }
  return common.readMysqlValue(parser, column, schema, tablemap, zongji);
}

/** a row of the columns present in the image (absent ones are left out, not NULL) */
function readRow(common: Common, parser: any, tablemap: any, bitmap: Buffer, zongji: any): Record<string, unknown> {
  const n = tablemap.columns.length;
  const nulls: Buffer = parser.parseBuffer((countBits(bitmap, n) + 7) >> 3);
  const row: Record<string, unknown> = {};
  for (let i = 0, ni = 0; i < n; i++) {
    if (!isBit(bitmap, i)) continue;
    const column = tablemap.columns[i];
    row[column.name] = isBit(nulls, ni) ? null : readValue(common, parser, column, tablemap.columnSchemas[i], tablemap, zongji);
    ni++;
  }
  return row;
}

// The compiled plan of a table map entry, on its columns array: zongji builds a new entry at every table
// map it decodes from FULL binlog metadata (once per transaction), and keeps the entry it built from
// INFORMATION_SCHEMA while the table keeps its name and column count. An entry with other schemas is looked
// up again. A new entry takes the plan of its table's previous entry when every field of their columns and
// schemas is equal (rowcodec.ts sameShape), per zongji instance: a transaction's table map costs a
// comparison, not a compilation.
const PLAN = Symbol("datasync.rowPlan");
const lastPlans = new WeakMap<object, Map<string, TablePlan>>();
/** tables kept per zongji instance (a workload with more tables compiles again, never grows memory) */
const MAX_TABLES = 2000;

/** how each column of a table map entry is decoded (rowcodec.ts TablePlan.kinds), once a row of it was read */
export function compiledKinds(tablemap: any): string[] | undefined {
  return tablemap?.columns?.[PLAN]?.plan.kinds;
}

let installed: Promise<void> | null = null;
let ready = false;

/** the exact decoding is installed (installExactRows has resolved) */
export function exactRowsReady(): boolean {
  return ready;
}

/** Installs the exact decoding into zongji's rows events (once per process; effective for EXACT instances). */
export function installExactRows(): Promise<void> {
  installed ??= (async () => {
    const lib = join(dirname(createRequire(import.meta.url).resolve("@vlasky/zongji")), "lib");
    const rows: any = await import(pathToFileURL(join(lib, "rows_event.js")).href);
    const common: Common = await import(pathToFileURL(join(lib, "common.js")).href);
    const json: any = await import(pathToFileURL(join(lib, "json_decode.js")).href);
    const events: any = await import(pathToFileURL(join(lib, "binlog_event.js")).href);
    installTableMapCache(events.TableMap, EXACT);
    installTableMapScope(events.TableMap, Object.getPrototypeOf(rows.WriteRows.prototype).constructor, EXACT);
    const codec = await import("./rowcodec.js");
    const rowsql = await import("./rowsql.js");
    const codecLib: CodecLib = {
      fallback: (parser, column, schema, tablemap, zongji) => readValue(common, parser, column, schema, tablemap, zongji),
      decodeText,
      enumError: ENUM_ERROR,
      decodeJson: json.default,
      jsonToText: json.jsonToText,
      convertBigInts: json.convertBigInts,
    };
    const planOf = (zongji: any, tm: any): TablePlan => {
      const known = tm.columns[PLAN];
      if (known && known.schemas === tm.columnSchemas) return known.plan;
      let byTable = lastPlans.get(zongji);
      if (!byTable) lastPlans.set(zongji, (byTable = new Map()));
      const key = `${tm.parentSchema}.${tm.tableName}`;
      let plan = byTable.get(key);
      if (!plan || !codec.sameShape(plan.tablemap, tm)) {
        plan = codec.compileTable(tm, zongji, codecLib);
        if (byTable.size >= MAX_TABLES) byTable.clear();
        byTable.set(key, plan);
      }
      // kept on the columns array itself (a WeakMap entry per transaction costs more in the collector)
      tm.columns[PLAN] = { schemas: tm.columnSchemas, plan };
      return plan;
    };
    // the event being parsed and its images (its rows are all read in its constructor, one after another)
    let lastEvent: any = null;
    let plan: TablePlan;
    let image1: Image;
    let image2: Image | null;
    /** the column writers of the event being packed (PACK), else null */
    // (rowsql.ts's Lit[]; rowsql.ts imports this module, so its types are not named here)
    let packLits: any[] | null = null;
    const sql = new rowsql.SqlText();
    /** an updated row's column spans in its before and after images (rowsql.ts writeTuple, sameColumns) */
    let spansA = new Int32Array(64);
    let spansB = new Int32Array(64);
    const EMPTY = Buffer.alloc(0);
    const cursor: Cursor = { buf: EMPTY, pos: 0, parser: null };
    /** where the row being read starts */
    let rowStart = 0;
    const begin = (ev: any, parser: any) => {
      if (ev !== lastEvent) {
        lastEvent = ev;
        const tm = ev.tableMap[ev.tableId];
        plan = planOf(ev._zongji, tm);
        // a rows event whose column count is not its table map's was written for another table (or another
        // version of it) than the map describes: decoding it would put bytes in the wrong columns
        if (typeof ev.numberOfColumns === "number" && ev.numberOfColumns !== plan.names.length) {
          lastEvent = null;
          throw new Error(
            `a rows event of table id ${ev.tableId} has ${ev.numberOfColumns} column(s) but its table map (${tm?.parentSchema}.${tm?.tableName}) has ${plan.names.length}: the table map does not describe the rows (a stale table map); the session restarts from its checkpoint`,
          );
        }
        image1 = codec.imageOf(ev.columns_present_bitmap, plan.names.length, plan);
        image2 = ev.columns_present_bitmap2 ? codec.imageOf(ev.columns_present_bitmap2, plan.names.length, plan) : null;
        packLits = ev._zongji[PACK] && image1.full && (ev instanceof rows.WriteRows || (ev instanceof rows.UpdateRows && image2?.full)) ? rowsql.litsOf(plan) : null;
        if (packLits && spansA.length < 2 * packLits.length) {
          spansA = new Int32Array(2 * packLits.length);
          spansB = new Int32Array(2 * packLits.length);
        }
      }
      cursor.buf = parser._buffer;
      cursor.pos = parser._offset;
      cursor.parser = parser;
      rowStart = cursor.pos;
    };
    const end = (ev: any, parser: any) => {
      // a row that ran past its event is a decoding error, never a silent value
      // (NaN, a length read past the buffer, fails both checks below as well)
      if (!(cursor.pos <= parser._packetEnd)) {
        const tm = ev.tableMap[ev.tableId];
        throw new Error(`a row of ${tm.parentSchema}.${tm.tableName} runs past its rows event (to ${cursor.pos}, the event ends at ${parser._packetEnd}): the table map does not describe the row`);
      }
      // a row that takes no bytes before the event's end would be read again and again (zongji reads rows until the
      // event's end): the process would hang and fill its heap. It is a decoding error, with what explains it.
      if (!(cursor.pos > rowStart) && cursor.pos < parser._packetEnd) {
        const tm = ev.tableMap[ev.tableId];
        lastEvent = null;
        cursor.parser = null;
        const bits = (b: Buffer | undefined) => (Buffer.isBuffer(b) ? b.toString("hex") : String(b));
        throw new Error(
          `a row of ${tm?.parentSchema}.${tm?.tableName} (table id ${ev.tableId}) decodes to no bytes at offset ${rowStart} of its rows event (ending at ${parser._packetEnd}): the table map has ${plan.names.length} column(s), the event ${ev.numberOfColumns}; columns present ${bits(ev.columns_present_bitmap)}${ev.columns_present_bitmap2 ? `/${bits(ev.columns_present_bitmap2)}` : ""}`,
        );
      }
      parser._offset = cursor.pos;
      cursor.parser = null;
      // the event's last row: hold no reference to its packet
      if (cursor.pos >= parser._packetEnd) {
        lastEvent = null;
        cursor.buf = EMPTY;
      }
    };
    /** the tuple written, as one flat string */
    const takeTuple = (): string => {
      const tuple = sql.take(0);
      // a row of many megabytes grew the buffer: the next rows do not keep it
      if (sql.buf.length > 1 << 20) sql.buf = Buffer.allocUnsafe(1 << 16);
      return tuple;
    };
    const base = Object.getPrototypeOf(rows.WriteRows.prototype);
    const single = base._fetchOneRow;
    const pair = rows.UpdateRows.prototype._fetchOneRow;
    base._fetchOneRow = function (this: any, parser: any) {
      if (!this._zongji?.[EXACT]) return single.call(this, parser);
      if (this._zongji[PER_VALUE]) return readRow(common, parser, this.tableMap[this.tableId], this.columns_present_bitmap, this._zongji);
      begin(this, parser);
      if (packLits) {
        const start = cursor.pos;
        const buf = cursor.buf;
        sql.reset();
        rowsql.writeTuple(packLits, image1, cursor, sql);
        end(this, parser);
        const tuple = takeTuple();
        let pack = this[PACKED];
        if (!pack) this[PACKED] = pack = { plan, img: image1, buf, starts: [], tuples: [], lenient: null };
        if (sql.lenient) (pack.lenient ??= []).push(pack.tuples.length);
        pack.starts.push(start);
        pack.tuples.push(tuple);
        return tuple;
      }
      const row = codec.readRow(plan, image1, cursor);
      end(this, parser);
      return row;
    };
    rows.UpdateRows.prototype._fetchOneRow = function (this: any, parser: any) {
      if (!this._zongji?.[EXACT]) return pair.call(this, parser);
      if (this._zongji[PER_VALUE]) {
        const tm = this.tableMap[this.tableId];
        const before = readRow(common, parser, tm, this.columns_present_bitmap, this._zongji);
        const after = readRow(common, parser, tm, this.columns_present_bitmap2, this._zongji);
        for (const k in before) if (!(k in after)) after[k] = before[k];
        return { before, after };
      }
      begin(this, parser);
      if (packLits) {
        // the after image as its SQL tuple; the before image only read for its columns' spans (a key that changed
        // is told from them: sqlgen.ts decodes the row only where they differ)
        const start = cursor.pos;
        const buf = cursor.buf;
        sql.reset();
        rowsql.writeTuple(packLits, image1, cursor, sql, spansA);
        sql.reset();
        rowsql.writeTuple(packLits, image2!, cursor, sql, spansB);
        end(this, parser);
        const tuple = takeTuple();
        let pack = this[PACKED];
        if (!pack) this[PACKED] = pack = { plan, img: image2, buf, starts: [], tuples: [], lenient: null, update: { before: image1, same: [] } };
        if (sql.lenient) (pack.lenient ??= []).push(pack.tuples.length);
        pack.update.same.push(rowsql.sameColumns(buf, spansA, spansB, packLits.length));
        pack.starts.push(start);
        pack.tuples.push(tuple);
        return tuple;
      }
      const before = codec.readRow(plan, image1, cursor);
      const after = codec.readRow(plan, image2!, cursor);
      end(this, parser);
      // a column missing from the after image kept its value (MINIMAL logs only the changed columns)
      if (!image2!.full) for (const k in before) if (!(k in after)) after[k] = before[k];
      return { before, after };
    };
    ready = true;
  })();
  return installed;
}
