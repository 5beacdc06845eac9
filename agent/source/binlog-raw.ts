// BinlogRaw owns what zongji decodes lossily and the agent needs byte-exact: a query event's status
// variables (the session a DDL ran in: sql_mode, character sets, time zone, timestamp, foreign key and
// unique checks) and its statement bytes (zongji decodes them as UTF-8, so a latin1 client's names and
// ENUM labels are mangled), and spatial values (zongji parses them into {x, y} objects: SRID and type
// lost). Native replication carries all of these in the events; this module keeps them.
//
// zongji exports no event classes and node_modules is not ours to edit, so the Query event class is
// reached by its module URL (the same module instance zongji uses) and given a base class that keeps
// the packet buffer and the offset where the event's body starts. Nothing else about it changes.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);

interface RawQueryEvent {
  __rawBuf?: Buffer;
  __rawStart?: number;
  statusVarsLength: number;
  schemaLength: number;
  size: number;
  query: string;
}

/** Patches zongji's Query event class once, so query events keep their raw bytes (see the file comment). */
async function installRawCapture(): Promise<void> {
  {
    const root = dirname(require.resolve("@vlasky/zongji"));
    const events: any = await import(pathToFileURL(join(root, "lib", "binlog_event.js")).href);
    const Query = events.Query;
    const Base = Object.getPrototypeOf(Query);
    if (Base.__datasyncRaw) return;
    // the Query constructor calls super(parser, options) through its prototype link: this class runs
    // first, records where the body starts, and leaves the parsing to zongji
    class RawCapture extends Base {
      static __datasyncRaw = true;
      constructor(parser: any, options: any, ...rest: unknown[]) {
        super(parser, options, ...rest);
        (this as any).__rawBuf = parser._buffer;
        (this as any).__rawStart = parser._offset;
        (this as any).__eventType = options?.eventType;
      }
    }
    Object.setPrototypeOf(Query, RawCapture);
    Object.setPrototypeOf(Query.prototype, RawCapture.prototype);
  }
}

// once, when the reader's module graph loads (before any binlog connection exists)
await installRawCapture();

/** MariaDB log_bin_compress: its statement text is compressed (zongji inflates it; its status vars are plain) */
const QUERY_COMPRESSED_EVENT = 165;

/** The raw status variables and statement bytes of a query event (and drops the packet reference). */
export function takeQueryRaw(ev: any): { statusVars: Buffer; query: Buffer | null } | null {
  const e = ev as RawQueryEvent & { __eventType?: number };
  const buf = e.__rawBuf;
  const start = e.__rawStart;
  // (cleared, not deleted: a delete turns the event object into a slow dictionary)
  e.__rawBuf = undefined;
  e.__rawStart = undefined;
  if (!buf || start === undefined) return null;
  // post-header: proxy id 4, exec time 4, schema length 1, error code 2, status vars length 2
  const sv = start + 13;
  const statusVars = Buffer.from(buf.subarray(sv, sv + e.statusVarsLength));
  if (e.__eventType === QUERY_COMPRESSED_EVENT) return { statusVars, query: null };
  const q = sv + e.statusVarsLength + e.schemaLength + 1;
  const len = e.size - 13 - e.statusVarsLength - e.schemaLength - 1;
  return { statusVars, query: Buffer.from(buf.subarray(q, q + len)) };
}

/** A query event whose raw bytes are not needed (not a DDL): drops its packet reference, copies nothing. */
export function dropQueryRaw(ev: any): void {
  (ev as RawQueryEvent).__rawBuf = undefined;
}

/** The session a query event's statement ran in on the source. */
export interface QuerySession {
  /** OPTION_* bits (Q_FLAGS2_CODE) */
  flags2?: number;
  /** the sql_mode bitmask (Q_SQL_MODE_CODE), as a decimal string (64 bits) */
  sqlMode?: string;
  /** collation ids of character_set_client, collation_connection, collation_server (Q_CHARSET_CODE) */
  charset?: { client: number; connection: number; server: number };
  /** Q_CHARSET_DATABASE_CODE */
  collationDatabase?: number;
  timeZone?: string;
  /** microseconds of the statement's start (MySQL Q_MICROSECONDS, MariaDB Q_HRNOW) */
  micros?: number;
  lcTimeNames?: number;
  autoIncrement?: { increment: number; offset: number };
  /** MySQL Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP */
  explicitDefaultsForTimestamp?: number;
  /** MySQL Q_DEFAULT_COLLATION_FOR_UTF8MB4 */
  defaultCollationForUtf8mb4?: number;
}

