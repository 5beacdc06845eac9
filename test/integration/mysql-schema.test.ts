// MySQL 8+ table features and DDL, against real MySQL servers (registered in the mysql vitest project only):
// a source that generates invisible primary keys, invisible columns, functional indexes, CHECK constraints,
// JSON updates, expression defaults; copied by the snapshot (tables that exist at start) and streamed (tables
// created later), then DDL of MySQL 8 syntax: RENAME COLUMN, ALGORITHM=INSTANT, atomic multi-table DROP
// TABLE and RENAME TABLE. Replicas end identical, invisible columns included, and `datasync verify` agrees.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, runCli, tableList, waitCaughtUp, writeConfig } from "../support/agent.js";

let src: TestServer;
let reps: TestServer[];
let agent: AgentProcess | null = null;
let cfgFile: string;

/** the tables, each created once before the agent starts (snapshot) and once after (DDL in the stream) */
function tables(p: string): string[] {
  return [
    // the session generates an invisible primary key (my_row_id) for a table created without one
    `SET SESSION sql_generate_invisible_primary_key = ON; CREATE TABLE shop.${p}gipk (a INT NOT NULL, b VARCHAR(20)); SET SESSION sql_generate_invisible_primary_key = OFF`,
    `CREATE TABLE shop.${p}inv (id INT PRIMARY KEY, v INT, secret VARCHAR(20) INVISIBLE, g INT AS (v * 2) VIRTUAL INVISIBLE)`,
    `CREATE TABLE shop.${p}fidx (id INT PRIMARY KEY, name VARCHAR(40), doc JSON, INDEX ix_lower ((LOWER(name))), INDEX ix_doc ((CAST(doc->>'$.k' AS CHAR(20)))))`,
    `CREATE TABLE shop.${p}chk (id INT PRIMARY KEY, qty INT NOT NULL, CONSTRAINT ${p}qty_nonneg CHECK (qty >= 0), price DECIMAL(8,2) CHECK (price > 0))`,
    `CREATE TABLE shop.${p}dflt (id INT PRIMARY KEY, created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, touched DATETIME(3) DEFAULT (NOW(3)) ON UPDATE CURRENT_TIMESTAMP(3), tag VARCHAR(10) DEFAULT (UPPER('x')))`,
  ];
}

function rows(p: string): string[] {
  return [
    `INSERT INTO shop.${p}gipk (a, b) VALUES (1, 'one'), (2, 'two'), (3, 'three')`,
    `INSERT INTO shop.${p}inv (id, v, secret) VALUES (1, 10, 'hidden 1'), (2, 20, 'hidden 2'), (3, 30, NULL)`,
    `INSERT INTO shop.${p}fidx VALUES (1, 'Alice', '{"k": "a", "n": [1, 2]}'), (2, 'BOB', '{"k": "b"}'), (3, NULL, NULL)`,
    `INSERT INTO shop.${p}chk VALUES (1, 0, 1.50), (2, 7, 99.99)`,
    // explicit values in the past: a replica that let its defaults fill them would differ
    `INSERT INTO shop.${p}dflt (id, created, touched, tag) VALUES (1, '2001-02-03 04:05:06', '2002-03-04 05:06:07.891', 'given'), (2, '2011-12-13 14:15:16', NULL, NULL)`,
  ];
}

function changes(p: string): string[] {
  return [
    `UPDATE shop.${p}gipk SET b = 'TWO' WHERE a = 2`,
    `DELETE FROM shop.${p}gipk WHERE a = 3`,
    `INSERT INTO shop.${p}gipk (a, b) VALUES (4, 'four')`,
    `UPDATE shop.${p}inv SET secret = 'changed', v = v + 1 WHERE id = 2`,
    `UPDATE shop.${p}fidx SET doc = JSON_SET(doc, '$.n[1]', 3, '$.new', 'x') WHERE id = 1`,
    `UPDATE shop.${p}fidx SET doc = JSON_REMOVE(doc, '$.k'), name = 'Bobby' WHERE id = 2`,
    `UPDATE shop.${p}chk SET qty = qty + 5 WHERE id = 1`,
    `UPDATE shop.${p}dflt SET created = '1999-09-09 09:09:09', touched = '1999-09-09 09:09:09.999' WHERE id = 1`,
  ];
}

