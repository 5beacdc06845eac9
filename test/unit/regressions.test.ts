// Regression tests for bugs the unit tests found (BUG-1 … BUG-11), each stating the contract it guards.
// The zongji connection is replaced by a fake emitter as in reader.test.ts.
import { describe, expect, it, vi } from "vitest";

const fakes = vi.hoisted(() => ({ instances: [] as any[] }));
vi.mock("@vlasky/zongji", async (importOriginal) => {
  const orig: any = await importOriginal();
  const { EventEmitter } = await import("node:events");
  class FakeZongJi extends EventEmitter {
    options: any = {};
    connection = { pause() {}, resume() {} };
    constructor() {
      super();
      fakes.instances.push(this);
    }
    start(o: any) {
      this.options = { filename: o.filename, position: o.position };
      queueMicrotask(() => this.emit("ready"));
    }
    stop() {
      queueMicrotask(() => this.emit("stopped"));
    }
  }
  return { ...orig, default: FakeZongJi };
});

import { redactConfig, validateConfig } from "../../agent/config.js";
import { normalizeDdl, parseDdl, planDdl } from "../../agent/apply/ddl.js";
import { BinlogReader, type Txn } from "../../agent/source/reader.js";
import { makeTableFilter } from "../../agent/rules.js";
import { StatementBuilder } from "../../agent/apply/sqlgen.js";
import { LagClock } from "../../agent/replica.js";
import type { TableMeta } from "../../agent/tables.js";

const baseConfig = () => ({
  group: "orders",
  source: { host: "10.0.0.5", user: "datasync", password: "pw" },
  replicas: [{ name: "westeurope", host: "10.0.1.5", user: "datasync", password: "pw" }],
  databases: ["shop"],
});
const scope = { databases: new Set(["shop"]), inScope: makeTableFilter({ databases: ["shop"] }) };

