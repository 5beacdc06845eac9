// Unit tests for agent/apply/sqlgen.ts: value escaping (byte-exact, driver quirks) and the statements one target
// transaction gets (multi-row upserts, never REPLACE; deletes and updates located by key).
import mysql from "mysql2";
import { describe, expect, it } from "vitest";
import type { RowChange } from "../../agent/source/reader.js";
import type { TableMeta } from "../../agent/tables.js";
import { escapeValue, sessionToggles, StatementBuilder } from "../../agent/apply/sqlgen.js";
import { ApplyError } from "../../agent/errors.js";

function meta(table: string, cols: Record<string, string>, opts: { pk?: string[]; generated?: string[]; secondaryUnique?: boolean; db?: string } = {}): TableMeta {
  const columns = Object.keys(cols);
  const generated = new Set(opts.generated ?? []);
  const writable = columns.filter((c) => !generated.has(c));
  return {
    db: opts.db ?? "shop",
    table,
    columns,
    writable,
    writableSet: new Set(writable),
    types: new Map(Object.entries(cols)),
    primaryKey: opts.pk ?? ["id"],
    hasSecondaryUnique: opts.secondaryUnique ?? false,
  };
}

const orders = meta("orders", { id: "int", customer: "varchar", total: "decimal" });
const ins = (m: TableMeta, ...rows: Record<string, unknown>[]): RowChange => ({ op: "insert", db: m.db, table: m.table, rows });
const del = (m: TableMeta, ...rows: Record<string, unknown>[]): RowChange => ({ op: "delete", db: m.db, table: m.table, rows });
const upd = (m: TableMeta, ...pairs: [Record<string, unknown>, Record<string, unknown>][]): RowChange => ({
  op: "update",
  db: m.db,
  table: m.table,
  before: pairs.map((p) => p[0]),
  rows: pairs.map((p) => p[1]),
});

function build(...changes: [RowChange, TableMeta][]) {
  const b = new StatementBuilder();
  for (const [c, m] of changes) b.add(c, m, "replica r1 at binlog.000001:4");
  return { b, out: b.finish() };
}

describe("escapeValue", () => {
  it.each<[unknown, string | undefined, string]>([
    [null, "int", "NULL"],
    [undefined, "varchar", "NULL"],
    [0, "int", "0"],
    [42, "int", "42"],
    [-17, "int", "-17"],
    [3.25, "double", "3.25"],
    [1e308, "double", "1e+308"],
    [-1e308, "double", "-1e+308"],
    [5e-324, "double", "5e-324"],
    [1.7976931348623157e308, "double", "1.7976931348623157e+308"],
    [Number.NaN, "double", "NULL"],
    [Number.POSITIVE_INFINITY, "double", "NULL"],
    [9007199254740991, "bigint", "9007199254740991"],
    [true, "tinyint", "1"],
    [false, "tinyint", "0"],
    [Buffer.from([0x00, 0xff, 0x10, 0x27]), "varbinary", "X'00ff1027'"],
    [Buffer.alloc(0), "blob", "''"],
    ["", "varchar", "''"],
    ["plain", "varchar", "'plain'"],
    ["it's", "varchar", "'it\\'s'"],
    ["back\\slash", "varchar", "'back\\\\slash'"],
    ['dq"', "varchar", "'dq\\\"'"],
    ["nul\u0000byte", "varchar", "'nul\\0byte'"],
    ["line\nbreak\r\ttab\u001a", "text", "'line\\nbreak\\r\\ttab\\Z'"],
    ["😀 ünï 中文", "varchar", "'😀 ünï 中文'"],
    ["'; DROP TABLE t; --", "varchar", "'\\'; DROP TABLE t; --'"],
    ["2024-02-29 23:59:59.123456", "datetime", "'2024-02-29 23:59:59.123456'"],
    ['{"a": [1, "x"]}', "json", "'{\\\"a\\\": [1, \\\"x\\\"]}'"],
    [{ a: 1 }, "json", "'{\\\"a\\\":1}'"],
  ])("%s (%s) → %s", (v, type, sql) => expect(escapeValue(v, type)).toBe(sql));

  it("strings are escaped exactly as mysql.escape does, with or without characters to escape", () => {
    for (const v of ["", "plain", "it's", 'say "hi"', "back\\slash", "nul\u0000byte", "tab\tnl\ncr\r", "ctrl-z\u001a", "bs\b", "émoji 😀", "%_?"]) {
      expect(escapeValue(v, "varchar")).toBe(mysql.escape(v));
      expect(escapeValue(v, undefined)).toBe(mysql.escape(v));
    }
  });

  it("a JS bigint is written as its digits", () => {
    expect(escapeValue(12345678901234567890n, "bigint")).toBe("12345678901234567890");
    expect(escapeValue(-5n, "bigint")).toBe("-5");
  });

  it("keeps every digit of BIGINT values that arrive as strings (bigNumberStrings)", () => {
    expect(escapeValue("18446744073709551615", "bigint")).toBe("'18446744073709551615'");
    expect(escapeValue("-9223372036854775808", "bigint")).toBe("'-9223372036854775808'");
    expect(escapeValue("9007199254740993", "bigint")).toContain("9007199254740993");
    expect(escapeValue("12345678901234567890.123456789", "decimal")).toBe("'12345678901234567890.123456789'");
  });

  it("negative zero keeps its sign (FLOAT/DOUBLE store -0), as a numeric literal", () => {
    const s = escapeValue(-0, "double");
    expect(s).toBe("-0e0");
    expect(Object.is(Number(s), -0)).toBe(true);
    expect(escapeValue(0, "double")).toBe("0");
  });

  it("YEAR 1900 is zongji's decoding of YEAR 0000 and is written as 0, for number and string", () => {
    expect(escapeValue(1900, "year")).toBe("0");
    expect(escapeValue("1900", "year")).toBe("0");
    expect(escapeValue(1901, "year")).toBe("1901");
    expect(escapeValue(2155, "year")).toBe("2155");
    expect(escapeValue(null, "year")).toBe("NULL");
    // only a YEAR column has the quirk
    expect(escapeValue(1900, "int")).toBe("1900");
    expect(escapeValue(1900, undefined)).toBe("1900");
  });

  it("a Date is written as UTC text without the zone letter", () => {
    expect(escapeValue(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)), "datetime")).toBe("'2024-01-02 03:04:05.678'");
  });

  it("4-byte UTF-8 survives byte-exactly inside the literal", () => {
    const s = "a😀b𝄞";
    const out = escapeValue(s, "varchar");
    expect(Buffer.from(out.slice(1, -1), "utf8").equals(Buffer.from(s, "utf8"))).toBe(true);
  });
});