export const OPTION_AUTO_IS_NULL = 0x00004000;
export const OPTION_NOT_AUTOCOMMIT = 0x00080000;
export const OPTION_NO_FOREIGN_KEY_CHECKS = 0x04000000;
export const OPTION_RELAXED_UNIQUE_CHECKS = 0x08000000;
/** MariaDB: the session ran with check_constraint_checks=OFF (bit seen in MariaDB 10.11 query events) */
export const OPTION_NO_CHECK_CONSTRAINT_CHECKS = 0x00008000;
export const MODE_ANSI_QUOTES = 0x4n;
export const MODE_NO_BACKSLASH_ESCAPES = 0x100000n;

/** Rows event flags (the session's checks when the rows were written) */
export const ROWS_NO_FOREIGN_KEY_CHECKS = 0x0002;
export const ROWS_RELAXED_UNIQUE_CHECKS = 0x0004;
/** MariaDB */
export const ROWS_NO_CHECK_CONSTRAINT_CHECKS = 0x0080;

/**
 * Decode the status variables block (MySQL libbinlogevents statement_events.h, MariaDB log_event.h).
 * An unknown code ends the walk: its length is not known, and the variables before it are still valid.
 */
export function parseStatusVars(b: Buffer, flavor: "mysql" | "mariadb"): QuerySession {
  const s: QuerySession = {};
  let i = 0;
  const need = (n: number) => i + n <= b.length;
  while (i < b.length) {
    const code = b[i++];
    switch (code) {
      case 0: // Q_FLAGS2_CODE
        if (!need(4)) return s;
        s.flags2 = b.readUInt32LE(i);
        i += 4;
        break;
      case 1: // Q_SQL_MODE_CODE
        if (!need(8)) return s;
        s.sqlMode = b.readBigUInt64LE(i).toString();
        i += 8;
        break;
      case 2: // Q_CATALOG_CODE (old): length, name, NUL
        if (!need(1)) return s;
        i += 1 + b[i] + 1;
        break;
      case 3: // Q_AUTO_INCREMENT
        if (!need(4)) return s;
        s.autoIncrement = { increment: b.readUInt16LE(i), offset: b.readUInt16LE(i + 2) };
        i += 4;
        break;
      case 4: // Q_CHARSET_CODE
        if (!need(6)) return s;
        s.charset = { client: b.readUInt16LE(i), connection: b.readUInt16LE(i + 2), server: b.readUInt16LE(i + 4) };
        i += 6;
        break;
      case 5: {
        // Q_TIME_ZONE_CODE
        if (!need(1)) return s;
        const n = b[i];
        s.timeZone = b.subarray(i + 1, i + 1 + n).toString("latin1");
        i += 1 + n;
        break;
      }
      case 6: // Q_CATALOG_NZ_CODE
        if (!need(1)) return s;
        i += 1 + b[i];
        break;
      case 7: // Q_LC_TIME_NAMES_CODE
        if (!need(2)) return s;
        s.lcTimeNames = b.readUInt16LE(i);
        i += 2;
        break;
      case 8: // Q_CHARSET_DATABASE_CODE
        if (!need(2)) return s;
        s.collationDatabase = b.readUInt16LE(i);
        i += 2;
        break;
      case 9: // Q_TABLE_MAP_FOR_UPDATE_CODE
        i += 8;
        break;
      case 10: // Q_MASTER_DATA_WRITTEN_CODE
        i += 4;
        break;
      case 11: {
        // Q_INVOKER: user, host (length-prefixed)
        if (!need(1)) return s;
        i += 1 + b[i];
        if (!need(1)) return s;
        i += 1 + b[i];
        break;
      }
      case 12: {
        // Q_UPDATED_DB_NAMES: a count, then NUL-terminated names (254: too many, none listed)
        if (!need(1)) return s;
        const n = b[i++];
        if (n !== 254) {
          for (let k = 0; k < n; k++) {
            const z = b.indexOf(0, i);
            if (z < 0) return s;
            i = z + 1;
          }
        }
        break;
      }
      case 13: // Q_MICROSECONDS (MySQL)
        if (!need(3)) return s;
        s.micros = b.readUIntLE(i, 3);
        i += 3;
        break;
      case 128: // MariaDB Q_HRNOW
        if (!need(3)) return s;
        s.micros = b.readUIntLE(i, 3);
        i += 3;
        break;
      case 129: // MariaDB Q_XID
        i += 8;
        break;
      case 130: // MariaDB Q_GTID_FLAGS3
        i += 1;
        break;
      case 131: {
        // MariaDB 11.2+ Q_CHARACTER_SET_COLLATIONS: a count, then pairs of ids
        if (!need(1)) return s;
        const n = b[i++];
        i += n * 4;
        break;
      }
      default:
        if (flavor === "mysql") {
          if (code === 14) i += 8; // Q_COMMIT_TS (unused)
          else if (code === 15) i += 8; // Q_COMMIT_TS2
          else if (code === 16) {
            s.explicitDefaultsForTimestamp = b[i];
            i += 1;
          } else if (code === 17) i += 8; // Q_DDL_LOGGED_WITH_XID
          else if (code === 18) {
            s.defaultCollationForUtf8mb4 = b.readUInt16LE(i);
            i += 2;
          } else if (code === 19 || code === 20) i += 1; // Q_SQL_REQUIRE_PRIMARY_KEY, Q_DEFAULT_TABLE_ENCRYPTION
          else return s;
          break;
        }
        return s;
    }
  }
  return s;
}

