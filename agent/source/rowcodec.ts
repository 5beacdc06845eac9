// Rowcodec owns the fast decoding of a rows event's row images: a table map's columns are compiled once
// into an array of per-column decoders (chosen by type, metadata, character set and signedness), and each
// row is read with them straight from the event's buffer: no per-value type switch, no string padding
// helper, no temporary Buffer or Date per value. The values are those of the exact decoding that preceded
// it (zongji's readMysqlValue with rowdecode.ts's exact text, TIME, ENUM and SET), byte for byte and type
// for type: the recorded binlogs in test/fixtures/binlog are decoded both ways and compared value for value.
//
// A column this module has no decoder for (MariaDB COMPRESSED and 5.3-era temporal columns, UUID/INET,
// JSON's binary format is zongji's own) is decoded by that previous path, column by column, so a table
// with one such column still has all its other columns on the fast path. Quirks kept on purpose: YEAR 0000
// arrives as 1900 (sqlgen.ts writes it back as 0), BIGINT is a number within 2^53 and an exact string
// beyond, temporals are strings (dateStrings), JSON is text, -0 floats stay -0, the ENUM error value is
// ENUM_ERROR, SET bits without a member are the number itself (a BigInt), spatial values stay raw
// (binlog-raw.ts turns GEOMETRY into a charset-less BLOB before the first row), and a column absent from a
// MINIMAL/NOBLOB image is left out of the row.

/** where a row is read: the event's buffer and the offset, advanced by each decoder */
export interface Cursor {
  buf: Buffer;
  pos: number;
  /** zongji's parser, for the columns decoded by the previous path */
  parser: any;
}

export type Decode = (c: Cursor) => unknown;

/** the previous path for one column (rowdecode.ts readValue), for the types compiled here as a fallback */
export type Fallback = (parser: any, column: any, schema: any, tablemap: any, zongji: any) => unknown;

/** what a compiled table needs from rowdecode.ts and zongji */
export interface CodecLib {
  fallback: Fallback;
  decodeText: (b: Buffer, charset: string | null | undefined) => unknown;
  enumError: symbol;
  decodeJson: (b: Buffer) => unknown;
  jsonToText: (v: unknown) => unknown;
  convertBigInts: (v: unknown) => unknown;
}

/** a table map's columns compiled (valid while the table map entry keeps the same columns and schemas) */
export interface TablePlan {
  /** the table map entry it was compiled for */
  tablemap: any;
  columns: any[];
  schemas: any[];
  names: string[];
  decoders: Decode[];
  /** how each column is decoded (tests and the benchmark read it): the decoder's name, or "fallback" */
  kinds: string[];
  /** the image of every column */
  fullImage?: Image;
  /** a full image's row as one object literal (one allocation, one shape, a call site per column) */
  full: ((decoders: Decode[], c: Cursor, b: Buffer, nulls: number) => Record<string, unknown>) | null;
}

// MySQL type codes (binlog.h enum_field_types)
const TINY = 1, SHORT = 2, LONG = 3, FLOAT = 4, DOUBLE = 5, LONGLONG = 8, INT24 = 9, DATE = 10, YEAR = 13, VARCHAR = 15, BIT = 16;
const TIMESTAMP2 = 17, DATETIME2 = 18, TIME2 = 19, JSON_T = 245, NEWDECIMAL = 246, ENUM = 247, SET = 248;
const TINY_BLOB = 249, MEDIUM_BLOB = 250, LONG_BLOB = 251, BLOB = 252, STRING = 254;

/** Buffer's own slice-to-string methods (what toString calls after its argument checks), untyped in @types/node */
interface Fast {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}

const ZEROS = Array.from({ length: 33 }, (_, i) => "0".repeat(i));
/** "00" … "99" */
const P2 = Array.from({ length: 100 }, (_, i) => (i < 10 ? "0" : "") + i);

/**
 * zongji's zeroPad(n, size) without its 32-zero concatenation: the last `size` characters of n's text
 * with zeros in front (so a longer text is cut, as zeroPad cuts it).
 */
export function pad(n: number, size: number): string {
  const s = String(n);
  const d = size - s.length;
  if (d === 0) return s;
  return d > 0 ? ZEROS[d] + s : s.slice(-d);
}

const YEAR4: string[] = [];
function year4(y: number): string {
  return y < 10000 && y >= 0 ? (YEAR4[y] ??= pad(y, 4)) : pad(y, 4);
}

