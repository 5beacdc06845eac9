// Rowsql owns writing an inserted row straight from its row image to the SQL text of its VALUES tuple: no
// row object keyed by column name, no intermediate value for text and bytes (they are copied, escaped or
// hex-encoded, from the event's buffer into the SQL buffer), one flat string per row. The text is exactly
// what the builder wrote from the decoded row (sqlgen.ts: escapeValue of each value of rowcodec.ts's
// decoders, joined): the recorded binlogs are written both ways and compared tuple for tuple
// (test/unit/rowsql.test.ts), and a column whose bytes take a path this module does not copy (a text
// that is not valid UTF-8, latin1's C1 range) is written through escapeValue of its decoded value.
//
// A write rows event's rows are packed this way when the reader asks for it (ReaderOptions.packRows) and
// every column of the table map has a compiled decoder: the event keeps its buffer and each row's start, so
// a consumer that reads values (keys, the snapshot's watermarks, a change that is not a lane's) gets the
// very row objects of the unpacked path, decoded on demand (rowsOf).
import { isUtf8 } from "node:buffer";
import { escapeValue } from "../literals.js";
import { ENUM_ERROR } from "./rowdecode.js";
import { rowKeyId } from "../keys.js";
import { readRow, type Cursor, type Image, type TablePlan } from "./rowcodec.js";

/** the SQL text being written: bytes (ASCII and UTF-8), grown as needed, reused from row to row */
export class SqlText {
  buf = Buffer.allocUnsafe(1 << 16);
  len = 0;
  /** a value written since reset() is the ENUM error value (the statement must run under a lenient sql_mode) */
  lenient = false;

  reset(): void {
    this.len = 0;
    this.lenient = false;
  }

  /** room for n more bytes */
  room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** a string's UTF-8 bytes (escapeValue's output) */
  text(s: string): void {
    this.room(s.length * 3);
    this.len += (this.buf as unknown as Fast).utf8Write(s, this.len);
  }

  /**
   * A string as escapeValue writes it (not YEAR): quoted, the nine characters mysql.escape escapes escaped.
   * Characters below 0x80 are written here; a string with others is written from escapeValue's text.
   */
  quoted(v: string): void {
    const n0 = this.len;
    this.room(2 * v.length + 2);
    const o = this.buf;
    let n = n0;
    o[n++] = 0x27;
    for (let i = 0; i < v.length; i++) {
      const x = v.charCodeAt(i);
      if (x >= 0x80) {
        this.len = n0;
        this.text(escapeValue(v, undefined));
        return;
      }
      const e = ESC[x];
      if (e !== 0) {
        o[n++] = 0x5c;
        o[n++] = e;
      } else o[n++] = x;
    }
    o[n++] = 0x27;
    this.len = n;
  }

  /** an integer of at most 31 bits and its sign, as String() writes it */
  int(v: number): void {
    this.room(12);
    const o = this.buf;
    let n = this.len;
    if (v < 0) {
      o[n++] = 0x2d;
      v = -v;
    }
    if (v < 10) o[n++] = 0x30 + v;
    else {
      let digits = 0;
      for (let t = v; t > 0; t = (t / 10) | 0) digits++;
      n += digits;
      for (let i = n - 1; v > 0; i--) {
        const q = (v / 10) | 0;
        o[i] = 0x30 + (v - q * 10);
        v = q;
      }
    }
    this.len = n;
  }

  /** a value as escapeValue writes it (type: "year" or undefined, see columnLit) */
  value(v: unknown, type: string | undefined): void {
    if (typeof v === "string" && type === undefined) this.quoted(v);
    else if (typeof v === "number" && (v | 0) === v && !Object.is(v, -0) && type === undefined) this.int(v);
    else {
      if (v === ENUM_ERROR) this.lenient = true;
      this.text(escapeValue(v, type));
    }
  }

  /** the text written since `from`, as one flat string */
  take(from: number): string {
    return (this.buf as unknown as Fast).utf8Slice(from, this.len);
  }
}

interface Fast {
  latin1Write(s: string, offset: number): number;
  utf8Write(s: string, offset: number): number;
  utf8Slice(start: number, end: number): string;
}

/** writes one column's literal at the cursor (advancing it exactly as the column's decoder does) */
export type Lit = (c: Cursor, w: SqlText) => void;

// MySQL type codes (binlog.h enum_field_types)
const TINY = 1, SHORT = 2, LONG = 3, INT24 = 9, YEAR = 13, VARCHAR = 15, STRING = 254;

