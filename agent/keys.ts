// Keys owns how a row's primary key is represented, one way each: the key's values in key-column order
// (keyValues), its identity inside this process (keyId: equal keys give equal strings, distinct keys distinct
// ones; Buffers by their bytes; a number equals its decimal string, since a BIGINT arrives as number or string
// by size), and its text in `_datasync.snapshot.last_key` (encodeKey/decodeKey: JSON with Buffers kept exact).

/** A primary key's values, in key-column order. */
export type Key = unknown[];

/** The key of a row, read under the key columns' own names. */
export function keyValues(keyColumns: readonly string[], row: Record<string, unknown>): Key {
  return keyColumns.map((k) => row[k]);
}

function part(v: unknown): string {
  if (v === null || v === undefined) return "n";
  if (Buffer.isBuffer(v)) return `x${v.length}:${v.toString("hex")}`;
  const s = String(v);
  // length-prefixed: no value can run into the next one, whatever characters it holds
  return `v${s.length}:${s}`;
}

/** The identity of a key inside this process (a Map/Set key), injective over key values. */
export function keyId(k: Key): string {
  let s = "";
  for (const v of k) s += part(v);
  return s;
}

/** keyId(keyValues(keyColumns, row)) without the intermediate array (the applier's hot path). */
export function rowKeyId(keyColumns: readonly string[], row: Record<string, unknown>): string {
  let s = "";
  for (const c of keyColumns) s += part(row[c]);
  return s;
}

/** A key as stored in `_datasync.snapshot.last_key` (JSON; Buffers as {"$hex": …}). */
export function encodeKey(k: Key | null): string | null {
  if (!k) return null;
  return JSON.stringify(k.map((v) => (Buffer.isBuffer(v) ? { $hex: v.toString("hex") } : v)));
}

export function decodeKey(s: string | null): Key | null {
  if (!s) return null;
  return (JSON.parse(s) as unknown[]).map((v) => (v && typeof v === "object" && "$hex" in (v as any) ? Buffer.from((v as any).$hex, "hex") : v));
}
