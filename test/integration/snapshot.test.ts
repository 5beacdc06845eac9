// Online snapshot: a replica without a checkpoint is seeded while the source keeps writing; the copy
// cannot overwrite newer data with older; a SIGKILL mid-snapshot resumes without starting over; a table
// brought into scope later is copied alone; a purged binlog position asks for (and gets) a resnapshot.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, binlogStatus, checksums, makeConfig, runCli, tableList, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";
import { prefill, SCHEMA_SQL, Writer } from "../support/load.js";
import { seq } from "../support/sql.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function expectIdentical(src: TestServer, reps: TestServer[], db = "shop") {
  const tables = await tableList(src, db);
  const want = await checksums(src, tables);
  for (const r of reps) {
    expect(await tableList(r, db)).toEqual(tables);
    expect(await checksums(r, tables)).toEqual(want);
  }
}

describe("online snapshot under load", () => {
  let src: TestServer;
  let reps: TestServer[];
  let agent: AgentProcess | null = null;

  beforeAll(async () => {
    [src, ...reps] = await startServers([{ name: "snap-src" }, { name: "snap-r1" }, { name: "snap-r2" }]);
    for (const s of SCHEMA_SQL.filter((q) => !q.includes("audit"))) await src.query(s);
    await prefill(src, 100_000);
  });

  afterAll(async () => {
    await agent?.kill("SIGKILL");
    await Promise.all([src, ...reps].map((s) => s?.destroy()));
  });

  it("seeds two replicas while a writer runs, survives a SIGKILL mid-copy by resuming, and ends identical", { timeout: 240_000 }, async () => {
    try {
      await seedUnderLoad();
    } catch (e: any) {
      // keep the agent's story with the failure
      e.message += `\n--- agent log (tail) ---\n${agent?.stdoutText.slice(-8000)}`;
      throw e;
    }
  });

  async function seedUnderLoad() {
    const cfg = makeConfig(src, reps, { snapshot: { chunkRows: 2000, rowsPerSecond: 60_000 } });
    const cfgFile = writeConfig(cfg);
    const writer = new Writer(src, { idBase: 1_000_000 });
    writer.start(2);
    agent = new AgentProcess(cfgFile);
    await agent.waitForLog((l) => l.replica === "r1" && /^snapshot \d+%/.test(l.msg ?? "") && l.rowsCopied > 0, 30_000);
    // progress is visible: /readyz not ready, status and metrics show the copy
    const ready = await agent.http("/readyz");
    expect(ready.status).toBe(503);
    const snap = ready.body.replicas[0].snapshot;
    expect(snap.done).toBe(false);
    expect(snap.rowsEstimate).toBeGreaterThan(300_000);
    // parents before children: the copy order follows the foreign keys
    expect(snap.tables.map((t: any) => t.table)).toEqual(["shop.customers", "shop.ledger", "shop.orders", "shop.order_lines"]);
    const status = runCli(["status", "--config", cfgFile]);
    expect(status.code).toBe(0);
    // (listen port 0 in the test config: status reads the progress from _datasync on the replica)
    expect(status.stdout).toMatch(/r1\s+snapshot\s+snapshot \d+% \(\d+\/\d+ rows\)/);
    const m = await agent.http("/metrics");
    expect(Number(/datasync_snapshot_rows_total\{group="test",replica="r1"\} (\d+)/.exec(m.text)?.[1])).toBeGreaterThan(0);

    // crash in the middle of the copy: while a table is well inside its copy
    await sleep(1000);
    await waitFor(
      async () => {
        const rows = await reps[0].query<any[]>("SELECT rows_copied AS c, rows_estimate AS e FROM _datasync.snapshot WHERE group_name = 'test' AND state = 'copying'");
        return rows.some((r) => Number(r.c) > 0 && Number(r.c) < Number(r.e) - 20_000);
      },
      30_000,
      "a table in the middle of its copy",
    );
    await agent.kill("SIGKILL");
    const [before] = await reps[0].query<any[]>("SELECT SUM(rows_copied) AS n FROM _datasync.snapshot WHERE group_name = 'test' AND state <> 'done'");
    expect(Number(before.n)).toBeGreaterThan(0);
    agent = new AgentProcess(cfgFile);
    const resumed = await agent.waitForLog((l) => l.replica === "r1" && /snapshot resumes where it stopped/.test(l.msg ?? ""), 30_000);
    expect(resumed.tables.reduce((a: number, t: any) => a + t.rowsCopied, 0)).toBe(Number(before.n));
    for (const name of ["r1", "r2"]) await agent.waitForLog((l) => l.replica === name && /snapshot complete/.test(l.msg ?? ""), 120_000);
    await sleep(500);
    const stats = await writer.stop();
    expect(stats.committed).toBeGreaterThan(20);
    for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
    await expectIdentical(src, reps);
    await waitFor(async () => (await agent!.http("/readyz")).status === 200, 20_000, "ready after the snapshot");
    // the copy resumed rather than started over: 500,000 source rows (plus the writer's), each copied once
    const [copied] = await reps[0].query<any[]>("SELECT SUM(rows_copied) AS n FROM _datasync.snapshot WHERE group_name = 'test'");
    expect(Number(copied.n)).toBeGreaterThan(490_000);
    expect(Number(copied.n)).toBeLessThan(500_000 + 20_000);
  }
});