/** a big-endian signed integer of n (1–4) bytes */
function intBE(b: Buffer, p: number, n: number): number {
  let v = b[p];
  for (let i = 1; i < n; i++) v = (v << 8) | b[p + i];
  if (n === 4) return v | 0;
  const sh = 32 - 8 * n;
  return (v << sh) >> sh;
}

/** the fraction of a DATETIME2/TIMESTAMP2 as zongji writes it ('' or '.' and `dec` digits), and its value */
function fraction(b: Buffer, p: number, dec: number): number {
  let f = intBE(b, p, (dec + 1) >> 1);
  if (dec % 2 !== 0) f /= 10;
  if (f < 0) f = -f;
  return f;
}

function uintLE(b: Buffer, p: number, n: number): number {
  switch (n) {
    case 1:
      return b[p];
    case 2:
      return b[p] | (b[p + 1] << 8);
    case 3:
      return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16);
    default:
      return b.readUIntLE(p, n);
  }
}

// ---- integers (zongji parseAnyInt: signedness from the binlog metadata, else from COLUMN_TYPE) ----

function int64(unsigned: boolean): Decode {
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + 8;
    const lo = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
    const hi = (b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24)) >>> 0;
    // below 2^53: an exact number
    if (hi < 0x200000) return hi * 4294967296 + lo;
    if (unsigned || hi < 0x80000000) return ((BigInt(hi) << 32n) | BigInt(lo)).toString();
    // negative: a number from -(2^53 - 1), an exact string below
    if (hi >= 0xffe00000) {
      const v = (hi - 4294967296) * 4294967296 + lo;
      if (v >= Number.MIN_SAFE_INTEGER) return v;
    }
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
  };
}

function integer(type: number, unsigned: boolean): [string, Decode] {
  switch (type) {
    case TINY:
      return unsigned
        ? ["u8", (c) => c.buf[c.pos++]]
        : [
            "i8",
            (c) => {
              const v = c.buf[c.pos++];
              return v > 127 ? v - 256 : v;
            },
          ];
    case SHORT:
      return [
        unsigned ? "u16" : "i16",
        (c) => {
          const b = c.buf;
          const p = c.pos;
          c.pos = p + 2;
          const v = b[p] | (b[p + 1] << 8);
          return unsigned || v < 0x8000 ? v : v - 0x10000;
        },
      ];
    case INT24:
      return [
        unsigned ? "u24" : "i24",
        (c) => {
          const b = c.buf;
          const p = c.pos;
          c.pos = p + 3;
          const v = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16);
          return unsigned || v < 0x800000 ? v : v - 0x1000000;
        },
      ];
    case LONG:
      return [
        unsigned ? "u32" : "i32",
        (c) => {
          const b = c.buf;
          const p = c.pos;
          c.pos = p + 4;
          const v = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
          return unsigned ? v >>> 0 : v;
        },
      ];
    default:
      return [unsigned ? "u64" : "i64", int64(unsigned)];
  }
}

// ---- DECIMAL (zongji parseNewDecimal, without the copy of the bytes and the regular expression) ----

const DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

function decimal(precision: number, scale: number): Decode {
  const integral = precision - scale;
  const intg0 = Math.floor(integral / 9);
  const frac0 = Math.floor(scale / 9);
  const intgx = integral - intg0 * 9;
  const fracx = scale - frac0 * 9;
  const sizeIx = DIG2BYTES[intgx];
  const sizeFx = DIG2BYTES[fracx];
  const size = intg0 * 4 + sizeIx + frac0 * 4 + sizeFx;
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + size;
    const positive = (b[p] & 0x80) !== 0;
    // negative values are stored with every bit flipped (the sign bit is flipped for all values)
    const mask = positive ? 0 : -1;
    let rel = 0;
    let int = "";
    if (sizeIx > 0) {
      int += String(decimalGroup(b, p, 0, sizeIx) ^ mask);
      rel = sizeIx;
    }
    for (let i = 0; i < intg0; i++, rel += 4) int += pad(decimalGroup(b, p, rel, 4) ^ mask, 9);
    // leading zeros go, one digit stays (zongji: replace(/^0+(?=\d)/, ''))
    let z = 0;
    while (int.charCodeAt(z) === 48 && isDigit(int.charCodeAt(z + 1))) z++;
    if (z > 0) int = int.slice(z);
    if (int === "") int = "0";
    let s = positive ? int : "-" + int;
    if (scale > 0) {
      s += ".";
      for (let i = 0; i < frac0; i++, rel += 4) s += pad(decimalGroup(b, p, rel, 4) ^ mask, 9);
      if (sizeFx > 0) s += pad(decimalGroup(b, p, rel, sizeFx) ^ mask, fracx);
    }
    return s;
  };
}

