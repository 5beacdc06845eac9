// Fidelity of schema objects beyond plain tables (issue 15, the remaining cases): MariaDB sequences and
// system-versioned tables, views over databases outside the scope, ALTER TABLE … RENAME across the scope,
// an XA transaction prepared across an agent restart, and the snapshot of a table whose child rows a
// cascade removes while a chunk is in flight. Each is applied as native replication would, or reported.
// One source, one replica and one agent per flavor, shared by the cases (each works in its own objects).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, makeConfig, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";

const flavor = defaultFlavor();
const mariadb = flavor === "mariadb";
let src: TestServer;
let rep: TestServer;
let agent: AgentProcess;

const config = () => makeConfig(src, [rep], { databases: ["shop"], tables: { exclude: ["shop.stage_*"] } });

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "fo-src" }, { name: "fo-rep" }]);
  await src.query("CREATE DATABASE shop");
  await src.query("CREATE DATABASE other");
  // views at the snapshot: one over an unsynced database, one over a view named after it (created once its view exists)
  await src.query("CREATE TABLE other.src_t (id INT PRIMARY KEY, v INT)");
  await src.query("INSERT INTO other.src_t VALUES (1, 1)");
  await src.query("CREATE TABLE shop.t_in (id INT PRIMARY KEY, v INT)");
  await src.query("INSERT INTO shop.t_in VALUES (1, 10), (2, 20)");
  await src.query("CREATE VIEW shop.v_snap_other AS SELECT * FROM other.src_t");
  await src.query("CREATE VIEW shop.v_in AS SELECT id, v * 2 AS v2 FROM shop.t_in");
  await src.query("CREATE VIEW shop.a_v_on_v AS SELECT id FROM shop.v_in WHERE v2 > 25");
  if (mariadb) {
    // objects the initial snapshot must carry with their state
    await src.query("CREATE SEQUENCE shop.seq_snap START WITH 100 INCREMENT BY 5 CACHE 10");
    await src.query("SELECT NEXTVAL(shop.seq_snap), NEXTVAL(shop.seq_snap)");
    await src.query("CREATE TABLE shop.uses_seq (id BIGINT PRIMARY KEY DEFAULT NEXTVAL(shop.seq_snap), v INT)");
    await src.query("INSERT INTO shop.uses_seq (v) VALUES (1), (2)");
    // system-versioned tables with history (implicit period columns, and named ones)
    await src.query("CREATE TABLE shop.hist_snap (id INT PRIMARY KEY, v VARCHAR(10), w INT WITHOUT SYSTEM VERSIONING) WITH SYSTEM VERSIONING");
    await src.query("INSERT INTO shop.hist_snap VALUES (1, 'a', 0), (2, 'b', 0), (3, 'c', 0)");
    await src.query("UPDATE shop.hist_snap SET v = 'a2' WHERE id = 1");
    await src.query("DELETE FROM shop.hist_snap WHERE id = 2");
    await src.query(
      "CREATE TABLE shop.hist_named (id INT PRIMARY KEY, v INT, valid_from TIMESTAMP(6) GENERATED ALWAYS AS ROW START, valid_to TIMESTAMP(6) GENERATED ALWAYS AS ROW END, PERIOD FOR SYSTEM_TIME (valid_from, valid_to)) WITH SYSTEM VERSIONING",
    );
    await src.query("INSERT INTO shop.hist_named (id, v) VALUES (1, 1), (2, 2)");
    await src.query("UPDATE shop.hist_named SET v = v + 10");
  }
  agent = new AgentProcess(writeConfig(config()));
  await agent.waitStreaming(["r1"], 120_000);
}, 240_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