/** what escapeString writes for the bytes it escapes (sql-escaper, mysql.escape's default mode), else 0 */
const ESC = new Uint8Array(256);
ESC[0] = 0x30; // \0
ESC[8] = 0x62; // \b
ESC[9] = 0x74; // \t
ESC[10] = 0x6e; // \n
ESC[13] = 0x72; // \r
ESC[26] = 0x5a; // \Z
ESC[34] = 0x22; // \"
ESC[39] = 0x27; // \'
ESC[92] = 0x5c; // \\
const HEX = Buffer.from("0123456789abcdef", "latin1");

function lengthAt(b: Buffer, p: number, lengthSize: number): number {
  return lengthSize === 1 ? b[p] : lengthSize === 2 ? b[p] | (b[p + 1] << 8) : b.readUIntLE(p, lengthSize);
}

/**
 * 'text' from bytes that are the text's own UTF-8 (ASCII specials escaped, as escapeString does); returns the
 * bytes OR-ed together (below 0x80: ASCII, nothing to check)
 */
function quoted(w: SqlText, b: Buffer, start: number, end: number): number {
  w.room(2 * (end - start) + 2);
  const o = w.buf;
  let n = w.len;
  let all = 0;
  o[n++] = 0x27;
  for (let i = start; i < end; i++) {
    const x = b[i];
    all |= x;
    const e = ESC[x];
    if (e !== 0) {
      o[n++] = 0x5c;
      o[n++] = e;
    } else o[n++] = x;
  }
  o[n++] = 0x27;
  w.len = n;
  return all;
}

/** X'hex' of bytes, then `pad` zero bytes (escapeValue of a Buffer; '' when empty) */
function hexOf(w: SqlText, b: Buffer, start: number, end: number, pad = 0): void {
  if (end - start + pad === 0) {
    w.room(2);
    w.buf[w.len++] = 0x27;
    w.buf[w.len++] = 0x27;
    return;
  }
  w.room(2 * (end - start + pad) + 3);
  const o = w.buf;
  let n = w.len;
  o[n++] = 0x58;
  o[n++] = 0x27;
  for (let i = start; i < end; i++) {
    const x = b[i];
    o[n++] = HEX[x >> 4];
    o[n++] = HEX[x & 15];
  }
  for (let i = 0; i < pad; i++) {
    o[n++] = 0x30;
    o[n++] = 0x30;
  }
  o[n++] = 0x27;
  w.len = n;
}

/** the literal through the decoded value (every column that has no byte path here, and the byte paths' exceptions) */
function viaValue(decode: (c: Cursor) => unknown, type: string | undefined): Lit {
  return (c, w) => w.value(decode(c), type);
}

/**
 * The writer of one column of a compiled table (plan.kinds[i], plan.decoders[i]). `type` is the type
 * escapeValue is given: "year" for a YEAR column, else undefined (escapeValue tells no other type apart);
 * the builder uses a packed row only where the replica's column types agree (packedFits).
 */