/**
 * SHOW CREATE TABLE as a definition: MySQL prints a column's charset when the statement that created it named
 * the collation (as SHOW CREATE's own output does), which is the same column; every column's charset and
 * collation are compared exactly through information_schema by columnDefs().
 */
function definition(ddl: string): string {
  return ddl.replace(/ CHARACTER SET (\w+) COLLATE (\1_\w+)/g, " COLLATE $2");
}

async function columnDefs(s: TestServer, table: string): Promise<unknown[]> {
  return s.query(
    `SELECT COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, GENERATION_EXPRESSION, COLUMN_KEY
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [table],
  );
}

/** every column, invisible ones included (SELECT * leaves them out) */
async function content(s: TestServer, table: string): Promise<unknown[]> {
  const cols = await s.query<any[]>("SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", [table]);
  const list = cols.map((c) => `\`${c.c}\``).join(", ");
  return s.query(`SELECT ${list} FROM shop.\`${table}\` ORDER BY ${cols.length > 1 ? "1, 2" : "1"}`);
}

async function expectSame(names: string[]): Promise<void> {
  for (const r of reps) await waitCaughtUp(src, r);
  for (const t of names) {
    const [[want]] = [await src.query<any[]>(`SHOW CREATE TABLE shop.\`${t}\``)];
    const data = await content(src, t);
    for (const r of reps) {
      const [[got]] = [await r.query<any[]>(`SHOW CREATE TABLE shop.\`${t}\``)];
      expect(definition(got["Create Table"]), `${t} on ${r.name}`).toBe(definition(want["Create Table"]));
      expect(await columnDefs(r, t), `${t} on ${r.name}`).toEqual(await columnDefs(src, t));
      expect(await content(r, t), `${t} on ${r.name}`).toEqual(data);
    }
  }
  const all = await tableList(src, "shop");
  for (const r of reps) {
    expect(await tableList(r, "shop")).toEqual(all);
    expect(await checksums(r, all)).toEqual(await checksums(src, all));
  }
}

beforeAll(async () => {
  [src, ...reps] = await startServers([{ name: "my-sch-src" }, { name: "my-sch-r1" }, { name: "my-sch-r2" }]);
  if (src.flavor !== "mysql") throw new Error("mysql-schema.test.ts runs in the mysql project only (DATASYNC_TEST_FLAVOR=mysql)");
  await src.query("CREATE DATABASE shop");
  for (const q of [...tables("s_"), ...rows("s_")]) await src.query(q);
  cfgFile = writeConfig(makeConfig(src, reps));
  agent = new AgentProcess(cfgFile);
  await agent.waitStreaming(["r1", "r2"], 60_000);
  for (const n of ["r1", "r2"]) await agent.waitForLog((l) => l.replica === n && /snapshot complete/.test(l.msg ?? ""), 60_000);
}, 240_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, ...(reps ?? [])].map((s) => s?.destroy()));
});

const NAMES = ["gipk", "inv", "fidx", "chk", "dflt"];