/** a DECIMAL group: big-endian signed, n bytes at p + rel; the value's first byte is read with its sign bit flipped */
function decimalGroup(b: Buffer, p: number, rel: number, n: number): number {
  let v = rel === 0 ? b[p] ^ 0x80 : b[p + rel];
  for (let i = 1; i < n; i++) v = (v << 8) | b[p + rel + i];
  if (n === 4) return v | 0;
  const sh = 32 - 8 * n;
  return (v << sh) >> sh;
}

function isDigit(ch: number): boolean {
  return ch >= 48 && ch <= 57;
}

// ---- temporals (dateStrings, timezone 'Z') ----

function date(): Decode {
  let lastRaw = -1;
  let last = "";
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + 3;
    const raw = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16);
    if (raw !== lastRaw) {
      lastRaw = raw;
      last = year4(raw >> 9) + "-" + P2[(raw >> 5) & 15] + "-" + P2[raw & 31];
    }
    return last;
  };
}

function datetime2(dec: number): Decode {
  const size = 5 + ((dec + 1) >> 1);
  // the date part changes rarely from one row to the next: its text is kept for the next value
  let lastKey = -1;
  let lastDate = "";
  let lastFull = -1;
  let lastLow = -1;
  let lastF = -1;
  let last = "";
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + size;
    const key = (b[p] << 16) | (b[p + 1] << 8) | b[p + 2];
    const dayKey = key >>> 1;
    if (dayKey !== lastKey) {
      lastKey = dayKey;
      // 40 bits: sign, year*13+month (17), day (5), hour (5), minute (6), second (6); key holds the top 24
      const ym = (key >>> 6) & 0x1ffff;
      lastDate = year4(Math.floor(ym / 13)) + "-" + P2[ym % 13] + "-" + P2[(key >>> 1) & 31] + " ";
    }
    const low = (b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4];
    // rows of one statement often carry one value (NOW()): the last text is kept
    const f = dec ? fraction(b, p + 5, dec) : 0;
    if (key === lastFull && low === lastLow && f === lastF) return last;
    lastFull = key;
    lastLow = low;
    lastF = f;
    const s = lastDate + P2[(low >>> 12) & 31] + ":" + P2[(low >>> 6) & 63] + ":" + P2[low & 63];
    return (last = dec ? s + "." + pad(f, dec) : s);
  };
}

function timestamp2(dec: number): Decode {
  const size = 4 + ((dec + 1) >> 1);
  let lastDay = NaN;
  let lastDate = "";
  let lastSecs = NaN;
  let lastF = NaN;
  let last = "";
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + size;
    const secs = intBE(b, p, 4);
    const f = dec ? fraction(b, p + 4, dec) : 0;
    if (secs === lastSecs && f === lastF) return last;
    lastSecs = secs;
    lastF = f;
    return (last = text(secs, f));
  };
  function text(secs: number, f: number): string {
    const frac = dec ? "." + pad(f, dec) : "";
    if (secs === 0 && f === 0) return "0000-00-00 00:00:00" + frac;
    // zongji adds the fraction's milliseconds to the seconds: past a second only with bytes no server writes
    if (dec && millis(f, dec) >= 1000) return timestampSlow(secs, millis(f, dec)) + frac;
    const day = Math.floor(secs / 86400);
    const sod = secs - day * 86400;
    if (day !== lastDay) {
      lastDay = day;
      const d = new Date(day * 86400000);
      lastDate = year4(d.getUTCFullYear()) + "-" + P2[d.getUTCMonth() + 1] + "-" + P2[d.getUTCDate()] + " ";
    }
    return lastDate + P2[Math.floor(sod / 3600)] + ":" + P2[Math.floor((sod % 3600) / 60)] + ":" + P2[sod % 60] + frac;
  }
}

/** zongji's milliseconds of a fraction */
function millis(f: number, dec: number): number {
  return dec > 3 ? Math.floor(f / 10 ** (dec - 3)) : dec < 3 ? f * 10 ** (3 - dec) : f;
}