async function caughtUp(): Promise<void> {
  try {
    await waitCaughtUp(src, rep, "test", 30_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nagent logs:\n${agent.stdoutText.slice(-4000)}`);
  }
}

const both = async <T>(q: string): Promise<[T, T]> => [await src.query<T>(q), await rep.query<T>(q)];

async function expectSame(...queries: string[]): Promise<void> {
  for (const q of queries) {
    const [s, r] = await both(q);
    expect(r, q).toEqual(s);
  }
}

const views = async (s: TestServer) =>
  (await s.query<any[]>("SELECT TABLE_NAME AS v FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'shop' ORDER BY 1")).map((r) => r.v);

describe(`fidelity of schema objects (${flavor})`, () => {
  it("a view over an unsynced database or an excluded table is left out and reported by name; the others are created, the replica keeps streaming", async () => {
    await caughtUp();
    await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
    // snapshot: a view over a view is created whatever the order; the one over `other` is reported
    expect(await views(rep)).toEqual(["a_v_on_v", "v_in"]);
    await expectSame("SELECT * FROM shop.a_v_on_v", "SELECT * FROM shop.v_in ORDER BY id");
    await agent.waitForLog((l) => l.level === "warn" && /view `shop`\.`v_snap_other` not created/.test(String(l.msg)) && /`other`/.test(String(l.msg)), 5_000);
    // streaming: the same, and a DROP of the view left out finds nothing to drop
    await src.query("CREATE TABLE shop.stage_x (id INT PRIMARY KEY)");
    await src.query("CREATE VIEW shop.v_other AS SELECT o.id, t.v FROM other.src_t o JOIN shop.t_in t USING (id)");
    await src.query("CREATE VIEW shop.v_stage AS SELECT * FROM shop.stage_x");
    await src.query("CREATE VIEW shop.v_ok AS SELECT id FROM shop.t_in");
    await src.query("INSERT INTO shop.t_in VALUES (3, 30)");
    await src.query("DROP VIEW shop.v_other");
    await src.query("CREATE OR REPLACE VIEW shop.v_in AS SELECT id, v * 3 AS v2 FROM shop.t_in");
    await src.query("INSERT INTO shop.t_in VALUES (4, 40)");
    await caughtUp();
    expect(await views(rep)).toEqual(["a_v_on_v", "v_in", "v_ok"]);
    await expectSame("SELECT * FROM shop.t_in ORDER BY id", "SELECT * FROM shop.v_ok ORDER BY id", "SELECT * FROM shop.v_in ORDER BY id", "SELECT * FROM shop.a_v_on_v ORDER BY id");
    await agent.waitForLog((l) => l.level === "warn" && /view `shop`\.`v_other` not created/.test(String(l.msg)) && /`other`/.test(String(l.msg)), 5_000);
    await agent.waitForLog((l) => l.level === "warn" && /view `shop`\.`v_stage` not created/.test(String(l.msg)) && /`shop`\.`stage_x`/.test(String(l.msg)), 5_000);
    const metrics = (await agent.http("/metrics")).text;
    expect(metrics).toMatch(/datasync_skipped_statements_total\{[^}]*kind="view"[^}]*\} 3/);
    expect((await agent.http("/readyz")).body.replicas[0].state).toBe("streaming");
  });

  it("ALTER TABLE … RENAME across the scope, with other clauses: the table renamed out is dropped, the one renamed in is seeded online", async () => {
    await src.query("CREATE TABLE shop.alt_live (id INT PRIMARY KEY, v VARCHAR(10))");
    await src.query("INSERT INTO shop.alt_live VALUES (1, 'old'), (2, 'old')");
    await src.query("CREATE TABLE shop.stage_alt (id INT PRIMARY KEY, v VARCHAR(10))"); // excluded
    await src.query("INSERT INTO shop.stage_alt VALUES (1, 'new'), (3, 'new')");
    await src.query("CREATE TABLE shop.alt_move (id INT PRIMARY KEY)");
    await src.query("CREATE TABLE other.alt_src (id INT PRIMARY KEY, v INT)");
    await src.query("INSERT INTO other.alt_src VALUES (5, 50), (6, 60)");
    await caughtUp();
    expect(Number((await rep.query<any[]>("SELECT COUNT(*) AS n FROM shop.alt_live"))[0].n)).toBe(2);
    // a staging swap done with ALTER … RENAME, the incoming table altered in the same statement
    await src.query("ALTER TABLE shop.alt_live ADD COLUMN z INT, RENAME TO shop.stage_alt_old");
    await src.query("ALTER TABLE shop.stage_alt ADD COLUMN w INT NOT NULL DEFAULT 7, RENAME TO shop.alt_live");
    await src.query("ALTER TABLE shop.alt_move RENAME other.alt_move"); // out to an unsynced database
    await src.query("ALTER TABLE other.alt_src RENAME AS shop.alt_in"); // in from one
    await src.query("INSERT INTO shop.alt_live VALUES (4, 'after', 8)");
    await src.query("UPDATE shop.alt_in SET v = 61 WHERE id = 6");
    const seeded = (t: string) =>
      waitFor(async () => (await rep.query<any[]>("SELECT COUNT(*) AS n FROM _datasync.snapshot WHERE db = 'shop' AND tbl = ? AND state = 'done'", [t]))[0].n > 0, 30_000, `${t} seeded`).catch((e) => {
        throw new Error(`${e.message}\n${agent.stdoutText.slice(-3000)}`);
      });
    await seeded("alt_live");
    await seeded("alt_in");
    await caughtUp();
    await expectSame(
      "SELECT * FROM shop.alt_live ORDER BY id",
      "SELECT * FROM shop.alt_in ORDER BY id",
      "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_DEFAULT, IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'alt_live' ORDER BY ORDINAL_POSITION",
    );
    expect(await rep.query("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ('shop', 'other') AND TABLE_NAME IN ('stage_alt_old', 'stage_alt', 'alt_move')")).toEqual([]);
    expect((await rep.query<any[]>("SELECT * FROM shop.alt_live ORDER BY id")).map((r) => r.w)).toEqual([7, 7, 8]);
  });

  it("an XA transaction prepared before an agent kill -9 and committed after the restart: its rows arrive once", async () => {
    await src.query("CREATE TABLE shop.xa_t (id INT PRIMARY KEY, v INT)");
    await caughtUp();
    // replica-side counters of every row write (a row applied twice counts twice)
    await rep.query("CREATE DATABASE IF NOT EXISTS audit");
    await rep.query("CREATE TABLE audit.writes (n INT NOT NULL)");
    await rep.query("INSERT INTO audit.writes VALUES (0)");
    await rep.query("CREATE TRIGGER shop.xa_ins AFTER INSERT ON shop.xa_t FOR EACH ROW UPDATE audit.writes SET n = n + 1");
    await rep.query("CREATE TRIGGER shop.xa_upd AFTER UPDATE ON shop.xa_t FOR EACH ROW UPDATE audit.writes SET n = n + 1");
    const c = await src.connect({ multipleStatements: false });
    try {
      await c.query("XA START 'restart1'");
      await c.query("INSERT INTO shop.xa_t VALUES (1, 1), (2, 2)");
      await c.query("XA END 'restart1'");
      await c.query("XA PREPARE 'restart1'");
      // later transactions move the checkpoint past the prepared part
      await src.query("INSERT INTO shop.xa_t VALUES (10, 10)");
      await caughtUp();
      await agent.kill("SIGKILL");
      agent = new AgentProcess(writeConfig(config()));
      await agent.waitStreaming(["r1"], 60_000);
      await src.query("INSERT INTO shop.xa_t VALUES (11, 11)");
      await caughtUp();
      await c.query("XA COMMIT 'restart1'");
    } finally {
      await c.end();
    }
    await src.query("INSERT INTO shop.xa_t VALUES (12, 12)");
    await caughtUp();
    await expectSame("SELECT * FROM shop.xa_t ORDER BY id");
    expect((await rep.query<any[]>("SELECT id FROM shop.xa_t ORDER BY id")).map((r) => r.id)).toEqual([1, 2, 10, 11, 12]);
    expect(Number((await rep.query<any[]>("SELECT n FROM audit.writes"))[0].n)).toBe(5);
    await rep.query("DROP TRIGGER shop.xa_ins");
    await rep.query("DROP TRIGGER shop.xa_upd");
  });

  // MySQL 9.6+ runs foreign keys in the SQL layer and logs cascaded child rows; with
  // innodb_native_foreign_keys=ON (as every MySQL before 9.6) InnoDB cascades unlogged. MariaDB never logs them.
  for (const native of mariadb ? [null] : [false, true]) {
    const variant = native === null ? "" : native ? " (InnoDB-native foreign keys: cascades not logged)" : " (cascades logged)";
    it(`snapshot: a child row removed by a cascade between its chunk's read and the chunk's high watermark does not come back${variant}`, async () => {
      const [s2, rep2] = native === null ? [src, ...(await startServers([{ name: "fo-rep2" }]))] : await startServers([{ name: "fo-src2", args: [`--innodb-native-foreign-keys=${native ? "ON" : "OFF"}`] }, { name: "fo-rep2" }]);
      await s2.query("CREATE DATABASE fk");
      await s2.query("CREATE TABLE fk.parent (id INT PRIMARY KEY)");
      await s2.query("CREATE TABLE fk.child (id INT PRIMARY KEY, pid INT NOT NULL, FOREIGN KEY (pid) REFERENCES fk.parent (id) ON DELETE CASCADE)");
      await s2.query("INSERT INTO fk.parent VALUES (1), (2)");
      await s2.query("INSERT INTO fk.child VALUES (10, 1), (11, 1), (20, 2)");
      const a = new AgentProcess(writeConfig(makeConfig(s2, [rep2], { group: "fk", databases: ["fk"] })), { DATASYNC_TEST_CHUNK_HI_DELAY: "fk.child:3000" });
      try {
        if (native !== null) {
          // the child's chunk is read (10, 11, 20); before its high watermark the parent goes, cascading
          await a.waitForLog((l) => /waiting before its high watermark/.test(String(l.msg)) && l.table === "fk.child", 60_000);
        } // a MariaDB source reads each chunk in a consistent snapshot: no watermark window (and no hook)
        await s2.query("DELETE FROM fk.parent WHERE id = 1");
        await waitFor(async () => (await rep2.query<any[]>("SELECT state FROM _datasync.checkpoints WHERE group_name = 'fk'"))[0]?.state === "streaming", 60_000, "snapshot done").catch((e) => {
          throw new Error(`${e.message}\n${a.stdoutText.slice(-3000)}`);
        });
        await waitCaughtUp(s2, rep2, "fk", 30_000);
        const q = "SELECT * FROM fk.child ORDER BY id";
        expect(await rep2.query(q)).toEqual(await s2.query(q));
        expect(await rep2.query(q)).toEqual([{ id: 20, pid: 2 }]);
      } finally {
        await a.kill("SIGKILL");
        await rep2.destroy();
        if (s2 !== src) await s2.destroy();
      }
    });
  }

  if (mariadb) {
    it("sequences: the snapshot copies their state, NEXTVAL/SETVAL/ALTER SEQUENCE/DROP stream as native replication does (MariaDB)", async () => {
      await caughtUp();
      await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
      await expectSame("SELECT * FROM shop.seq_snap", "SHOW CREATE SEQUENCE shop.seq_snap", "SELECT * FROM shop.uses_seq ORDER BY id");
      await src.query("CREATE SEQUENCE shop.seq START WITH 10 INCREMENT BY 3 MAXVALUE 1000 CACHE 4 CYCLE");
      for (let i = 0; i < 7; i++) await src.query("SELECT NEXTVAL(shop.seq)");
      await src.query("INSERT INTO shop.uses_seq (v) VALUES (3), (4), (5)");
      await caughtUp();
      await expectSame("SELECT * FROM shop.seq", "SELECT * FROM shop.seq_snap", "SELECT * FROM shop.uses_seq ORDER BY id");
      await src.query("SELECT SETVAL(shop.seq, 500)");
      await src.query("ALTER SEQUENCE shop.seq_snap RESTART WITH 7 INCREMENT BY 2");
      await src.query("SELECT NEXTVAL(shop.seq_snap)");
      await src.query("CREATE SEQUENCE shop.seq_gone");
      await src.query("DROP SEQUENCE shop.seq_gone");
      await caughtUp();
      await expectSame("SELECT * FROM shop.seq", "SELECT * FROM shop.seq_snap", "SHOW CREATE SEQUENCE shop.seq", "SHOW CREATE SEQUENCE shop.seq_snap");
      expect(await rep.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'seq_gone'")).toEqual([]);
      // the replica's next value is the source's next uncached one, as after native replication
      const [[s], [r]] = await both<any[]>("SELECT next_not_cached_value AS n FROM shop.seq");
      expect(Number(r.n)).toBe(Number(s.n));
      expect(Number(r.n)).toBeGreaterThan(500);
    });

    /** every physical row of a system-versioned table, current and history, with its period */
    const allRows = (t: string, start = "row_start", end = "row_end") => `SELECT *, ${start} AS s, ${end} AS e FROM shop.${t} FOR SYSTEM_TIME ALL ORDER BY id, e`;

    it("system-versioned tables: the snapshot copies current and history rows; INSERT/UPDATE/DELETE/REPLACE/DELETE HISTORY stream with the same periods (MariaDB)", async () => {
      await caughtUp();
      await waitFor(async () => (await rep.query<any[]>("SELECT state FROM _datasync.checkpoints"))[0]?.state === "streaming", 30_000, "snapshot done");
      await expectSame(allRows("hist_snap"), allRows("hist_named", "valid_from", "valid_to"), "SHOW CREATE TABLE shop.hist_snap", "SHOW CREATE TABLE shop.hist_named");
      expect((await rep.query<any[]>(allRows("hist_snap"))).length).toBe(4); // 2 current rows, 2 history rows
      await src.query("CREATE TABLE shop.hist (id INT PRIMARY KEY, v VARCHAR(10), n INT WITHOUT SYSTEM VERSIONING) WITH SYSTEM VERSIONING");
      await src.query("INSERT INTO shop.hist VALUES (1, 'a', 0), (2, 'b', 0), (3, 'c', 0), (4, 'd', 0)");
      await src.query("UPDATE shop.hist SET v = CONCAT(v, '+') WHERE id <= 3");
      await src.query("UPDATE shop.hist SET n = 5 WHERE id = 4"); // an unversioned column: changed in place, no history
      await src.query("DELETE FROM shop.hist WHERE id = 2");
      await src.query("REPLACE INTO shop.hist VALUES (3, 'r', 1)");
      await src.query("UPDATE shop.hist SET id = 10 WHERE id = 1"); // a key change
      await src.query("START TRANSACTION; UPDATE shop.hist SET v = 'x' WHERE id = 4; UPDATE shop.hist SET v = 'y' WHERE id = 4; COMMIT");
      await src.query("UPDATE shop.hist_snap SET v = 'c2' WHERE id = 3");
      await src.query("UPDATE shop.hist_named SET v = 0 WHERE id = 1");
      await caughtUp();
      await expectSame(allRows("hist"), allRows("hist_snap"), allRows("hist_named", "valid_from", "valid_to"), "SELECT * FROM shop.hist ORDER BY id");
      // history purged on the source: the same rows leave the replica
      const [cut] = await src.query<any[]>("SELECT MAX(row_end) AS e FROM shop.hist FOR SYSTEM_TIME ALL WHERE row_end < '2038-01-01' AND id = 2");
      await src.query(`DELETE HISTORY FROM shop.hist BEFORE SYSTEM_TIME TIMESTAMP'${cut.e}'`);
      await src.query("DELETE HISTORY FROM shop.hist_snap");
      await caughtUp();
      await expectSame(allRows("hist"), allRows("hist_snap"));
      const [s] = await both<any[]>(allRows("hist"));
      expect(s.length).toBeGreaterThan(4); // history remains after the partial purge
    });
  }
});
