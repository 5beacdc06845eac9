// ThreadCodec owns how a decoded transaction crosses between threads (reader-thread.ts). The reader thread posts
// its transactions as JSON text (one string per batch): V8's JSON.parse and JSON.stringify are 4-5 times faster
// than postMessage's structured clone on these small objects (12 µs a single-row transaction to deserialize on the
// main thread, against 2-3 µs; bench/results.md "Reader thread"). JSON keeps strings, finite numbers, booleans, null,
// plain objects and arrays exactly; every other value a row can hold is listed (`fixes`) with where it is, stands
// in the text as a JSON value, and is put back on the receiving side exactly:
// - a Buffer (bytes, spatial values, text kept as bytes with its `charset` tag): base64, back to a Buffer with its tag;
// - the ENUM error value (a Symbol, rowdecode.ts): null, back to the very ENUM_ERROR;
// - a BigInt (SET bits without a member): its decimal text; -0, NaN and the infinities: their text;
// - a Date (a fallback decoder's, none today): its ISO text; a column present with the value undefined: null.
// The transaction itself is never changed (a parked XA transaction is sent again later): a row with such a value is
// copied. Any other kind of value is refused with an error, so nothing arrives changed without a word. Outside the
// rows, a DDL's raw statement bytes are the one Buffer (the rest of a transaction is JSON-safe by its type).
import type { Row, RowChange, Txn, XaParked } from "./reader.js";
import { ENUM_ERROR, type CharsetBuffer } from "./rowdecode.js";

const BUF = 0, ENUM = 1, BIG = 2, NUM = 3, DATE = 4, UNDEF = 5, RAW = 6;
type Kind = typeof BUF | typeof ENUM | typeof BIG | typeof NUM | typeof DATE | typeof UNDEF | typeof RAW;

/** a value to put back: change index, 0 rows / 1 before, row index, column, kind, and a Buffer's charset */
type Fix = [number, 0 | 1, number, string, Kind, (string | null)?];

/** a transaction in a form JSON keeps exactly (with `f`, what to put back) */
export interface PackedTxn {
  t: Txn;
  f?: Fix[];
}

function plainObject(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === Array.prototype || p === null;
}

/** whether JSON keeps v exactly (nested values of a plain object or array) */
export function jsonSafe(v: unknown): boolean {
  switch (typeof v) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(v) && !Object.is(v, -0);
    case "object":
      if (v === null) return true;
      if (!plainObject(v)) return false;
      if (Array.isArray(v)) return v.every(jsonSafe);
      for (const k in v) if (!jsonSafe((v as Record<string, unknown>)[k])) return false;
      return true;
    default:
      return false;
  }
}

function refuse(v: unknown, col: string): never {
  const what =
    typeof v === "object" && v !== null ? `an instance of ${v.constructor?.name ?? "an unknown class"}` : `${typeof v} ${typeof v === "symbol" ? String(v) : ""}`;
  throw new Error(`the binlog reader thread cannot hand over the value of ${col} (${what.trim()}); set apply.readerThread: false`);
}

/** what crosses to the other thread for `t`, ready for JSON.stringify (t itself is not changed) */
export function packTxn(t: Txn): PackedTxn {
  let fixes: Fix[] | undefined;
  const ch = t.changes;
  /** copies made of the changes (copy on write, per change) */
  let changes: RowChange[] | null = null;
  for (let c = 0; c < ch.length; c++) {
    for (let which = 0 as 0 | 1; which < 2; which++) {
      const rows = which === 0 ? ch[c].rows : ch[c].before;
      if (!rows) continue;
      for (let r = 0; r < rows.length; r++) {
        const row = rows[r];
        let copy: Row | null = null;
        for (const k in row) {
          const v = row[k];
          let kind: Kind;
          let rep: unknown;
          let cs: string | null | undefined;
          switch (typeof v) {
            case "string":
            case "boolean":
              continue;
            case "number":
              if (Number.isFinite(v) && !Object.is(v, -0)) continue;
              kind = NUM;
              rep = Object.is(v, -0) ? "-0" : String(v);
              break;
            case "object":
              if (v === null) continue;
              if (Buffer.isBuffer(v)) {
                kind = BUF;
                rep = v.toString("base64");
                cs = (v as CharsetBuffer).charset ?? null;
              } else if (v instanceof Date) {
                kind = DATE;
                rep = v.toISOString();
              } else if (jsonSafe(v)) continue;
              else refuse(v, k);
              break;
            case "bigint":
              kind = BIG;
              rep = String(v);
              break;
            case "symbol":
              if (v !== ENUM_ERROR) refuse(v, k);
              kind = ENUM;
              rep = null;
              break;
            case "undefined":
              kind = UNDEF;
              rep = null;
              break;
            default:
              refuse(v, k);
          }
          (fixes ??= []).push(cs === undefined ? [c, which, r, k, kind] : [c, which, r, k, kind, cs]);
          copy ??= { ...row };
          copy[k] = rep;
        }
        if (copy) {
          changes ??= ch.slice();
          if (changes[c] === ch[c]) changes[c] = { ...ch[c], rows: ch[c].rows.slice(), ...(ch[c].before ? { before: ch[c].before!.slice() } : {}) };
          (which === 0 ? changes[c].rows : changes[c].before!)[r] = copy;
        }
      }
    }
  }
  let out: Txn = changes ? { ...t, changes } : t;
  if (t.ddl) {
    const { raw, ...rest } = t.ddl;
    if (!jsonSafe(rest)) refuse(rest, "a DDL's session");
    if (raw) {
      (fixes ??= []).push([-1, 0, 0, "raw", RAW]);
      out = { ...out, ddl: { ...t.ddl, raw: raw.toString("base64") as unknown as Buffer } };
    }
  }
  if (t.statementDml && !jsonSafe(t.statementDml)) refuse(t.statementDml, "a statement");
  return fixes ? { t: out, f: fixes } : { t: out };
}

/** the transaction as the sending thread had it (p, fresh from JSON.parse or structured clone, is used in place) */
export function unpackTxn(p: PackedTxn): Txn {
  const t = p.t;
  if (!p.f) return t;
  for (const [c, which, r, k, kind, cs] of p.f) {
    if (kind === RAW) {
      t.ddl!.raw = Buffer.from(t.ddl!.raw as unknown as string, "base64");
      continue;
    }
    const row = (which === 0 ? t.changes[c].rows : t.changes[c].before!)[r];
    const v = row[k];
    switch (kind) {
      case BUF: {
        const b: CharsetBuffer = Buffer.from(v as string, "base64");
        if (cs != null) b.charset = cs;
        row[k] = b;
        break;
      }
      case ENUM:
        row[k] = ENUM_ERROR;
        break;
      case BIG:
        row[k] = BigInt(v as string);
        break;
      case NUM:
        row[k] = v === "-0" ? -0 : Number(v);
        break;
      case DATE:
        row[k] = new Date(v as string);
        break;
      case UNDEF:
        row[k] = undefined;
        break;
    }
  }
  return t;
}

export type PackedParked = [string, Omit<XaParked, "txn"> & { txn: PackedTxn }][];

export function packParked(m: ReadonlyMap<string, XaParked> | undefined): PackedParked {
  return [...(m ?? [])].map(([xid, p]) => [xid, { ...p, txn: packTxn(p.txn) }]);
}

export function unpackParked(a: PackedParked): Map<string, XaParked> {
  return new Map(a.map(([xid, p]) => [xid, { ...p, txn: unpackTxn(p.txn) }]));
}
