// The SQL verify and repair build: key ranges for single and composite keys, byte-exact row hashing
// terms, literals, statements (no generated columns, never REPLACE), key formatting and schema comparison.
import { describe, expect, it } from "vitest";
import {
  checksumSql,
  compareShapes,
  deleteSql,
  formatKey,
  hashTerm,
  insertSql,
  keyBound,
  literal,
  FULL_RANGE,
  rangeWhere,
  rowHashesByKeySql,
  rowHashesSql,
  rowString,
  updateSql,
  type Column,
  type TableShape,
} from "../../agent/verify/ranges.js";
import { describeCounts, describeRange } from "../../agent/verify/verifier.js";
import { isGeneratedExtra } from "../../agent/tables.js";

const col = (name: string, dataType: string, extra: Partial<Column> = {}): Column => ({
  name,
  dataType,
  columnType: dataType,
  nullable: false,
  generated: false,
  generationExpression: null,
  charset: null,
  collation: null,
  ...extra,
});

const single: TableShape = { db: "shop", table: "orders", key: ["id"], columns: [col("id", "bigint"), col("note", "text", { nullable: true, charset: "utf8mb4" }), col("price", "float"), col("g", "decimal", { generated: true, generationExpression: "`id` * 2" })] };
const composite: TableShape = { db: "shop", table: "items", key: ["o", "l", "s"], columns: [col("o", "int"), col("l", "int"), col("s", "varchar"), col("q", "int")] };

describe("key ranges", () => {
  it("bounds a single key, numbers unquoted", () => {
    expect(rangeWhere(single, { after: ["100"], through: ["200"] })).toBe("(`id` > 100) AND (`id` <= 200)");
    expect(rangeWhere(single, { after: null, through: null })).toBe("TRUE");
  });
  it("expands a composite key into a leading bound and a disjunction", () => {
    expect(keyBound(composite, ">", [1, 2, "x"])).toBe("`o` >= 1 AND ((`o` > 1) OR (`o` = 1 AND `l` > 2) OR (`o` = 1 AND `l` = 2 AND `s` > 'x'))");
    expect(keyBound(composite, "<=", [5, 6, "y"])).toBe("`o` <= 5 AND ((`o` < 5) OR (`o` = 5 AND `l` < 6) OR (`o` = 5 AND `l` = 6 AND `s` <= 'y'))");
  });
  it("rejects a key of the wrong width", () => {
    expect(() => keyBound(composite, ">", [1])).toThrow(/3 key columns/);
  });
});