describe("StatementBuilder: inserts", () => {
  it("merges consecutive inserts into one multi-row upsert, never REPLACE", () => {
    const { b, out } = build(
      [ins(orders, { id: 1, customer: "ann", total: "10.50" }, { id: 2, customer: "bob", total: "3.00" }), orders],
      [ins(orders, { id: 3, customer: "o'neil", total: null }), orders],
    );
    expect(out).toEqual([
      {
        sql: "INSERT INTO `shop`.`orders` (`id`, `customer`, `total`) VALUES (1,'ann','10.50'),(2,'bob','3.00'),(3,'o\\'neil',NULL) ON DUPLICATE KEY UPDATE `customer` = VALUES(`customer`), `total` = VALUES(`total`)",
        table: "shop.orders",
        rows: 3,
      },
    ]);
    expect(b.rows).toBe(3);
    expect(out[0].sql).not.toMatch(/REPLACE/i);
  });

  it("writes columns in the replica's order, whatever the row's key order", () => {
    const { out } = build([ins(orders, { total: "1.00", id: 7, customer: "c" }), orders]);
    expect(out[0].sql).toContain("(`id`, `customer`, `total`) VALUES (7,'c','1.00')");
  });

  it("starts a new statement for another table and keeps the order", () => {
    const items = meta("items", { id: "int", sku: "varchar" });
    const { out } = build([ins(orders, { id: 1, customer: "a", total: "1" }), orders], [ins(items, { id: 1, sku: "x" }), items], [ins(orders, { id: 2, customer: "b", total: "2" }), orders]);
    expect(out.map((s) => [s.table, s.rows])).toEqual([
      ["shop.orders", 1],
      ["shop.items", 1],
      ["shop.orders", 1],
    ]);
  });

  it("never writes generated columns, even when the row carries them", () => {
    const m = meta("lines", { id: "int", qty: "int", price: "decimal", total: "decimal", total_v: "decimal" }, { generated: ["total", "total_v"] });
    const { out } = build([ins(m, { id: 1, qty: 2, price: "3.50", total: "7.00", total_v: "7.00" }), m]);
    expect(out[0].sql).toBe("INSERT INTO `shop`.`lines` (`id`, `qty`, `price`) VALUES (1,2,'3.50') ON DUPLICATE KEY UPDATE `qty` = VALUES(`qty`), `price` = VALUES(`price`)");
    expect(out[0].sql).not.toContain("total");
  });

  it("a table of key columns only gets a no-op assignment so ON DUPLICATE KEY stays valid", () => {
    const m = meta("tags", { post: "int", tag: "varchar" }, { pk: ["post", "tag"] });
    const { out } = build([ins(m, { post: 1, tag: "a" }, { post: 1, tag: "b" }), m]);
    expect(out[0].sql).toBe("INSERT INTO `shop`.`tags` (`post`, `tag`) VALUES (1,'a'),(1,'b') ON DUPLICATE KEY UPDATE `post` = `post`");
  });

  it("quotes identifiers with backticks, spaces and unicode", () => {
    const m = meta("order items", { "id`x": "int", "prix €": "decimal" }, { pk: ["id`x"], db: "my shop" });
    const { out } = build([ins(m, { "id`x": 1, "prix €": "2.00" }), m]);
    expect(out[0].sql).toBe("INSERT INTO `my shop`.`order items` (`id``x`, `prix €`) VALUES (1,'2.00') ON DUPLICATE KEY UPDATE `prix €` = VALUES(`prix €`)");
  });

  it("splits a multi-row statement past 1 MiB, keeping every row once", () => {
    const big = "x".repeat(600_000);
    const m = meta("docs", { id: "int", body: "longtext" });
    const { out } = build([ins(m, { id: 1, body: big }, { id: 2, body: big }, { id: 3, body: big }, { id: 4, body: "small" }), m]);
    expect(out.length).toBeGreaterThan(1);
    expect(out.reduce((n, s) => n + s.rows, 0)).toBe(4);
    for (const s of out) expect(s.sql.length).toBeLessThan(1_500_000);
    for (const id of [1, 2, 3, 4]) expect(out.filter((s) => s.sql.includes(`VALUES (${id},`) || s.sql.includes(`),(${id},`))).toHaveLength(1);
  });

  it("binary and BIGINT values go in as hex and full digits", () => {
    const m = meta("b", { id: "bigint", uuid: "binary", data: "blob" });
    const { out } = build([ins(m, { id: "18446744073709551615", uuid: Buffer.from("0123456789abcdef0123456789abcdef", "hex"), data: Buffer.alloc(0) }), m]);
    expect(out[0].sql).toContain("VALUES ('18446744073709551615',X'0123456789abcdef0123456789abcdef','')");
  });
});

