// agent/keys.ts: one key identity for the applier, the snapshot's tombstones and verify/repair (issue 16: there
// were two keyOf with different return types and two encodings). Equal keys must give equal ids and distinct keys
// distinct ids, whatever the values hold: a collision would drop a snapshot row or pair the wrong rows in verify.
import { describe, it, expect } from "vitest";
import { decodeKey, encodeKey, keyId, keyValues, rowKeyId } from "../../agent/keys.js";

describe("keys", () => {
  const pk = ["a", "b"];
  it("differs when any key column differs, equal otherwise, ignores non-key columns", () => {
    expect(rowKeyId(pk, { a: 1, b: Buffer.from("x"), c: "p" })).toBe(rowKeyId(pk, { a: 1, b: Buffer.from("x"), c: "q" }));
    expect(rowKeyId(pk, { a: 1, b: Buffer.from("x") })).not.toBe(rowKeyId(pk, { a: 1, b: Buffer.from("y") }));
    expect(rowKeyId(pk, { a: 1, b: Buffer.from("x") })).not.toBe(rowKeyId(pk, { a: 2, b: Buffer.from("x") }));
  });

  it("does not confuse values across column boundaries, nulls, or a Buffer with its hex text", () => {
    expect(rowKeyId(pk, { a: "ab", b: "c" })).not.toBe(rowKeyId(pk, { a: "a", b: "bc" }));
    expect(rowKeyId(pk, { a: null, b: "x" })).not.toBe(rowKeyId(pk, { a: "", b: "x" }));
    expect(rowKeyId(pk, { a: 1, b: Buffer.from("78", "hex") })).not.toBe(rowKeyId(pk, { a: 1, b: "x78" }));
    // separators inside values: the old applier key ("v…\u0001" per column) collided here
    expect(rowKeyId(pk, { a: "a\u0001vb", b: "c" })).not.toBe(rowKeyId(pk, { a: "a", b: "b\u0001vc" }));
    expect(rowKeyId(pk, { a: "1:v", b: "" })).not.toBe(rowKeyId(pk, { a: "1", b: ":v" }));
  });

  it("a BIGINT as number or as string is the same key (mysql2 and zongji pick by size)", () => {
    expect(keyId([42, "x"])).toBe(keyId(["42", "x"]));
  });

  it("rowKeyId is keyId of keyValues (one identity for every stage)", () => {
    const row = { a: 7, b: Buffer.from([0, 255]), z: "ignored" };
    expect(keyValues(pk, row)).toEqual([7, Buffer.from([0, 255])]);
    expect(rowKeyId(pk, row)).toBe(keyId(keyValues(pk, row)));
  });

  it("encodeKey/decodeKey round-trip Buffers byte-exactly", () => {
    const k = [1, "é", Buffer.from([0, 1, 254]), null];
    expect(decodeKey(encodeKey(k))).toEqual(k);
    expect(encodeKey(null)).toBeNull();
    expect(decodeKey(null)).toBeNull();
  });
});