describe("row hash", () => {
  it("widens FLOAT, reads strings as bytes, adds NULL flags and lengths, skips generated columns", () => {
    expect(hashTerm(col("f", "float"))).toBe("CAST(`f` AS DOUBLE)");
    expect(hashTerm(col("b", "bit"))).toBe("`b` + 0");
    const r = rowString(single);
    expect(r).toBe("CONCAT_WS('#', `id`, CAST(`note` AS BINARY), CAST(`price` AS DOUBLE), CONCAT(ISNULL(`note`)), LENGTH(`note`))");
    expect(r).not.toContain("`g`");
    expect(checksumSql(single, { after: null, through: ["9"] }, "md5")).toContain("CONV(LEFT(MD5(");
    expect(checksumSql(single, { after: null, through: ["9"] }, "crc64")).toContain("CRC32C(");
  });

  it("uses SHA2 and no MD5 with sha2 (MySQL 9 has no MD5()), for chunk sums and row digests", () => {
    const sum = checksumSql(single, { after: null, through: ["9"] }, "sha2");
    expect(sum).toContain("CONV(LEFT(SHA2(CONCAT_WS(");
    expect(sum).not.toContain("MD5(");
    expect(rowHashesSql(single, FULL_RANGE, "sha2", 10)).toMatch(/SHA2\(CONCAT_WS\(.*, 256\) AS `#h`/);
    expect(rowHashesByKeySql(single, [["1"]], "sha2")).not.toContain("MD5(");
    expect(rowHashesSql(single, FULL_RANGE, "md5")).toContain("MD5(CONCAT_WS(");
  });
});

describe("generated columns", () => {
  it("are VIRTUAL, STORED or PERSISTENT in EXTRA; MySQL's DEFAULT_GENERATED (an expression default) is data", () => {
    for (const e of ["VIRTUAL GENERATED", "STORED GENERATED", "PERSISTENT GENERATED", "VIRTUAL GENERATED INVISIBLE", "VIRTUAL"]) expect(isGeneratedExtra(e), e).toBe(true);
    for (const e of ["", null, "DEFAULT_GENERATED", "DEFAULT_GENERATED on update CURRENT_TIMESTAMP", "on update current_timestamp()", "auto_increment", "INVISIBLE"]) {
      expect(isGeneratedExtra(e), String(e)).toBe(false);
    }
  });
});

describe("literals and statements", () => {
  it("escapes strings, keeps binary as hex and numbers of numeric columns bare", () => {
    expect(literal("it's", col("s", "varchar"))).toBe("'it\\'s'");
    expect(literal(Buffer.from([0, 255]))).toBe("X'00ff'");
    expect(literal(null)).toBe("NULL");
    expect(literal("18446744073709551615", col("u", "bigint"))).toBe("18446744073709551615");
    expect(literal("12", col("s", "varchar"))).toBe("'12'");
  });
  it("writes data columns only and never REPLACE", () => {
    const ins = insertSql(single, [{ id: "1", note: null, price: 1.5, g: "2" }]);
    expect(ins).toBe("INSERT INTO `shop`.`orders` (`id`, `note`, `price`) VALUES\n  (1, NULL, 1.5)");
    expect(updateSql(single, ["1"], { id: "1", note: "x", price: 2 })).toBe("UPDATE `shop`.`orders` SET `id` = 1, `note` = 'x', `price` = 2 WHERE `id` IN (1)");
    expect(deleteSql(composite, [[1, 2, "a"], [3, 4, "b"]])).toBe("DELETE FROM `shop`.`items` WHERE (`o` = 1 AND `l` = 2 AND `s` = 'a') OR (`o` = 3 AND `l` = 4 AND `s` = 'b')");
    expect(ins + updateSql(single, ["1"], {})).not.toMatch(/REPLACE/);
  });
});

describe("reporting", () => {
  it("formats keys and ranges", () => {
    expect(formatKey(["42"])).toBe("42");
    expect(formatKey([1, "x"])).toBe('(1, "x")');
    expect(formatKey([Buffer.from([1, 2])])).toBe("0x0102");
    expect(formatKey(null, "hi")).toBe("∞");
    const d = { range: { after: ["1199"], through: ["2199"] }, first: ["1200"], last: ["2199"], missing: [], extra: [], changed: [["1234"]] };
    expect(`${describeRange(d)}: ${describeCounts(d)}`).toBe("keys [1200 .. 2199]: 1 changed row (1234)");
    const e = { range: { after: ["5000"], through: null }, first: null, last: null, missing: [], extra: [["5001"], ["5002"]], changed: [] };
    expect(`${describeRange(e)}: ${describeCounts(e)}`).toBe("keys (5000 .. ∞): 2 extra rows (5001, 5002)");
  });
  it("names schema drift", () => {
    const rep: TableShape = { ...composite, columns: [col("o", "int"), col("l", "int"), col("s", "varchar"), col("q", "bigint", { columnType: "bigint(20)" }), col("z", "int")], key: ["o", "l"] };
    expect(compareShapes(composite, rep)).toEqual([
      "column `q` is int on the source, bigint(20) on the replica",
      "column `z` exists only on the replica",
      "primary key is (o, l, s) on the source, (o, l) on the replica",
    ]);
    expect(compareShapes(composite, composite)).toEqual([]);
  });
});