describe("StatementBuilder: deletes", () => {
  it("deletes by key, merging consecutive deletes", () => {
    const { out } = build([del(orders, { id: 1, customer: "a", total: "1" }, { id: 2, customer: "b", total: null }), orders], [del(orders, { id: 5, customer: "c", total: "0" }), orders]);
    expect(out).toEqual([{ sql: "DELETE FROM `shop`.`orders` WHERE `id` IN (1,2,5)", table: "shop.orders", rows: 3 }]);
  });

  it("composite keys use a row constructor", () => {
    const m = meta("tags", { post: "int", tag: "varchar", note: "text" }, { pk: ["post", "tag"] });
    const { out } = build([del(m, { post: 1, tag: "a", note: "x" }, { post: 2, tag: "it's", note: null }), m]);
    expect(out[0].sql).toBe("DELETE FROM `shop`.`tags` WHERE (`post`, `tag`) IN ((1,'a'),(2,'it\\'s'))");
  });

  it("a delete after inserts of the same table is its own statement, in order", () => {
    const { out } = build([ins(orders, { id: 1, customer: "a", total: "1" }), orders], [del(orders, { id: 1, customer: "a", total: "1" }), orders], [ins(orders, { id: 1, customer: "b", total: "2" }), orders]);
    expect(out.map((s) => s.sql.split(" ")[0])).toEqual(["INSERT", "DELETE", "INSERT"]);
    expect(out[2].sql).toContain("(1,'b','2')");
  });
});