function columnLit(plan: TablePlan, i: number): Lit {
  const kind = plan.kinds[i];
  const decode = plan.decoders[i];
  const column = plan.columns[i];
  const type = column.type === YEAR ? "year" : undefined;
  const md = column.metadata ?? {};
  const lengthSize: number = column.type === VARCHAR || column.type === STRING ? (md.max_length > 255 ? 2 : 1) : md.length_size;
  switch (kind) {
    case "u8":
    case "i8":
    case "u16":
    case "i16":
    case "u24":
    case "i24":
    case "u32":
    case "i32": {
      if (column.type !== TINY && column.type !== SHORT && column.type !== INT24 && column.type !== LONG) break;
      // a number (never -0: the decoders build integers with | and -): its decimal digits
      if (kind === "u32") return (c, w) => w.value(decode(c), undefined);
      return (c, w) => w.int(decode(c) as number);
    }
    case "utf8":
      return (c, w) => {
        const b = c.buf;
        const p = c.pos;
        const start = p + lengthSize;
        const end = start + lengthAt(b, p, lengthSize);
        // valid UTF-8 is what the decoder keeps as the string of these bytes (a U+FFFD that round-trips
        // included); other bytes become a charset-tagged Buffer: through the value. ASCII needs no check.
        const n0 = w.len;
        if (quoted(w, b, start, end) < 0x80 || isUtf8(b.subarray(start, end))) {
          c.pos = end;
          return;
        }
        w.len = n0;
        w.value(decode(c), type);
      };
    case "latin1":
    case "ascii": {
      // bytes below 0x80 are themselves; latin1's 0xA0-0xFF are their code points (two UTF-8 bytes); the rest
      // (latin1's 0x80-0x9F, ascii's upper half) the decoder keeps as bytes: through the value
      const hi = kind === "latin1" ? 0xa0 : 0x100;
      return (c, w) => {
        const b = c.buf;
        const p = c.pos;
        const start = p + lengthSize;
        const end = start + lengthAt(b, p, lengthSize);
        for (let i = start; i < end; i++) {
          const x = b[i];
          if (x >= 0x80 && x < hi) {
            w.value(decode(c), type);
            return;
          }
        }
        c.pos = end;
        w.room(2 * (end - start) + 2);
        const o = w.buf;
        let n = w.len;
        o[n++] = 0x27;
        for (let i = start; i < end; i++) {
          const x = b[i];
          if (x >= 0x80) {
            o[n++] = 0xc0 | (x >> 6);
            o[n++] = 0x80 | (x & 0x3f);
            continue;
          }
          const e = ESC[x];
          if (e !== 0) {
            o[n++] = 0x5c;
            o[n++] = e;
          } else o[n++] = x;
        }
        o[n++] = 0x27;
        w.len = n;
      };
    }
    case "varbinary":
    case "blob":
    case "geometry":
      if (!(lengthSize >= 1 && lengthSize <= 4)) break;
      return (c, w) => {
        const b = c.buf;
        const p = c.pos;
        const start = p + lengthSize;
        const end = start + lengthAt(b, p, lengthSize);
        c.pos = end;
        hexOf(w, b, start, end);
      };
    case "binary": {
      // BINARY(n): the image drops trailing zero bytes; the decoder pads the value back to n (and cuts a longer one)
      const def = String(plan.schemas?.[i]?.COLUMN_TYPE ?? "");
      const width = parseInt(def.substr(7, def.length - 2), 10);
      if (!(width >= 0) || !(lengthSize === 1 || lengthSize === 2)) break;
      return (c, w) => {
        const b = c.buf;
        const p = c.pos;
        const start = p + lengthSize;
        const end = start + lengthAt(b, p, lengthSize);
        c.pos = end;
        const n = Math.min(end - start, width);
        hexOf(w, b, start, start + n, width - n);
      };
    }
  }
  return viaValue(decode, type);
}

/** a table's column writers, or null when a column has no compiled decoder (rowdecode.ts's per-value path needs zongji's parser) */
const LITS = new WeakMap<TablePlan, Lit[] | null>();
export function litsOf(plan: TablePlan): Lit[] | null {
  let lits = LITS.get(plan);
  if (lits === undefined) {
    lits = plan.kinds.includes("fallback") || plan.names.length === 0 ? null : plan.names.map((_, i) => columnLit(plan, i));
    LITS.set(plan, lits);
  }
  return lits;
}

/**
 * One full-image row at the cursor written as `(v1,v2,…)` (every column present). With `spans`, column i's
 * bytes in the image are spans[2i]…spans[2i+1] (-1, -1 for NULL).
 */
export function writeTuple(lits: Lit[], img: Image, c: Cursor, w: SqlText, spans?: Int32Array): void {
  const b = c.buf;
  const nulls = c.pos;
  c.pos = nulls + img.nullBytes;
  w.room(2 + 5 * lits.length);
  w.buf[w.len++] = 0x28;
  for (let i = 0; i < lits.length; i++) {
    if (i > 0) {
      w.room(5);
      w.buf[w.len++] = 0x2c;
    }
    if ((b[nulls + (i >> 3)] & (1 << (i & 7))) !== 0) {
      w.room(4);
      const o = w.buf;
      o[w.len] = 0x4e;
      o[w.len + 1] = 0x55;
      o[w.len + 2] = 0x4c;
      o[w.len + 3] = 0x4c;
      w.len += 4;
      if (spans) spans[2 * i] = spans[2 * i + 1] = -1;
    } else if (spans) {
      spans[2 * i] = c.pos;
      lits[i](c, w);
      spans[2 * i + 1] = c.pos;
    } else lits[i](c, w);
  }
  w.room(1);
  w.buf[w.len++] = 0x29;
}

/**
 * The columns (of the first 30) whose bytes are the same in two images of a row (spans as writeTuple
 * records them), as bits: equal bytes decode to equal values, so a key whose columns all have their bit is
 * unchanged (sameKeyPacked). A column past the 30th never has its bit.
 */