function timestampSlow(secs: number, ms: number): string {
  const d = new Date(secs * 1000 + ms);
  return year4(d.getUTCFullYear()) + "-" + P2[d.getUTCMonth() + 1] + "-" + P2[d.getUTCDate()] + " " + P2[d.getUTCHours()] + ":" + P2[d.getUTCMinutes()] + ":" + P2[d.getUTCSeconds()];
}

/** TIME2 as rowdecode.ts decodeTime2 decodes it (the server's packed value), in numbers: it fits in 48 bits */
export function time2(dec: number): Decode {
  const size = dec >= 5 ? 6 : dec >= 3 ? 5 : dec >= 1 ? 4 : 3;
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + size;
    let ip = ((b[p] << 16) | (b[p + 1] << 8) | b[p + 2]) - 0x800000;
    let packed: number;
    if (size === 6) packed = ip * 16777216 + ((b[p + 3] << 16) | (b[p + 4] << 8) | b[p + 5]);
    else if (size === 5) {
      let frac = (b[p + 3] << 8) | b[p + 4];
      if (ip < 0 && frac) {
        ip++;
        frac -= 0x10000;
      }
      packed = ip * 16777216 + frac * 100;
    } else if (size === 4) {
      let frac = b[p + 3];
      if (ip < 0 && frac) {
        ip++;
        frac -= 0x100;
      }
      packed = ip * 16777216 + frac * 10000;
    } else packed = ip * 16777216;
    const neg = packed < 0;
    if (neg) packed = -packed;
    const hms = Math.floor(packed / 16777216);
    const micro = packed - hms * 16777216;
    const hour = (hms >> 12) & 1023;
    let s = (neg ? "-" : "") + (hour < 100 ? P2[hour] : String(hour)) + ":" + P2[(hms >> 6) & 63] + ":" + P2[hms & 63];
    if (dec > 0) {
      const m = String(micro);
      s += "." + (m.length < 6 ? ZEROS[6 - m.length] + m : m).slice(0, dec);
    }
    return s;
  };
}

// ---- text (rowdecode.ts decodeText: a string where it maps back byte for byte, else the tagged bytes) ----

function text(charset: string, lengthSize: number, decodeText: CodecLib["decodeText"]): [string, Decode] {
  const cs = charset.toLowerCase();
  const len = (b: Buffer, p: number): number => (lengthSize === 1 ? b[p] : lengthSize === 2 ? b[p] | (b[p + 1] << 8) : b.readUIntLE(p, lengthSize));
  if (cs === "utf8mb4" || cs === "utf8mb3" || cs === "utf8" || cs === "") {
    return [
      "utf8",
      (c) => {
        const b = c.buf;
        const start = c.pos + lengthSize;
        const end = start + len(b, c.pos);
        c.pos = end;
        const s = (b as unknown as Fast).utf8Slice(start, end);
        // a U+FFFD marks bytes that were not UTF-8 (or a real U+FFFD): it must round-trip to be the text
        if (!s.includes("\ufffd")) return s;
        return decodeText(b.subarray(start, end), charset);
      },
    ];
  }
  if (cs === "latin1" || cs === "ascii") {
    // latin1 bytes outside 0x80–0x9F are their own code points (cp1252 differs only there); ascii is
    // a string only when every byte is below 0x80
    const hi = cs === "latin1" ? 0xa0 : 0x100;
    return [
      cs,
      (c) => {
        const b = c.buf;
        const start = c.pos + lengthSize;
        const end = start + len(b, c.pos);
        c.pos = end;
        for (let i = start; i < end; i++) {
          const x = b[i];
          if (x >= 0x80 && x < hi) return decodeText(b.subarray(start, end), charset);
        }
        return (b as unknown as Fast).latin1Slice(start, end);
      },
    ];
  }
  return [
    "bytes:" + cs,
    (c) => {
      const b = c.buf;
      const start = c.pos + lengthSize;
      const end = start + len(b, c.pos);
      c.pos = end;
      return decodeText(b.subarray(start, end), charset);
    },
  ];
}

/** bytes kept as a view of the event (zongji's parseBuffer) */
function bytes(lengthSize: number): Decode {
  return (c) => {
    const b = c.buf;
    const start = c.pos + lengthSize;
    const end = start + (lengthSize === 1 ? b[c.pos] : lengthSize === 2 ? b[c.pos] | (b[c.pos + 1] << 8) : b.readUIntLE(c.pos, lengthSize));
    c.pos = end;
    return b.subarray(start, end);
  };
}

