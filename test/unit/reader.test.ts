// Unit tests for agent/source/reader.ts: positions, purged-binlog errors, and how BinlogReader assembles binlog
// events into source transactions. The reader's event handler is private, so these tests drive the real
// class through its only input: zongji's "binlog" events. @vlasky/zongji's default export (the connection)
// is replaced by a fake emitter; its GtidSet and MariadbGtidPosition stay the real ones.
import { afterEach, describe, expect, it, vi } from "vitest";

const fakes = vi.hoisted(() => ({ instances: [] as any[] }));

vi.mock("@vlasky/zongji", async (importOriginal) => {
  const orig: any = await importOriginal();
  const { EventEmitter } = await import("node:events");
  class FakeZongJi extends EventEmitter {
    ctorOptions: any;
    startOptions: any;
    options: any = {};
    tableMap: Record<number, unknown> = {};
    connection = { pause: vi.fn(), resume: vi.fn() };
    fetched: unknown[] = [];
    stopCalls = 0;
    constructor(o: any) {
      super();
      this.ctorOptions = o;
      fakes.instances.push(this);
    }
    start(o: any) {
      this.startOptions = o;
      this.options = { filename: o.filename, position: o.position };
      queueMicrotask(() => this.emit("ready"));
    }
    stop() {
      this.stopCalls++;
      queueMicrotask(() => this.emit("stopped"));
    }
    _fetchTableInfo(ev: any, next: () => void) {
      this.fetched.push(ev);
      this.tableMap[ev.tableId] = { columnSchemas: "from-source", parentSchema: ev.schemaName, tableName: ev.tableName };
      next();
    }
  }
  return { ...orig, default: FakeZongJi };
});

import { GtidSet, MariadbGtidPosition } from "@vlasky/zongji";
import { BinlogReader, isPurgedError, mariadbGtidText, type ReaderOptions, type Txn } from "../../agent/source/reader.js";
import { comparePos, type Position } from "../../agent/source/positions.js";
import { PurgedPositionError } from "../../agent/errors.js";

afterEach(() => {
  fakes.instances.length = 0;
});

const UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const UUID_B = "2c256447-3f0d-431b-9a25-bddf1f1f6ef6";
const T0 = 1_700_000_000_000;

/** a constructed zongji event */
function ev(name: string, fields: Record<string, unknown> = {}) {
  return { getEventName: () => name, timestamp: T0, nextPosition: 0, ...fields };
}
const mysqlGtid = (gtid: string, ts = T0) => ev("gtid", { gtid, timestamp: ts });
const mariaGtid = (domainId: number, serverId: number, seqNo: number | string, ts = T0) => ev("mariadbgtid", { domainId, serverId, seqNo, timestamp: ts });
const query = (sql: string, schema = "shop", nextPosition = 0) => ev("query", { query: sql, schema, nextPosition });
const xid = (nextPosition: number) => ev("xid", { nextPosition, xid: 1 });
let nextTableId = 100;
function rowsEv(name: "writerows" | "updaterows" | "deleterows", db: string, table: string, rows: unknown[]) {
  const tableId = nextTableId++;
  return ev(name, { tableId, tableMap: { [tableId]: { parentSchema: db, tableName: table } }, rows });
}

async function startReader(over: Partial<ReaderOptions> = {}) {
  const txns: Txn[] = [];
  const errors: Error[] = [];
  const o: ReaderOptions = {
    connection: { host: "10.0.0.5", port: 3306, user: "datasync", password: "pw" },
    serverId: 4001,
    flavor: "mysql",
    start: { file: "binlog.000001", pos: 4 },
    databases: ["shop"],
    inScope: (db, t) => db === "shop" && !t.startsWith("audit_"),
    onTxn: (t) => {
      txns.push(t);
      return true;
    },
    onError: (e) => errors.push(e),
    ...over,
  };
  const r = new BinlogReader(o);
  await r.start();
  const z = fakes.instances[fakes.instances.length - 1];
  const feed = (...events: unknown[]) => events.forEach((e) => z.emit("binlog", e));
  return { r, z, txns, errors, feed };
}

describe("mariadbGtidText", () => {
  it("writes a MariaDB GTID position as its toString does, one domain or several", () => {
    const one = MariadbGtidPosition.parse("0-1-41");
    one.add({ domainId: 0, serverId: 1, seqNo: 42 });
    expect(mariadbGtidText(one)).toBe("0-1-42");
    expect(mariadbGtidText(one)).toBe(one.toString());
    const big = MariadbGtidPosition.parse("7-4001-18446744073709551615");
    expect(mariadbGtidText(big)).toBe("7-4001-18446744073709551615");
    const several = MariadbGtidPosition.parse("3-2-9,0-1-5");
    expect(mariadbGtidText(several)).toBe(several.toString());
    expect(mariadbGtidText(several)).toBe("0-1-5,3-2-9");
  });
});

