// Literals owns how a value becomes a SQL literal, one way for every statement the agent writes (applier,
// snapshot, repair, key ranges): byte-exact (text kept as bytes carries its charset introducer, a negative zero
// stays negative, the ENUM error value stays index 0), and integers and decimals that arrive as strings written
// as numbers, so a key bound compares as a number.
import mysql from "mysql2";
import { ENUM_ERROR, type CharsetBuffer } from "./source/rowdecode.js";

/** the characters mysql.escape backslash-escapes in a string */
// eslint-disable-next-line no-control-regex -- the same set mysql.escape escapes
const NEEDS_ESCAPE = /[\0\b\t\n\r\x1a"'\\]/;

export function escapeValue(v: unknown, type: string | undefined): string {
  if (v === null || v === undefined) return "NULL";
  // the common case first (same output as mysql.escape, without its dispatch)
  if (typeof v === "string" && type !== "year") return NEEDS_ESCAPE.test(v) ? mysql.escape(v) : `'${v}'`;
  // zongji decodes YEAR 0000 as 1900 (a year MySQL cannot store), so 1900 can only mean 0000.
  if (type === "year" && (v === 1900 || v === "1900")) return "0";
  if (typeof v === "number") {
    // FLOAT/DOUBLE keep a negative zero (String(-0) is "0")
    if (Object.is(v, -0)) return "-0e0";
    if (Number.isFinite(v)) return String(v);
    return "NULL";
  }
  if (typeof v === "bigint") return v.toString();
  if (Buffer.isBuffer(v)) {
    if (v.length === 0) return "''";
    // text kept as its bytes (rowdecode.ts): the introducer makes the literal that charset's text, byte for byte
    const cs = (v as CharsetBuffer).charset;
    return cs ? `_${cs} X'${v.toString("hex")}'` : `X'${v.toString("hex")}'`;
  }
  // the ENUM error value: index 0 (the empty string), storable only under a lenient sql_mode (see LENIENT)
  if (v === ENUM_ERROR) return "0";
  if (typeof v === "boolean") return v ? "1" : "0";
  if (typeof v === "string") return mysql.escape(v);
  if (v instanceof Date) return mysql.escape(v.toISOString().replace("T", " ").replace("Z", ""));
  // JSON that arrived parsed (should not happen with jsonStrings): write it as JSON text
  return mysql.escape(JSON.stringify(v));
}

const NUMERIC_TYPES = new Set(["tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal"]);

/** A literal for a value as mysql2 read it, by the column's DATA_TYPE (lower case) when known. */
export function literal(v: unknown, dataType?: string): string {
  if (typeof v === "string" && dataType && NUMERIC_TYPES.has(dataType) && /^-?\d+(\.\d+)?$/.test(v)) return v;
  return escapeValue(v, dataType);
}