/** zongji parseSetEnumTypeDef: the members listed in a column definition `set(…)`/`enum(…)` */
function members(def: string, prefixLen: number): string[] {
  return def
    .substr(prefixLen, def.length - prefixLen - 1)
    .split(",")
    .map((o) => (o[0] === '"' || o[0] === "'" ? o.substr(1, o.length - 2) : o));
}

function setDecoder(size: number, choices: any[], known: any[] | undefined): Decode {
  const n = known ? known.length : 64;
  // bits of the low and high 32-bit words that name a member
  const lowMask = n >= 32 ? 0xffffffff : 2 ** n - 1;
  const highMask = n >= 64 ? 0xffffffff : n > 32 ? 2 ** (n - 32) - 1 : 0;
  return (c) => {
    const b = c.buf;
    const p = c.pos;
    c.pos = p + size;
    let low: number;
    let high = 0;
    if (size === 8) {
      low = b.readUInt32LE(p);
      high = b.readUInt32LE(p + 4);
    } else low = uintLE(b, p, size) >>> 0;
    if (known && ((low & ~lowMask) !== 0 || (high & ~highMask) !== 0)) return (BigInt(high) << 32n) | BigInt(low);
    let s = "";
    for (let i = 0; low >= 2 ** i; i++) if (low & (2 ** i)) s += choices[i] + ",";
    if (high) for (let i = 0; high >= 2 ** i; i++) if (high & (2 ** i)) s += choices[i + 32] + ",";
    return s.length > 0 ? s.slice(0, -1) : s;
  };
}

/** zongji's decoder options this module assumes; a reader with others gets the previous path throughout */
export function fastOptions(zongji: any): boolean {
  const cfg = zongji?.connection?.config;
  return !!cfg && cfg.dateStrings === true && cfg.timezone === "Z" && !!cfg.jsonStrings && !cfg.decimalNumbers;
}

