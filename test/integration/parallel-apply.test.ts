// Parallel apply (issue 17; agent/README.md "Parallel apply"), against real servers on both flavors. A backlog of
// source transactions on independent tables (no foreign key, integer primary key, a secondary index) with keys
// inserted, updated again and again, deleted and inserted anew across consecutive transactions, interleaved with
// transactions on a parent/child pair (foreign keys: never run early): the agent catches up with batches run early on
// a second connection (its metric counts them), is SIGKILLed in the middle of that, starts again from its checkpoint,
// and the replica ends identical to the source: nothing lost, nothing twice, every key's last write last.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";

const flavor = defaultFlavor();
let src: TestServer;
let rep: TestServer;
let agent: AgentProcess | undefined;
const TABLES = ["shop.p", "shop.q", "shop.parent", "shop.child"];

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "pa-src" }, { name: "pa-r1" }]);
  for (const s of [src, rep]) {
    await s.query("CREATE DATABASE shop");
    await s.query("CREATE TABLE shop.p (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64) NOT NULL, KEY (k))");
    await s.query("CREATE TABLE shop.q (id BIGINT PRIMARY KEY, v VARCHAR(64))");
    await s.query("CREATE TABLE shop.parent (id INT PRIMARY KEY, v VARCHAR(32))");
    await s.query("CREATE TABLE shop.child (id INT PRIMARY KEY, parent_id INT NOT NULL, CONSTRAINT fk_child FOREIGN KEY (parent_id) REFERENCES shop.parent (id) ON DELETE CASCADE)");
  }
}, 180_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

/** one source transaction (autocommit statements grouped by BEGIN/COMMIT) */
async function txn(...stmts: string[]): Promise<void> {
  await src.query(["START TRANSACTION", ...stmts, "COMMIT"].join(";\n"));
}

async function parallelBatches(a: AgentProcess): Promise<number> {
  const text = (await a.http("/metrics")).text;
  return Number(/datasync_replica_parallel_batches_total\{group="test",replica="r1"\} (\d+)/.exec(text)?.[1] ?? NaN);
}

describe(`parallel apply (${flavor})`, () => {
  it("catches up a backlog with batches run early on a second connection, survives a SIGKILL in the middle, and ends identical", async () => {
    // small target transactions: many batches; the applier slowed a little so the catch-up outlasts the kill
    const cfg = makeConfig(src, [rep], { apply: { maxRows: 150 } });
    const file = writeConfig(cfg);
    agent = new AgentProcess(file, { DATASYNC_TEST_APPLY_DELAY_MS: "40" });
    await agent.waitStreaming(["r1"], 60_000);
    await waitCaughtUp(src, rep, "test", 60_000);
    await agent.kill("SIGTERM");

    // the backlog, written while no agent runs
    let id = 0;
    for (let i = 0; i < 240; i++) {
      const rows = Array.from({ length: 40 }, () => {
        id++;
        return `(${id}, ${id % 97}, 'v${id}')`;
      });
      const stmts = [`INSERT INTO shop.p (id, k, v) VALUES ${rows.join(", ")}`, `INSERT INTO shop.q (id, v) VALUES (${i}, 'q${i}'), (${1e12 + i}, NULL)`];
      // keys written again in the next transactions: updated (the row's last value must win), deleted, inserted anew
      if (i > 0) stmts.push(`UPDATE shop.p SET v = 'u${i}', k = k + 1 WHERE id IN (${i * 7}, ${i * 7 + 1}${i % 10 === 0 ? ", 3" : ""})`);
      if (i % 5 === 4) stmts.push(`DELETE FROM shop.p WHERE id = ${i * 3}`, `DELETE FROM shop.q WHERE id = ${i - 2}`);
      if (i % 5 === 0 && i > 0) stmts.push(`INSERT INTO shop.p (id, k, v) VALUES (${(i - 1) * 3}, 1, 'again${i}')`, `UPDATE shop.q SET v = 'w${i}' WHERE id = ${i - 1}`);
      await txn(...stmts);
      // foreign keys: these transactions run in their turn on the session's connection
      if (i % 30 === 0) await txn(`INSERT INTO shop.parent VALUES (${i}, 'p${i}')`, `INSERT INTO shop.child VALUES (${i}, ${i})`);
      if (i % 30 === 15) await txn(`DELETE FROM shop.parent WHERE id = ${i - 15}`);
    }

    agent = new AgentProcess(file, { DATASYNC_TEST_APPLY_DELAY_MS: "40" });
    await agent.waitStreaming(["r1"], 60_000);
    await waitFor(async () => (await parallelBatches(agent!)) >= 3, 60_000, "three batches run early");
    await agent.kill("SIGKILL");

    // a fresh process from the checkpoint: the open early transaction died with the connection
    agent = new AgentProcess(file);
    await agent.waitStreaming(["r1"], 60_000);
    await waitCaughtUp(src, rep, "test", 120_000);
    expect(await checksums(rep, TABLES)).toEqual(await checksums(src, TABLES));
    expect((await rep.query<any[]>("SELECT COUNT(*) AS n FROM shop.p"))[0].n).toBe((await src.query<any[]>("SELECT COUNT(*) AS n FROM shop.p"))[0].n);
    expect(agent.logs.filter((l) => l.level === "error" || l.level === "fatal")).toEqual([]);
    expect(agent.logs.some((l) => /parallel apply is off/.test(l.msg ?? ""))).toBe(false);
  }, 300_000);

  it("apply.parallel: false keeps one connection: no batch runs early, and the replica ends identical", async () => {
    await agent?.kill("SIGTERM");
    const cfg = makeConfig(src, [rep], { apply: { maxRows: 150, parallel: false } });
    agent = new AgentProcess(writeConfig(cfg));
    await agent.waitStreaming(["r1"], 60_000);
    await agent.kill("SIGTERM");
    for (let i = 0; i < 60; i++) await txn(`INSERT INTO shop.p (id, k, v) VALUES ${Array.from({ length: 40 }, (_, j) => `(${100_000 + i * 40 + j}, 1, 'x')`).join(", ")}`);
    agent = new AgentProcess(writeConfig(cfg));
    await agent.waitStreaming(["r1"], 60_000);
    await waitCaughtUp(src, rep, "test", 120_000);
    expect(await parallelBatches(agent)).toBe(0);
    expect(await checksums(rep, TABLES)).toEqual(await checksums(src, TABLES));
  }, 300_000);
});
