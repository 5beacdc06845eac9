// DDL racing the online snapshot, on both flavors. The replica's tables are created from the source's
// definitions while the stream runs from a position taken before: a DDL between that position and the
// definitions must reach the replica exactly once (not replayed on a table that already has it, not lost),
// a table dropped or created meanwhile must be neither missing nor doubled, a table seeded alone (resnapshot
// --tables) while the stream is behind a DDL on it must not get that DDL twice, and a DDL between two chunk
// reads of a table must not break or skew its copy.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, runCli, tableList, waitCaughtUp, writeConfig } from "../support/agent.js";
import { seq } from "../support/sql.js";

let src: TestServer;
let rep: TestServer;
let agent: AgentProcess | null = null;

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "snapddl-src" }, { name: "snapddl-r1" }]);
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

/** the replica applied everything the source wrote and did not stop on an error */
async function settle(group: string): Promise<void> {
  const a = agent!;
  const check = () => {
    const s = a.logs.find((l) => l.level === "error" || l.level === "fatal");
    if (s) throw new Error(`the agent reported an error: ${s.msg}`);
  };
  // waitFor retries through errors: an error the agent reported ends the wait at once instead
  const until = async (fn: () => Promise<boolean>, what: string) => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      check();
      if (await fn()) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  };
  try {
    await until(async () => a.logs.some((l) => /snapshot complete/.test(l.msg ?? "")), "the snapshot to complete");
    await until(() => waitCaughtUp(src, rep, group, 300).then(() => true, () => false), "the replica to catch up");
  } catch (e: any) {
    e.message += `\n--- agent log (tail) ---\n${a.stdoutText.slice(-6000)}`;
    throw e;
  }
}

async function expectIdentical(db: string): Promise<void> {
  const tables = await tableList(src, db);
  expect(await tableList(rep, db)).toEqual(tables);
  expect(await checksums(rep, tables)).toEqual(await checksums(src, tables));
  // the same columns, in the same order (a column added twice or lost shows here first)
  const cols = (s: TestServer) =>
    s.query<any[]>("SELECT TABLE_NAME AS t, GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? GROUP BY TABLE_NAME ORDER BY 1", [db]);
  expect(await cols(rep)).toEqual(await cols(src));
}