/** MySQL/MariaDB character set name → a WHATWG decoder label (MySQL latin1 is cp1252 with the 5 holes as C1 controls, which is WHATWG windows-1252) */
const DECODERS: Record<string, string> = {
  utf8: "utf-8",
  utf8mb3: "utf-8",
  utf8mb4: "utf-8",
  ascii: "utf-8",
  latin2: "iso-8859-2",
  latin7: "iso-8859-13",
  greek: "iso-8859-7",
  hebrew: "iso-8859-8",
  cp1250: "windows-1250",
  cp1251: "windows-1251",
  cp1256: "windows-1256",
  cp1257: "windows-1257",
  cp866: "ibm866",
  koi8r: "koi8-r",
  koi8u: "koi8-u",
  gbk: "gbk",
  gb2312: "gbk",
  gb18030: "gb18030",
  big5: "big5",
  sjis: "shift_jis",
  cp932: "shift_jis",
  ujis: "euc-jp",
  eucjpms: "euc-jp",
  euckr: "euc-kr",
};

/**
 * The statement text as the source's client sent it (its bytes are in character_set_client). Null when
 * that character set cannot be decoded here: the caller stops the replica rather than guess.
 */
export function decodeStatement(bytes: Buffer, charset: string): string | null {
  // Node's TextDecoder takes windows-1252 for ISO-8859-1 (0x80 → U+0080): MySQL's latin1 is decoded here
  if (charset.toLowerCase() === "latin1") return decodeLatin1(bytes);
  const label = DECODERS[charset.toLowerCase()];
  if (!label) return null;
  try {
    return new TextDecoder(label, { fatal: label === "utf-8" }).decode(bytes);
  } catch {
    return null;
  }
}

/** cp1252's 0x80–0x9F; the five bytes it leaves undefined are the C1 controls, as in MySQL's latin1 */
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];

function decodeLatin1(b: Buffer): string {
  let out = "";
  for (let i = 0; i < b.length; i += 4096) {
    const part = b.subarray(i, i + 4096);
    out += String.fromCharCode(...Array.from(part, (x) => (x >= 0x80 && x <= 0x9f ? CP1252_HIGH[x - 0x80] : x)));
  }
  return out;
}

/** MySQL type code of GEOMETRY columns, and of the BLOB decoding that keeps their bytes */
const TYPE_GEOMETRY = 255;
const TYPE_BLOB = 252;

/**
 * After zongji has built a table map: spatial columns are decoded as their raw value, MySQL's internal
 * format (4-byte little-endian SRID, then WKB), which a replica accepts as is for a spatial column.
 */
export function keepGeometryRaw(tableMapEntry: any): void {
  const cols: any[] | undefined = tableMapEntry?.columns;
  if (!cols) return;
  for (const c of cols) {
    if (c && c.type === TYPE_GEOMETRY) {
      c.type = TYPE_BLOB;
      c.charset = null;
      c.geometry = true;
    }
  }
}