function compileColumn(column: any, schema: any, lib: CodecLib): [string, Decode] | null {
  const md = column.metadata ?? {};
  const type: number = column.type;
  if (!schema) return null;
  switch (type) {
    case TINY:
    case SHORT:
    case INT24:
    case LONG:
    case LONGLONG: {
      let unsigned: boolean;
      if (schema.UNSIGNED !== undefined) unsigned = !!schema.UNSIGNED;
      else if (typeof schema.COLUMN_TYPE === "string") unsigned = schema.COLUMN_TYPE.indexOf("unsigned") !== -1;
      else return null;
      return integer(type, unsigned);
    }
    case FLOAT:
      return [
        "float",
        (c) => {
          const v = c.buf.readFloatLE(c.pos);
          c.pos += 4;
          return v;
        },
      ];
    case DOUBLE:
      return [
        "double",
        (c) => {
          const v = c.buf.readDoubleLE(c.pos);
          c.pos += 8;
          return v;
        },
      ];
    case NEWDECIMAL:
      if (!Number.isInteger(md.precision) || !Number.isInteger(md.decimals)) return null;
      return ["decimal", decimal(md.precision, md.decimals)];
    case DATE:
      return ["date", date()];
    case DATETIME2:
      return ["datetime2", datetime2(md.decimals ?? 0)];
    case TIMESTAMP2:
      return ["timestamp2", timestamp2(md.decimals ?? 0)];
    case TIME2:
      return ["time2", time2(md.decimals ?? 0)];
    case YEAR:
      // zongji reads YEAR 0000 as 1900: kept (sqlgen.ts writes a YEAR 1900 back as 0)
      return ["year", (c) => c.buf[c.pos++] + 1900];
    case BIT: {
      const size = Math.floor((md.bits + 7) / 8);
      if (!(size >= 1 && size <= 8)) return null;
      return [
        "bit",
        (c) => {
          const p = c.pos;
          c.pos = p + size;
          return c.buf.subarray(p, p + size);
        },
      ];
    }
    case ENUM: {
      const size = md.size;
      if (size !== 1 && size !== 2) return null;
      let choices: any[];
      try {
        choices = schema.ENUM_VALUES || members(schema.COLUMN_TYPE, 5);
      } catch {
        return null;
      }
      const err = lib.enumError;
      return [
        "enum",
        (c) => {
          const b = c.buf;
          const p = c.pos;
          c.pos = p + size;
          const raw = size === 1 ? b[p] : b[p] | (b[p + 1] << 8);
          return raw === 0 ? err : choices[raw - 1];
        },
      ];
    }
    case SET: {
      const size = md.size;
      if (size !== 1 && size !== 2 && size !== 3 && size !== 4 && size !== 8) return null;
      let choices: any[];
      try {
        choices = schema.SET_VALUES || members(schema.COLUMN_TYPE, 4);
      } catch {
        return null;
      }
      return ["set", setDecoder(size, choices, schema.SET_VALUES)];
    }
    case VARCHAR:
    case STRING: {
      const lengthSize = md.max_length > 255 ? 2 : 1;
      const def = String(schema.COLUMN_TYPE ?? "");
      if (typeof column.charset === "string" && !/^(binary|varbinary|uuid|inet4|inet6|vector)/i.test(def)) return text(column.charset, lengthSize, lib.decodeText);
      if (column.charset !== null) return null;
      if (def.substr(0, 6) === "varbin") return ["varbinary", bytes(lengthSize)];
      if (def.substr(0, 6) === "binary") {
        // BINARY(n): the row image drops trailing zero bytes; zongji pads the value back to n
        const width = parseInt(def.substr(7, def.length - 2), 10);
        if (!(width >= 0)) return null;
        return [
          "binary",
          (c) => {
            const b = c.buf;
            const start = c.pos + lengthSize;
            const end = start + (lengthSize === 1 ? b[c.pos] : b[c.pos] | (b[c.pos + 1] << 8));
            c.pos = end;
            const out = Buffer.alloc(width, 0);
            b.copy(out, 0, start, end);
            return out;
          },
        ];
      }
      return null;
    }
    case TINY_BLOB:
    case MEDIUM_BLOB:
    case LONG_BLOB:
    case BLOB: {
      const lengthSize = md.length_size;
      if (!(lengthSize >= 1 && lengthSize <= 4)) return null;
      if (typeof column.charset === "string") return text(column.charset, lengthSize, lib.decodeText);
      if (column.charset === null) return [column.geometry ? "geometry" : "blob", bytes(lengthSize)];
      return null;
    }
    case JSON_T: {
      const lengthSize = md.length_size;
      if (!(lengthSize >= 1 && lengthSize <= 4)) return null;
      const { decodeJson, jsonToText } = lib;
      return [
        "json",
        (c) => {
          const b = c.buf;
          const start = c.pos + lengthSize;
          const end = start + b.readUIntLE(c.pos, lengthSize);
          c.pos = end;
          // an empty JSON value is NULL (zongji)
          return end === start ? null : jsonToText(decodeJson(b.subarray(start, end)));
        },
      ];
    }
  }
  return null;
}

/**
 * Two table map entries decode alike: same table, and every field that compileTable and the per-value path
 * (rowdecode.ts readValue, zongji's readMysqlValue) read of their columns and schemas is equal, so a plan
 * compiled for one serves the other.
 */
export function sameShape(a: any, b: any): boolean {
  const ca: any[] = a.columns;
  const cb: any[] = b.columns;
  const sa: any[] = a.columnSchemas;
  const sb: any[] = b.columnSchemas;
  if (a.parentSchema !== b.parentSchema || a.tableName !== b.tableName || ca.length !== cb.length || !sa !== !sb || (sa && sa.length !== sb.length)) return false;
  for (let i = 0; i < ca.length; i++) {
    const x = ca[i];
    const y = cb[i];
    if (x.name !== y.name || x.type !== y.type || x.charset !== y.charset || x.geometry !== y.geometry) return false;
    const m = x.metadata;
    const n = y.metadata;
    if (m !== n) {
      if (!m || !n) return false;
      if (m.size !== n.size || m.max_length !== n.max_length || m.precision !== n.precision || m.decimals !== n.decimals || m.length_size !== n.length_size || m.bits !== n.bits) return false;
    }
    if (!sa) continue;
    const p = sa[i];
    const q = sb[i];
    if (p === q) continue;
    if (!p || !q) return false;
    if (p.COLUMN_TYPE !== q.COLUMN_TYPE || p.UNSIGNED !== q.UNSIGNED || !sameList(p.ENUM_VALUES, q.ENUM_VALUES) || !sameList(p.SET_VALUES, q.SET_VALUES)) return false;
  }
  return true;
}

