// Schema objects and statements as DESIGN.md says: DDL applied in order (tables, indexes, databases,
// views, routines, TRUNCATE, RENAME), trigger DDL held back, events created disabled, a table without
// a primary key quarantined, accounts never replicated, filters respected, statement-format DML stops the
// replica with a clear error, and a DDL interrupted by a crash applied exactly once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, waitCaughtUp, writeConfig } from "../support/agent.js";

let src: TestServer;
let r1: TestServer;
let r2: TestServer;
let agent: AgentProcess;
let cfgFile: string;

beforeAll(async () => {
  [src, r1, r2] = await startServers([{ name: "ddl-src" }, { name: "ddl-r1" }, { name: "ddl-r2" }]);
  cfgFile = writeConfig(makeConfig(src, [r1, r2], { databases: ["shop", "later"], tables: { exclude: ["shop.scratch_*"] } }));
  agent = new AgentProcess(cfgFile);
  await agent.waitStreaming(["r1", "r2"]);
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, r1, r2].map((s) => s?.destroy()));
});

async function caughtUp() {
  for (const r of [r1, r2]) await waitCaughtUp(src, r);
}

const objects = (s: TestServer) =>
  s.query<any[]>(
    `SELECT 'table' AS k, TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'
     UNION ALL SELECT 'routine', ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop'
     ORDER BY 1, 2`,
  );

