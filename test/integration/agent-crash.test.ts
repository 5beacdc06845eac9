// Exactly-once under crashes: a concurrent writer (inserts, updates, deletes, key changes cascading
// through foreign keys, rollbacks, DDL mid-stream) while the agent is killed with SIGKILL at random
// moments and restarted. Replicas end identical, and replica-side triggers prove that no source
// transaction was applied twice (an upsert replay would be invisible to a checksum).
import { afterAll, beforeAll, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, tableList, waitCaughtUp, writeConfig } from "../support/agent.js";
import { AUDIT_TRIGGERS, SCHEMA_SQL, Writer } from "../support/load.js";

let src: TestServer;
let reps: TestServer[];
let agent: AgentProcess | null = null;

beforeAll(async () => {
  [src, ...reps] = await startServers([{ name: "crash-src" }, { name: "crash-r1" }, { name: "crash-r2" }]);
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, ...reps].map((s) => s?.destroy()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("keeps every replica identical across SIGKILLs, applying each source transaction exactly once", async () => {
  const cfgFile = writeConfig(makeConfig(src, reps, { apply: { maxRows: 500 } }));
  agent = new AgentProcess(cfgFile);
  await agent.waitStreaming(["r1", "r2"]);
  for (const s of SCHEMA_SQL) await src.query(s);
  for (const t of AUDIT_TRIGGERS) await src.query(t);
  for (const r of reps) {
    await waitCaughtUp(src, r);
    // the audit schema is not synced: each replica gets its own table and triggers
    await r.query(SCHEMA_SQL[1]);
    await r.query(SCHEMA_SQL[SCHEMA_SQL.length - 1]);
    for (const t of AUDIT_TRIGGERS) await r.query(t);
  }
  // the source's trigger DDL was held back, not applied
  for (const r of reps) {
    const held = await r.query<any[]>("SELECT statement FROM _datasync.held_ddl WHERE group_name = 'test'");
    expect(held.map((h) => h.statement).join("\n")).toContain("ledger_ai");
  }

  const writer = new Writer(src, { ddlEveryMs: 1500 });
  writer.start(2);
  const kills = 4;
  for (let i = 0; i < kills; i++) {
    await sleep(1000 + Math.random() * 2000);
    const code = await agent.kill("SIGKILL");
    expect(code).toBe(-1);
    await sleep(200 + Math.random() * 800);
    agent = new AgentProcess(cfgFile);
    await agent.waitStreaming(["r1", "r2"]);
  }
  await sleep(1500);
  const stats = await writer.stop();
  expect(stats.committed).toBeGreaterThan(50);
  expect(stats.rolledBack).toBeGreaterThan(0);
  expect(stats.ddl).toBeGreaterThan(3);

  for (const r of reps) await waitCaughtUp(src, r, "test", 90_000);
  const tables = await tableList(src, "shop");
  expect(tables.length).toBeGreaterThanOrEqual(5);
  const want = await checksums(src, tables);
  const [srcAudit] = await src.query<any[]>("SELECT COUNT(*) AS n FROM audit.applied");
  for (const r of reps) {
    expect(await tableList(r, "shop")).toEqual(tables);
    expect(await checksums(r, tables)).toEqual(want);
    const [a] = await r.query<any[]>("SELECT COUNT(*) AS n FROM audit.applied");
    const dups = await r.query<any[]>("SELECT ledger_id, version, op, COUNT(*) AS n FROM audit.applied GROUP BY ledger_id, version, op HAVING COUNT(*) > 1");
    expect(dups).toEqual([]);
    expect(Number(a.n)).toBe(Number(srcAudit.n));
    // the schema of the source (including columns added mid-stream) is the replica's
    expect(await r.query("SHOW CREATE TABLE shop.orders")).toEqual(await src.query("SHOW CREATE TABLE shop.orders"));
  }
  await agent.kill("SIGTERM");
  expect(await agent.exited).toBe(0);
});