describe("comparePos", () => {
  it("compares offsets within one file, whatever its name", () => {
    expect(comparePos({ file: "mysql-bin.log", pos: 4 }, { file: "mysql-bin.log", pos: 5 })).toBeLessThan(0);
    expect(comparePos({ file: "binlog.000003", pos: 77 }, { file: "binlog.000003", pos: 77 })).toBe(0);
  });

  it("orders by file sequence number, then offset", () => {
    expect(comparePos({ file: "binlog.000009", pos: 900 }, { file: "binlog.000010", pos: 4 })).toBeLessThan(0);
    expect(comparePos({ file: "binlog.000010", pos: 4 }, { file: "binlog.000009", pos: 900 })).toBeGreaterThan(0);
    expect(comparePos({ file: "binlog.000002", pos: 120 }, { file: "binlog.000002", pos: 4000 })).toBeLessThan(0);
    expect(comparePos({ file: "binlog.000002", pos: 120 }, { file: "binlog.000002", pos: 120 })).toBe(0);
  });
  it("compares numerically past the zero padding (999999 → 1000000)", () => {
    expect(comparePos({ file: "mysql-bin.999999", pos: 1 }, { file: "mysql-bin.1000000", pos: 1 })).toBeLessThan(0);
  });
  it("is a total order usable by sort", () => {
    const ps = [
      { file: "b.000003", pos: 5 },
      { file: "b.000001", pos: 900 },
      { file: "b.000003", pos: 4 },
      { file: "b.000002", pos: 1 },
    ];
    expect([...ps].sort(comparePos)).toEqual([ps[1], ps[3], ps[2], ps[0]]);
  });
  it("same number, different base names: still decided, antisymmetric", () => {
    const a = { file: "binlog.000001", pos: 4 };
    const b = { file: "mysql-bin.000001", pos: 4 };
    expect(comparePos(a, b)).not.toBe(0);
    expect(Math.sign(comparePos(a, b))).toBe(-Math.sign(comparePos(b, a)));
  });
});

describe("isPurgedError", () => {
  const e = (errno: number, message: string) => Object.assign(new Error(message), { errno });
  it.each([
    "The slave is connecting using CHANGE MASTER TO MASTER_AUTO_POSITION = 1, but the master has purged binary logs containing GTIDs that the slave requires.",
    "Cannot replicate because the source purged required binary logs. Replicate the missing transactions from elsewhere, or provision a new replica from backup. Consider increasing the source's binary log expiration period. The GTID set sent by the replica is '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', and the missing transactions are '3e11fa47-71ca-11e1-9e33-c80aa9429562:6-10'.",
    "Could not find first log file name in binary log index file",
    "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.",
  ])("errno 1236: %s", (msg) => {
    expect(isPurgedError(e(1236, msg))).toBe(true);
  });

  it.each([
    [1236, "binlog truncated in the middle of event; consider out of disk space on master; the first event 'binlog.000002' at 4"],
    [1236, "log event entry exceeded max_allowed_packet; Increase max_allowed_packet on master"],
    [1236, "Slave has more GTIDs than the master has, using the master's SERVER_UUID. This may indicate that the end of the binary log was truncated"],
    [1236, "Client requested master to start replication from position > file size"],
    [2013, "Lost connection to MySQL server during query (purged)"],
    [1045, "Access denied for user 'datasync'@'10.0.0.9' (using password: YES)"],
  ])("errno %i: %s is not purged", (errno, msg) => {
    expect(isPurgedError(e(errno, msg))).toBe(false);
  });

  it("tolerates non-errors", () => {
    expect(isPurgedError(undefined)).toBe(false);
    expect(isPurgedError(null)).toBe(false);
    expect(isPurgedError({ errno: 1236 })).toBe(false);
    expect(isPurgedError("purged")).toBe(false);
  });

  it("PurgedPositionError names the position and the remedy", () => {
    const byGtid = new PurgedPositionError({ file: "binlog.000001", pos: 4, gtid: "0-1-42" }, "Could not find GTID state");
    expect(byGtid.code).toBe("purged");
    expect(byGtid.name).toBe("PurgedPositionError");
    expect(byGtid.message).toContain("GTID 0-1-42");
    expect(byGtid.message).toContain("Could not find GTID state");
    expect(byGtid.message).toContain("datasync resnapshot --config F --replica NAME");
    expect(new PurgedPositionError({ file: "binlog.000007", pos: 1234 }, "x").message).toContain("binlog.000007:1234");
  });
});