describe("StatementBuilder: updates", () => {
  it("an update with an unchanged key and no secondary unique key becomes an upsert of the after image", () => {
    const { out } = build([upd(orders, [{ id: 1, customer: "a", total: "1.00" }, { id: 1, customer: "a", total: "2.00" }]), orders]);
    expect(out).toEqual([
      {
        sql: "INSERT INTO `shop`.`orders` (`id`, `customer`, `total`) VALUES (1,'a','2.00') ON DUPLICATE KEY UPDATE `customer` = VALUES(`customer`), `total` = VALUES(`total`)",
        table: "shop.orders",
        rows: 1,
      },
    ]);
  });

  it("such upserts merge with neighbouring inserts", () => {
    const { out } = build([ins(orders, { id: 1, customer: "a", total: "1" }), orders], [upd(orders, [{ id: 1, customer: "a", total: "1" }, { id: 1, customer: "z", total: "1" }]), orders]);
    expect(out).toHaveLength(1);
    expect(out[0].rows).toBe(2);
    expect(out[0].sql).toContain("VALUES (1,'a','1'),(1,'z','1')");
  });

  it("a key change is an UPDATE located by the old key, with an upsert fallback", () => {
    const { out } = build([upd(orders, [{ id: 1, customer: "a", total: "1" }, { id: 9, customer: "a", total: "1" }]), orders]);
    expect(out).toEqual([
      {
        sql: "UPDATE `shop`.`orders` SET `id` = 9, `customer` = 'a', `total` = '1' WHERE `id` <=> 1",
        table: "shop.orders",
        rows: 1,
        fallback: "INSERT INTO `shop`.`orders` (`id`, `customer`, `total`) VALUES (9,'a','1') ON DUPLICATE KEY UPDATE `customer` = VALUES(`customer`), `total` = VALUES(`total`)",
      },
    ]);
  });

  it("a table with a secondary unique key always gets UPDATE … WHERE <old key>", () => {
    const m = meta("users", { id: "int", email: "varchar" }, { secondaryUnique: true });
    const { out } = build([upd(m, [{ id: 1, email: "a@x" }, { id: 1, email: "b@x" }], [{ id: 2, email: "b@x" }, { id: 2, email: "a@x" }]), m]);
    expect(out.map((s) => s.sql)).toEqual(["UPDATE `shop`.`users` SET `id` = 1, `email` = 'b@x' WHERE `id` <=> 1", "UPDATE `shop`.`users` SET `id` = 2, `email` = 'a@x' WHERE `id` <=> 2"]);
    expect(out.every((s) => s.fallback?.startsWith("INSERT INTO `shop`.`users` ") && / ON DUPLICATE KEY UPDATE `email` = VALUES\(`email`\)$/.test(s.fallback))).toBe(true);
  });

  it("composite key change: WHERE names every old key column", () => {
    const m = meta("tags", { post: "int", tag: "varchar" }, { pk: ["post", "tag"] });
    const { out } = build([upd(m, [{ post: 1, tag: "a" }, { post: 1, tag: "b" }]), m]);
    expect(out[0].sql).toBe("UPDATE `shop`.`tags` SET `post` = 1, `tag` = 'b' WHERE `post` <=> 1 AND `tag` <=> 'a'");
  });

  it("a binary key change is detected byte-wise", () => {
    const m = meta("blobs", { id: "varbinary", v: "int" });
    const same = build([upd(m, [{ id: Buffer.from("ab"), v: 1 }, { id: Buffer.from("ab"), v: 2 }]), m]).out;
    expect(same[0].sql).toMatch(/^INSERT /);
    const changed = build([upd(m, [{ id: Buffer.from("ab"), v: 1 }, { id: Buffer.from("ac"), v: 1 }]), m]).out;
    expect(changed[0].sql).toBe("UPDATE `shop`.`blobs` SET `id` = X'6163', `v` = 1 WHERE `id` <=> X'6162'");
  });

  it("generated columns are not in SET nor in the fallback", () => {
    const m = meta("lines", { id: "int", qty: "int", total: "int" }, { generated: ["total"] });
    const { out } = build([upd(m, [{ id: 1, qty: 1, total: 1 }, { id: 2, qty: 1, total: 1 }]), m]);
    expect(out[0].sql).toBe("UPDATE `shop`.`lines` SET `id` = 2, `qty` = 1 WHERE `id` <=> 1");
    expect(out[0].fallback).not.toContain("total");
  });

  it("keeps the order of inserts, key-changing updates and deletes", () => {
    const { out } = build(
      [ins(orders, { id: 1, customer: "a", total: "1" }), orders],
      [upd(orders, [{ id: 1, customer: "a", total: "1" }, { id: 2, customer: "a", total: "1" }]), orders],
      [ins(orders, { id: 3, customer: "c", total: "1" }), orders],
      [del(orders, { id: 2, customer: "a", total: "1" }), orders],
    );
    expect(out.map((s) => s.sql.slice(0, 6))).toEqual(["INSERT", "UPDATE", "INSERT", "DELETE"]);
    expect(out.map((s) => s.rows)).toEqual([1, 1, 1, 1]);
  });

  it("counts rows across all changes", () => {
    const { b } = build(
      [ins(orders, { id: 1, customer: "a", total: "1" }, { id: 2, customer: "a", total: "1" }), orders],
      [upd(orders, [{ id: 1, customer: "a", total: "1" }, { id: 1, customer: "b", total: "1" }]), orders],
      [del(orders, { id: 2, customer: "a", total: "1" }), orders],
    );
    expect(b.rows).toBe(4);
  });
});