describe("snapshot correctness and scope changes", () => {
  let src: TestServer;
  let rep: TestServer;
  let agent: AgentProcess | null = null;
  let cfgFile: string;

  beforeAll(async () => {
    [src, rep] = await startServers([{ name: "snap2-src" }, { name: "snap2-r1" }]);
    await src.query("CREATE DATABASE shop");
    await src.query("CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(20), f FLOAT, d DOUBLE, b BLOB, y YEAR, g INT AS (id * 2) VIRTUAL)");
    await src.query(`INSERT INTO shop.items (id, v, f, d, b, y) SELECT seq, CONCAT('v', seq), seq + 0.1000001, 0.1 + 0.2 + seq, UNHEX(HEX(seq)), IF(seq % 2, 0, 1999) FROM ${seq(5000, { db: "shop" })}`);
    await src.query("CREATE TABLE shop.extra (k VARBINARY(16) NOT NULL, n INT NOT NULL, PRIMARY KEY (k, n))");
    await src.query(`INSERT INTO shop.extra SELECT UNHEX(HEX(seq % 7)), seq FROM ${seq(3000, { db: "shop" })}`);
  });

  afterAll(async () => {
    await agent?.kill("SIGKILL");
    await Promise.all([src, rep].map((s) => s?.destroy()));
  });

  it("never overwrites newer data with an older chunk, nor resurrects a deleted row", async () => {
    cfgFile = writeConfig(makeConfig(src, [rep], { tables: { exclude: ["shop.extra"] }, snapshot: { chunkRows: 1000, rowsPerSecond: 0 } }));
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_CHUNK_PAUSE_MS: "3000" });
    const paused = await agent.waitForLog((l) => /test hook: chunk read/.test(l.msg ?? ""), 30_000);
    expect(paused.table).toBe("shop.items");
    // rows 5 and 6 are in the chunk just read (keys 1..1000); change them while the chunk waits
    await src.query("UPDATE shop.items SET v = 'newer' WHERE id = 5");
    await src.query("DELETE FROM shop.items WHERE id = 6");
    await src.query("UPDATE shop.items SET id = 100000 WHERE id = 7");
    // the stream applies the update before the chunk is written
    await waitFor(async () => (await rep.query<any[]>("SELECT v FROM shop.items WHERE id = 5"))[0]?.v === "newer", 10_000, "the streamed update");
    await agent.waitForLog((l) => /snapshot complete/.test(l.msg ?? ""), 30_000);
    await waitCaughtUp(src, rep);
    expect(await rep.query("SELECT id, v FROM shop.items WHERE id IN (5, 6, 7, 100000) ORDER BY id")).toEqual([
      { id: 5, v: "newer" },
      { id: 100000, v: "v7" },
    ]);
    expect(await checksums(rep, ["shop.items"])).toEqual(await checksums(src, ["shop.items"]));
    expect(await rep.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' ORDER BY 1")).toEqual([{ TABLE_NAME: "items" }]);
  });

  it("copies a table added to the filters later without disturbing the others", async () => {
    await agent!.kill("SIGTERM");
    const [itemsBefore] = await rep.query<any[]>("SELECT rows_copied AS n, started_at AS s FROM _datasync.snapshot WHERE tbl = 'items'");
    cfgFile = writeConfig(makeConfig(src, [rep], { snapshot: { chunkRows: 1000, rowsPerSecond: 0 } }));
    agent = new AgentProcess(cfgFile);
    const l = await agent.waitForLog((x) => /newly in scope/.test(x.msg ?? ""), 20_000);
    expect(l.tables).toEqual(["shop.extra"]);
    await agent.waitForLog((x) => /snapshot complete/.test(x.msg ?? ""), 30_000);
    await src.query("INSERT INTO shop.extra VALUES (X'00', 999999)");
    await waitCaughtUp(src, rep);
    await expectIdentical(src, [rep]);
    const [itemsAfter] = await rep.query<any[]>("SELECT rows_copied AS n, started_at AS s FROM _datasync.snapshot WHERE tbl = 'items'");
    expect(itemsAfter).toEqual(itemsBefore);
  });

  it("reports a purged binlog position as needing a new snapshot, and resnapshot brings the replica back", async () => {
    await agent!.kill("SIGTERM");
    await src.query("INSERT INTO shop.items (id, v) VALUES (200000, 'while stopped')");
    await src.query("FLUSH BINARY LOGS");
    const st = await binlogStatus(src);
    // a binlog dump thread of the stopped agent may linger a moment and keep its file from being purged
    await waitFor(
      async () => {
        await src.query(`PURGE BINARY LOGS TO '${st.File}'`);
        const logs = await src.query<any[]>("SHOW BINARY LOGS");
        return logs[0].Log_name === st.File;
      },
      15_000,
      "the old binlog files to be purged",
    );
    agent = new AgentProcess(cfgFile);
    const purged = await agent.waitForLog((x) => x.replica === "r1" && x.level === "error" && /purged/.test(x.msg ?? ""), 20_000);
    expect(purged.msg).toMatch(/needs a new snapshot: run `datasync resnapshot/);
    const ready = await agent.http("/readyz");
    expect(ready.body.replicas[0].state).toBe("needs-snapshot");
    // it does not retry in a loop
    await sleep(2500);
    expect(agent.logs.filter((x) => x.replica === "r1" && /purged/.test(x.msg ?? "")).length).toBe(1);
    const res = runCli(["resnapshot", "--config", cfgFile, "--replica", "r1"]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/marked for a new snapshot/);
    await agent.waitForLog((x) => x.replica === "r1" && /resnapshot requested/.test(x.msg ?? ""), 20_000);
    await agent.waitForLog((x) => x.replica === "r1" && /snapshot complete/.test(x.msg ?? "") && Date.parse(x.time) > Date.parse(purged.time), 30_000);
    await waitCaughtUp(src, rep);
    await expectIdentical(src, [rep]);
    expect(await rep.query("SELECT v FROM shop.items WHERE id = 200000")).toEqual([{ v: "while stopped" }]);
  });
});

describe("snapshot chunks and foreign-key cascades", () => {
  let src: TestServer;
  let rep: TestServer;
  let agent: AgentProcess | null = null;

  beforeAll(async () => {
    [src, rep] = await startServers([{ name: "snap3-src" }, { name: "snap3-r1" }]);
    await src.query("CREATE DATABASE fk");
    await src.query("CREATE TABLE fk.parent (id INT PRIMARY KEY, v VARCHAR(20))");
    await src.query(
      "CREATE TABLE fk.kid_del (id INT PRIMARY KEY, pid INT NOT NULL, CONSTRAINT kd FOREIGN KEY (pid) REFERENCES fk.parent (id) ON DELETE CASCADE ON UPDATE CASCADE)",
    );
    await src.query("CREATE TABLE fk.kid_null (id INT PRIMARY KEY, pid INT NULL, CONSTRAINT kn FOREIGN KEY (pid) REFERENCES fk.parent (id) ON DELETE SET NULL ON UPDATE CASCADE)");
    await src.query(`INSERT INTO fk.parent SELECT seq, CONCAT('p', seq) FROM ${seq(300, { db: "fk" })}`);
    await src.query(`INSERT INTO fk.kid_del SELECT seq, seq % 300 + 1 FROM ${seq(3000, { db: "fk" })}`);
    await src.query(`INSERT INTO fk.kid_null SELECT seq, seq % 300 + 1 FROM ${seq(3000, { db: "fk" })}`);
  });

  afterAll(async () => {
    await agent?.kill("SIGKILL");
    await Promise.all([src, rep].map((s) => s?.destroy()));
  });

  it("a parent deleted or re-keyed while a child chunk waits cascades on the replica as on the source (cascades are not in the binlog)", async () => {
    const cfgFile = writeConfig(makeConfig(src, [rep], { databases: ["fk"], snapshot: { chunkRows: 1000, rowsPerSecond: 0 } }));
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_CHUNK_PAUSE_MS: "3000", DATASYNC_TEST_CHUNK_PAUSE_TABLE: "fk.kid_null" });
    const paused = await agent.waitForLog((l) => /test hook: chunk read/.test(l.msg ?? ""), 30_000);
    expect(paused.table).toBe("fk.kid_null");
    // the chunk just read holds kid_null rows 1..1000, which reference parents 1..300
    await src.query("DELETE FROM fk.parent WHERE id IN (2, 3, 4)"); // kid_null.pid set to NULL, kid_del rows deleted
    await src.query("UPDATE fk.parent SET id = 1000 WHERE id = 5"); // kid_null.pid and kid_del.pid follow
    await src.query("INSERT INTO fk.kid_null VALUES (5000, 1000)");
    await agent.waitForLog((l) => /snapshot complete/.test(l.msg ?? ""), 30_000);
    await waitCaughtUp(src, rep);
    const [nulls] = await rep.query<any[]>("SELECT COUNT(*) AS n FROM fk.kid_null WHERE pid IS NULL");
    expect(Number(nulls.n)).toBe(30);
    const [gone] = await rep.query<any[]>("SELECT COUNT(*) AS n FROM fk.kid_del WHERE pid IN (2, 3, 4)");
    expect(Number(gone.n)).toBe(0);
    await expectIdentical(src, [rep], "fk");
  });

  it("a table whose copy had started but whose first chunk never landed is copied afresh after a crash (no stale streamed rows)", async () => {
    await agent?.kill("SIGTERM");
    await src.query("CREATE DATABASE rs");
    await src.query("CREATE TABLE rs.a (id INT PRIMARY KEY)");
    await src.query(`INSERT INTO rs.a SELECT seq FROM ${seq(10, { db: "rs" })}`);
    await src.query("CREATE TABLE rs.t (id INT PRIMARY KEY, v INT NOT NULL)");
    await src.query(`INSERT INTO rs.t SELECT seq, seq FROM ${seq(2000, { db: "rs" })}`);
    const cfgFile = writeConfig(makeConfig(src, [rep], { group: "restart", databases: ["rs"], snapshot: { chunkRows: 1000, rowsPerSecond: 0 } }));
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_CHUNK_PAUSE_TABLE: "rs.a:3000,rs.t:60000", DATASYNC_TEST_APPLY_DELAY_MS: "1500" });
    await agent.waitForLog((l) => /test hook: chunk read/.test(l.msg ?? "") && l.table === "rs.a", 30_000);
    // while rs.a's chunk waits (the stream holds at it), rs.t changes; rs.t's copy starts after rs.a's, and
    // the stream, lagging (the delay), applies that change after it started but before rs.t's first chunk
    // lands (as an upsert: the row is not there yet)
    await src.query("UPDATE rs.t SET v = -5 WHERE id = 5");
    await agent.waitForLog((l) => /test hook: chunk read/.test(l.msg ?? "") && l.table === "rs.t", 30_000);
    await waitFor(async () => (await rep.query<any[]>("SELECT v FROM rs.t WHERE id = 5"))[0]?.v === -5, 10_000, "the streamed upsert");
    await agent.kill("SIGKILL"); // the first chunk never lands: the table is still pending
    await src.query("UPDATE rs.t SET v = 555 WHERE id = 5");
    // the stream reaches that change before the copy of rs.t starts again: it skips it (the table is pending)
    agent = new AgentProcess(cfgFile, { DATASYNC_TEST_COPY_START_DELAY_MS: "2000" });
    try {
      await agent.waitForLog((l) => /snapshot complete/.test(l.msg ?? ""), 30_000);
      await waitCaughtUp(src, rep, "restart");
    } catch (e: any) {
      e.message += `\n--- agent log (tail) ---\n${agent?.stdoutText.slice(-6000)}`;
      throw e;
    }
    expect(await rep.query("SELECT v FROM rs.t WHERE id = 5")).toEqual([{ v: 555 }]);
    await expectIdentical(src, [rep], "rs");
  });
});