describe("MySQL table features", () => {
  it("copies tables with an invisible primary key, invisible columns, functional indexes, CHECKs, JSON and expression defaults", async () => {
    const [gipk] = await src.query<any[]>("SELECT COLUMN_NAME AS c, EXTRA AS e FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 's_gipk' AND COLUMN_KEY = 'PRI'");
    expect(gipk).toEqual({ c: "my_row_id", e: "auto_increment INVISIBLE" });
    for (const q of changes("s_")) await src.query(q);
    await expectSame(NAMES.map((n) => `s_${n}`));
  });

  it("streams the same tables created after the start, with their changes", async () => {
    for (const q of [...tables("t_"), ...rows("t_"), ...changes("t_")]) await src.query(q);
    await expectSame(NAMES.map((n) => `t_${n}`));
    // a change the CHECK refuses never reaches the binlog, nor the replicas
    await expect(src.query("UPDATE shop.t_chk SET qty = -1 WHERE id = 1")).rejects.toThrow(/t_qty_nonneg/);
  });

  it("replicates MySQL 8 DDL: RENAME COLUMN, ALGORITHM=INSTANT, atomic multi-table DROP and RENAME", async () => {
    await src.query("ALTER TABLE shop.t_inv RENAME COLUMN secret TO hidden_note");
    await src.query("ALTER TABLE shop.t_gipk ADD COLUMN c INT NOT NULL DEFAULT 7, ALGORITHM=INSTANT");
    await src.query("ALTER TABLE shop.t_gipk ADD COLUMN first_col VARCHAR(5) DEFAULT 'f' FIRST, ALGORITHM=INSTANT");
    await src.query("ALTER TABLE shop.t_chk DROP COLUMN price, ALGORITHM=INSTANT");
    await src.query("ALTER TABLE shop.t_fidx RENAME INDEX ix_lower TO ix_name_lower, ALTER INDEX ix_doc INVISIBLE");
    await src.query("UPDATE shop.t_inv SET hidden_note = 'renamed' WHERE id = 1");
    await src.query("INSERT INTO shop.t_gipk (a, b, c) VALUES (5, 'five', 55)");
    await src.query("CREATE TABLE shop.drop1 (id INT PRIMARY KEY); CREATE TABLE shop.drop2 (id INT PRIMARY KEY); INSERT INTO shop.drop1 VALUES (1)");
    await src.query("CREATE TABLE shop.ren_a (id INT PRIMARY KEY, v INT); CREATE TABLE shop.ren_b (id INT PRIMARY KEY); INSERT INTO shop.ren_a VALUES (1, 1)");
    await expectSame(["drop1", "drop2", "ren_a", "ren_b"]);
    await src.query("DROP TABLE shop.drop1, shop.drop2");
    // a swap through a third name, in one atomic statement
    await src.query("RENAME TABLE shop.ren_a TO shop.ren_tmp, shop.ren_b TO shop.ren_a, shop.ren_tmp TO shop.ren_b");
    await src.query("INSERT INTO shop.ren_b VALUES (2, 2); INSERT INTO shop.ren_a VALUES (9)");
    await expectSame(["t_inv", "t_gipk", "t_chk", "t_fidx", "ren_a", "ren_b"]);
    for (const r of reps) expect(await r.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME LIKE 'drop%'")).toEqual([]);
  });

  it("datasync verify compares every column, invisible ones included, and finds a difference in one", async () => {
    const ok = runCli(["verify", "--config", cfgFile]);
    expect(ok.stdout + ok.stderr).toMatch(/sha2 checksums/);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    await reps[1].query("UPDATE shop.s_inv SET secret = 'drift' WHERE id = 1; UPDATE shop.s_dflt SET created = '2020-01-01 00:00:00' WHERE id = 2");
    const bad = runCli(["verify", "--config", cfgFile]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/replica r2 .*: 2 tables differ/);
    expect(bad.stdout).toMatch(/shop\.s_inv: keys \[1 \.\. 3\]: 1 changed row \(1\)/);
    expect(bad.stdout).toMatch(/shop\.s_dflt: keys \[1 \.\. 2\]: 1 changed row \(2\)/);
    const fix = runCli(["repair", "--config", cfgFile]);
    expect(fix.code, fix.stdout + fix.stderr).toBe(0);
    expect(await content(reps[1], "s_inv")).toEqual(await content(src, "s_inv"));
  });
});
