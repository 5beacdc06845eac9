// MySQL's own resume paths, against real MySQL servers (registered in the mysql vitest project only): the
// checkpoint holds the source's GTID set and the agent resumes from it after a kill -9, a source restart,
// FLUSH BINARY LOGS, and even when the file of its binlog position was purged (the GTIDs after it were not);
// when transactions after the checkpoint were purged, the replica is needs-snapshot, not retried forever.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, binlogStatus, checksums, makeConfig, tableList, waitFor, writeConfig } from "../support/agent.js";
import { SCHEMA_SQL, Writer } from "../support/load.js";

let src: TestServer;
let rep: TestServer;
let agent: AgentProcess | null = null;
let cfgFile: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "my-res-src" }, { name: "my-res-r1" }]);
  if (src.flavor !== "mysql") throw new Error("mysql-resume.test.ts runs in the mysql project only (DATASYNC_TEST_FLAVOR=mysql)");
  for (const s of SCHEMA_SQL.filter((q) => !q.includes("audit"))) await src.query(s);
  cfgFile = writeConfig(makeConfig(src, [rep]));
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

async function checkpoint(): Promise<{ binlog_file: string; binlog_pos: string; gtid: string | null; state: string }> {
  const [row] = await rep.query<any[]>("SELECT binlog_file, binlog_pos, gtid, state FROM _datasync.checkpoints WHERE group_name = 'test'");
  return row;
}

/**
 * The replica's checkpoint holds exactly the source's executed GTID set, and its snapshot is complete. (The
 * stream can reach the source's GTID set while a table is still waiting for its copy after a kill -9: a table
 * still pending at a session's start is emptied and the stream skips it until its copy starts. Comparing then
 * showed shop.order_lines empty: the snapshot was not done, the agent said so in /readyz and status.)
 */
async function waitGtidCaughtUp(timeout = 60_000): Promise<string> {
  const want = String((await binlogStatus(src)).Executed_Gtid_Set).replace(/\s/g, "");
  await waitFor(async () => {
    const cp = await checkpoint();
    return cp?.gtid?.replace(/\s/g, "") === want && cp.state === "streaming";
  }, timeout, `the checkpoint to reach GTID set ${want} with the snapshot complete`);
  return want;
}

async function expectIdentical(): Promise<void> {
  const tables = await tableList(src, "shop");
  expect(tables.length).toBeGreaterThanOrEqual(4);
  expect(await tableList(rep, "shop")).toEqual(tables);
  expect(await checksums(rep, tables)).toEqual(await checksums(src, tables));
}

async function startAgent(): Promise<AgentProcess> {
  agent = new AgentProcess(cfgFile);
  await agent.waitStreaming(["r1"], 60_000);
  return agent;
}

describe("MySQL: resume by GTID set", () => {
  it("keeps the source's GTID set as the checkpoint and resumes from it after kill -9 under load", { timeout: 240_000 }, async () => {
    await startAgent();
    const writer = new Writer(src);
    writer.start(2);
    for (let i = 0; i < 3; i++) {
      await sleep(1200 + Math.random() * 800);
      expect(await agent!.kill("SIGKILL")).toBe(-1);
      await startAgent();
    }
    await sleep(1000);
    const stats = await writer.stop();
    expect(stats.committed).toBeGreaterThan(20);
    // the snapshot restarted with each kill: it may still be copying after the stream caught up
    const set = await waitGtidCaughtUp(150_000);
    expect(set).toMatch(/^[0-9a-f-]{36}:1-\d+$/);
    await expectIdentical();
  });

  it("resumes after a source restart and after FLUSH BINARY LOGS, with the agent running", async () => {
    const before = await checkpoint();
    await src.restart();
    await src.query("INSERT INTO shop.customers (id, name) VALUES (9000001, 'after restart')");
    await src.query("FLUSH BINARY LOGS");
    await src.query("INSERT INTO shop.customers (id, name) VALUES (9000002, 'after flush')");
    await waitGtidCaughtUp();
    const after = await checkpoint();
    expect(after.binlog_file).not.toBe(before.binlog_file);
    expect(await rep.query("SELECT name FROM shop.customers WHERE id > 9000000 ORDER BY id")).toEqual([{ name: "after restart" }, { name: "after flush" }]);
    await expectIdentical();
  });

  it("resumes by GTID when the file of its binlog position is purged but no transaction after it is", async () => {
    await waitGtidCaughtUp();
    await agent!.kill("SIGTERM");
    const cp = await checkpoint();
    await src.query("FLUSH BINARY LOGS");
    const st = await binlogStatus(src);
    // the dump thread of the stopped agent may linger a moment and keep its file from being purged
    await waitFor(
      async () => {
        await src.query(`PURGE BINARY LOGS TO '${st.File}'`);
        return (await src.query<any[]>("SHOW BINARY LOGS"))[0].Log_name === st.File;
      },
      15_000,
      "the older binlog files to be purged",
    );
    expect((await src.query<any[]>("SHOW BINARY LOGS")).map((l) => l.Log_name)).not.toContain(cp.binlog_file);
    await src.query("INSERT INTO shop.customers (id, name) VALUES (9000003, 'written after the purge')");
    await startAgent();
    await waitGtidCaughtUp();
    expect(await rep.query("SELECT name FROM shop.customers WHERE id = 9000003")).toEqual([{ name: "written after the purge" }]);
    expect(agent!.logs.filter((l) => l.level === "error")).toEqual([]);
    await expectIdentical();
  });

  it("reports needs-snapshot, once, when transactions after the checkpoint were purged", async () => {
    await waitGtidCaughtUp();
    await agent!.kill("SIGTERM");
    await src.query("INSERT INTO shop.customers (id, name) VALUES (9000004, 'lost to the purge')");
    await src.query("FLUSH BINARY LOGS");
    const st = await binlogStatus(src);
    await waitFor(
      async () => {
        await src.query(`PURGE BINARY LOGS TO '${st.File}'`);
        return (await src.query<any[]>("SHOW BINARY LOGS"))[0].Log_name === st.File;
      },
      15_000,
      "the older binlog files to be purged",
    );
    agent = new AgentProcess(cfgFile);
    const purged = await agent.waitForLog((l) => l.replica === "r1" && l.level === "error" && /purged/.test(l.msg ?? ""), 30_000);
    expect(purged.msg).toMatch(/needs a new snapshot: run `datasync resnapshot/);
    const ready = await agent.http("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body.replicas[0].state).toBe("needs-snapshot");
    // not retried in a loop: the state holds and no second attempt is logged
    await sleep(5000);
    expect((await agent.http("/readyz")).body.replicas[0].state).toBe("needs-snapshot");
    expect(agent.logs.filter((l) => l.replica === "r1" && /purged/.test(l.msg ?? ""))).toHaveLength(1);
    expect(await rep.query("SELECT id FROM shop.customers WHERE id = 9000004")).toEqual([]);
  });
});