describe("BinlogReader: start", () => {
  it("opens zongji with the driver options that keep values exact", async () => {
    const { z } = await startReader();
    expect(z.ctorOptions).toMatchObject({ host: "10.0.0.5", user: "datasync", dateStrings: true, timezone: "Z", supportBigNumbers: true, bigNumberStrings: true, jsonStrings: true });
  });

  it("starts from file/position, with the server id, only the synced schemas and the events it handles", async () => {
    const { z } = await startReader({ databases: ["shop", "crm"] });
    expect(z.startOptions).toMatchObject({ serverId: 4001, filename: "binlog.000001", position: 4, includeSchema: { shop: true, crm: true } });
    expect(z.startOptions.gtidSet).toBeUndefined();
    expect(z.startOptions.includeEvents).toEqual(expect.arrayContaining(["tablemap", "writerows", "updaterows", "deleterows", "query", "xid", "gtid", "mariadbgtid"]));
  });

  it("resumes by GTID when the checkpoint has one", async () => {
    const { z } = await startReader({ start: { file: "binlog.000001", pos: 4, gtid: `${UUID_A}:1-5` } });
    expect(z.startOptions.gtidSet).toBe(`${UUID_A}:1-5`);
    expect(z.startOptions.filename).toBeUndefined();
  });

  it("a purged position before ready rejects start with PurgedPositionError", async () => {
    const r = new BinlogReader({
      connection: {},
      serverId: 1,
      flavor: "mariadb",
      start: { file: "binlog.000001", pos: 4, gtid: "0-1-5" },
      databases: ["shop"],
      inScope: () => true,
      onTxn: () => true,
      onError: () => undefined,
    });
    const p = r.start();
    const z = fakes.instances[fakes.instances.length - 1];
    z.emit("error", Object.assign(new Error("Could not find GTID state requested by slave in any binlog files."), { errno: 1236 }));
    await expect(p).rejects.toBeInstanceOf(PurgedPositionError);
    await expect(p).rejects.toThrow(/GTID 0-1-5/);
  });

  it("an error after ready goes to onError once; a purged one is typed", async () => {
    const { z, errors } = await startReader();
    z.emit("error", Object.assign(new Error("Cannot replicate because the source purged required binary logs."), { errno: 1236 }));
    z.emit("error", new Error("second"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(PurgedPositionError);
  });

  it("a transient error is passed on as is", async () => {
    const { z, errors } = await startReader();
    const err = Object.assign(new Error("Connection lost"), { code: "PROTOCOL_CONNECTION_LOST" });
    z.emit("error", err);
    expect(errors).toEqual([err]);
  });

  it("stop() ends zongji, keeps an error listener and is idempotent", async () => {
    const { r, z } = await startReader();
    await r.stop();
    await r.stop();
    expect(z.stopCalls).toBe(1);
    expect(() => z.emit("error", new Error("teardown"))).not.toThrow();
  });
});

describe("BinlogReader: MariaDB transactions", () => {
  it("GTID … rows … XID is one transaction whose position follows it", async () => {
    const { txns, feed, r } = await startReader({ flavor: "mariadb", start: { file: "binlog.000001", pos: 4, gtid: "0-1-4" } });
    feed(mariaGtid(0, 1, 5, T0 + 1000), rowsEv("writerows", "shop", "orders", [{ id: 1 }, { id: 2 }]), xid(1234));
    expect(txns).toHaveLength(1);
    const t = txns[0];
    expect(t.pos).toEqual({ file: "binlog.000001", pos: 1234, gtid: "0-1-5" });
    expect(t.changes).toEqual([{ op: "insert", db: "shop", table: "orders", rows: [{ id: 1 }, { id: 2 }], before: undefined }]);
    expect(t.rowCount).toBe(2);
    expect(t.ts).toBe(T0 + 1000);
    expect(t.readAt).toBeGreaterThanOrEqual(Date.now() - 5000);
    expect(t.bytes).toBeGreaterThan(256);
    expect(r.lastRead).toEqual(t.pos);
  });

  it("folds GTIDs per domain: last one per domain, domains sorted", async () => {
    const { txns, feed } = await startReader({ flavor: "mariadb", start: { file: "binlog.000001", pos: 4, gtid: "0-1-4" } });
    feed(mariaGtid(1, 2, 7), xid(300), mariaGtid(0, 1, 5), xid(400), mariaGtid(0, 1, "9007199254740993"), xid(500));
    expect(txns.map((t) => t.pos.gtid)).toEqual(["0-1-4,1-2-7", "0-1-5,1-2-7", "0-1-9007199254740993,1-2-7"]);
  });

  it("a standalone DDL is its own transaction, with its default schema", async () => {
    const { txns, feed } = await startReader({ flavor: "mariadb" });
    feed(mariaGtid(0, 1, 8), query("ALTER TABLE orders ADD COLUMN note TEXT", "shop", 900));
    expect(txns).toHaveLength(1);
    expect(txns[0].ddl).toEqual({ sql: "ALTER TABLE orders ADD COLUMN note TEXT", schema: "shop" });
    expect(txns[0].changes).toEqual([]);
    expect(txns[0].pos).toEqual({ file: "binlog.000001", pos: 900, gtid: "0-1-8" });
  });
});

describe("BinlogReader: MySQL transactions (constructed events)", () => {
  it("BEGIN … rows … XID folds 'uuid:n' into the GTID set string", async () => {
    const { txns, feed } = await startReader({ start: { file: "binlog.000003", pos: 4, gtid: `${UUID_A}:1-5` } });
    feed(mysqlGtid(`${UUID_A}:6`), query("BEGIN", "shop", 0), rowsEv("writerows", "shop", "orders", [{ id: 1 }]), xid(700));
    feed(mysqlGtid(`${UUID_B}:1`), query("BEGIN"), rowsEv("deleterows", "shop", "orders", [{ id: 1 }]), xid(800));
    feed(mysqlGtid(`${UUID_A}:8`), query("BEGIN"), rowsEv("writerows", "shop", "orders", [{ id: 3 }]), xid(900));
    expect(txns).toHaveLength(3);
    expect(txns[0].pos).toEqual({ file: "binlog.000003", pos: 700, gtid: `${UUID_A}:1-6` });
    // sorted by uuid, as @@gtid_executed prints it
    expect(txns[1].pos.gtid).toBe(`${UUID_B}:1,${UUID_A}:1-6`);
    expect(txns[2].pos.gtid).toBe(`${UUID_B}:1,${UUID_A}:1-6:8`);
    // the string is a valid GTID set that round-trips
    expect(GtidSet.parse(txns[2].pos.gtid!).toString()).toBe(txns[2].pos.gtid);
    expect(GtidSet.parse(txns[2].pos.gtid!).contains(`${UUID_A}:7`)).toBe(false);
  });

  it("without a GTID in the checkpoint the set starts with the first transaction read", async () => {
    const { txns, feed } = await startReader();
    feed(mysqlGtid(`${UUID_A}:41`), query("BEGIN"), xid(500));
    expect(txns[0].pos.gtid).toBe(`${UUID_A}:41`);
  });

  it("without GTIDs at all the position is file/pos only", async () => {
    const { txns, feed } = await startReader();
    feed(query("BEGIN", "shop", 0), rowsEv("writerows", "shop", "orders", [{ id: 1 }]), xid(4567));
    expect(txns[0].pos).toEqual({ file: "binlog.000001", pos: 4567, gtid: null });
  });

  it("a standalone DDL (GTID + query, no BEGIN) is a transaction at a commit boundary", async () => {
    const { txns, feed } = await startReader({ start: { file: "binlog.000001", pos: 4, gtid: `${UUID_A}:1-9` } });
    feed(mysqlGtid(`${UUID_A}:10`), query("CREATE TABLE `t2` (`id` int NOT NULL, PRIMARY KEY (`id`))", "shop", 1500));
    expect(txns).toHaveLength(1);
    expect(txns[0]).toMatchObject({ ddl: { sql: "CREATE TABLE `t2` (`id` int NOT NULL, PRIMARY KEY (`id`))", schema: "shop" }, changes: [], rowCount: 0 });
    expect(txns[0].pos).toEqual({ file: "binlog.000001", pos: 1500, gtid: `${UUID_A}:1-10` });
  });

  it("account statements arrive like DDL (the applier skips them)", async () => {
    const { txns, feed } = await startReader();
    feed(mysqlGtid(`${UUID_A}:1`), query("CREATE USER 'app'@'%' IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x'", "", 200));
    expect(txns[0].ddl?.sql).toMatch(/^CREATE USER/);
    expect(txns[0].ddl?.schema).toBe("");
  });

  it.each([
    "INSERT INTO orders VALUES (1, 'a')",
    "insert into orders values (1)",
    "UPDATE orders SET total = 0",
    "DELETE FROM orders WHERE id = 1",
    "REPLACE INTO orders VALUES (1)",
    "LOAD DATA INFILE '/tmp/x' INTO TABLE orders",
    "/* app=checkout */ UPDATE orders SET total = 1",
    "  \n DELETE FROM orders",
  ])("statement-format DML is flagged, not taken for DDL: %s", async (sql) => {
    const { txns, feed } = await startReader();
    feed(mysqlGtid(`${UUID_A}:2`), query("BEGIN"), query(sql, "shop"), xid(800));
    expect(txns).toHaveLength(1);
    expect(txns[0].statementDml).toEqual({ sql, schema: "shop" });
    expect(txns[0].ddl).toBeUndefined();
    expect(txns[0].pos.pos).toBe(800);
  });

  it("keeps the first DML statement of a transaction and also a COMMIT query as the boundary", async () => {
    const { txns, feed } = await startReader();
    feed(query("BEGIN"), query("INSERT INTO a VALUES (1)", "shop"), query("INSERT INTO b VALUES (2)", "shop"), query("COMMIT", "shop", 999));
    expect(txns).toHaveLength(1);
    expect(txns[0].statementDml?.sql).toBe("INSERT INTO a VALUES (1)");
    expect(txns[0].pos.pos).toBe(999);
  });

  it("SAVEPOINT inside a transaction does not end it", async () => {
    const { txns, feed } = await startReader();
    feed(mysqlGtid(`${UUID_A}:3`), query("BEGIN"), rowsEv("writerows", "shop", "orders", [{ id: 1 }]), query("SAVEPOINT `s1`"), rowsEv("writerows", "shop", "orders", [{ id: 2 }]), xid(1000));
    expect(txns).toHaveLength(1);
    expect(txns[0].rowCount).toBe(2);
  });

  it("ROLLBACK ends a transaction (the rows logged in it did happen: non-transactional tables)", async () => {
    const { txns, feed } = await startReader();
    feed(query("BEGIN"), rowsEv("writerows", "shop", "myisam_t", [{ id: 1 }]), query("ROLLBACK", "shop", 1100));
    expect(txns).toHaveLength(1);
    expect(txns[0].pos.pos).toBe(1100);
    expect(txns[0].rowCount).toBe(1);
  });
});

describe("BinlogReader: row changes", () => {
  it("merges consecutive row events of one table and operation; splits on a change of either", async () => {
    const { txns, feed } = await startReader();
    feed(
      query("BEGIN"),
      rowsEv("writerows", "shop", "orders", [{ id: 1 }]),
      rowsEv("writerows", "shop", "orders", [{ id: 2 }]),
      rowsEv("writerows", "shop", "items", [{ id: 9 }]),
      rowsEv("updaterows", "shop", "orders", [{ before: { id: 1, v: "a" }, after: { id: 1, v: "b" } }, { before: { id: 2, v: "a" }, after: { id: 3, v: "a" } }]),
      rowsEv("deleterows", "shop", "orders", [{ id: 3, v: "a" }]),
      rowsEv("writerows", "shop", "orders", [{ id: 4 }]),
      xid(2000),
    );
    expect(txns).toHaveLength(1);
    expect(txns[0].changes).toEqual([
      { op: "insert", db: "shop", table: "orders", rows: [{ id: 1 }, { id: 2 }], before: undefined },
      { op: "insert", db: "shop", table: "items", rows: [{ id: 9 }], before: undefined },
      { op: "update", db: "shop", table: "orders", rows: [{ id: 1, v: "b" }, { id: 3, v: "a" }], before: [{ id: 1, v: "a" }, { id: 2, v: "a" }] },
      { op: "delete", db: "shop", table: "orders", rows: [{ id: 3, v: "a" }], before: undefined },
      { op: "insert", db: "shop", table: "orders", rows: [{ id: 4 }], before: undefined },
    ]);
    expect(txns[0].rowCount).toBe(7);
  });

  it("marks changes whose rows event had NO_FOREIGN_KEY_CHECKS_F (a MySQL 9.6+ cascade, logged before its parent) and keeps them apart", async () => {
    const { txns, feed } = await startReader();
    // flags as MySQL 9.7 writes them: 0x10 on every rows event; 0x02 on the cascaded child rows; 0x01 ends the statement
    const flagged = (e: ReturnType<typeof rowsEv>, flags: number) => ({ ...e, flags });
    feed(
      query("BEGIN"),
      flagged(rowsEv("deleterows", "shop", "kid", [{ id: 20, pid: 2 }]), 0x12),
      flagged(rowsEv("deleterows", "shop", "kid", [{ id: 21, pid: 2 }]), 0x11),
      flagged(rowsEv("deleterows", "shop", "parent", [{ id: 2 }]), 0x11),
      xid(2100),
    );
    expect(txns[0].changes).toEqual([
      { op: "delete", db: "shop", table: "kid", rows: [{ id: 20, pid: 2 }], before: undefined, noFkChecks: true },
      { op: "delete", db: "shop", table: "kid", rows: [{ id: 21, pid: 2 }], before: undefined },
      { op: "delete", db: "shop", table: "parent", rows: [{ id: 2 }], before: undefined },
    ]);
  });

  it("drops rows of tables out of scope, yet delivers the transaction (the position moves)", async () => {
    const { txns, feed } = await startReader();
    feed(query("BEGIN"), rowsEv("writerows", "shop", "audit_log", [{ id: 1 }]), rowsEv("writerows", "other", "t", [{ id: 1 }]), xid(3000));
    expect(txns).toHaveLength(1);
    expect(txns[0].changes).toEqual([]);
    expect(txns[0].rowCount).toBe(0);
    expect(txns[0].pos.pos).toBe(3000);
  });

  it("ignores row events without a table map", async () => {
    const { txns, feed } = await startReader();
    feed(query("BEGIN"), ev("writerows", { tableId: 5, tableMap: {}, rows: [{ id: 1 }] }), xid(10));
    expect(txns[0].changes).toEqual([]);
  });

  it("estimates memory from the row contents", async () => {
    const { txns, feed } = await startReader();
    feed(query("BEGIN"), rowsEv("writerows", "shop", "docs", [{ id: 1, body: "x".repeat(10_000) }]), xid(1));
    feed(query("BEGIN"), rowsEv("writerows", "shop", "docs", [{ id: 1, body: Buffer.alloc(50_000) }]), xid(2));
    expect(txns[0].bytes).toBeGreaterThan(20_000);
    expect(txns[1].bytes).toBeGreaterThan(50_000);
  });

  it("events between transactions (xid without BEGIN) still produce a position", async () => {
    const { txns, feed } = await startReader();
    feed(xid(77));
    expect(txns).toHaveLength(1);
    expect(txns[0].pos.pos).toBe(77);
  });
});

describe("BinlogReader: positions and flow control", () => {
  it("takes the current file name from zongji (rotations) and keeps the offset when an event carries none", async () => {
    const { txns, feed, z } = await startReader();
    feed(query("BEGIN"), xid(500));
    z.options.filename = "binlog.000002";
    feed(query("BEGIN"), xid(0));
    feed(query("BEGIN"), xid(250));
    expect(txns.map((t) => [t.pos.file, t.pos.pos])).toEqual([
      ["binlog.000001", 500],
      ["binlog.000002", 500],
      ["binlog.000002", 250],
    ]);
  });

  it("pauses the connection when the consumer is full, and resumes it", async () => {
    let accept = false;
    const { r, z, feed } = await startReader({ onTxn: () => accept });
    expect(r.paused).toBe(false);
    feed(query("BEGIN"), xid(10));
    expect(r.paused).toBe(true);
    expect(z.connection.pause).toHaveBeenCalledTimes(1);
    feed(query("BEGIN"), xid(20));
    expect(z.connection.pause).toHaveBeenCalledTimes(1);
    accept = true;
    r.resume();
    r.resume();
    expect(r.paused).toBe(false);
    expect(z.connection.resume).toHaveBeenCalledTimes(1);
  });

  it("an exception while assembling goes to onError once, and nothing after it is delivered as healthy", async () => {
    const { errors, feed, txns } = await startReader({ start: { file: "binlog.000001", pos: 4, gtid: `${UUID_A}:1-5` } });
    feed(mysqlGtid("not-a-gtid"), query("BEGIN"), xid(10));
    feed(mysqlGtid("also-bad"), query("BEGIN"), xid(20));
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/GTID/);
    expect(txns).toHaveLength(0);
  });
});

describe("BinlogReader: transactions larger than the budget arrive in pieces", () => {
  const ids = (ts: Txn[]) => ts.flatMap((t) => t.changes.flatMap((c) => (c.op === "insert" ? c.rows.map((r) => r.id) : [c.op + ":" + (c.savepoint ?? "")])));
  const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ id: from + i }));

  it("hands over the rows so far each time they pass streamBytes, then the rest with the commit", async () => {
    const { txns, feed } = await startReader({ streamBytes: 2000 });
    feed(mysqlGtid(`${UUID_A}:7`), query("BEGIN"));
    for (let i = 0; i < 10; i++) feed(rowsEv("writerows", "shop", "orders", rows(i * 5 + 1, 5)));
    feed(xid(9000));
    // 5 rows of ~172 bytes per event: a piece every third event
    expect(txns.map((t) => t.stream)).toEqual(["part", "part", "part", "last"]);
    // in order, nothing lost or twice
    expect(ids(txns)).toEqual(rows(1, 50).map((r) => r.id));
    // a piece is no commit: it stands at the position before the transaction; the last one carries the commit
    expect(txns[0].pos).toEqual({ file: "binlog.000001", pos: 4 });
    expect(txns[3].pos).toEqual({ file: "binlog.000001", pos: 9000, gtid: `${UUID_A}:7` });
    // a piece holds at most streamBytes plus one rows event
    for (const t of txns.slice(0, 3)) expect(t.bytes).toBeLessThan(2000 + 5 * 200);
  });

  it("a small transaction stays whole, and so does a large one while the consumer takes no pieces (a snapshot)", async () => {
    let can = false;
    const { txns, feed } = await startReader({ streamBytes: 2000, canStream: () => can });
    feed(query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(1, 3)), xid(100));
    feed(query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(4, 40)), xid(200));
    expect(txns.map((t) => [t.stream, t.rowCount])).toEqual([[undefined, 3], [undefined, 40]]);
    can = true;
    feed(query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(44, 40)), xid(300));
    expect(txns.slice(2).map((t) => t.stream)).toEqual(["part", "last"]);
  });

  it("the prepared part of an XA transaction stays whole (MySQL XA START; MariaDB's flag in the GTID event)", async () => {
    const my = await startReader({ streamBytes: 1000 });
    my.feed(mysqlGtid(`${UUID_A}:3`), query("XA START X'01',X'',1"), rowsEv("writerows", "shop", "orders", rows(1, 40)), query("XA END X'01',X'',1"), ev("xaprepare", { onePhase: false }));
    my.feed(mysqlGtid(`${UUID_A}:4`), query("XA COMMIT X'01',X'',1", "shop", 800));
    expect(my.txns.map((t) => [t.stream, t.rowCount])).toEqual([[undefined, 40]]);
    const ma = await startReader({ streamBytes: 1000, flavor: "mariadb" });
    ma.feed({ ...mariaGtid(0, 1, 5), preparedXa: true }, rowsEv("writerows", "shop", "orders", rows(1, 40)), query("XA END X'02',X'',1"), query("XA PREPARE X'02',X'',1"));
    ma.feed({ ...mariaGtid(0, 1, 6), completedXa: true }, query("XA COMMIT X'02',X'',1", "shop", 900));
    expect(ma.txns.map((t) => [t.stream, t.rowCount])).toEqual([[undefined, 40]]);
  });

  it("an open savepoint gets its marker in the piece where it was set, so a later ROLLBACK TO finds it", async () => {
    const { txns, feed } = await startReader({ streamBytes: 1500 });
    feed(query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(1, 2)), query("SAVEPOINT `s1`"), rowsEv("writerows", "shop", "myisam_t", rows(3, 10)));
    feed(rowsEv("writerows", "shop", "myisam_t", rows(13, 2)), query("ROLLBACK TO SAVEPOINT `s1`"), rowsEv("writerows", "shop", "orders", rows(15, 1)), xid(700));
    expect(txns.map((t) => t.stream)).toEqual(["part", "last"]);
    expect(ids(txns)).toEqual([1, 2, "savepoint:s1", ...rows(3, 12).map((r) => r.id), "rollback-to:s1", 15]);
  });

  it("a transaction in pieces that ends without a commit (a new one begins) is handed over as aborted", async () => {
    const { txns, feed } = await startReader({ streamBytes: 1000 });
    feed(mysqlGtid(`${UUID_A}:3`), query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(1, 20)));
    feed(mysqlGtid(`${UUID_A}:4`), query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(100, 1)), xid(500));
    expect(txns.map((t) => t.stream)).toEqual(["part", "abort", undefined]);
    expect(txns[2].changes[0].rows).toEqual([{ id: 100 }]);
  });

  it("a full consumer pauses the connection at a piece", async () => {
    const { r, feed } = await startReader({ streamBytes: 1000, onTxn: () => false });
    feed(query("BEGIN"), rowsEv("writerows", "shop", "orders", rows(1, 20)));
    expect(r.paused).toBe(true);
  });
});