function sameList(x: unknown[] | undefined, y: unknown[] | undefined): boolean {
  if (x === y) return true;
  if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    const u = x[i];
    const v = y[i];
    if (u === v) continue;
    if (!(Buffer.isBuffer(u) && Buffer.isBuffer(v) && u.equals(v))) return false;
  }
  return true;
}

/** Compiles a table map's columns (zongji's tableMap entry, after binlog-raw.ts keepGeometryRaw). */
export function compileTable(tablemap: any, zongji: any, lib: CodecLib): TablePlan {
  const columns: any[] = tablemap.columns;
  const schemas: any[] = tablemap.columnSchemas;
  const names: string[] = [];
  const decoders: Decode[] = [];
  const kinds: string[] = [];
  const useFast = fastOptions(zongji);
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i];
    const schema = schemas?.[i];
    names.push(column.name);
    const compiled = useFast ? compileColumn(column, schema, lib) : null;
    if (compiled) {
      kinds.push(compiled[0]);
      decoders.push(compiled[1]);
      continue;
    }
    const fallback = lib.fallback;
    kinds.push("fallback");
    decoders.push((c) => {
      const parser = c.parser;
      parser._offset = c.pos;
      const v = fallback(parser, column, schema, tablemap, zongji);
      c.pos = parser._offset;
      return v;
    });
  }
  return { tablemap, columns, schemas, names, decoders, kinds, full: fullRowBuilder(names) };
}

/**
 * The row of a full image as an object literal in column order: what assigning each column in turn builds
 * (same keys, same order, a duplicate name keeps its first place and its last value), made once per
 * table. Names are JSON string literals; `__proto__` (a literal would set the prototype, as the assignment
 * would, but the difference is not worth a second thought) keeps the loop.
 */
function fullRowBuilder(names: string[]): TablePlan["full"] {
  if (names.length === 0 || names.length > 1000 || names.some((n) => typeof n !== "string" || n === "__proto__")) return null;
  const props = names.map((n, i) => `${JSON.stringify(n)}: (b[n + ${i >> 3}] & ${1 << (i & 7)}) !== 0 ? null : d[${i}](c)`);
  try {
    return new Function("d", "c", "b", "n", `return {\n${props.join(",\n")}\n};`) as TablePlan["full"];
  } catch {
    // a runtime that forbids code from strings (--disallow-code-generation-from-strings): the loop
    return null;
  }
}

/** which columns of the table an image carries (the columns-present bitmap of a rows event) */
export interface Image {
  bitmap: Buffer;
  /** every column is present */
  full: boolean;
  /** the indexes of the present columns */
  present: number[];
  nullBytes: number;
}

export function imageOf(bitmap: Buffer, n: number, plan?: TablePlan): Image {
  if (plan) {
    // a full image (FULL row image, the common case) is the plan's own, made once
    let full = true;
    for (let i = 0; i < n >> 3 && full; i++) full = bitmap[i] === 0xff;
    if (full && n & 7) full = (bitmap[n >> 3] & ((1 << (n & 7)) - 1)) === (1 << (n & 7)) - 1;
    if (full) return (plan.fullImage ??= imageOf(bitmap, n));
  }
  const present: number[] = [];
  for (let i = 0; i < n; i++) if ((bitmap[i >> 3] & (1 << (i & 7))) !== 0) present.push(i);
  return { bitmap, full: present.length === n, present, nullBytes: (present.length + 7) >> 3 };
}

/** one row image at the cursor: the present columns, NULL or decoded; absent columns are left out */
export function readRow(plan: TablePlan, img: Image, c: Cursor): Record<string, unknown> {
  const b = c.buf;
  const nulls = c.pos;
  c.pos = nulls + img.nullBytes;
  const { names, decoders } = plan;
  if (img.full && plan.full) return plan.full(decoders, c, b, nulls);
  const row: Record<string, unknown> = {};
  if (img.full) {
    for (let i = 0; i < names.length; i++) row[names[i]] = (b[nulls + (i >> 3)] & (1 << (i & 7))) !== 0 ? null : decoders[i](c);
  } else {
    const present = img.present;
    for (let ni = 0; ni < present.length; ni++) {
      const i = present[ni];
      row[names[i]] = (b[nulls + (ni >> 3)] & (1 << (ni & 7))) !== 0 ? null : decoders[i](c);
    }
  }
  return row;
}