describe("StatementBuilder: changes the source ran without foreign key checks", () => {
  // MySQL 9.6+ (SQL-layer foreign keys) logs a cascade's child changes with NO_FOREIGN_KEY_CHECKS_F, before the
  // parent's change: on the replica they must run with checks off too (the child points at a parent not yet there)
  const kid = meta("kid", { id: "int", pid: "int" });
  const parent = meta("parent", { id: "int" });
  const relaxed = (c: RowChange): RowChange => ({ ...c, noFkChecks: true });

  it("marks their statements relaxFk, and never merges them with checked changes", () => {
    const { out } = build(
      [relaxed(upd(kid, [{ id: 10, pid: 1 }, { id: 10, pid: 5 }])), kid],
      [upd(kid, [{ id: 11, pid: 2 }, { id: 11, pid: 3 }]), kid],
      [upd(parent, [{ id: 1 }, { id: 5 }]), parent],
      [relaxed(del(kid, { id: 20, pid: 2 })), kid],
      [del(kid, { id: 21, pid: 2 }), kid],
    );
    expect(out.map((s) => [s.sql.split(" ")[0], s.table, s.relaxFk === true])).toEqual([
      ["INSERT", "shop.kid", true],
      ["INSERT", "shop.kid", false],
      ["UPDATE", "shop.parent", false],
      ["DELETE", "shop.kid", true],
      ["DELETE", "shop.kid", false],
    ]);
    expect(out[0].sql).toContain("VALUES (10,5)");
  });

  it("a relaxed key change keeps its flag (with its upsert fallback)", () => {
    const { out } = build([relaxed(upd(kid, [{ id: 10, pid: 1 }, { id: 12, pid: 1 }])), kid]);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ table: "shop.kid", relaxFk: true, fallback: expect.stringContaining("INSERT INTO `shop`.`kid`") });
  });
});

describe("StatementBuilder: errors", () => {
  it("a source column the replica lacks is an ApplyError naming the table, the column and the fix", () => {
    const b = new StatementBuilder();
    let err: unknown;
    try {
      b.add(ins(orders, { id: 1, customer: "a", total: "1", coupon: "X" }), orders, "replica r1 at binlog.000002:120");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApplyError);
    const e = err as ApplyError;
    expect(e.table).toBe("shop.orders");
    expect(e.transient).toBe(false);
    expect(e.message).toContain("replica r1 at binlog.000002:120");
    expect(e.message).toContain("`coupon`");
    expect(e.message).toContain("`shop`.`orders`");
    expect(e.message).toContain("datasync resnapshot --tables shop.orders");
  });

  it("also for updates and their after image", () => {
    expect(() => build([upd(orders, [{ id: 1, customer: "a", total: "1" }, { id: 2, customer: "a", total: "1", extra: 1 }]), orders])).toThrow(ApplyError);
  });

  it("a table without a primary key on the replica is an ApplyError", () => {
    const m = meta("log", { msg: "text" }, { pk: [] });
    expect(() => build([ins(m, { msg: "x" }), m])).toThrow(/`shop`\.`log` has no primary key on the replica/);
  });

  it("a replica column the source row lacks is simply not written", () => {
    const m = meta("orders", { id: "int", customer: "varchar", total: "decimal", replica_only: "int" });
    const { out } = build([ins(m, { id: 1, customer: "a", total: "1" }), m]);
    expect(out[0].sql).not.toContain("replica_only");
  });
});

describe("StatementBuilder error context", () => {
  it("builds the error context only when an error needs it", () => {
    const m = meta("t", { id: "int", v: "varchar" });
    let calls = 0;
    const where = () => {
      calls++;
      return "replica r, source position f:1";
    };
    const b = new StatementBuilder();
    b.add({ op: "insert", db: "shop", table: "t", rows: [{ id: 1, v: "a" }, { id: 2, v: "b" }] }, m, where);
    expect(b.finish()).toHaveLength(1);
    expect(calls).toBe(0);
    expect(() => new StatementBuilder().add({ op: "insert", db: "shop", table: "t", rows: [{ id: 1, extra: 1 }] }, m, where)).toThrow(/replica r, source position f:1: the source row has column `extra`/);
    expect(calls).toBe(1);
  });
});