describe("BinlogReader: schema for binlogs without column names (MySQL 5.7)", () => {
  it("uses the replica's columns; falls back to the source's when the replica has none or fails", async () => {
    const info = vi.fn(async (db: string, table: string) => (table === "orders" ? [{ COLUMN_NAME: "id" }] : table === "boom" ? Promise.reject(new Error("x")) : null));
    const { z, feed, txns } = await startReader({ tableInfo: info });
    const call = (tableId: number, tableName: string) =>
      new Promise<void>((resolve) => z._fetchTableInfo({ tableId, schemaName: "shop", tableName }, () => resolve()));
    await call(1, "orders");
    expect(info).toHaveBeenCalledWith("shop", "orders");
    expect(z.tableMap[1]).toEqual({ columnSchemas: [{ COLUMN_NAME: "id" }], parentSchema: "shop", tableName: "orders", ownSchema: true });
    expect(z.fetched).toHaveLength(0);
    // rows decoded through it mark their transaction: its values are this replica's, never shared (SharedBuilds)
    feed(query("BEGIN"), ev("writerows", { tableId: 1, tableMap: z.tableMap, rows: [{ id: 1 }] }), xid(300));
    feed(query("BEGIN"), rowsEv("writerows", "shop", "orders", [{ id: 2 }]), xid(400));
    expect(txns.map((t) => t.ownSchema)).toEqual([true, undefined]);
    await call(2, "missing");
    expect(z.tableMap[2]).toMatchObject({ columnSchemas: "from-source" });
    await call(3, "boom");
    expect(z.tableMap[3]).toMatchObject({ columnSchemas: "from-source" });
    expect(z.fetched).toHaveLength(2);
  });
});

