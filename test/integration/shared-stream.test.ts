// Decode once (issue 17), against real servers on both flavors: three replicas in fan-out share one binlog
// connection; one replica is blocked (a session on it holds LOCK TABLES … WRITE, so its applier waits, its
// session and writer lease stay alive) while the source writes: the other two keep up on the one shared
// connection (the blocked one leaves it, holding no connection and bounded memory), and when it is released
// it catches up on a reader of its own, rejoins the shared stream, and all three end identical. The stuck-apply
// watchdog (agent/apply/watchdog.ts) names the blocked replica's wait meanwhile (warning, metric, status), and
// says so when it moves again; a DDL waiting on a metadata lock (no timeout) is named the same way.
// Build once (issue 17), with and without the shared stream: r1 and r2 have the same table shape and reuse each
// other's statements; r3's table has an extra column and another unique key, so it builds its own; all identical.
import type { Connection } from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFlavor, startServers, type TestServer } from "../support/servers.js";
import { AgentProcess, checksums, makeConfig, tableList, waitCaughtUp, waitFor, writeConfig } from "../support/agent.js";

const flavor = defaultFlavor();
let src: TestServer;
let reps: TestServer[];
let agent: AgentProcess | undefined;
let blocker: Connection | null = null;

/** binlog connections the source serves ("Binlog Dump" or "Binlog Dump GTID", both flavors) */
async function binlogDumps(): Promise<number> {
  const rows = await src.query<any[]>("SHOW FULL PROCESSLIST");
  return rows.filter((r) => String(r.Command).startsWith("Binlog Dump")).length;
}

async function write(from: number, txns: number, rowsPerTxn: number): Promise<void> {
  const pad = "x".repeat(200);
  for (let i = 0; i < txns; i++) {
    const values = [];
    for (let j = 0; j < rowsPerTxn; j++) values.push(`(${from + i * rowsPerTxn + j}, '${pad}')`);
    await src.query(`INSERT INTO shop.t (id, v) VALUES ${values.join(", ")}`);
  }
}

beforeAll(async () => {
  [src, ...reps] = await startServers([{ name: "ss-src" }, { name: "ss-r1" }, { name: "ss-r2" }, { name: "ss-r3" }]);
  await src.query("CREATE DATABASE shop");
  await src.query("CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(255) NOT NULL)");
  // a small queue, so the blocked replica fills it (and its slack) with a few hundred transactions (600 of 10 rows:
  // inserts read as SQL tuples count fewer bytes than rows did, and 400 left the slack unfilled)
  // stuckSeconds 3: the watchdog reports a blocked applier within the test's time
  const cfg = makeConfig(src, reps, { apply: { maxRows: 20_000, maxBytes: 64 << 10, queueBytes: 1 << 20, sharedStream: true, stuckSeconds: 3 } });
  agent = new AgentProcess(writeConfig(cfg));
  await agent.waitStreaming(["r1", "r2", "r3"], 60_000);
}, 180_000);

afterAll(async () => {
  await blocker?.end().catch(() => undefined);
  await agent?.kill("SIGKILL");
  await Promise.all([src, ...(reps ?? [])].map((s) => s?.destroy()));
});