describe("DDL racing the online snapshot", () => {
  it("a DDL, a DROP TABLE and a CREATE TABLE between the snapshot's start position and its reading of the definitions reach the replica exactly once", async () => {
    await src.query("CREATE DATABASE race1");
    await src.query("CREATE TABLE race1.t (id INT PRIMARY KEY, v INT NOT NULL)");
    await src.query(`INSERT INTO race1.t SELECT seq, seq FROM ${seq(500, { db: "race1" })}`);
    await src.query("CREATE TABLE race1.gone (id INT PRIMARY KEY)");
    await src.query("INSERT INTO race1.gone VALUES (1), (2)");
    const cfgFile = writeConfig(makeConfig(src, [rep], { group: "race1", databases: ["race1"] }));
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_SNAPSHOT_DEFS_PAUSE_MS: "2500" });
    await agent.waitForLog((l) => l.seam === "DATASYNC_TEST_SNAPSHOT_DEFS_PAUSE_MS", 30_000);
    // each on its own connection: whatever waits (a metadata lock) does not hold the others back
    await Promise.all([
      src.query("ALTER TABLE race1.t ADD COLUMN extra INT NOT NULL DEFAULT 7"),
      src.query("DROP TABLE race1.gone"),
      src.query("CREATE TABLE race1.side (id INT PRIMARY KEY, v VARCHAR(10))").then(() => src.query("INSERT INTO race1.side VALUES (1, 'a'), (2, 'b')")),
    ]);
    await src.query("INSERT INTO race1.t (id, v, extra) VALUES (1000, 1, 8)");
    await src.query("UPDATE race1.t SET extra = 9 WHERE id = 3");
    await settle("race1");
    await expectIdentical("race1");
    expect(await rep.query("SELECT id, v, extra FROM race1.t WHERE id IN (3, 1000) ORDER BY id")).toEqual([
      { id: 3, v: 3, extra: 9 },
      { id: 1000, v: 1, extra: 8 },
    ]);
    // the CREATE TABLE (no lock of the snapshot holds a new name back) made it read the definitions again
    expect(agent.logs.some((l) => /while the snapshot read their definitions/.test(l.msg ?? ""))).toBe(true);
    await agent.kill("SIGTERM");
  });

  it("a CREATE TABLE between the snapshot's listing of the tables and its check of their names reaches the replica (it was missing there)", async () => {
    await src.query("CREATE DATABASE race4");
    await src.query("CREATE TABLE race4.t (id INT PRIMARY KEY, v INT NOT NULL)");
    await src.query("INSERT INTO race4.t VALUES (1, 1), (2, 2)");
    const cfgFile = writeConfig(makeConfig(src, [rep], { group: "race4", databases: ["race4"] }));
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_SNAPSHOT_LIST_PAUSE_MS: "2500" });
    await agent.waitForLog((l) => l.seam === "DATASYNC_TEST_SNAPSHOT_LIST_PAUSE_MS", 30_000);
    // listed without it; before the fix its name was read after this, so the check after the position saw no change
    await src.query("CREATE TABLE race4.late (id INT PRIMARY KEY, v VARCHAR(10))");
    await src.query("INSERT INTO race4.late VALUES (1, 'a'), (2, 'b')");
    await settle("race4");
    await expectIdentical("race4");
    expect(await rep.query("SELECT id, v FROM race4.late ORDER BY id")).toEqual([
      { id: 1, v: "a" },
      { id: 2, v: "b" },
    ]);
    expect(agent.logs.some((l) => /while the snapshot read their definitions/.test(l.msg ?? ""))).toBe(true);
    await agent.kill("SIGTERM");
  });

  it("a table seeded alone (resnapshot --tables) while the stream is behind a DDL on it gets that DDL once", async () => {
    await src.query("CREATE DATABASE race2");
    await src.query("CREATE TABLE race2.t (id INT PRIMARY KEY, v INT NOT NULL)");
    await src.query(`INSERT INTO race2.t SELECT seq, seq FROM ${seq(300, { db: "race2" })}`);
    await src.query("CREATE TABLE race2.u (id INT PRIMARY KEY, v INT NOT NULL)");
    await src.query(`INSERT INTO race2.u SELECT seq, seq FROM ${seq(100, { db: "race2" })}`);
    const cfgFile = writeConfig(makeConfig(src, [rep], { group: "race2", databases: ["race2"] }));
    agent = new AgentProcess(cfgFile);
    await settle("race2");
    await agent.kill("SIGTERM");
    // the checkpoint stays before these: the next session's stream reads them again
    await src.query("ALTER TABLE race2.t ADD COLUMN extra INT NOT NULL DEFAULT 7");
    await src.query("CREATE INDEX ix_v ON race2.t (v)");
    await src.query("INSERT INTO race2.t (id, v, extra) VALUES (1000, 1, 8)");
    await src.query("UPDATE race2.u SET v = -v WHERE id <= 10");
    // race2.nope is not on the source: the request is dropped (it would restart the session every 5 s)
    const res = runCli(["resnapshot", "--config", cfgFile, "--replica", "r1", "--tables", "race2.t,race2.nope"]);
    expect(res.code, res.stderr).toBe(0);
    agent = new AgentProcess(cfgFile);
    await settle("race2");
    expect(agent.logs.some((l) => /requested for a table the source does not have/.test(l.msg ?? "") && l.table === "race2.nope")).toBe(true);
    expect(await rep.query("SELECT tbl FROM _datasync.snapshot WHERE group_name = 'race2' AND state = 'requested'")).toEqual([]);
    await expectIdentical("race2");
    // the stream read the ALTER and the CREATE INDEX again, before the position the definition was read at
    expect(agent.logs.filter((l) => /DDL not applied: the snapshot read these tables' definitions after it/.test(l.msg ?? "")).length).toBe(2);
    const idx = (s: TestServer) => s.query<any[]>("SELECT INDEX_NAME AS i FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'race2' AND TABLE_NAME = 't' ORDER BY 1");
    expect(await idx(rep)).toEqual(await idx(src));
    // a later DDL on that table is applied as usual
    await src.query("ALTER TABLE race2.t ADD COLUMN later INT NULL");
    await src.query("UPDATE race2.t SET later = id WHERE id <= 5");
    await waitCaughtUp(src, rep, "race2");
    await expectIdentical("race2");
    await agent.kill("SIGTERM");
  });

  it("a DDL between two chunk reads of a table: the next chunks are read with the new definition", async () => {
    await src.query("CREATE DATABASE race3");
    await src.query("CREATE TABLE race3.t (id INT PRIMARY KEY, v INT NOT NULL, w VARCHAR(10) NOT NULL)");
    await src.query(`INSERT INTO race3.t SELECT seq, seq, CONCAT('w', seq) FROM ${seq(3000, { db: "race3" })}`);
    const cfgFile = writeConfig(makeConfig(src, [rep], { group: "race3", databases: ["race3"], snapshot: { chunkRows: 1000, rowsPerSecond: 0 } }));
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_CHUNK_PAUSE_TABLE: "race3.t:2500" });
    const paused = await agent.waitForLog((l) => /test hook: chunk read/.test(l.msg ?? ""), 30_000);
    expect(paused.table).toBe("race3.t");
    // the first chunk (keys 1..1000) is read and waits; the next ones are read after these
    await src.query("ALTER TABLE race3.t DROP COLUMN w");
    await src.query("ALTER TABLE race3.t ADD COLUMN z INT NOT NULL DEFAULT 5");
    await src.query("UPDATE race3.t SET z = 9 WHERE id IN (10, 1500, 2500)");
    await settle("race3");
    await expectIdentical("race3");
    expect(await rep.query("SELECT id, z FROM race3.t WHERE id IN (10, 11, 1500, 1501, 2500) ORDER BY id")).toEqual([
      { id: 10, z: 9 },
      { id: 11, z: 5 },
      { id: 1500, z: 9 },
      { id: 1501, z: 5 },
      { id: 2500, z: 9 },
    ]);
    expect(agent.logs.some((l) => /definition changed on the source during its copy/.test(l.msg ?? "") && l.table === "race3.t")).toBe(true);
    await agent.kill("SIGTERM");
  });
});