export function sameColumns(buf: Buffer, a: Int32Array, b: Int32Array, n: number): number {
  let bits = 0;
  for (let i = 0; i < n && i < 30; i++) {
    const s = a[2 * i];
    const e = a[2 * i + 1];
    const t = b[2 * i];
    if (s === -1 || t === -1) {
      if (s === t) bits |= 1 << i;
      continue;
    }
    if (e - s === b[2 * i + 1] - t && buf.compare(buf, t, t + (e - s), s, e) === 0) bits |= 1 << i;
  }
  return bits;
}

/**
 * The rows of a write rows event written as SQL tuples (what the reader's RowChange carries instead of row
 * objects while nothing reads their values): the table's plan and full image, the event's buffer and each
 * row's start in it (to decode a row when its values are needed), and the tuples.
 */
export interface Pack {
  plan: TablePlan;
  img: Image;
  buf: Buffer;
  starts: number[];
  tuples: string[];
  /** the indexes of the rows that hold the ENUM error value (their statement runs under a lenient sql_mode), if any */
  lenient: number[] | null;
  /**
   * an update's pack: `starts` are where each row's before image starts (its after image follows it), `img`
   * is the after image's and the tuples are the after images'; per row, sameColumns of its two images
   */
  update?: { before: Image; same: number[] };
}

/** the row objects of packs, as the unpacked path decodes them (rowcodec.ts readRow): an update's after images, or with `before` its before images */
export function rowsOf(packs: readonly Pack[], before = false): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const p of packs) {
    for (let i = 0; i < p.starts.length; i++) out.push(before ? beforeOf(p, i) : rowOf(p, i));
  }
  return out;
}

/** row i of a pack, decoded (an update's after image) */
export function rowOf(p: Pack, i: number): Record<string, unknown> {
  const c: Cursor = { buf: p.buf, pos: p.starts[i], parser: null };
  if (p.update) readRow(p.plan, p.update.before, c);
  return readRow(p.plan, p.img, c);
}

/** the before image of row i of an update's pack, decoded */
export function beforeOf(p: Pack, i: number): Record<string, unknown> {
  return readRow(p.plan, p.update!.before, { buf: p.buf, pos: p.starts[i], parser: null });
}

/**
 * Row i of an update's pack keeps its key (sqlgen.ts sameKey of its before and after rows): from the bytes
 * where every key column's are the same in both images, else from the decoded rows (`sameKey`).
 */
export function sameKeyPacked(p: Pack, i: number, keyIdx: readonly number[], pk: readonly string[], sameKey: (pk: readonly string[], a: Record<string, unknown>, b: Record<string, unknown>) => boolean): boolean {
  const same = p.update!.same[i];
  let all = true;
  for (const k of keyIdx) if (k >= 30 || (same & (1 << k)) === 0) all = false;
  return all || sameKey(pk, beforeOf(p, i), rowOf(p, i));
}

/** whether a table's packed tuples are what the builder writes for the replica's table: the same writable columns in the same order, YEAR where the source has YEAR */
const FITS = new WeakMap<TablePlan, WeakMap<object, boolean>>();
let lastFitPlan: TablePlan | null = null;
let lastFitMeta: object | null = null;
let lastFit = false;
export function packedFits(plan: TablePlan, writable: readonly string[], types: ReadonlyMap<string, string>, meta: object): boolean {
  // (the same table one change after another: the last answer)
  if (plan === lastFitPlan && meta === lastFitMeta) return lastFit;
  lastFitPlan = plan;
  lastFitMeta = meta;
  lastFit = fits(plan, writable, types, meta);
  return lastFit;
}

function fits(plan: TablePlan, writable: readonly string[], types: ReadonlyMap<string, string>, meta: object): boolean {
  let byMeta = FITS.get(plan);
  if (!byMeta) FITS.set(plan, (byMeta = new WeakMap()));
  let fits = byMeta.get(meta);
  if (fits === undefined) {
    fits = plan.names.length === writable.length;
    for (let i = 0; fits && i < writable.length; i++) {
      fits = plan.names[i] === writable[i] && (types.get(writable[i]) === "year") === (plan.columns[i].type === YEAR);
    }
    byMeta.set(meta, fits);
  }
  return fits;
}

/**
 * The key columns' values of a full image at `pos` (the columns up to the last key column read, the rest not),
 * as a row of those columns only; null when a key column is not in the image.
 */
function keyRow(p: Pack, img: Image, pos: number, pk: readonly string[]): Record<string, unknown> | null {
  const names = p.plan.names;
  let last = -1;
  for (const k of pk) {
    const i = names.indexOf(k);
    if (i < 0) return null;
    if (i > last) last = i;
  }
  const c: Cursor = { buf: p.buf, pos: pos + img.nullBytes, parser: null };
  const row: Record<string, unknown> = {};
  for (let i = 0; i <= last; i++) {
    const v = (p.buf[pos + (i >> 3)] & (1 << (i & 7))) !== 0 ? null : p.plan.decoders[i](c);
    if (pk.includes(names[i])) row[names[i]] = v;
  }
  return row;
}

