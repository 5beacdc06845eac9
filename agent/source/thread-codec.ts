// ThreadCodec owns how a decoded transaction crosses between threads (reader-thread.ts): postMessage's
// structured clone keeps strings, numbers, BigInts, -0, null, Dates, Maps and plain objects as they are, but
// turns a Buffer into a bare Uint8Array (its own `charset` property, the text's character set, lost) and
// refuses a Symbol (ENUM_ERROR, rowdecode.ts). So the sending side lists where those values are (`fixes`,
// nothing when a transaction has none: the common case costs one look at each value on the sending thread),
// and the receiving side puts them back exactly: a Buffer over the same bytes with its charset, the very
// ENUM_ERROR symbol. Any other kind of value is refused loudly: a value that would arrive as something
// else is a silent difference.
import type { Txn, XaParked } from "./reader.js";
import { ENUM_ERROR, type CharsetBuffer } from "./rowdecode.js";

/** a value to put back: change index, 0 rows / 1 before, row index, column, charset (null: none) or ENUM */
type Fix = [number, 0 | 1, number, string, string | null | typeof ENUM_MARK];

const ENUM_MARK = 1;

export interface PackedTxn {
  txn: Txn;
  fixes?: Fix[];
  /** ddl.raw was a Buffer */
  raw?: true;
}

function plainObject(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === Array.prototype || p === null;
}

function refuse(v: unknown, col: string): never {
  const what = typeof v === "symbol" ? String(v) : `an instance of ${(v as object)?.constructor?.name ?? "an unknown class"}`;
  throw new Error(`the binlog reader thread cannot hand over column ${col}'s value (${what}); set apply.readerThread: false`);
}

/** what crosses to the other thread for `t` (t itself is not changed: a parked XA transaction is sent again later) */
export function packTxn(t: Txn): PackedTxn {
  let fixes: Fix[] | undefined;
  let symbols = false;
  const ch = t.changes;
  for (let c = 0; c < ch.length; c++) {
    for (let which = 0 as 0 | 1; which < 2; which++) {
      const rows = which === 0 ? ch[c].rows : ch[c].before;
      if (!rows) continue;
      for (let r = 0; r < rows.length; r++) {
        const row = rows[r];
        for (const k in row) {
          const v = row[k];
          if (typeof v === "object") {
            if (v === null) continue;
            if (Buffer.isBuffer(v)) (fixes ??= []).push([c, which, r, k, (v as CharsetBuffer).charset ?? null]);
            else if (!(v instanceof Date) && !plainObject(v)) refuse(v, k);
          } else if (typeof v === "symbol") {
            if (v !== ENUM_ERROR) refuse(v, k);
            (fixes ??= []).push([c, which, r, k, ENUM_MARK]);
            symbols = true;
          } else if (typeof v === "function") refuse(v, k);
        }
      }
    }
  }
  let txn = t;
  if (symbols) {
    // copies of the changes and rows that hold the symbol, with null in its place
    const changes = ch.map((x) => ({ ...x, rows: [...x.rows], ...(x.before ? { before: [...x.before] } : {}) }));
    for (const [c, which, r, k, cs] of fixes!) {
      if (cs !== ENUM_MARK) continue;
      const rows = which === 0 ? changes[c].rows : changes[c].before!;
      rows[r] = { ...rows[r], [k]: null };
    }
    txn = { ...t, changes };
  }
  const out: PackedTxn = { txn };
  if (fixes) out.fixes = fixes;
  if (t.ddl?.raw) out.raw = true;
  return out;
}

function asBuffer(v: Uint8Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** the transaction as the sending thread had it */
export function unpackTxn(p: PackedTxn): Txn {
  const t = p.txn;
  if (p.fixes) {
    for (const [c, which, r, k, cs] of p.fixes) {
      const row = (which === 0 ? t.changes[c].rows : t.changes[c].before!)[r];
      if (cs === ENUM_MARK) row[k] = ENUM_ERROR;
      else {
        const b: CharsetBuffer = asBuffer(row[k] as Uint8Array);
        if (cs !== null) b.charset = cs;
        row[k] = b;
      }
    }
  }
  if (p.raw && t.ddl?.raw) t.ddl.raw = asBuffer(t.ddl.raw);
  return t;
}

export type PackedParked = [string, Omit<XaParked, "txn"> & { txn: PackedTxn }][];

export function packParked(m: ReadonlyMap<string, XaParked> | undefined): PackedParked {
  return [...(m ?? [])].map(([xid, p]) => [xid, { ...p, txn: packTxn(p.txn) }]);
}

export function unpackParked(a: PackedParked): Map<string, XaParked> {
  return new Map(a.map(([xid, p]) => [xid, { ...p, txn: unpackTxn(p.txn) }]));
}