describe("StatementBuilder: the source session's checks (issue 15)", () => {
  it("rows written with foreign key or CHECK constraint checks off run with them off, never merged with rows written with them on", () => {
    const child = meta("child", { id: "int", pid: "int" });
    const { out } = build(
      [{ ...ins(child, { id: 1, pid: 10 }), noFkChecks: true }, child],
      [ins(child, { id: 2, pid: 10 }), child],
      [{ ...ins(child, { id: 3, pid: 10 }), flags: 0x0080 }, child],
    );
    expect(out.map((s) => [s.rows, !!s.relaxFk, !!s.relaxChecks])).toEqual([
      [1, true, false],
      [1, false, false],
      [1, false, true],
    ]);
    expect(sessionToggles(out[0])).toEqual({ before: ["SET SESSION foreign_key_checks = 0"], after: ["SET SESSION foreign_key_checks = 1"] });
    expect(sessionToggles(out[2])).toEqual({ before: ["SET SESSION check_constraint_checks = 0"], after: ["SET SESSION check_constraint_checks = 1"] });
  });

  it("deletes of a table that references itself keep the source's order, one statement per row", () => {
    const tree = { ...meta("tree", { id: "int", parent_id: "int" }), selfReferencing: true };
    const { out } = build([del(tree, { id: 3, parent_id: 2 }), tree], [del(tree, { id: 2, parent_id: 1 }), tree], [del(tree, { id: 1, parent_id: null }), tree]);
    expect(out.map((s) => s.sql)).toEqual(["DELETE FROM `shop`.`tree` WHERE `id` IN (3)", "DELETE FROM `shop`.`tree` WHERE `id` IN (2)", "DELETE FROM `shop`.`tree` WHERE `id` IN (1)"]);
    const plain = meta("plain", { id: "int" });
    expect(build([del(plain, { id: 3 }), plain], [del(plain, { id: 2 }), plain]).out.map((s) => s.sql)).toEqual(["DELETE FROM `shop`.`plain` WHERE `id` IN (3,2)"]);
  });
});

