// Transactions larger than the memory budget (issue 15): a source transaction many times the agent's queue
// budget is applied in pieces into one open target transaction that commits with its checkpoint, so the
// agent's memory stays bounded (its peak RSS is read from /proc) and a SIGKILL in the middle rolls the whole
// transaction back on the replica; the restarted agent re-reads it from its start and applies it once
// (replica-side triggers count every insert and update the agent makes). The by-hand 2M-row run is
// bench/bigtx.mjs.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";

/** rows per large transaction: ≈ 17 MiB of binlog, ≈ 25 times the agent's queue budget below (the agent's own estimate) */
const ROWS = 150_000;
/** the agent's budget for queued transactions (apply.queueBytes; one replica gets all of it) */
const BUDGET = 4 << 20;
/** the agent's heap, as a container would cap it */
const HEAP = "--max-old-space-size=512";
/**
 * peak RSS the agent must stay under: applied in pieces it stays near 120 MiB; held whole (before issue 15)
 * the transaction took 208 MiB at 120,000 rows and 332 MiB at 300,000
 */
const RSS_BOUND_MIB = 170;

let src: TestServer;
let rep: TestServer;
let agent: AgentProcess | null = null;
let cfgFile: string;

beforeAll(async () => {
  [src, rep] = await startServers([{ name: "bigtx-src" }, { name: "bigtx-r1" }]);
  await src.query("CREATE DATABASE gen");
  await src.query("CREATE TABLE gen.k (n INT PRIMARY KEY)");
  const d = "(SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9)";
  await src.query(`INSERT INTO gen.k SELECT a.n + 10 * b.n + 100 * c.n + 1000 * d.n FROM ${d} a, ${d} b, ${d} c, ${d} d`);
  await src.query("CREATE DATABASE shop");
  cfgFile = writeConfig(makeConfig(src, [rep], { apply: { queueBytes: BUDGET } }));
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await Promise.all([src, rep].map((s) => s?.destroy()));
});

/** a new agent (one a failed test left running is killed first) */
async function start(): Promise<AgentProcess> {
  await agent?.kill("SIGKILL");
  return new AgentProcess(cfgFile, { NODE_OPTIONS: HEAP });
}