describe(`shared binlog stream (${flavor})`, () => {
  it("three replicas share one binlog connection; a blocked one never stalls the others, leaves, catches up on its own, rejoins, and all end identical", async () => {
    const a = agent!;
    try {
      await write(1, 20, 5);
      for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
      // one connection serves all three
      await waitFor(async () => (await binlogDumps()) === 1, 20_000, "one binlog dump thread for three replicas");

      // block r3: its applier waits for the table lock, its queue fills
      blocker = await reps[2].connect();
      await blocker.query("LOCK TABLES shop.t WRITE");
      await write(1000, 600, 10);
      // the other two keep up while r3 is blocked
      await waitCaughtUp(src, reps[0], "test", 60_000);
      await waitCaughtUp(src, reps[1], "test", 60_000);
      await a.waitForLog((l) => /leaves the shared binlog stream/.test(l.msg ?? ""), 20_000);
      // still one connection: the fast replicas share it, the blocked one holds none while it cannot take more
      expect(await binlogDumps()).toBe(1);
      expect((await a.http("/metrics")).text).toMatch(/datasync_binlog_readers\{group="test"\} 1\b/);

      // the watchdog: one warning naming r3, the statement it waits in and the server's state of that connection
      const warn = await a.waitForLog((l) => l.replica === "r3" && /the applier has completed no step/.test(l.msg ?? ""), 20_000);
      expect(warn.level).toBe("warn");
      expect(warn.waitingOn).toMatch(/^statement: insert into `shop`\.`t`/);
      expect(warn.server.state).toMatch(/lock/i);
      expect(warn.server.statement).toMatch(/insert into `shop`\.`t`/);
      expect(JSON.stringify(warn)).not.toMatch(/xxxx/); // no row values (the rows' v is 'x' × 200)
      expect(a.logs.filter((l) => l.replica !== "r3" && /the applier has completed no step/.test(l.msg ?? ""))).toEqual([]);
      const m = (await a.http("/metrics")).text;
      expect(Number(/datasync_replica_apply_stalled_seconds\{group="test",replica="r3"\} ([\d.]+)/.exec(m)?.[1])).toBeGreaterThanOrEqual(3);
      expect(m).toMatch(/datasync_replica_apply_stalled_seconds\{group="test",replica="r1"\} 0\b/);
      const st = (await a.http("/readyz")).body.replicas.find((x: any) => x.name === "r3");
      expect(st.applyStalled.waitingOn).toMatch(/insert into `shop`\.`t`/);
    } finally {
      await blocker?.query("UNLOCK TABLES").catch(() => undefined);
      await blocker?.end().catch(() => undefined);
      blocker = null;
    }
    // r3 catches up on a reader of its own and rejoins the shared stream
    for (const r of reps) await waitCaughtUp(src, r, "test", 90_000);
    // the watchdog saw it move again: the gauge is back to 0, the status clear
    await a.waitForLog((l) => l.replica === "r3" && /the applier makes progress again/.test(l.msg ?? ""), 10_000);
    expect((await a.http("/metrics")).text).toMatch(/datasync_replica_apply_stalled_seconds\{group="test",replica="r3"\} 0\b/);
    expect((await a.http("/readyz")).body.replicas.find((x: any) => x.name === "r3").applyStalled).toBeNull();
    await a.waitForLog((l) => /rejoins a shared binlog stream/.test(l.msg ?? ""), 30_000);
    await waitFor(async () => (await binlogDumps()) === 1, 20_000, "one binlog dump thread again after the rejoin");
    // and it goes on sharing: more writes reach all three
    await write(100_000, 20, 5);
    for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
    const tables = await tableList(src, "shop");
    const want = await checksums(src, tables);
    for (const r of reps) expect(await checksums(r, tables)).toEqual(want);
    const [n] = await reps[2].query<any[]>("SELECT COUNT(*) AS n FROM shop.t");
    expect(Number(n.n)).toBe(100 + 6000 + 100);
    expect(await binlogDumps()).toBe(1);
  }, 300_000);

  it("a DDL waiting on a metadata lock (an open transaction on the replica) is named by the watchdog; released, it applies", async () => {
    const a = agent!;
    const before = a.logs.length;
    // an open transaction on r1 that read shop.t holds a shared metadata lock: the ALTER waits (no timeout)
    blocker = await reps[0].connect();
    await blocker.query("START TRANSACTION");
    await blocker.query("SELECT COUNT(*) FROM shop.t FOR UPDATE");
    try {
      await src.query("ALTER TABLE shop.t ADD COLUMN w INT NULL");
      await src.query("INSERT INTO shop.t (id, v, w) VALUES (900000, 'a', 1)");
      const warn = await a.waitForLog((l) => a.logs.indexOf(l) >= before && l.replica === "r1" && /the applier has completed no step/.test(l.msg ?? ""), 20_000);
      expect(warn.waitingOn).toMatch(/^statement: alter table `?shop`?\.`?t`?/); // the source DDL replayed as written
      expect(warn.server.state).toMatch(/metadata lock/i);
      const m = (await a.http("/metrics")).text;
      expect(Number(/datasync_replica_apply_stalled_seconds\{group="test",replica="r1"\} ([\d.]+)/.exec(m)?.[1])).toBeGreaterThanOrEqual(3);
    } finally {
      await blocker?.query("ROLLBACK").catch(() => undefined);
      await blocker?.end().catch(() => undefined);
      blocker = null;
    }
    for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
    await a.waitForLog((l) => a.logs.indexOf(l) >= before && l.replica === "r1" && /the applier makes progress again/.test(l.msg ?? ""), 10_000);
    const [c] = await reps[0].query<any[]>("SELECT w FROM shop.t WHERE id = 900000");
    expect(c.w).toBe(1);
  }, 120_000);

  it("transactions handed over in pieces: a blocked replica leaves, catches up on its own, rejoins; all identical", async () => {
    const a = agent!;
    const pad = "y".repeat(200);
    // each transaction is a few pieces (streamBytes is 64 KiB here)
    const big = async (from: number, txns: number) => {
      for (let i = 0; i < txns; i++) {
        const values = [];
        for (let j = 0; j < 400; j++) values.push(`(${from + i * 400 + j}, '${pad}')`);
        await src.query(`INSERT INTO shop.t (id, v) VALUES ${values.join(", ")}`);
      }
    };
    const leftBefore = a.logs.filter((l) => /leaves the shared binlog stream/.test(l.msg ?? "")).length;
    blocker = await reps[1].connect();
    await blocker.query("LOCK TABLES shop.t WRITE");
    try {
      await big(1_000_000, 30);
      await waitCaughtUp(src, reps[0], "test", 90_000);
      await waitCaughtUp(src, reps[2], "test", 90_000);
      await waitFor(async () => a.logs.filter((l) => /leaves the shared binlog stream/.test(l.msg ?? "")).length > leftBefore, 20_000, "r2 to leave the shared stream");
    } finally {
      await blocker?.query("UNLOCK TABLES").catch(() => undefined);
      await blocker?.end().catch(() => undefined);
      blocker = null;
    }
    await big(2_000_000, 10);
    for (const r of reps) await waitCaughtUp(src, r, "test", 120_000);
    expect(a.logs.some((l) => /applied in pieces/.test(l.msg ?? ""))).toBe(true);
    const tables = await tableList(src, "shop");
    const want = await checksums(src, tables);
    for (const r of reps) expect(await checksums(r, tables)).toEqual(want);
    await waitFor(async () => (await binlogDumps()) === 1, 30_000, "one binlog dump thread again after the rejoin");
  }, 300_000);
  for (const shared of [false, true]) {
    it(`build once (${shared ? "shared stream" : "a reader per replica"}): same-shape replicas reuse statements, the one whose table differs builds its own; all identical`, async () => {
      await src.query("CREATE TABLE shop.w (id INT PRIMARY KEY, v VARCHAR(255) NOT NULL, n INT NOT NULL)");
      for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
      await agent?.kill("SIGKILL");
      // r3's table differs in shape: an extra column (with a default) and a unique key the source lacks
      await reps[2].query("ALTER TABLE shop.w ADD COLUMN extra INT NOT NULL DEFAULT 7, ADD UNIQUE KEY uv (v)");
      const cfg = makeConfig(src, reps, { apply: { maxRows: 20_000, maxBytes: 64 << 10, queueBytes: 1 << 20, sharedStream: shared } });
      agent = new AgentProcess(writeConfig(cfg, `config-build-once-${shared}.json`));
      const a = agent;
      await a.waitStreaming(["r1", "r2", "r3"], 60_000);
      const reused = async () => {
        const text = (await a.http("/metrics")).text;
        return reps.map((_, i) => Number(new RegExp(`datasync_replica_reused_transactions_total\\{group="test",replica="r${i + 1}"\\} (\\d+)`).exec(text)?.[1] ?? NaN));
      };
      // transactions of 200 rows (sharing starts at 100): inserts, updates (r3's unique key makes its updates
      // UPDATE … WHERE <old key> where r1's and r2's are upserts), a key change, deletes
      const base = shared ? 10_000 : 0;
      for (let i = 0; i < 15; i++) {
        const values = [];
        for (let j = 0; j < 200; j++) values.push(`(${base + i * 200 + j}, 'w${base + i * 200 + j}-${"z".repeat(100)}', ${j})`);
        await src.query(`INSERT INTO shop.w (id, v, n) VALUES ${values.join(", ")}`);
      }
      for (let i = 0; i < 5; i++) await src.query(`UPDATE shop.w SET v = CONCAT(v, 'u${i}'), n = n + 1 WHERE id BETWEEN ${base + i * 400} AND ${base + i * 400 + 199}`);
      await src.query(`UPDATE shop.w SET id = id + 5000 WHERE id BETWEEN ${base + 2000} AND ${base + 2199}`);
      await src.query(`DELETE FROM shop.w WHERE id BETWEEN ${base + 2200} AND ${base + 2399}`);
      for (const r of reps) await waitCaughtUp(src, r, "test", 90_000);
      const [r1, r2, r3] = await reused();
      // the same-shape pair took one another's statements (which one built first is timing); r3 never did
      expect(r1 + r2).toBeGreaterThanOrEqual(10);
      expect(r3).toBe(0);
      const rowsOf = async (s: TestServer) => s.query<any[]>("SELECT id, v, n FROM shop.w ORDER BY id");
      const want = await rowsOf(src);
      expect(want.length).toBe(2800);
      for (const r of reps) expect(await rowsOf(r)).toEqual(want);
      const [x] = await reps[2].query<any[]>("SELECT COUNT(*) AS n FROM shop.w WHERE extra <> 7");
      expect(Number(x.n)).toBe(0);
      const tables = (await tableList(src, "shop")).filter((t) => t !== "`shop`.`w`");
      const sums = await checksums(src, tables);
      for (const r of reps) expect(await checksums(r, tables)).toEqual(sums);
      // the tests after this one compare every table
      await src.query("DROP TABLE shop.w");
      for (const r of reps) await waitCaughtUp(src, r, "test", 60_000);
    }, 300_000);
  }
  // the other safety net (agent/replica.ts #backPressureLost): a reader that goes on handing transactions over
  // past a full queue (its pause lost between it and its connection) ends the session with a warning naming the
  // state, before the heap runs out; the next session reads again from the checkpoint. Seams: no reader's pause
  // reaches its connection (DATASYNC_TEST_IGNORE_PAUSE), and the limit is 50 transactions, not 20,000. A reader that
  // never pauses makes no progress past a full queue, so the agent restarts without the seams to end identical.
  it("a reader that ignores back-pressure ends the session with a warning, not the heap; all end identical", async () => {
    await agent?.kill("SIGKILL");
    // a reader per replica: the seam acts on r1's own reader (on a shared one, r1 would leave it when full)
    const cfg = makeConfig(src, reps, { apply: { maxRows: 20_000, maxBytes: 64 << 10, queueBytes: 1 << 20, sharedStream: false } });
    agent = new AgentProcess(writeConfig(cfg, "config-ignore-pause.json"), { DATASYNC_TEST_IGNORE_PAUSE: "1", DATASYNC_TEST_OVERRUN_TXNS: "50" });
    const a = agent;
    await a.waitStreaming(["r1", "r2", "r3"], 60_000);
    blocker = await reps[0].connect();
    await blocker.query("LOCK TABLES shop.t WRITE");
    try {
      await write(5_000_000, 600, 10);
      await waitCaughtUp(src, reps[1], "test", 90_000);
      await waitCaughtUp(src, reps[2], "test", 90_000);
      await a.waitForLog((l) => /back-pressure lost/.test(l.msg ?? ""), 30_000);
    } finally {
      await blocker?.query("UNLOCK TABLES").catch(() => undefined);
      await blocker?.end().catch(() => undefined);
      blocker = null;
    }
    const warn = a.logs.find((l) => /back-pressure lost/.test(l.msg ?? ""))!;
    expect(warn.replica).toBe("r1");
    expect(warn.overPushes).toBeGreaterThan(50);
    expect(warn.readerPaused).toBe(true);
    // the counter moves when the session ends on the error, just after the warning
    const backpressure = async () => Number((await a.http("/metrics")).text.match(/datasync_errors_total\{[^}]*replica="r1"[^}]*kind="backpressure"[^}]*\} (\d+)/)?.[1] ?? 0);
    await waitFor(async () => (await backpressure()) > 0, 10_000, "the backpressure error counter of r1");
    expect(await backpressure()).toBeGreaterThan(0);
    await a.kill("SIGKILL");
    agent = new AgentProcess(writeConfig(cfg, "config-ignore-pause-after.json"));
    await agent.waitStreaming(["r1", "r2", "r3"], 60_000);
    for (const r of reps) await waitCaughtUp(src, r, "test", 90_000);
    const tables = await tableList(src, "shop");
    const want = await checksums(src, tables);
    for (const r of reps) expect(await checksums(r, tables)).toEqual(want);
  }, 300_000);
  // the safety net (agent/replica.ts #checkPausedIdle): a reader paused with nothing queued or being applied is
  // a lost wake-up, never silent. The test seam DATASYNC_TEST_LOSE_RESUME makes every wake-up from the applier
  // get lost (`release`), or also the net's own resume (`all`: the session must end as a stall and restart)
  for (const mode of ["release", "all"] as const) {
    it(`a lost wake-up (${mode}) is noticed: ${mode === "release" ? "the paused stream is resumed with a warning" : "the session ends as a stall and restarts"}; all end identical`, async () => {
      await agent?.kill("SIGKILL");
      const cfg = makeConfig(src, reps, { stallSeconds: 2, apply: { maxRows: 20_000, maxBytes: 64 << 10, queueBytes: 1 << 20, sharedStream: true } });
      agent = new AgentProcess(writeConfig(cfg, `config-lose-${mode}.json`), { DATASYNC_TEST_LOSE_RESUME: mode });
      const a = agent;
      await a.waitStreaming(["r1", "r2", "r3"], 60_000);
      // r1 blocked while the source writes more than its queue holds: its stream pauses on a full queue
      blocker = await reps[0].connect();
      await blocker.query("LOCK TABLES shop.t WRITE");
      try {
        await write(mode === "release" ? 3_000_000 : 4_000_000, 400, 10);
        // the others took it all: r1's queue is full (its stream paused, or it left the shared one)
        await waitCaughtUp(src, reps[1], "test", 90_000);
        await waitCaughtUp(src, reps[2], "test", 90_000);
      } finally {
        await blocker?.query("UNLOCK TABLES").catch(() => undefined);
        await blocker?.end().catch(() => undefined);
        blocker = null;
      }
      for (const r of reps) await waitCaughtUp(src, r, "test", 90_000);
      if (mode === "release") {
        await a.waitForLog((l) => /lost wake-up/.test(l.msg ?? ""), 10_000);
        expect(a.logs.some((l) => /binlog stream stalled/.test(l.msg ?? ""))).toBe(false);
      } else {
        await a.waitForLog((l) => /binlog stream stalled: it stayed paused/.test(l.msg ?? ""), 10_000);
      }
      const tables = await tableList(src, "shop");
      const want = await checksums(src, tables);
      for (const r of reps) expect(await checksums(r, tables)).toEqual(want);
    }, 300_000);
  }
});