describe("config", () => {
  // DESIGN.md: "Unknown keys … are refused at start with the path of the offending key"; the brief names
  // `source.hots` and `replicas[1].passwrd`. Actual: `source: unknown key "hots"; remove it …` — the
  // object's path and the key separately, never the key's path.
  it("BUG-1 an unknown key is reported with its own path (source.hots, replicas[1].passwrd)", () => {
    const c: any = baseConfig();
    c.source.hots = "x";
    c.replicas.push({ name: "b", host: "10.0.2.5", user: "u", passwrd: "x" });
    let problems: string[] = [];
    try {
      validateConfig(c);
    } catch (e: any) {
      problems = e.problems;
    }
    expect(problems.some((p) => p.startsWith("source.hots"))).toBe(true);
    expect(problems.some((p) => p.startsWith("replicas[1].passwrd"))).toBe(true);
  });

  // tls.key may hold the PEM text of a private key (db.ts `pem()` accepts inline PEM); redactConfig
  // masks only `password`, so printing the redacted config prints the private key.
  it("BUG-2 redactConfig does not print an inline TLS private key", () => {
    const key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    const c = validateConfig({ ...baseConfig(), source: { host: "db.example.com", user: "u", password: "pw", tls: { mode: "verify-identity", cert: "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----", key } } });
    expect(JSON.stringify(redactConfig(c))).not.toContain("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
  });
});

describe("ddl", () => {
  // normalizeDdl removes the first `DEFINER = <x>` anywhere in the statement, not only the DEFINER clause
  // of CREATE VIEW/PROCEDURE/FUNCTION/TRIGGER/EVENT. A table whose expression compares a column named
  // `definer` is sent to the replicas broken: `… is_root TINYINT AS ())` (syntax error, replica stops).
  it("BUG-3 normalizeDdl leaves `definer = '…'` expressions of a CREATE TABLE alone", () => {
    const sql = "CREATE TABLE acl (id INT PRIMARY KEY, definer VARCHAR(100), is_root TINYINT AS (definer = 'root@localhost'))";
    expect(normalizeDdl(sql)).toBe(sql);
    const alter = "ALTER TABLE t ADD COLUMN x INT COMMENT 'definer = me'";
    expect(normalizeDdl(alter)).toBe(alter);
  });

  // createHasPrimaryKey strips only single-quoted strings and /* */ comments before looking for
  // PRIMARY KEY. A table without a key is then taken as keyed, so it is not quarantined; its first row
  // change stops the replica ("has no primary key on the replica") instead.
  it.each([
    ['double-quoted COMMENT (default sql_mode)', 'CREATE TABLE log (msg TEXT COMMENT "no primary key yet")'],
    ["-- line comment", "CREATE TABLE log (msg TEXT -- primary key later\n)"],
    ["# line comment", "CREATE TABLE log (msg TEXT # primary key later\n)"],
    ["a column named `primary key`", "CREATE TABLE log (`primary key` INT)"],
  ])("BUG-4 CREATE TABLE without a key, %s, is reported keyless", (_what, sql) => {
    const p = planDdl(sql, "shop", scope);
    expect(p.kind === "apply" && p.creates?.hasPrimaryKey).toBe(false);
  });

  // `ALTER DATABASE CHARACTER SET …` (no name: the default database) is parsed as a database named
  // "CHARACTER" (or "DEFAULT", "COLLATE"), so it is skipped as out of scope instead of applied.
  it.each(["ALTER DATABASE CHARACTER SET utf8mb4", "ALTER DATABASE DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "ALTER SCHEMA COLLATE utf8mb4_bin"])(
    "BUG-5 %s in the synced schema is applied to it",
    (sql) => {
      expect(planDdl(sql, "shop", scope)).toMatchObject({ kind: "apply", db: "shop" });
    },
  );
  // RENAME TABLE replaces every word TO by a comma before splitting names, also inside quoted names:
  // `to-do` becomes " , -do". The objects are wrong, so the scope check (with include globs), the
  // quarantine bookkeeping and the crash fingerprint look at tables that do not exist.
  it("BUG-10 RENAME TABLE with quoted names containing the word 'to'", () => {
    expect(parseDdl("RENAME TABLE `to-do` TO `done`", "shop")?.objects.map((o) => o.name)).toEqual(["to-do", "done"]);
    expect(parseDdl("RENAME TABLE `back to school` TO `b2s`", "shop")?.objects.map((o) => o.name)).toEqual(["back to school", "b2s"]);
    const onlyTodo = { databases: new Set(["shop"]), inScope: makeTableFilter({ databases: ["shop"], include: ["shop.to-*"] }) };
    expect(planDdl("RENAME TABLE `to-do` TO `to-do-old`", "shop", onlyTodo).kind).toBe("apply");
  });

  // The ALTER TABLE parser looks for RENAME anywhere in the rest of the statement, string literals
  // included, and adds a second table: here shop.x, which the statement does not touch.
  it("BUG-11 ALTER TABLE with 'rename to' inside a COMMENT touches only its table", () => {
    expect(parseDdl("ALTER TABLE orders COMMENT 'rename to x'", "shop")?.objects).toEqual([{ type: "table", db: "shop", name: "orders" }]);
  });
});

describe("sqlgen", () => {
  // #upsertRow merges a row into the pending INSERT when the column *count* matches, not the columns:
  // the second row's values are written under the first row's column list. Latent with FULL row images
  // (every row of a table carries the same columns), but the builder's public contract allows it.
  it("BUG-6 rows with different columns of the same count are not merged under one column list", () => {
    const m: TableMeta = {
      db: "shop",
      table: "t",
      columns: ["id", "a", "b"],
      writable: ["id", "a", "b"],
      writableSet: new Set(["id", "a", "b"]),
      types: new Map([
        ["id", "int"],
        ["a", "varchar"],
        ["b", "varchar"],
      ]),
      primaryKey: ["id"],
      hasSecondaryUnique: false,
    };
    const b = new StatementBuilder();
    b.add({ op: "insert", db: "shop", table: "t", rows: [{ id: 1, a: "for-a" }, { id: 2, b: "for-b" }] }, m, "test");
    const sqls = b.finish().map((s) => s.sql);
    // "for-b" must be written into column b, wherever it is
    const withB = sqls.find((s) => s.includes("'for-b'"))!;
    expect(withB).toMatch(/\(`id`, `b`\) VALUES \(2,'for-b'\)/);
  });
});

describe("reader", () => {
  async function reader(flavor: "mysql" | "mariadb", gtid: string) {
    const txns: Txn[] = [];
    const r = new BinlogReader({
      connection: {},
      serverId: 1,
      flavor,
      start: { file: "binlog.000001", pos: 4, gtid },
      databases: ["shop"],
      inScope: () => true,
      onTxn: (t) => {
        txns.push(t);
        return true;
      },
      onError: (e) => {
        throw e;
      },
    });
    await r.start();
    const z = fakes.instances[fakes.instances.length - 1];
    return { txns, feed: (...events: unknown[]) => events.forEach((e) => z.emit("binlog", e)) };
  }
  const ev = (name: string, f: Record<string, unknown> = {}) => ({ getEventName: () => name, timestamp: 1_700_000_000_000, nextPosition: 0, ...f });
  const rows = (table: string, r: unknown[]) => ev("writerows", { tableId: 7, tableMap: { 7: { parentSchema: "shop", tableName: table } }, rows: r });
  const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

  // MySQL >= 8.0.21 logs CREATE TABLE … SELECT atomically as ONE transaction: GTID, Query
  // "CREATE TABLE … START TRANSACTION", Table_map, Write_rows, Xid. The reader takes the query for a
  // standalone DDL and commits it at once with the GTID folded in, then delivers the rows as a second
  // transaction. A checkpoint between the two holds the GTID: on resume by GTID the source skips the
  // whole transaction, and the rows are lost (DESIGN: the position moves only at a commit boundary).
  it("BUG-7 MySQL atomic CREATE TABLE … SELECT is one transaction; no position inside it carries its GTID", async () => {
    const { txns, feed } = await reader("mysql", `${U}:1-4`);
    feed(
      ev("gtid", { gtid: `${U}:5` }),
      ev("query", { query: "CREATE TABLE `t2` (\n  `id` int NOT NULL,\n  PRIMARY KEY (`id`)\n) START TRANSACTION", schema: "shop", nextPosition: 500 }),
      rows("t2", [{ id: 1 }, { id: 2 }]),
      ev("xid", { nextPosition: 700 }),
    );
    const beforeRows = txns.filter((t) => t.rowCount === 0 && t.ddl);
    for (const t of beforeRows) expect(t.pos.gtid, "a position before the rows must not contain the transaction's GTID").toBe(`${U}:1-4`);
    expect(txns[txns.length - 1].pos).toMatchObject({ pos: 700, gtid: `${U}:1-5` });
  });

  // `ROLLBACK TO SAVEPOINT` is logged inside a transaction when it touched a non-transactional table.
  // Its head is "ROLLBACK TO " (not "ROLLBACK"), so it falls through to the standalone-statement branch:
  // the transaction is committed in the middle (with its GTID) and the rest becomes another transaction.
  it("BUG-8 ROLLBACK TO SAVEPOINT does not end the transaction", async () => {
    const { txns, feed } = await reader("mariadb", "0-1-4");
    feed(
      ev("mariadbgtid", { domainId: 0, serverId: 1, seqNo: 5 }),
      rows("myisam_log", [{ id: 1 }]),
      ev("query", { query: "SAVEPOINT `s1`", schema: "shop" }),
      rows("myisam_log", [{ id: 2 }]),
      ev("query", { query: "ROLLBACK TO `s1`", schema: "shop" }),
      rows("myisam_log", [{ id: 3 }]),
      ev("xid", { nextPosition: 900 }),
    );
    expect(txns).toHaveLength(1);
    expect(txns[0].rowCount).toBe(3);
    expect(txns[0].ddl).toBeUndefined();
  });

  // MySQL (5.7.7+) logs an XA transaction in two parts: GTID, "XA START …", rows, "XA END …",
  // XA_prepare (an event type the reader does not subscribe to); later GTID, "XA COMMIT …". The reader
  // treats every "XA " query like BEGIN, never closes the first part, and the next GTID event opens a
  // new transaction over it: the prepared rows are never delivered.
  it("BUG-9 MySQL XA transaction rows are delivered once XA COMMIT is read", async () => {
    const { txns, feed } = await reader("mysql", `${U}:1-4`);
    feed(
      ev("gtid", { gtid: `${U}:5` }),
      ev("query", { query: "XA START X'7831',X'',1", schema: "shop" }),
      rows("orders", [{ id: 1 }]),
      ev("query", { query: "XA END X'7831',X'',1", schema: "shop" }),
      ev("gtid", { gtid: `${U}:6` }),
      ev("query", { query: "XA COMMIT X'7831',X'',1", schema: "shop", nextPosition: 1200 }),
      ev("gtid", { gtid: `${U}:7` }),
      ev("query", { query: "BEGIN", schema: "shop" }),
      ev("xid", { nextPosition: 1400 }),
    );
    const delivered = txns.flatMap((t) => t.changes.flatMap((c) => c.rows));
    expect(delivered).toEqual([{ id: 1 }]);
  });
});

describe("lag under a steady load (the agent's lag gauge overstated it)", () => {
  const at = (pos: number) => ({ file: "binlog.000001", pos });
  it("does not add up when the replica is always a little behind the last polled end", () => {
    const clock = new LagClock();
    const t0 = 1_000_000;
    const seen: number[] = [];
    // every second the source end moves on; 200 ms later the replica has applied up to the previous end
    for (let i = 1; i <= 60; i++) {
      const end = { pos: at(i * 1000), at: t0 + i * 1000 };
      seen.push(clock.lag(t0 + i * 1000 + 200, undefined, end, at(i * 1000 - 500)));
    }
    expect(Math.max(...seen)).toBeLessThan(1.5);
  });

  it("grows from the first sighting of an end while the replica stays behind it, and is 0 once caught up", () => {
    const clock = new LagClock();
    const t0 = 1_000_000;
    expect(clock.lag(t0, undefined, { pos: at(100), at: t0 }, at(100))).toBe(0);
    expect(clock.lag(t0 + 1000, undefined, { pos: at(200), at: t0 + 1000 }, at(100))).toBe(0);
    expect(clock.lag(t0 + 5000, undefined, { pos: at(300), at: t0 + 4000 }, at(150))).toBe(4);
    // a replica that is down keeps its applied position: its lag keeps growing while the source moves on
    expect(clock.lag(t0 + 60_000, undefined, { pos: at(900), at: t0 + 50_000 }, at(150))).toBe(59);
    // a queued transaction older than the end's sighting counts from its commit time
    expect(clock.lag(t0 + 7000, { ts: t0 - 3000, readAt: t0 + 500 }, { pos: at(300), at: t0 + 4000 }, at(150))).toBe(10);
    expect(clock.lag(t0 + 8000, undefined, { pos: at(300), at: t0 + 4000 }, at(300))).toBe(0);
  });
});
