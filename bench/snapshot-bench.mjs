// Snapshot benchmark: an idle source of N rows copied into an empty replica by the agent's online snapshot
// (in process), against `mariadb-dump --single-transaction | mariadb` of the same data, in the same run
// (MySQL: `mysqldump --single-transaction --set-gtid-purged=OFF | mysql`).
import { spawn } from "node:child_process";
import { cpus, loadavg } from "node:os";
import pino from "pino";
import { startServers, seqRows, recursionHint, clientBinary, stealMeter } from "./lib.mjs";
import { goalMet, round } from "./stats.mjs";

const { Agent } = await import("../dist/agent/main.js");
const { validateConfig } = await import("../dist/agent/config.js");

/** Returns the raw figures (seconds, rows/s, ratio dump/snapshot, peak RSS, identical). */
export async function snapshotBench({ rows, chunk = 10_000, baseDir, args, flavor = "mariadb", writers = [1, 2] } = {}) {
  const srvArgs = args ? { args } : {};
  const [src, dumpTarget, rep] = await startServers([
    { name: "bs-src", baseDir, ...srvArgs },
    { name: "bs-dump", noBinlog: true, baseDir, ...srvArgs },
    { name: "bs-rep", noBinlog: true, baseDir, ...srvArgs },
  ], flavor);
  try {
    await src.query("CREATE DATABASE shop");
    await src.query(`CREATE TABLE shop.orders (id INT PRIMARY KEY, customer_id INT NOT NULL, status VARCHAR(16) NOT NULL, note VARCHAR(64), total DECIMAL(12,2) NOT NULL, created DATETIME(6) NOT NULL, KEY (customer_id)) ENGINE=InnoDB`);
    for (let done = 0; done < rows; done += 200_000) {
      const n = Math.min(200_000, rows - done);
      await src.query(`INSERT ${recursionHint(flavor)}INTO shop.orders SELECT seq, seq % 9973, ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'done'), CONCAT('order note ', seq), (seq % 100000) / 100, '2024-01-01' + INTERVAL seq SECOND FROM ${seqRows(done + 1, done + n, flavor, "shop")}`);
    }
    await src.query("ANALYZE TABLE shop.orders");
    const load = loadavg()[0];
    const [{ v: server }] = await src.query("SELECT VERSION() AS v");

    // 1. mariadb-dump --single-transaction | mariadb
    await dumpTarget.query("CREATE DATABASE shop");
    const dumpSteal = stealMeter();
    const t0 = Date.now();
    await new Promise((resolve, reject) => {
      // MySQL: no GTID_PURGED statement in the dump (the target has GTIDs of its own)
      const gtid = flavor === "mysql" ? ["--set-gtid-purged=OFF"] : [];
      const dump = spawn(clientBinary(flavor, "dump"), ["--no-defaults", "-h127.0.0.1", `-P${src.port}`, "-uroot", "--single-transaction", "--skip-lock-tables", ...gtid, "shop", "orders"], { stdio: ["ignore", "pipe", "inherit"] });
      const loadP = spawn(clientBinary(flavor, "client"), ["--no-defaults", "-h127.0.0.1", `-P${dumpTarget.port}`, "-uroot", "shop"], { stdio: ["pipe", "inherit", "inherit"] });
      dump.stdout.pipe(loadP.stdin);
      loadP.on("exit", (c) => (c === 0 ? resolve() : reject(new Error(`${flavor === "mysql" ? "mysql" : "mariadb"} exited ${c}`))));
    });
    const dumpMs = Date.now() - t0;
    const dumpStealPct = dumpSteal();

    // 2. the agent's snapshot, once per writer count (into the same replica, emptied between runs)
    const [c] = await dumpTarget.query("CHECKSUM TABLE shop.orders");
    const [a] = await src.query("CHECKSUM TABLE shop.orders");
    const runs = [];
    for (const w of writers) {
      await rep.query("DROP DATABASE IF EXISTS shop");
      await rep.query("DROP DATABASE IF EXISTS _datasync");
      const cfg = validateConfig({
        group: "bench",
        source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
        replicas: [{ name: "r1", host: "127.0.0.1", port: rep.port, user: "root", password: "" }],
        databases: ["shop"],
        http: { listen: "127.0.0.1:0" },
        logLevel: "warn",
        snapshot: { chunkRows: chunk, rowsPerSecond: 0, writers: w },
      });
      const agent = new Agent(cfg, { logger: pino({ level: "warn" }), http: false });
      const steal = stealMeter();
      const t1 = Date.now();
      let peakRss = process.memoryUsage().rss;
      const rss = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
      try {
        await agent.start();
        for (;;) {
          const st = agent.status().replicas[0];
          if (st.snapshot?.done || (st.snapshot === null && st.state === "streaming" && st.position)) {
            const r = await rep.query("SELECT state FROM _datasync.checkpoints");
            if (r[0]?.state === "streaming") break;
          }
          if (st.state === "failed") throw new Error(st.lastError);
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        clearInterval(rss);
      }
      const snapMs = Date.now() - t1;
      const stealPct = steal();
      await agent.stop();
      const [b] = await rep.query("CHECKSUM TABLE shop.orders");
      runs.push({
        writers: w,
        snapshotSeconds: snapMs / 1000,
        snapshotRowsPerSecond: Math.round(rows / (snapMs / 1000)),
        ratio: Math.round((dumpMs / snapMs) * 100) / 100,
        peakRssMB: Math.round(peakRss / 1e6),
        identical: a.Checksum === b.Checksum && a.Checksum === c.Checksum,
        stealPct,
      });
    }
    return {
      cores: cpus().length,
      rows,
      dumpSeconds: dumpMs / 1000,
      dumpRowsPerSecond: Math.round(rows / (dumpMs / 1000)),
      dumpStealPct,
      runs,
      loadAvg1m: load,
      server: String(server),
    };
  } finally {
    await Promise.all([src, dumpTarget, rep].map((s) => s.destroy()));
  }
}

/**
 * The `snapshot` scenario of npm run bench: one dump, then the agent's snapshot with one writer (goal: as fast as
 * the dump) and with its default parallel writers (goal: 1.5 times as fast), one table row each.
 */
export async function runSnapshot(ctx, tag) {
  const rows = Math.round(Number(ctx.opt["snapshot-rows"]) * ctx.scale);
  const parallel = Number(ctx.opt["snapshot-writers"]);
  const r = await snapshotBench({ rows, chunk: Number(ctx.opt.chunk), baseDir: ctx.base, flavor: ctx.flavor, writers: [1, parallel] });
  const anchorName = ctx.flavor === "mysql" ? "mysqldump | mysql" : "mariadb-dump | mariadb";
  return r.runs.map((run) => {
    const goal = run.writers > 1 ? 1.5 : 1.0;
    return {
      scenario: "snapshot",
      flavor: ctx.flavor,
      description: `online snapshot of ${rows.toLocaleString("en-US")} idle rows into an empty replica, ${run.writers === 1 ? "one writer" : `${run.writers} parallel writers`}, vs ${anchorName.replace(" |", " --single-transaction |")}`,
      headline: { measure: `copy s, ${run.writers} writer${run.writers > 1 ? "s" : ""}`, anchorName, anchor: round(r.dumpSeconds, 2), agent: round(run.snapshotSeconds, 2), ratio: run.ratio, ratioDef: "dump s / snapshot s", goal: `ratio ≥ ${goal.toFixed(1)}`, met: goalMet(run.ratio, goal) },
      throughput: { unit: "rows/s", agent: run.snapshotRowsPerSecond, anchor: r.dumpRowsPerSecond },
      peakRssMb: run.peakRssMB,
      peakRssNote: "in-process agent: RSS of the bench process",
      identical: run.identical,
      loadAvg1m: round(r.loadAvg1m, 2),
      cores: r.cores,
      server: r.server,
      rows,
      writers: run.writers,
      chunkRows: Number(ctx.opt.chunk),
      stealPct: { native: r.dumpStealPct, agent: run.stealPct },
      tag,
    };
  });
}