describe("StatementBuilder: independent tables gather their rows (issue 17, fewer statements)", () => {
  /** a table the replica's information_schema shows without any foreign key (tables.ts) */
  const indep = (m: TableMeta): TableMeta => ({ ...m, foreignKeys: false });
  const sb = (n: number) => indep(meta(`sbtest${n}`, { id: "int", k: "int", c: "char", pad: "char" }));
  const row = (id: number, k: number, c = `c${id}`) => ({ id, k, c, pad: "p" });
  const ODKU = "ON DUPLICATE KEY UPDATE `k` = VALUES(`k`), `c` = VALUES(`c`), `pad` = VALUES(`pad`)";

  it("a DELETE of a key then an INSERT of the same key is one upsert of the whole row", () => {
    const t = sb(1);
    const { out } = build([del(t, row(5, 1, "old")), t], [ins(t, row(5, 9, "new")), t]);
    expect(out).toEqual([{ sql: `INSERT INTO \`shop\`.\`sbtest1\` (\`id\`, \`k\`, \`c\`, \`pad\`) VALUES (5,9,'new','p') ${ODKU}`, table: "shop.sbtest1", rows: 1, lane: true }]);
  });

  it("sysbench oltp_write_only transactions over 4 tables become one upsert per table, in each table's order", () => {
    const ts = [1, 2, 3, 4].map(sb);
    const changes: [RowChange, TableMeta][] = [];
    // per transaction: UPDATE k by key (table a), UPDATE c by key (table b), DELETE + INSERT of one key (table c)
    const plan = [
      [0, 1, 2],
      [3, 3, 0],
      [1, 2, 1],
      [2, 0, 3],
      [0, 0, 0],
    ];
    plan.forEach(([a, b, c], i) => {
      changes.push([upd(ts[a], [row(10 + i, 1), row(10 + i, 2)]), ts[a]]);
      changes.push([upd(ts[b], [row(20 + i, 1), row(20 + i, 1, "x")]), ts[b]]);
      changes.push([del(ts[c], row(30 + i, 1)), ts[c]], [ins(ts[c], row(30 + i, 7)), ts[c]]);
    });
    const { b, out } = build(...changes);
    expect(out.map((s) => [s.table, s.rows])).toEqual([
      ["shop.sbtest1", 6],
      ["shop.sbtest2", 3],
      ["shop.sbtest3", 3],
      ["shop.sbtest4", 3],
    ]);
    expect(b.rows).toBe(20);
    for (const s of out) expect(s.sql).toMatch(/^INSERT INTO .* ON DUPLICATE KEY UPDATE /);
    // table 1's rows in the source's order: 10 (tx 0), 31 (tx 1, its delete gone), 12, 13, 33 … (tx 3, 4)
    expect(out[0].sql).toContain("VALUES (10,2,'c10','p'),(31,7,'c31','p'),(23,1,'x','p'),(14,2,'c14','p'),(24,1,'x','p'),(34,7,'c34','p')");
  });

  it("multi-row DELETE then multi-row INSERT of the same keys: one upsert, no DELETE; a key only deleted stays deleted", () => {
    const t = sb(1);
    const { out } = build([del(t, row(1, 0), row(2, 0), row(3, 0)), t], [ins(t, row(1, 5), row(3, 5)), t]);
    expect(out.map((s) => s.sql)).toEqual(["DELETE FROM `shop`.`sbtest1` WHERE `id` IN (2)", `INSERT INTO \`shop\`.\`sbtest1\` (\`id\`, \`k\`, \`c\`, \`pad\`) VALUES (1,5,'c1','p'),(3,5,'c3','p') ${ODKU}`]);
  });

  it("an INSERT then a DELETE of the same key keep both, in order (the insert advances AUTO_INCREMENT as on the source)", () => {
    const t = sb(1);
    const { out } = build([ins(t, row(7, 1)), t], [del(t, row(7, 1)), t], [ins(t, row(7, 2)), t]);
    expect(out.map((s) => s.sql.slice(0, 11))).toEqual(["INSERT INTO", "INSERT INTO"]);
    expect(out[0].sql).toContain("VALUES (7,1,");
    expect(out[1].sql).toContain("VALUES (7,2,");
    // the delete merged with the insert after it: without that insert, it stays between the two
    const { out: out2 } = build([ins(t, row(7, 1)), t], [del(t, row(7, 1)), t]);
    expect(out2.map((s) => s.sql.slice(0, 11))).toEqual(["INSERT INTO", "DELETE FROM"]);
  });

  it("inserts first, then deletes: a delete of a key inserted earlier still keeps the insert before it (keys known only once a delete arrives)", () => {
    const t = sb(1);
    // insert 1, 2; delete 5; insert 5 (the delete and insert of 5 are one upsert); delete 2 (inserted before: the lane goes first)
    const { out } = build([ins(t, row(1, 1), row(2, 1)), t], [del(t, row(5, 0)), t], [ins(t, row(5, 2)), t], [del(t, row(2, 1)), t], [ins(t, row(3, 3)), t]);
    expect(out.map((s) => s.sql.replace(ODKU, "…"))).toEqual([
      "INSERT INTO `shop`.`sbtest1` (`id`, `k`, `c`, `pad`) VALUES (1,1,'c1','p'),(2,1,'c2','p'),(5,2,'c5','p') …",
      "DELETE FROM `shop`.`sbtest1` WHERE `id` IN (2)",
      "INSERT INTO `shop`.`sbtest1` (`id`, `k`, `c`, `pad`) VALUES (3,3,'c3','p') …",
    ]);
  });

  it("not merged: a table with a foreign key on either side, or one not known to have none (only independent tables' rows move)", () => {
    const child = { ...meta("child", { id: "int", pid: "int" }), foreignKeys: true };
    const unknown = meta("unknown", { id: "int", pid: "int" });
    const other = sb(1);
    for (const t of [child, unknown]) {
      const { out } = build([del(t, { id: 1, pid: 1 }), t], [ins(other, row(1, 1)), other], [ins(t, { id: 1, pid: 2 }), t]);
      expect(out.map((s) => [s.table, s.sql.slice(0, 6)])).toEqual([
        [`shop.${t.table}`, "DELETE"],
        [`shop.${t.table}`, "INSERT"],
        ["shop.sbtest1", "INSERT"],
      ]);
    }
  });

  it("not gathered: a key of strings (under a _ci collation 'A' and 'a' are one key: an upsert of 'A' then a delete of 'a' keep their order)", () => {
    const users = indep(meta("users", { name: "varchar", n: "int" }, { pk: ["name"] }));
    const other = sb(1);
    const { out } = build([ins(users, { name: "A", n: 1 }), users], [ins(other, row(1, 1)), other], [del(users, { name: "a", n: 1 }), users]);
    expect(out.map((s) => [s.table, s.sql.slice(0, 6)])).toEqual([
      ["shop.users", "INSERT"],
      ["shop.users", "DELETE"],
      ["shop.sbtest1", "INSERT"],
    ]);
  });

  it("a BIGINT key that arrives as a number once and as its digits once is one key", () => {
    const t = indep(meta("big", { id: "bigint", v: "int" }));
    const { out } = build([ins(t, { id: 5, v: 1 }), t], [del(t, { id: "5", v: 1 }), t]);
    expect(out.map((s) => s.sql.slice(0, 6))).toEqual(["INSERT", "DELETE"]);
  });

  it("not merged, not moved: a table with a unique key besides the primary key", () => {
    const u = { ...meta("users", { id: "int", email: "varchar" }, { secondaryUnique: true }), foreignKeys: false };
    const { out } = build([del(u, { id: 1, email: "a@x" }), u], [ins(u, { id: 2, email: "a@x" }), u], [ins(u, { id: 1, email: "b@x" }), u]);
    expect(out.map((s) => s.sql.slice(0, 6))).toEqual(["DELETE", "INSERT"]);
    expect(out[1].sql).toContain("VALUES (2,'a@x'),(1,'b@x')");
  });

  it("not merged: an INSERT without every column (binlog_row_image MINIMAL, or a column only the replica has) keeps its DELETE first", () => {
    const t = sb(1);
    const { out } = build([del(t, { id: 5 }), t], [ins(t, { id: 5, k: 1 }), t]);
    expect(out.map((s) => s.sql)).toEqual(["DELETE FROM `shop`.`sbtest1` WHERE `id` IN (5)", "INSERT INTO `shop`.`sbtest1` (`id`, `k`) VALUES (5,1) ON DUPLICATE KEY UPDATE `k` = VALUES(`k`)"]);
    // an update whose after image lacks columns: the gathered rows go first, then the update's own upsert
    const { out: out2 } = build([ins(t, row(1, 1)), t], [upd(t, [{ id: 2 }, { id: 2, c: "z" }]), t], [ins(t, row(3, 1)), t]);
    expect(out2.map((s) => [s.rows, s.sql.slice(0, 40)])).toEqual([
      [1, "INSERT INTO `shop`.`sbtest1` (`id`, `k`,"],
      [1, "INSERT INTO `shop`.`sbtest1` (`id`, `c`)"],
      [1, "INSERT INTO `shop`.`sbtest1` (`id`, `k`,"],
    ]);
  });

  it("an update of the key: the table's gathered rows first, then the UPDATE by the old key with its fallback", () => {
    const t = sb(1);
    const { out } = build([del(t, row(2, 0)), t], [upd(t, [row(1, 1), row(2, 1)]), t], [ins(t, row(3, 1)), t]);
    expect(out.map((s) => s.sql.slice(0, 50))).toEqual([
      "DELETE FROM `shop`.`sbtest1` WHERE `id` IN (2)",
      "UPDATE `shop`.`sbtest1` SET `id` = 2, `k` = 1, `c`",
      "INSERT INTO `shop`.`sbtest1` (`id`, `k`, `c`, `pad",
    ]);
    expect(out[1].fallback).toBeDefined();
  });

  it("a savepoint or a rollback to it: every gathered row goes before it", () => {
    const [a, b2] = [sb(1), sb(2)];
    const sp = (op: "savepoint" | "rollback"): [RowChange, TableMeta] => [{ op, db: "", table: "", rows: [], savepoint: "s1" } as unknown as RowChange, a];
    const { out } = build([ins(a, row(1, 1)), a], [ins(b2, row(1, 1)), b2], sp("savepoint"), [ins(a, row(2, 1)), a], sp("rollback"), [ins(a, row(3, 1)), a]);
    expect(out.map((s) => (s.table ? `${s.table}:${s.rows}` : s.sql))).toEqual(["shop.sbtest1:1", "shop.sbtest2:1", "SAVEPOINT `s1`", "shop.sbtest1:1", "ROLLBACK TO SAVEPOINT `s1`", "shop.sbtest1:1"]);
  });

  it("rows written with CHECK constraint checks off are never gathered with rows written with them on", () => {
    const t = sb(1);
    const { out } = build([ins(t, row(1, 1)), t], [{ ...ins(t, row(2, 1)), flags: 0x0080 }, t], [ins(t, row(3, 1)), t]);
    expect(out.map((s) => [s.rows, !!s.relaxChecks])).toEqual([
      [1, false],
      [1, true],
      [1, false],
    ]);
  });

  it("splits a gathered statement past 1 MiB, keeping every row once and in order", () => {
    const t = indep(meta("docs", { id: "int", body: "longtext" }));
    const big = "x".repeat(600_000);
    const { out } = build([ins(t, { id: 1, body: big }), t], [del(t, { id: 9, body: "" }), t], [ins(t, { id: 2, body: big }, { id: 3, body: "small" }), t]);
    expect(out.map((s) => [s.sql.slice(0, 6), s.rows])).toEqual([
      ["DELETE", 1],
      ["INSERT", 1],
      ["INSERT", 2],
    ]);
    for (const s of out) expect(s.sql.length).toBeLessThan(1_300_000);
  });
});
