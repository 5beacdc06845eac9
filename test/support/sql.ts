// SQL for test fixtures that differs by flavor: MariaDB's sequence tables (seq_1_to_N), types only one flavor
// has, and how each prints column types. Fixtures call these instead of writing MariaDB-only syntax.
import { defaultFlavor, type Flavor } from "./servers.js";

/**
 * A table expression of the integers 1..n in a column `seq`, usable after FROM or in a join:
 * MariaDB's sequence engine (`seq_1_to_N`, which needs a database: pass `db` when the session has none),
 * on MySQL a derived table of cross-joined digits (no session setting, unlike a recursive CTE's depth limit).
 * `alias` names it for joins (`o.seq`); without one the name is `seq_1_to_N` on both flavors.
 */
export function seq(n: number, opts: { alias?: string; db?: string; flavor?: Flavor } = {}): string {
  if (!Number.isInteger(n) || n < 1) throw new Error(`seq(${n}): a positive integer is needed`);
  const flavor = opts.flavor ?? defaultFlavor();
  if (flavor === "mariadb") return `${opts.db ? `${opts.db}.` : ""}seq_1_to_${n}${opts.alias ? ` AS ${opts.alias}` : ""}`;
  const digits = String(n - 1).length; // values 0..n-1
  const ten = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
  const tables = Array.from({ length: digits }, (_, i) => `${ten} AS d${i}`).join(" CROSS JOIN ");
  const value = Array.from({ length: digits }, (_, i) => (i === 0 ? "d0.d" : `${10 ** i} * d${i}.d`)).join(" + ");
  return `(SELECT ${value} + 1 AS seq FROM ${tables} WHERE ${value} < ${n}) AS ${opts.alias ?? `seq_1_to_${n}`}`;
}

/** a 16-byte UUID column type: MariaDB's UUID, MySQL's BINARY(16) */
export function uuidType(flavor: Flavor = defaultFlavor()): string {
  return flavor === "mariadb" ? "UUID" : "BINARY(16)";
}

/** a UUID text as a value of uuidType() */
export function uuidValue(textExpr: string, flavor: Flavor = defaultFlavor()): string {
  return flavor === "mariadb" ? textExpr : `UUID_TO_BIN(${textExpr})`;
}

/**
 * An integer column type as information_schema.COLUMN_TYPE prints it: MariaDB keeps the display width
 * (`int(11)`), MySQL 8.0.19+ drops it (`int`).
 */
export function intType(base: "tinyint" | "smallint" | "mediumint" | "int" | "bigint", flavor: Flavor = defaultFlavor()): string {
  if (flavor === "mysql") return base;
  const width = { tinyint: 4, smallint: 6, mediumint: 9, int: 11, bigint: 20 }[base];
  return `${base}(${width})`;
}

/** the privileges a source's sync account needs (rule 6): MariaDB names REPLICATION CLIENT BINLOG MONITOR */
export function sourceGrants(flavor: Flavor = defaultFlavor()): string {
  return `REPLICATION SLAVE, ${flavor === "mariadb" ? "BINLOG MONITOR" : "REPLICATION CLIENT"}, SELECT`;
}