/** the same Position type is what the checkpoint stores */
const _typecheck: Position = { file: "binlog.000001", pos: 4, gtid: null };
void _typecheck;

describe("BinlogReader: fidelity (issue #15)", () => {
  it("MariaDB XA: the prepared part (no XA START; XA END names it) is applied with its XA COMMIT", async () => {
    const { txns, feed } = await startReader({ flavor: "mariadb" });
    feed(
      mariaGtid(0, 1, 3),
      rowsEv("writerows", "shop", "xa", [{ id: 1 }]),
      query("XA END X'7831',X'',1"),
      ev("xaprepare", { nextPosition: 900 }),
      mariaGtid(0, 1, 4),
      query("XA COMMIT X'7831',X'',1", "shop", 1000),
    );
    const withRows = txns.filter((t) => t.changes.length);
    expect(withRows).toHaveLength(1);
    expect(withRows[0].changes[0].rows).toEqual([{ id: 1 }]);
    expect(withRows[0].pos.gtid).toBe("0-1-4");
  });

  it("a prepared XA transaction is handed to the replica's next reader (reconnect before its commit)", async () => {
    const first = await startReader({ flavor: "mariadb" });
    first.feed(mariaGtid(0, 1, 3), rowsEv("writerows", "shop", "xa", [{ id: 4 }]), query("XA END X'7834',X'62',7"), ev("xaprepare", { nextPosition: 900 }));
    const second = await startReader({ flavor: "mariadb", start: { file: "binlog.000001", pos: 900, gtid: "0-1-3" }, xaParked: first.r.xaParked });
    second.feed(mariaGtid(0, 1, 4), query("XA COMMIT X'7834',X'62',7", "shop", 1000));
    expect(second.txns.flatMap((t) => t.changes.flatMap((c) => c.rows))).toEqual([{ id: 4 }]);
  });

  it("MySQL XA: the prepared part's GTID joins the position only with its commit", async () => {
    const { txns, feed } = await startReader({ flavor: "mysql" });
    feed(
      mysqlGtid(`${UUID_A}:1`),
      query("XA START X'7831',X'',1"),
      rowsEv("writerows", "shop", "xa", [{ id: 1 }]),
      query("XA END X'7831',X'',1"),
      ev("xaprepare", { nextPosition: 900 }),
      mysqlGtid(`${UUID_A}:2`),
      query("BEGIN"),
      xid(950),
    );
    feed(mysqlGtid(`${UUID_A}:3`), query("XA COMMIT X'7831',X'',1", "shop", 1000));
    expect(txns[0].pos.gtid).toBe(`${UUID_A}:2`);
    expect(txns[1].pos.gtid).toBe(`${UUID_A}:1-3`);
    expect(txns[1].changes[0].rows).toEqual([{ id: 1 }]);
  });

  it("ROLLBACK TO SAVEPOINT becomes a savepoint marker where it was set and a rollback marker in place", async () => {
    const { txns, feed } = await startReader({ flavor: "mariadb" });
    feed(
      mariaGtid(0, 1, 9),
      query("BEGIN"),
      rowsEv("writerows", "shop", "t", [{ id: 1 }]),
      query("SAVEPOINT `s`"),
      query("SAVEPOINT unused"),
      rowsEv("writerows", "shop", "t", [{ id: 2 }]),
      rowsEv("writerows", "shop", "m", [{ id: 1 }]),
      query("ROLLBACK TO `s`"),
      rowsEv("writerows", "shop", "t", [{ id: 3 }]),
      xid(700),
    );
    expect(txns[0].changes.map((c) => [c.op, c.savepoint ?? c.table])).toEqual([
      ["insert", "t"],
      ["savepoint", "s"],
      ["insert", "t"],
      ["insert", "m"],
      ["rollback-to", "s"],
      ["insert", "t"],
    ]);
  });

  it("ROLLBACK WORK and RELEASE SAVEPOINT are no rollbacks to a savepoint", async () => {
    const { txns, feed } = await startReader({ flavor: "mariadb" });
    feed(mariaGtid(0, 1, 9), query("BEGIN"), query("SAVEPOINT a"), rowsEv("writerows", "shop", "t", [{ id: 1 }]), query("RELEASE SAVEPOINT a"), xid(700));
    expect(txns[0].changes.map((c) => c.op)).toEqual(["insert"]);
  });

  it("a rotation between transactions hands over an empty transaction at the new position (idle lag stays 0)", async () => {
    const { txns, feed } = await startReader({ flavor: "mariadb", start: { file: "binlog.000001", pos: 500, gtid: "0-1-5" } });
    feed(ev("rotate", { binlogName: "binlog.000001", position: 4 }), ev("format", { nextPosition: 256 }));
    expect(txns).toHaveLength(0); // behind the start: nothing handed over
    feed(ev("rotate", { binlogName: "binlog.000002", position: 4 }), ev("format", { nextPosition: 256 }));
    expect(txns.map((t) => [t.pos.file, t.pos.pos, t.changes.length, t.pos.gtid])).toEqual([
      ["binlog.000002", 4, 0, "0-1-5"],
      ["binlog.000002", 256, 0, "0-1-5"],
    ]);
  });
});