/**
 * The key identities (keys.ts rowKeyId) of row i of a pack added to `set`: an update's before and after keys.
 * Only the columns up to the key's are decoded: an insert's and an unchanged key's from the image that starts
 * the row (an unchanged key has the same bytes in both images), a changed one's from both rows.
 */
export function packedKeys(p: Pack, i: number, pk: readonly string[], set: Set<string>): void {
  const row = keyKept(p, i, pk) ? keyRow(p, p.update ? p.update.before : p.img, p.starts[i], pk) : null;
  if (row) {
    set.add(rowKeyId(pk, row));
    return;
  }
  set.add(rowKeyId(pk, rowOf(p, i)));
  if (p.update) set.add(rowKeyId(pk, beforeOf(p, i)));
}

/** the key identity of row i of a pack (an update's after image), decoding only the columns up to the key's where it can */
export function packedKeyId(p: Pack, i: number, pk: readonly string[]): string {
  const row = keyKept(p, i, pk) ? keyRow(p, p.update ? p.update.before : p.img, p.starts[i], pk) : null;
  return rowKeyId(pk, row ?? rowOf(p, i));
}

/** an insert, or an update whose key columns have the same bytes in both images */
function keyKept(p: Pack, i: number, pk: readonly string[]): boolean {
  if (!p.update) return true;
  for (const k of pk) {
    const c = p.plan.names.indexOf(k);
    if (c < 0 || c >= 30 || (p.update.same[i] & (1 << c)) === 0) return false;
  }
  return true;
}

/** the packs of a RowChange whose rows were not read yet (packedChange) */
const PACKS = Symbol("datasync.packs");

interface Packable {
  rows: Record<string, unknown>[];
  [PACKS]?: Pack[] | undefined;
}

/** a packed change's rows (and an update's before images) decoded, as plain data properties from now on */
function settle(ch: Packable & { op: string }): void {
  const packs = ch[PACKS];
  if (packs === undefined) return;
  ch[PACKS] = undefined;
  const prop = (value: Record<string, unknown>[]) => ({ value, writable: true, enumerable: true, configurable: true });
  Object.defineProperty(ch, "rows", prop(rowsOf(packs)));
  if (ch.op === "update") Object.defineProperty(ch, "before", prop(rowsOf(packs, true)));
}

export interface PackedChange {
  op: "insert" | "update";
  db: string;
  table: string;
  rows: Record<string, unknown>[];
  before?: Record<string, unknown>[];
}

/**
 * A RowChange (an insert, or an update) carrying packed rows: its `rows` (and an update's `before`) is an
 * enumerable accessor that decodes them when first read (then it is a plain array, as everywhere else: spread and
 * JSON copy it), and a write to it replaces them. The builder takes the tuples without reading `rows` (packsOf).
 * Object literals with their accessors (one shape each, no closure per change: a single-row transaction makes one).
 */
export function packedChange(db: string, table: string, pack: Pack): PackedChange {
  if (pack.update) {
    return {
      op: "update",
      db,
      table,
      get rows(): Record<string, unknown>[] {
        settle(this as any);
        return this.rows;
      },
      set rows(v: Record<string, unknown>[]) {
        settle(this as any);
        this.rows = v;
      },
      get before(): Record<string, unknown>[] | undefined {
        settle(this as any);
        return this.before;
      },
      set before(v: Record<string, unknown>[] | undefined) {
        settle(this as any);
        this.before = v;
      },
      [PACKS]: [pack],
    } as PackedChange;
  }
  return {
    op: "insert",
    db,
    table,
    get rows(): Record<string, unknown>[] {
      settle(this as any);
      return this.rows;
    },
    set rows(v: Record<string, unknown>[]) {
      settle(this as any);
      this.rows = v;
    },
    before: undefined,
    [PACKS]: [pack],
  } as PackedChange;
}

/** the packs of a change whose rows nothing has read yet, else undefined */
export function packsOf(change: object): Pack[] | undefined {
  return (change as Packable)[PACKS];
}

/** the number of rows of a change, without decoding packed ones */
export function rowCount(change: { rows: unknown[] }): number {
  const packs = (change as unknown as Packable)[PACKS];
  if (!packs) return change.rows.length;
  let n = 0;
  for (const p of packs) n += p.tuples.length;
  return n;
}
