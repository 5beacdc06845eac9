#!/usr/bin/env node
// Snapshot benchmark: an idle source of N rows (default 1,000,000) copied into an empty replica by the
// agent's online snapshot, against `mariadb-dump --single-transaction | mariadb` of the same data, in the
// same run. Prints times, rows/s and the ratio dump_time / snapshot_time (goal >= 1.0).
// Usage: node bench/snapshot.mjs [--rows N] [--json]
import { spawn } from "node:child_process";
import { cpus } from "node:os";
import { startServers } from "../dist/agent/servers.js";
import { Agent } from "../dist/agent/main.js";
import { validateConfig } from "../dist/agent/config.js";
import pino from "pino";

const arg = (n, d) => {
  const i = process.argv.indexOf(n);
  return i > 0 ? process.argv[i + 1] : d;
};
const ROWS = Number(arg("--rows", 1_000_000));

const [src, dumpTarget, rep] = await startServers([{ name: "bs-src" }, { name: "bs-dump", noBinlog: true }, { name: "bs-rep", noBinlog: true }]);
try {
  await src.query("CREATE DATABASE shop");
  await src.query(`CREATE TABLE shop.orders (id INT PRIMARY KEY, customer_id INT NOT NULL, status VARCHAR(16) NOT NULL, note VARCHAR(64), total DECIMAL(12,2) NOT NULL, created DATETIME(6) NOT NULL, KEY (customer_id)) ENGINE=InnoDB`);
  for (let done = 0; done < ROWS; done += 200_000) {
    const n = Math.min(200_000, ROWS - done);
    await src.query(`INSERT INTO shop.orders SELECT seq, seq % 9973, ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'done'), CONCAT('order note ', seq), (seq % 100000) / 100, '2024-01-01' + INTERVAL seq SECOND FROM shop.seq_${done + 1}_to_${done + n}`);
  }
  await src.query("ANALYZE TABLE shop.orders");

  // 1. mariadb-dump --single-transaction | mariadb
  await dumpTarget.query("CREATE DATABASE shop");
  const t0 = Date.now();
  await new Promise((resolve, reject) => {
    const dump = spawn("mariadb-dump", ["--no-defaults", "-h127.0.0.1", `-P${src.port}`, "-uroot", "--single-transaction", "--skip-lock-tables", "shop", "orders"], { stdio: ["ignore", "pipe", "inherit"] });
    const load = spawn("mariadb", ["--no-defaults", "-h127.0.0.1", `-P${dumpTarget.port}`, "-uroot", "shop"], { stdio: ["pipe", "inherit", "inherit"] });
    dump.stdout.pipe(load.stdin);
    load.on("exit", (c) => (c === 0 ? resolve() : reject(new Error(`mariadb exited ${c}`))));
  });
  const dumpMs = Date.now() - t0;

  // 2. the agent's snapshot
  const cfg = validateConfig({
    group: "bench",
    source: { host: "127.0.0.1", port: src.port, user: "root", password: "" },
    replicas: [{ name: "r1", host: "127.0.0.1", port: rep.port, user: "root", password: "" }],
    databases: ["shop"],
    http: { listen: "127.0.0.1:0" },
    logLevel: "warn",
    snapshot: { chunkRows: Number(arg("--chunk", 10000)), rowsPerSecond: 0 },
  });
  const agent = new Agent(cfg, { logger: pino({ level: "warn" }), http: false });
  const t1 = Date.now();
  let peakRss = 0;
  const rss = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  await agent.start();
  for (;;) {
    const st = agent.status().replicas[0];
    if (st.snapshot?.done || (st.snapshot === null && st.state === "streaming" && st.position)) {
      const rows = await rep.query("SELECT state FROM _datasync.checkpoints");
      if (rows[0]?.state === "streaming") break;
    }
    if (st.state === "failed") throw new Error(st.lastError);
    await new Promise((r) => setTimeout(r, 50));
  }
  const snapMs = Date.now() - t1;
  clearInterval(rss);
  await agent.stop();
  const [a] = await src.query("CHECKSUM TABLE shop.orders");
  const [b] = await rep.query("CHECKSUM TABLE shop.orders");
  const [c] = await dumpTarget.query("CHECKSUM TABLE shop.orders");
  const result = {
    cores: cpus().length,
    rows: ROWS,
    dumpSeconds: dumpMs / 1000,
    snapshotSeconds: snapMs / 1000,
    dumpRowsPerSecond: Math.round(ROWS / (dumpMs / 1000)),
    snapshotRowsPerSecond: Math.round(ROWS / (snapMs / 1000)),
    ratio: Math.round((dumpMs / snapMs) * 100) / 100,
    peakRssMB: Math.round(peakRss / 1e6),
    identical: a.Checksum === b.Checksum && a.Checksum === c.Checksum,
  };
  if (process.argv.includes("--json")) console.log(JSON.stringify(result));
  else {
    console.log(`snapshot of ${ROWS} rows on ${result.cores} cores (agent and servers on this machine)`);
    console.log(`  mariadb-dump --single-transaction | mariadb : ${result.dumpSeconds.toFixed(2)} s  (${result.dumpRowsPerSecond} rows/s)`);
    console.log(`  datasync online snapshot                   : ${result.snapshotSeconds.toFixed(2)} s  (${result.snapshotRowsPerSecond} rows/s)`);
    console.log(`  ratio dump/snapshot                        : ${result.ratio}  (goal >= 1.0)`);
    console.log(`  agent peak RSS (in-process)                : ${result.peakRssMB} MB; checksums identical: ${result.identical}`);
  }
} finally {
  await Promise.all([src, dumpTarget, rep].map((s) => s.destroy()));
}