/** the agent's peak resident set so far (the kernel's high-water mark), MiB */
function peakRssMiB(a: AgentProcess): number {
  const s = readFileSync(`/proc/${a.proc.pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(s)![1]) / 1024;
}

/** one INSERT … SELECT of ROWS rows from id `first`: a single source transaction */
function bigInsert(first: number): string {
  return (
    "INSERT INTO shop.big SELECT a.n * 10000 + b.n + " + first + ", (a.n * 10000 + b.n) % 50000, ELT(b.n % 4 + 1, 'new', 'paid', 'shipped', 'closed'), " +
    "CONCAT('order ', a.n * 10000 + b.n, ' ', REPEAT('x', 60 + b.n % 40)), (b.n % 100000) / 100 + 0.99, TIMESTAMP('2024-01-01') + INTERVAL (a.n * 10000 + b.n) SECOND " +
    `FROM gen.k a, gen.k b WHERE a.n < ${Math.ceil(ROWS / 10000)} AND a.n * 10000 + b.n < ${ROWS}`
  );
}

const counts = async () => {
  const [c] = await rep.query<any[]>("SELECT ins, upd FROM audit.cnt WHERE id = 1");
  return { ins: Number(c.ins), upd: Number(c.upd) };
};

it("applies one transaction ~25 times the memory budget in pieces, identical, with the agent's peak RSS bounded", async () => {
  agent = await start();
  await agent.waitStreaming(["r1"]);
  await src.query(
    "CREATE TABLE shop.big (id INT PRIMARY KEY, customer INT NOT NULL, status VARCHAR(16) NOT NULL, note VARCHAR(120) NOT NULL, amount DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL) ENGINE=InnoDB",
  );
  await waitCaughtUp(src, rep);
  // on the replica alone: every insert and update the agent makes is counted
  await rep.query("CREATE DATABASE audit");
  await rep.query("CREATE TABLE audit.cnt (id INT PRIMARY KEY, ins BIGINT NOT NULL, upd BIGINT NOT NULL)");
  await rep.query("INSERT INTO audit.cnt VALUES (1, 0, 0)");
  await rep.query("CREATE TRIGGER shop.big_ai AFTER INSERT ON shop.big FOR EACH ROW UPDATE audit.cnt SET ins = ins + 1 WHERE id = 1");
  await rep.query("CREATE TRIGGER shop.big_au AFTER UPDATE ON shop.big FOR EACH ROW UPDATE audit.cnt SET upd = upd + 1 WHERE id = 1");

  await src.query(bigInsert(1));
  await waitCaughtUp(src, rep, "test", 90_000);
  const peak = peakRssMiB(agent);
  console.info(`agent peak RSS ${peak.toFixed(1)} MiB applying ${ROWS} rows in one transaction (${src.flavor})`);
  expect(peak).toBeLessThan(RSS_BOUND_MIB);
  expect(await checksums(rep, ["shop.big"])).toEqual(await checksums(src, ["shop.big"]));
  expect(await counts()).toEqual({ ins: ROWS, upd: 0 });
  const applied = await agent.waitForLog((l) => l.msg === "a large source transaction was applied in pieces", 1000);
  expect(applied.rows).toBe(ROWS);
  expect(applied.pieces).toBeGreaterThan(20);
  await agent.kill("SIGTERM");
  expect(await agent.exited).toBe(0);
  agent = null;
});

it("a SIGKILL while the large transaction is half applied leaves nothing of it; the restarted agent applies it exactly once", async () => {
  agent = await start();
  await agent.waitStreaming(["r1"]);
  const [before] = await rep.query<any[]>("SELECT binlog_file, binlog_pos, gtid FROM _datasync.checkpoints WHERE group_name = 'test'");
  await src.query(bigInsert(ROWS + 1));
  // the open target transaction holds about half the rows
  await waitFor(async () => {
    const [r] = await rep.query<any[]>("SELECT COALESCE(MAX(trx_rows_modified), 0) AS n FROM information_schema.innodb_trx");
    return Number(r.n) >= ROWS / 2;
  }, 90_000, "half of the transaction applied in the open target transaction");
  const peak = peakRssMiB(agent);
  expect(await agent.kill("SIGKILL")).toBe(-1);
  agent = null;
  // the replica rolled the open transaction back: only the first transaction's rows, the checkpoint unmoved
  await waitFor(async () => {
    const [t] = await rep.query<any[]>("SELECT COUNT(*) AS n FROM information_schema.innodb_trx");
    return Number(t.n) === 0;
  }, 60_000, "the killed agent's transaction to roll back");
  const [n] = await rep.query<any[]>("SELECT COUNT(*) AS n FROM shop.big");
  expect(Number(n.n)).toBe(ROWS);
  const [after] = await rep.query<any[]>("SELECT binlog_file, binlog_pos, gtid FROM _datasync.checkpoints WHERE group_name = 'test'");
  expect(after).toEqual(before);
  expect(peak).toBeLessThan(RSS_BOUND_MIB);

  agent = await start();
  await agent.waitStreaming(["r1"]);
  await waitCaughtUp(src, rep, "test", 90_000);
  expect(await checksums(rep, ["shop.big"])).toEqual(await checksums(src, ["shop.big"]));
  // every row inserted once (the rolled-back inserts fired their triggers inside the rolled-back transaction)
  expect(await counts()).toEqual({ ins: 2 * ROWS, upd: 0 });
  expect(peakRssMiB(agent)).toBeLessThan(RSS_BOUND_MIB);
  await agent.kill("SIGTERM");
  expect(await agent.exited).toBe(0);
  agent = null;
});

it("updates, deletes and a ROLLBACK TO SAVEPOINT spread over many pieces of one large transaction", async () => {
  const mariadb = src.flavor === "mariadb";
  agent = await start();
  await agent.waitStreaming(["r1"]);
  // MySQL with GTIDs refuses non-transactional writes inside a transaction: there a rolled-back savepoint
  // never reaches the binlog (InnoDB alone is truncated from the cache), and the rest runs on both
  if (mariadb) await src.query("CREATE TABLE shop.big_m (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=MyISAM");
  const c = await src.connect();
  try {
    await c.query("BEGIN");
    await c.query("UPDATE shop.big SET amount = amount + 1, status = 'paid' WHERE id <= 40000");
    await c.query("SAVEPOINT s");
    await c.query(`DELETE FROM shop.big WHERE id > ${2 * ROWS - 40000}`);
    if (mariadb) await c.query("INSERT INTO shop.big_m VALUES (1, 'myisam stays')");
    await c.query("ROLLBACK TO SAVEPOINT s");
    await c.query("DELETE FROM shop.big WHERE id BETWEEN 100001 AND 130000");
    await c.query("COMMIT");
  } finally {
    await c.end();
  }
  await waitCaughtUp(src, rep, "test", 90_000);
  const applied = await agent.waitForLog((l) => l.msg === "a large source transaction was applied in pieces", 1000);
  expect(applied.pieces).toBeGreaterThan(20);
  expect(await checksums(rep, ["shop.big"])).toEqual(await checksums(src, ["shop.big"]));
  const [n] = await rep.query<any[]>("SELECT COUNT(*) AS n, SUM(status = 'paid' AND id <= 40000) AS paid FROM shop.big");
  expect({ n: Number(n.n), paid: Number(n.paid) }).toEqual({ n: 2 * ROWS - 30000, paid: 40000 });
  if (mariadb) expect(await rep.query("SELECT id, v FROM shop.big_m")).toEqual([{ id: 1, v: "myisam stays" }]);
  await agent.kill("SIGTERM");
  expect(await agent.exited).toBe(0);
  agent = null;
});