describe("rowdecode", async () => {
  const { decodeText, decodeTime2 } = await import("../../agent/source/rowdecode.js");
  it("latin1: all 256 bytes decode to distinct characters, the five cp1252 holes to their C1 controls", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const s = decodeText(all, "latin1") as string;
    expect(typeof s).toBe("string");
    expect(new Set(s).size).toBe(256);
    for (const b of [0x81, 0x8d, 0x8f, 0x90, 0x9d]) expect(s.charCodeAt(b)).toBe(b);
    expect(s.charCodeAt(0x80)).toBe(0x20ac);
  });
  it("other charsets keep their bytes, tagged for the introducer; invalid UTF-8 too", () => {
    const w: any = decodeText(Buffer.from([0x98, 0xc0]), "cp1251");
    expect(Buffer.isBuffer(w)).toBe(true);
    expect(w.charset).toBe("cp1251");
    const bad = decodeText(Buffer.from([0xff, 0x41]), "utf8mb4") as any;
    expect(Buffer.isBuffer(bad)).toBe(true);
    expect(decodeText(Buffer.from("h\u00e9 \u{1F600}"), "utf8mb4")).toBe("h\u00e9 \u{1F600}");
  });
  it("TIME2: negative values with zero seconds, zero fractions and fractions (the server's packing)", () => {
    const enc = (sign: 1 | -1, h: number, m: number, s: number, us: number, dec: number) => {
      // the server's my_time_packed_to_binary
      const packed = ((BigInt((h << 12) | (m << 6) | s) << 24n) + BigInt(us)) * BigInt(sign);
      const b = Buffer.alloc(6);
      if (dec >= 5) {
        b.writeUIntBE(Number(packed + 0x800000000000n), 0, 6);
        return b;
      }
      // MY_PACKED_TIME_GET_INT_PART is an arithmetic shift, GET_FRAC_PART a C remainder (the sign of the value)
      const ip = packed >> 24n;
      const frac = packed % (1n << 24n);
      b.writeUIntBE(Number(ip + 0x800000n), 0, 3);
      if (dec >= 3) b.writeInt16BE(Number(frac / 100n), 3);
      else if (dec >= 1) b.writeInt8(Number(frac / 10000n), 3);
      return b;
    };
    expect(decodeTime2(enc(-1, 1, 0, 0, 0, 0), 0, 0).value).toBe("-01:00:00");
    expect(decodeTime2(enc(-1, 0, 0, 1, 0, 0), 0, 0).value).toBe("-00:00:01");
    expect(decodeTime2(enc(-1, 838, 59, 59, 0, 0), 0, 0).value).toBe("-838:59:59");
    expect(decodeTime2(enc(1, 838, 59, 59, 0, 0), 0, 0).value).toBe("838:59:59");
    expect(decodeTime2(enc(-1, 1, 0, 0, 1, 6), 0, 6)).toEqual({ value: "-01:00:00.000001", size: 6 });
    expect(decodeTime2(enc(-1, 0, 0, 0, 500000, 6), 0, 6).value).toBe("-00:00:00.500000");
    expect(decodeTime2(enc(-1, 12, 34, 56, 789000, 3), 0, 3)).toEqual({ value: "-12:34:56.789", size: 5 });
    expect(decodeTime2(enc(-1, 0, 0, 1, 500000, 1), 0, 1)).toEqual({ value: "-00:00:01.5", size: 4 });
  });
});
