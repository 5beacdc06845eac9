// The session's schema prewarm (two INFORMATION_SCHEMA queries for whole databases) must describe every
// table exactly as the per-table load does: columns, generated columns (not columns with an expression
// default), types, key, other unique keys.
import { afterAll, beforeAll, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { loadDatabasesMeta, loadTableMeta, SchemaCache } from "../../agent/tables.js";

let s: TestServer;

beforeAll(async () => {
  [s] = await startServers([{ name: "prewarm" }]);
  await s.query("CREATE DATABASE a");
  await s.query("CREATE DATABASE b");
  // ts and d have expression defaults (MySQL's EXTRA says DEFAULT_GENERATED): data columns, written like any other
  await s.query(
    "CREATE TABLE a.t1 (id INT PRIMARY KEY, v VARCHAR(10), g INT AS (id * 2) VIRTUAL, s INT AS (id + 1) STORED, u INT, ts TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, d DATETIME DEFAULT CURRENT_TIMESTAMP, UNIQUE KEY (u))",
  );
  await s.query("CREATE TABLE a.t2 (k1 VARBINARY(8) NOT NULL, k2 INT NOT NULL, d DECIMAL(10,2), PRIMARY KEY (k2, k1))");
  await s.query("CREATE TABLE a.nokey (x INT)");
  await s.query("CREATE VIEW a.v AS SELECT id FROM a.t1");
  await s.query("CREATE TABLE b.`we``ird` (`col one` INT PRIMARY KEY, j JSON)");
});

afterAll(async () => {
  await s?.destroy();
});

it("describes every base table of the databases exactly as the per-table load does, views excluded", async () => {
  const c = await s.connect();
  try {
    const all = await loadDatabasesMeta(c, ["a", "b"]);
    expect(all.map((m) => `${m.db}.${m.table}`).sort()).toEqual(["a.nokey", "a.t1", "a.t2", "b.we`ird"]);
    for (const m of all) expect(m).toEqual(await loadTableMeta(c, m.db, m.table));
    const t1 = all.find((m) => m.table === "t1")!;
    expect(t1.writable).toEqual(["id", "v", "u", "ts", "d"]);
    expect(t1.hasSecondaryUnique).toBe(true);
    expect(all.find((m) => m.table === "t2")!.primaryKey).toEqual(["k2", "k1"]);
    // the cache serves prewarmed tables without asking again, and still loads others lazily
    const cache = new SchemaCache(() => c);
    expect(await cache.prewarm(["a"])).toBe(3);
    expect(cache.peek("a", "t2")?.primaryKey).toEqual(["k2", "k1"]);
    expect(cache.peek("b", "we`ird")).toBeUndefined();
    expect((await cache.get("b", "we`ird"))?.primaryKey).toEqual(["col one"]);
  } finally {
    await c.end();
  }
});