describe("DDL and schema objects", () => {
  it("applies table, index, view, routine, truncate and rename DDL in order; filters excluded tables", async () => {
    await src.query("CREATE DATABASE shop");
    await src.query("CREATE TABLE shop.a (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB");
    await src.query("INSERT INTO shop.a VALUES (1, 'x'), (2, 'y'), (3, 'z')");
    await src.query("CREATE INDEX ix_v ON shop.a (v)");
    await src.query("ALTER TABLE shop.a ADD COLUMN w INT NOT NULL DEFAULT 5, DROP INDEX ix_v, ADD UNIQUE KEY uq_w_id (w, id)");
    await src.query("CREATE TABLE shop.b LIKE shop.a");
    await src.query("INSERT INTO shop.b SELECT * FROM shop.a");
    await src.query("TRUNCATE TABLE shop.a");
    await src.query("INSERT INTO shop.a VALUES (10, 'after', 1)");
    await src.query("RENAME TABLE shop.b TO shop.b2");
    await src.query("CREATE DEFINER=`nobody`@`%` SQL SECURITY INVOKER VIEW shop.v_a AS SELECT id, v FROM shop.a WHERE w > 0");
    await src.query("CREATE DEFINER=`root`@`localhost` FUNCTION shop.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2");
    await src.query("CREATE PROCEDURE shop.bump(IN n INT) BEGIN UPDATE shop.a SET w = w + n; SELECT 1; END");
    await src.query("CREATE TABLE shop.scratch_tmp (id INT PRIMARY KEY)"); // excluded by the filter
    await src.query("INSERT INTO shop.scratch_tmp VALUES (1)");
    await src.query("CALL shop.bump(2)");
    await caughtUp();
    for (const r of [r1, r2]) {
      expect(await objects(r)).toEqual((await objects(src)).filter((o) => o.n !== "scratch_tmp"));
      expect(await r.query("SHOW CREATE TABLE shop.a")).toEqual(await src.query("SHOW CREATE TABLE shop.a"));
      expect(await checksums(r, ["shop.a", "shop.b2"])).toEqual(await checksums(src, ["shop.a", "shop.b2"]));
      expect(await r.query("SELECT shop.twice(21) AS x")).toEqual([{ x: 42 }]);
      expect(await r.query("SELECT * FROM shop.v_a")).toEqual([{ id: 10, v: "after" }]);
    }
  });

  it("creates a listed database created later on the source and syncs it from its first statement", async () => {
    await src.query("CREATE DATABASE later");
    await src.query("CREATE TABLE later.t (id INT PRIMARY KEY, v JSON)");
    await src.query(`INSERT INTO later.t VALUES (1, '{"k": 1}')`);
    await src.query("CREATE DATABASE not_listed");
    await src.query("CREATE TABLE not_listed.t (id INT PRIMARY KEY)");
    await caughtUp();
    for (const r of [r1, r2]) {
      expect(await r.query("SELECT id, CAST(v AS CHAR) AS v FROM later.t")).toEqual([{ id: 1, v: '{"k": 1}' }]);
      expect(await r.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'not_listed'")).toEqual([]);
    }
  });

  it("holds trigger DDL back, creates events disabled, never replicates accounts", async () => {
    await src.query("CREATE TABLE shop.log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(50))");
    await src.query("CREATE TRIGGER shop.a_ai AFTER INSERT ON shop.a FOR EACH ROW INSERT INTO shop.log (msg) VALUES (CONCAT('a ', NEW.id))");
    await src.query("INSERT INTO shop.a VALUES (11, 'trig', 1)");
    await src.query("CREATE EVENT shop.ev_cleanup ON SCHEDULE EVERY 1 HOUR DO DELETE FROM shop.log WHERE id < 0");
    await src.query("CREATE USER 'app'@'%' IDENTIFIED BY 'S3cret-pw!'");
    await src.query("GRANT SELECT ON shop.* TO 'app'@'%'");
    await src.query("ALTER USER 'app'@'%' IDENTIFIED BY 'An0ther-pw!'");
    await src.query("INSERT INTO shop.a VALUES (12, 'users', 1)");
    await caughtUp();
    for (const r of [r1, r2]) {
      // the trigger's effect arrived as rows; the trigger itself is held back
      expect(await r.query("SELECT msg FROM shop.log ORDER BY id")).toEqual([{ msg: "a 11" }, { msg: "a 12" }]);
      expect(await r.query("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'")).toEqual([]);
      const held = await r.query<any[]>("SELECT statement FROM _datasync.held_ddl WHERE group_name = 'test'");
      expect(held.map((h) => h.statement)).toEqual([expect.stringMatching(/^CREATE .*TRIGGER shop.a_ai AFTER INSERT ON shop.a/)]);
      const [ev] = await r.query<any[]>("SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop' AND EVENT_NAME = 'ev_cleanup'");
      expect(ev.STATUS).toMatch(/DISABLED/);
      expect(await r.query("SELECT User FROM mysql.user WHERE User = 'app'")).toEqual([]);
    }
    const m = await agent.http("/metrics");
    expect(m.text).toMatch(/datasync_skipped_statements_total\{group="test",replica="r1",kind="account"\} 3/);
    expect(agent.stdoutText).not.toMatch(/S3cret-pw|An0ther-pw/);
  });

  it("an event renamed to a name that reads like a status clause keeps that name on the replicas, disabled", async () => {
    // ENABLE is no reserved word: `RENAME TO shop.enable` names the event, it sets no status
    await src.query("CREATE EVENT shop.ev_rename ON SCHEDULE EVERY 1 HOUR DO DELETE FROM shop.log WHERE id < 0");
    await src.query("ALTER EVENT shop.ev_rename RENAME TO shop.enable");
    await src.query("INSERT INTO shop.a VALUES (14, 'renamed', 1)");
    await caughtUp();
    for (const r of [r1, r2]) {
      const evs = await r.query<any[]>("SELECT EVENT_NAME AS n, STATUS AS s FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop' AND EVENT_NAME IN ('ev_rename', 'enable', 'disable')");
      expect(evs.map((e) => [String(e.n).toLowerCase(), String(e.s)])).toEqual([["enable", expect.stringMatching(/DISABLED/)]]);
    }
    await src.query("DROP EVENT shop.enable");
  });

  it("quarantines a table created without a primary key, and the others keep syncing", async () => {
    await src.query("CREATE TABLE shop.heap (a INT, b VARCHAR(10))");
    await src.query("INSERT INTO shop.heap VALUES (1, 'x')");
    await src.query("INSERT INTO shop.a VALUES (13, 'next', 1)");
    await caughtUp();
    await agent.waitForLog((l) => l.table === "shop.heap" && /quarantined/.test(l.msg));
    for (const r of [r1, r2]) {
      expect(await r.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'heap'")).toEqual([]);
      expect(await r.query("SELECT db, tbl FROM _datasync.quarantine")).toEqual([{ db: "shop", tbl: "heap" }]);
      expect(await r.query("SELECT id FROM shop.a WHERE id = 13")).toEqual([{ id: 13 }]);
    }
    const ready = await agent.http("/readyz");
    expect(ready.body.replicas[0].quarantined).toEqual(["shop.heap"]);
    const m = await agent.http("/metrics");
    expect(m.text).toMatch(/datasync_errors_total\{group="test",replica="r1",kind="quarantine"\} 1/);
    // dropping it on the source ends the quarantine (an agent start would refuse it, rule 4)
    await src.query("DROP TABLE shop.heap");
    await caughtUp();
    for (const r of [r1, r2]) expect(await r.query("SELECT db, tbl FROM _datasync.quarantine")).toEqual([]);
  });

  it("applies a DDL interrupted by a crash exactly once (before and after it ran)", async () => {
    for (const fault of ["ddl-marked", "ddl-ran"]) {
      await agent.kill("SIGTERM");
      agent = new AgentProcess(cfgFile, { DATASYNC_FAULT: fault });
      await agent.waitStreaming(["r1", "r2"]);
      await src.query(`ALTER TABLE shop.a ADD COLUMN c_${fault.replace("-", "_")} INT NOT NULL DEFAULT 3`);
      expect(await agent.exited).toBe(-1);
      expect(agent.stderr).toContain(`crashing at ${fault}`);
      agent = new AgentProcess(cfgFile);
      await agent.waitStreaming(["r1", "r2"]);
      await src.query("INSERT INTO shop.a (id, v) VALUES (?, 'post-crash')", [fault === "ddl-marked" ? 20 : 21]);
      await caughtUp();
      expect(agent.stdoutText).toMatch(fault === "ddl-marked" ? /before it took effect/ : /after it took effect/);
      for (const r of [r1, r2]) {
        expect(await r.query("SHOW CREATE TABLE shop.a")).toEqual(await src.query("SHOW CREATE TABLE shop.a"));
        expect(await checksums(r, ["shop.a"])).toEqual(await checksums(src, ["shop.a"]));
      }
    }
  });

  it("an event created just before a crash (its ALTER EVENT … DISABLE not run) is disabled, and stays so when the agent comes back", async () => {
    await agent.kill("SIGTERM");
    agent = new AgentProcess(cfgFile, { DATASYNC_FAULT: "ddl-before-after" });
    await agent.waitStreaming(["r1", "r2"]);
    await src.query("CREATE EVENT shop.ev_crash ON SCHEDULE EVERY 1 DAY DO DELETE FROM shop.log WHERE id < 0");
    expect(await agent.exited).toBe(-1);
    expect(agent.stderr).toContain("crashing at ddl-before-after");
    // the replica that crashed holds the event as created: disabled by the statement itself (never enabled on a replica)
    const status = async (r: TestServer) =>
      (await r.query<any[]>("SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop' AND EVENT_NAME = 'ev_crash'")).map((e) => e.STATUS);
    const created = [...(await status(r1)), ...(await status(r2))];
    expect(created.length).toBeGreaterThanOrEqual(1);
    for (const st of created) expect(st).toMatch(/DISABLED/);
    agent = new AgentProcess(cfgFile);
    await agent.waitStreaming(["r1", "r2"]);
    await src.query("INSERT INTO shop.a (id, v) VALUES (22, 'ev-crash')");
    await caughtUp();
    expect(agent.stdoutText).toMatch(/after it took effect/);
    for (const r of [r1, r2]) expect(await status(r)).toEqual([expect.stringMatching(/DISABLED/)]);
  });

  it("stops a replica on statement-format DML in a synced schema, naming the position and statement", async () => {
    const c = await src.connect();
    try {
      await c.query("SET SESSION binlog_format = 'STATEMENT'");
      await c.query("UPDATE shop.a SET v = 'stmt' WHERE id = 10");
    } finally {
      await c.end();
    }
    for (const name of ["r1", "r2"]) {
      const l = await agent.waitForLog((x) => x.replica === name && x.level === "error" && /logged as a statement/.test(x.msg ?? ""));
      expect(l.msg).toMatch(/stopped at source position binlog\.\d+:\d+/);
      expect(l.msg).toContain("UPDATE shop.a SET v = 'stmt'");
    }
    const ready = await agent.http("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body.replicas.map((r: any) => r.state)).toEqual(["failed", "failed"]);
    expect(await r1.query("SELECT v FROM shop.a WHERE id = 10")).toEqual([{ v: "after" }]);
  });
});
